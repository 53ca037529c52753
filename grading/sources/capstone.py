# %% [markdown]
# # Capstone: a distributed inference pipeline, its metrics review, and an incident tabletop
#
# **Module MOD-526, Distributed Inference & Scaling.** Objectives served: O1 *"Architect multi-GPU and
# multi-node inference with tensor, sequence and pipeline parallelism"* (the layout for a GPU budget), O2 *"Implement
# continuous batching, dynamic routing, and autoscaling strategies tied to performance KPIs"* (your
# router and autoscaler on a trace you have never seen), O3 *"Instrument distributed inference for
# observability and incident response coordination"* (the metrics review from Prometheus, the tabletop).
# The two assessments of the module: **(1) pipeline demonstration and metrics review**, **(2) incident
# response tabletop results and remediation backlog**.
#
# | | |
# |---|---|
# | Prerequisites | Labs 0-6 (TTFT/TPOT/goodput, the cost model, routing, autoscaling, PromQL, diagnosis, the backlog format) |
# | Hardware tier | **CPU** (any laptop). The live demos start 1-3 `inferlab serve` replicas behind the router, a chaos stack of 2, and Debian's `prometheus` |
# | Time | ~1 min in fast mode, ~2 min in full mode (the live demos add ~2.5 min) |
# | Hours | portfolio 6 h, assessment 4 h (the course: 12 h lecture, 18 h lab, 6 h portfolio, 4 h assessment; see COURSE.md) |
# | Graded (24 points automatically, 10 by hand) | part 1: layout for a budget (3), review from records (2), review from Prometheus (3), the two agree (2), fleet review (3), autoscaler on an unseen trace (3); part 2: detection time (2), fault named (2), replica named (2), backlog (2); by hand: metrics review (6), postmortem (4) |
#
# Everything graded runs on **hidden data**: other models and budgets, record sets the tests generate
# with the simulator, evaluation traces of the trace family (`split="eval"`, seeds a policy was never
# tuned on), and hidden incidents. The live parts (sections 1.7 and 2.3) are not graded and are skipped
# while autograding; they write one HTML report, `build/capstone/report.html`.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import yaml

from inferlab.costmodel.calibrate import default_efficiency
from inferlab.costmodel.plan import candidate_layouts, evaluate_layout
from inferlab.costmodel.roofline import Workload
from inferlab.costmodel.specs import get_gpu, get_model
from inferlab.metrics import SLO, RequestRecord, duration_s, meets_slo, tpot_s, ttft_s
from inferlab.notebook import banner, pick, run_demo
from inferlab.observe.incident import ROLES, template, validate_backlog
from inferlab.observe.review import BUCKETS, GENERATION_TOKENS, TPOT, TTFT, histogram_samples
from inferlab.observe.tabletop import TABLETOP_FAULTS, Tabletop
from inferlab.policies.autoscale import AutoscalingConfig, metric_values
from inferlab.sim import ClusterConfig, oracle_plan, roofline_model, simulate
from inferlab.trace_family import TraceSpec, generate

banner("capstone", tier="CPU", fast_min=1, full_min=2)
EFFICIENCY = default_efficiency()
SLO_ = SLO(ttft_s=2.5, tpot_s=0.1)  # both are bucket bounds of vLLM's histograms: Prometheus can count them exactly
MODEL = roofline_model("llama-2-7b", "h100")  # the simulated fleet: Llama-2-7B replicas on one H100 each

# %% [markdown]
# # Part 1. Pipeline demonstration and metrics review
#
# ## 1.1 A layout for a GPU budget
#
# Lab 1's `choose_layout` picks the **fastest** layout of a cluster. With a budget the question is
# another: which layout of **at most `max_gpus`** GPUs serves a request within a latency target for the
# **fewest GPU-seconds per request** (GPUs x request latency / batch size)? A bigger TP is faster but
# holds more GPUs per request. Worked example: every candidate of Llama-2-70B on up to 8 H100s, with the
# cost model's numbers.

# %%
def show_candidates(model: str, gpu: str, max_gpus: int, workload: Workload) -> None:
    for layout in candidate_layouts(max_gpus):
        r = evaluate_layout(get_model(model), get_gpu(gpu), layout, workload, efficiency=EFFICIENCY,
                            max_memory_fraction=0.9)
        if r.fits:
            print(f"{layout}: {r.latency.request_latency_s:6.3f} s/request, "
                  f"{layout.num_gpus * r.latency.request_latency_s / workload.batch_size:6.3f} GPU-s/request")
        else:
            print(f"{layout}: does not fit ({r.reasons[0]})")


show_candidates("llama-2-70b", "h100", 8, Workload(512, 128, batch_size=8))

# %% [markdown]
# **Exercise 1.** Write `pick_layout(model, gpu, max_gpus, workload, max_latency_s)`: among the layouts
# of `candidate_layouts(max_gpus)` that fit (`evaluate_layout(..., efficiency=EFFICIENCY,
# max_memory_fraction=0.9)`) and whose request latency is at most `max_latency_s`, the one with the
# fewest GPU-seconds per request; ties: lower latency, then fewer GPUs, then smaller TP. Return its
# `LayoutResult`, or None when no layout meets the target.
#
# *What you may use:* `candidate_layouts`, `evaluate_layout`. `inferlab.costmodel.budget.cheapest_layout`
# and `choose_layout` score zero here.

# %% solution id=layout
def pick_layout(model, gpu, max_gpus: int, workload: Workload, max_latency_s: float):
    """The cheapest layout (GPU-seconds per request) meeting the latency target.

    Args:
        model, gpu: `ModelSpec` and `GpuSpec` (`get_model`, `get_gpu`).
        max_gpus: the GPU budget.
        workload: the batch (`Workload(num_input_tokens, num_output_tokens, batch_size)`).
        max_latency_s: request latency target (s).
    Returns:
        a `LayoutResult`, or None.
    """
    ### BEGIN SOLUTION
    best, best_key = None, None
    for layout in candidate_layouts(max_gpus):
        r = evaluate_layout(model, gpu, layout, workload, efficiency=EFFICIENCY, max_memory_fraction=0.9)
        if not r.fits or r.latency.request_latency_s > max_latency_s:
            continue
        latency = r.latency.request_latency_s
        key = (round(layout.num_gpus * latency / workload.batch_size, 12), round(latency, 12), layout.num_gpus, layout.tp)
        if best_key is None or key < best_key:
            best, best_key = r, key
    return best
    ### END SOLUTION

# %%
_choice = pick_layout(get_model("llama-2-70b"), get_gpu("h100"), 8, Workload(512, 128, batch_size=8), 3.0)
print("the budget's layout:", _choice.layout, f"{_choice.latency.request_latency_s:.3f} s")

# %% tests id=test_layout points=3
from inferlab.costmodel.budget import cheapest_layout

assert pick_layout(get_model("llama-2-70b"), get_gpu("h100"), 8, Workload(512, 128, batch_size=8), 3.0).layout.tp == 4, \
    "Llama-2-70B, 8 H100s, 3 s: TP4 holds half the GPUs of TP8 for less than twice its latency"
assert pick_layout(get_model("llama-2-70b"), get_gpu("h100"), 8, Workload(512, 128, batch_size=8), 0.1) is None, \
    "no layout meets 0.1 s: None"
### BEGIN HIDDEN TESTS
for _m, _g, _n, _w, _lat in [("llama-2-70b", "h100", 8, Workload(512, 128, 8), 1.7),
                             ("llama-2-7b", "a100", 4, Workload(1024, 256, 16), 4.0),
                             ("mixtral-8x7b", "h200", 8, Workload(1024, 256, 16), 5.0),
                             ("llama-3.1-405b", "h200", 16, Workload(512, 64, 4), 10.0),
                             ("llama-2-7b", "h100", 8, Workload(128, 20, 1), 0.5),
                             ("llama-2-70b", "a100", 2, Workload(512, 64, 1), 100.0)]:
    _want = cheapest_layout(get_model(_m), get_gpu(_g), _n, _w, _lat, efficiency=EFFICIENCY, max_memory_fraction=0.9)
    _got = pick_layout(get_model(_m), get_gpu(_g), _n, _w, _lat)
    assert (_got is None) == (_want is None), "a hidden budget: a layout where none fits, or none where one does"
    assert _want is None or _got.layout == _want.layout, "a hidden budget: not the cheapest layout meeting the target"
### END HIDDEN TESTS

# %% [markdown]
# ## 1.2 The metrics review from per-request records
#
# The clients' records are the ground truth of what users saw. Worked example: a fleet of Llama-2-7B
# replicas in the simulator, two of them for 5 minutes of a trace at three times the Azure conversation
# rate (too few: some requests miss the SLO), each request routed least-outstanding.

# %%
def simulated_run(spec: TraceSpec, num_replicas: int):
    """A fixed fleet of `num_replicas` on the trace `spec` names: the simulator's result."""
    config = ClusterConfig(autoscaling=AutoscalingConfig(min_replicas=num_replicas, max_replicas=num_replicas,
                                                         initial_replicas=num_replicas), cold_start_s=90.0)
    return simulate(generate(spec), MODEL, config, lambda ctx: (num_replicas, ctx.policy_state))


RUN = simulated_run(TraceSpec("smooth", 0, rate_scale=3, num_minutes=5, split="tune"), 2)
print(f"{len(RUN.records)} requests, on replicas {sorted(set(RUN.routed_to))}; "
      f"first: TTFT {ttft_s(RUN.records[0]):.3f} s, TPOT {tpot_s(RUN.records[0]):.4f} s")

# %% [markdown]
# **Exercise 2.** Write `review_from_records(records, slo)`, a dict with
# - `num_requests`, `output_tokens` (sum of output tokens), as floats;
# - `ttft_attainment`: share of requests with TTFT <= `slo.ttft_s`; `tpot_attainment`: the same for TPOT,
#   over the requests with more than one output token (as vLLM observes TPOT), 1.0 if there is none;
# - `slo_attainment`: share meeting every SLO (`meets_slo`); `goodput_rps`: those per second over
#   `duration_s(records)`;
# - `ttft_p50_s`, `ttft_p99_s`, `tpot_p50_s`, `tpot_p99_s`: `np.percentile` (linear) of the TTFTs and of
#   the TPOTs (requests with more than one output token).
#
# *What you may use:* `ttft_s`, `tpot_s`, `meets_slo`, `duration_s`, numpy. `inferlab.metrics.summarize`
# and `inferlab.observe.review.records_review` score zero here.

# %% solution id=review_records
def review_from_records(records, slo: SLO) -> dict:
    """The metrics review from per-request records (keys above; seconds, ratios, requests/s)."""
    ### BEGIN SOLUTION
    ttft = np.array([ttft_s(r) for r in records])
    tpot = np.array([tpot_s(r) for r in records if r.num_output_tokens > 1])
    good = sum(meets_slo(r, slo) for r in records)
    return {"num_requests": float(len(records)), "output_tokens": float(sum(r.num_output_tokens for r in records)),
            "ttft_attainment": float(np.mean(ttft <= slo.ttft_s)),
            "tpot_attainment": float(np.mean(tpot <= slo.tpot_s)) if tpot.size else 1.0,
            "slo_attainment": good / len(records), "goodput_rps": good / duration_s(records),
            "ttft_p50_s": float(np.percentile(ttft, 50)), "ttft_p99_s": float(np.percentile(ttft, 99)),
            "tpot_p50_s": float(np.percentile(tpot, 50)), "tpot_p99_s": float(np.percentile(tpot, 99))}
    ### END SOLUTION

# %%
REVIEW = review_from_records(RUN.records, SLO_)
print({k: round(v, 4) for k, v in REVIEW.items()})

# %% tests id=test_review_records points=2
_keys = ("num_requests", "output_tokens", "ttft_attainment", "tpot_attainment", "slo_attainment", "goodput_rps",
         "ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s")
assert set(_keys) <= set(REVIEW), f"missing keys: {set(_keys) - set(REVIEW)}"
_recs = [RequestRecord(0.0, 1.0, 3.0, 10, 5), RequestRecord(1.0, 4.0, 5.0, 10, 1), RequestRecord(2.0, 2.5, 4.0, 10, 4)]
_r = review_from_records(_recs, SLO(ttft_s=2.5, tpot_s=0.5))
assert _r["num_requests"] == 3 and _r["output_tokens"] == 10
assert math.isclose(_r["ttft_attainment"], 2 / 3) and _r["tpot_attainment"] == 1.0, "TPOT only over multi-token requests"
assert math.isclose(_r["slo_attainment"], 2 / 3) and math.isclose(_r["goodput_rps"], 2 / 5)
assert math.isclose(_r["tpot_p50_s"], 0.5), "TPOTs are 0.5 and 0.5"
### BEGIN HIDDEN TESTS
from inferlab.observe.review import records_review as _ref_records

for _spec, _n in [(TraceSpec("smooth", 11, rate_scale=3, num_minutes=5), 2), (TraceSpec("bursty", 12, rate_scale=5, num_minutes=6), 2)]:
    _run = simulated_run(_spec, _n)
    _want, _got = _ref_records(_run.records, SLO_), review_from_records(_run.records, SLO_)
    for _k in _keys:
        assert math.isclose(_got[_k], _want[_k], rel_tol=1e-9, abs_tol=1e-12), f"a hidden run: {_k} is wrong"
### END HIDDEN TESTS

# %% [markdown]
# ## 1.3 The same review from Prometheus
#
# In production the clients' records are not at hand: the replicas' Prometheus histograms are. The
# samples below are exactly what a Prometheus scraping each replica returns for
# `inferlab.observe.review.SAMPLES_QUERY` at the end of the run (the live demo in 1.6 queries a real
# one): per replica (`instance`), the cumulative buckets `..._bucket{le="x"}` (requests with a value
# <= x) of `vllm:time_to_first_token_seconds` and `vllm:request_time_per_output_token_seconds`, their
# `_count`, and `vllm:generation_tokens_total`. Each is a `Sample(labels, value)`, the metric name in
# `labels["__name__"]`.

# %%
SAMPLES = histogram_samples(RUN.records, RUN.routed_to)
for s in SAMPLES[:3] + [s for s in SAMPLES if s.labels["__name__"] == GENERATION_TOKENS]:
    print(s.labels, s.value)


def buckets_of(samples, name: str, instance: str) -> dict[float, float]:
    """Worked example: one replica's histogram {upper bound: cumulative count} (+Inf as math.inf)."""
    return {float(s.labels["le"]): s.value for s in samples
            if s.labels["__name__"] == name + "_bucket" and s.labels["instance"] == instance}


print(list(buckets_of(SAMPLES, TTFT, "replica-0").items())[:5])

# %% [markdown]
# Prometheus's `histogram_quantile(q, buckets)`: with N the +Inf bucket's count, the rank is q·N; find the
# first bucket whose cumulative count is >= the rank; if it is the +Inf bucket, return the highest finite
# bound; else interpolate linearly between the bucket's lower bound (the previous bound, 0 for the first)
# and its upper bound: lower + (upper − lower)·(rank − count below)/(count in bucket). Buckets must be
# **summed over replicas first** (lab 6): one histogram of the fleet.
#
# **Exercise 3.** Write `review_from_prometheus(samples, slo, duration)` with the keys of Exercise 2, where
# - the two attainments come from the buckets at the SLO's bounds (`le="2.5"`, `le="0.1"`), exactly;
# - the quantiles are `histogram_quantile`s of the summed buckets;
# - `num_requests` is the TTFT histogram's count (its +Inf bucket), `output_tokens` the sum of
#   `vllm:generation_tokens_total`;
# - the joint SLO cannot be joined per request from two histograms: give its **bounds**. With a the TTFT
#   attainment and b the share of *all* requests meeting the TPOT SLO (requests without a TPOT
#   observation meet it), `slo_attainment` = max(0, a + b − 1) and `slo_attainment_max` = min(a, b);
#   `goodput_rps` and `goodput_rps_max` are those times `num_requests / duration`.
#
# *What you may use:* numpy, math. `inferlab.observe.review.prometheus_review` and
# `bucket_quantile` score zero here.

# %% solution id=review_prometheus
def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus's histogram_quantile of {upper bound: cumulative count}."""
    ### BEGIN SOLUTION
    bounds = sorted(buckets)
    rank, lower, below = q * buckets[math.inf], 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if math.isinf(bound):
                return lower
            if buckets[bound] == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (buckets[bound] - below)
        lower, below = bound, buckets[bound]
    return lower
    ### END SOLUTION


def review_from_prometheus(samples, slo: SLO, duration: float) -> dict:
    """The metrics review from Prometheus samples (Exercise 2's keys, plus the two `_max` bounds)."""
    ### BEGIN SOLUTION
    def summed(name):
        out = {}
        for s in samples:
            if s.labels["__name__"] == name + "_bucket":
                le = float(s.labels["le"])
                out[le] = out.get(le, 0.0) + s.value
        return out

    ttft, tpot = summed(TTFT), summed(TPOT)
    n, n_tpot = ttft[math.inf], tpot[math.inf]
    a = ttft[slo.ttft_s] / n
    b_all = (tpot[slo.tpot_s] + n - n_tpot) / n
    lower, upper = max(0.0, a + b_all - 1), min(a, b_all)
    return {"num_requests": n,
            "output_tokens": sum(s.value for s in samples if s.labels["__name__"] == GENERATION_TOKENS),
            "ttft_attainment": a, "tpot_attainment": tpot[slo.tpot_s] / n_tpot if n_tpot else 1.0,
            "slo_attainment": lower, "slo_attainment_max": upper,
            "goodput_rps": lower * n / duration, "goodput_rps_max": upper * n / duration,
            "ttft_p50_s": histogram_quantile(0.5, ttft), "ttft_p99_s": histogram_quantile(0.99, ttft),
            "tpot_p50_s": histogram_quantile(0.5, tpot), "tpot_p99_s": histogram_quantile(0.99, tpot)}
    ### END SOLUTION

# %%
PROM_REVIEW = review_from_prometheus(SAMPLES, SLO_, duration_s(RUN.records))
for _k in REVIEW:
    print(f"{_k:>16}: records {REVIEW[_k]:10.4f}   Prometheus {PROM_REVIEW[_k]:10.4f}")

# %% tests id=test_review_prometheus points=3
assert histogram_quantile(0.5, {1.0: 0.0, 2.0: 10.0, math.inf: 10.0}) == 1.5
assert histogram_quantile(0.99, {1.0: 5.0, 2.0: 5.0, math.inf: 10.0}) == 2.0, "rank in +Inf: the highest finite bound"
assert PROM_REVIEW["num_requests"] == len(RUN.records) and PROM_REVIEW["output_tokens"] == REVIEW["output_tokens"]
assert math.isclose(PROM_REVIEW["ttft_attainment"], REVIEW["ttft_attainment"]), "the SLI at a bucket bound is exact"
assert PROM_REVIEW["slo_attainment"] <= REVIEW["slo_attainment"] <= PROM_REVIEW["slo_attainment_max"]
### BEGIN HIDDEN TESTS
from inferlab.observe.review import prometheus_review as _ref_prom

for _spec, _n in [(TraceSpec("smooth", 13, rate_scale=3, num_minutes=5), 2), (TraceSpec("bursty", 14, rate_scale=6, num_minutes=6), 3)]:
    _run = simulated_run(_spec, _n)
    _s = histogram_samples(_run.records, _run.routed_to)
    _want, _got = _ref_prom(_s, SLO_, duration_s(_run.records)), review_from_prometheus(_s, SLO_, duration_s(_run.records))
    for _k in _want:
        assert math.isclose(_got[_k], _want[_k], rel_tol=1e-9, abs_tol=1e-12), f"a hidden fleet: {_k} is wrong"
### END HIDDEN TESTS

# %% [markdown]
# ## 1.4 Do the two reviews agree?
#
# A review whose numbers disagree with the raw records is worth nothing. **Exercise 4.** Write
# `disagreements(from_records, from_prometheus)`: a list of messages, empty when they agree:
# - `num_requests`, `output_tokens`, `ttft_attainment`, `tpot_attainment` equal (relative 1e-6);
# - each quantile from Prometheus inside the bucket (of that histogram's bounds, `BUCKETS[TTFT]` and
#   `BUCKETS[TPOT]`, then +Inf) that holds the records' value: lower < value <= upper, with 1e-9 slack;
# - `slo_attainment` and `goodput_rps` from records within Prometheus's bounds (1e-6 relative slack).
#
# *What you may use:* math. `inferlab.observe.review.review_disagreements` scores zero here.

# %% solution id=agree
def disagreements(from_records: dict, from_prometheus: dict) -> list[str]:
    """Messages naming each quantity on which the two reviews disagree ([] when they agree)."""
    ### BEGIN SOLUTION
    out = []
    for k in ("num_requests", "output_tokens", "ttft_attainment", "tpot_attainment"):
        if not math.isclose(from_records[k], from_prometheus[k], rel_tol=1e-6, abs_tol=1e-9):
            out.append(f"{k}: {from_records[k]} vs {from_prometheus[k]}")
    for k, name in (("ttft_p50_s", TTFT), ("ttft_p99_s", TTFT), ("tpot_p50_s", TPOT), ("tpot_p99_s", TPOT)):
        lower, upper = 0.0, math.inf
        for bound in BUCKETS[name]:
            if from_records[k] <= bound:
                upper = bound
                break
            lower = bound
        if not lower - 1e-9 <= from_prometheus[k] <= upper + 1e-9:
            out.append(f"{k}: {from_prometheus[k]} not in ({lower}, {upper}]")
    for k in ("slo_attainment", "goodput_rps"):
        if not from_prometheus[k] * (1 - 1e-6) - 1e-9 <= from_records[k] <= from_prometheus[k + "_max"] * (1 + 1e-6) + 1e-9:
            out.append(f"{k}: {from_records[k]} outside [{from_prometheus[k]}, {from_prometheus[k + '_max']}]")
    return out
    ### END SOLUTION

# %%
print("disagreements:", disagreements(REVIEW, PROM_REVIEW))

# %% tests id=test_agree points=2
assert disagreements(REVIEW, PROM_REVIEW) == [], "the two reviews of the same run agree"
assert disagreements(REVIEW, {**PROM_REVIEW, "num_requests": PROM_REVIEW["num_requests"] + 1}), "a lost request"
assert disagreements({**REVIEW, "ttft_p99_s": REVIEW["ttft_p99_s"] * 10}, PROM_REVIEW), "a p99 ten times off"
### BEGIN HIDDEN TESTS
from inferlab.observe.review import review_disagreements as _ref_dis
from inferlab.observe.review import prometheus_review as _ref_prom
from inferlab.observe.review import records_review as _ref_records

_run = simulated_run(TraceSpec("smooth", 15, rate_scale=3, num_minutes=5), 2)
_a = _ref_records(_run.records, SLO_)
_b = _ref_prom(histogram_samples(_run.records, _run.routed_to), SLO_, duration_s(_run.records))
assert disagreements(_a, _b) == [], "a hidden run: the reviews agree"
for _k, _f in [("output_tokens", 1.01), ("tpot_attainment", 0.9), ("tpot_p50_s", 3.0), ("ttft_p50_s", 0.2),
               ("slo_attainment", 1.5), ("goodput_rps", 0.2)]:
    _bad = {**_a, _k: _a[_k] * _f}
    assert bool(disagreements(_bad, _b)) == bool(_ref_dis(_bad, _b)), f"a hidden perturbation of {_k}: missed or false alarm"
_half = _ref_prom(histogram_samples(_run.records[::2], _run.routed_to[::2]), SLO_, duration_s(_run.records))
assert disagreements(_a, _half), "a hidden case: Prometheus saw half the requests"
### END HIDDEN TESTS

# %% [markdown]
# ## 1.5 The fleet: GPU-hours, dollars per million tokens, the oracle, scale actions
#
# The simulator's `timeline` has one row per decision period: `time_s`, `target` (the replicas the
# autoscaler asked for) and, per pool (`on_demand`, `spot`), the replicas `num_starting_<pool>`,
# `num_running_<pool>` and `num_draining_<pool>`. Each row holds until the next; the last until `end_s`.
# A replica is billed **from launch**: its cold start (90 s here) costs GPU-hours before it serves a
# token. A **scale action** is a change of `target` between consecutive rows.
#
# **Exercise 5.** Write `fleet_review(timeline, end_s, output_tokens, oracle_gpu_hours, usd_per_gpu_hour,
# num_gpus_per_replica=1)`: a dict with `gpu_hours`, `gpu_hours_vs_oracle`,
# `usd_per_million_output_tokens` and `scale_actions_per_hour` (actions over `end_s` in hours).
#
# *What you may use:* plain Python. `inferlab.observe.review.fleet_review` scores zero here.

# %% solution id=fleet
def fleet_review(timeline, end_s: float, output_tokens: float, oracle_gpu_hours: float, usd_per_gpu_hour: float,
                 num_gpus_per_replica: int = 1) -> dict:
    """GPU-hours (cold starts billed), their ratio to the oracle, $ per million output tokens, scale actions/h."""
    ### BEGIN SOLUTION
    replica_s = 0.0
    stops = [row["time_s"] for row in timeline[1:]] + [end_s]
    for row, stop in zip(timeline, stops):
        billed = sum(v for k, v in row.items() if k.startswith(("num_starting", "num_running", "num_draining")))
        replica_s += billed * max(0.0, min(stop, end_s) - row["time_s"])
    gpu_hours = replica_s * num_gpus_per_replica / 3600
    actions = sum(a["target"] != b["target"] for a, b in zip(timeline, timeline[1:]))
    return {"gpu_hours": gpu_hours, "gpu_hours_vs_oracle": gpu_hours / oracle_gpu_hours,
            "usd_per_million_output_tokens": gpu_hours * usd_per_gpu_hour / output_tokens * 1e6,
            "scale_actions_per_hour": actions / (end_s / 3600)}
    ### END SOLUTION

# %% tests id=test_fleet points=3
_tl = [{"time_s": 0.0, "target": 1, "num_starting_on_demand": 0, "num_running_on_demand": 1},
       {"time_s": 600.0, "target": 3, "num_starting_on_demand": 2, "num_running_on_demand": 1},
       {"time_s": 690.0, "target": 3, "num_starting_on_demand": 0, "num_running_on_demand": 3},
       {"time_s": 1800.0, "target": 2, "num_starting_on_demand": 0, "num_running_on_demand": 2}]
_f = fleet_review(_tl, 3600.0, 1e6, 2.0, 3.0)
assert math.isclose(_f["gpu_hours"], (600 + 3 * 90 + 3 * 1110 + 2 * 1800) / 3600), "the cold start is billed"
assert math.isclose(_f["gpu_hours_vs_oracle"], _f["gpu_hours"] / 2.0) and math.isclose(_f["scale_actions_per_hour"], 2.0)
assert math.isclose(_f["usd_per_million_output_tokens"], 3.0 * _f["gpu_hours"])
### BEGIN HIDDEN TESTS
from inferlab.observe.review import fleet_review as _ref_fleet
from inferlab.policies.autoscale import hpa_policy as _hpa

_trace = generate(TraceSpec("smooth", 16, rate_scale=4, num_minutes=10))
_plan = oracle_plan(_trace, MODEL, SLO_)
_cfg = ClusterConfig(autoscaling=AutoscalingConfig(min_replicas=1, max_replicas=32, initial_replicas=1), cold_start_s=90.0)
_res = simulate(_trace, MODEL, _cfg, _hpa)
_tokens = sum(r.num_output_tokens for r in _res.records)
_got = fleet_review(_res.timeline, _res.end_time_s, _tokens, _plan.oracle_gpu_hours, 2.49, 2)
_want = _ref_fleet(_res.timeline, _res.end_time_s, _tokens, _plan.oracle_gpu_hours, 2.49, 2)
for _k in _want:
    assert math.isclose(_got[_k], _want[_k], rel_tol=1e-9), f"a hidden fleet: {_k} is wrong"
assert abs(_got["gpu_hours"] / 2 - _res.total_gpu_hours) <= 0.02 * _res.total_gpu_hours, "far from the simulator's own bill"
### END HIDDEN TESTS

# %% [markdown]
# ## 1.6 Your autoscaler on a trace you have never seen
#
# **Exercise 6.** Lab 5's autoscaler reacts: a replica it asks for now serves only after a cold start
# (90 s here), and the load keeps rising meanwhile. Write `capstone_autoscaler(ctx)`, a **pre-warming**
# policy `fn(ctx) -> (num_replicas, state)` that sizes the fleet for the need **one cold start ahead**:
# - the need now, in replicas, from the engines' utilisation (`kv_utilization`, `compute_utilization`
#   over `target_utilization`) and the queue (`num_waiting_requests`), as in lab 5;
# - its **forecast**: the least-squares slope (replicas per second) of the need over the last `trend_s`
#   seconds of your own history (once `trend_s` has passed since your first call and with at least 3
#   points; 0 before), times the context's cold start `getattr(ctx, "cold_start_s", 0.0)`, added to the
#   need when positive, at most 1.25x the need (one noisy slope must not buy a fleet);
# - up to `ceil(1.2 x forecast)` at once; down only after the need stayed low for `hold_s`, as in lab 5.
#
# Auto-checked: (a) pre-warming, on contexts where the need rises steadily: with a need rising by s
# replicas per second for longer than `trend_s` and a cold start C, you ask for at least
# ceil(1.2 x min(need + s·C, 1.25 x need)) replicas (a reactive copy of lab 5 asks for ceil(1.2 x need)); with a flat need, or no cold
# start, no more than lab 5 would; (b) on the simulator's fleet (Llama-2-7B on H100s, 90 s cold starts,
# starting at the oracle's first window) on traces of the family `inferlab.trace_family`, the
# conversation-shaped kind `"smooth"` at 4x the Azure rate, 10 minutes (20 in full mode), on the
# tune-split trace below **and on hidden evaluation traces** (`split="eval"`, seeds you have never seen):
# SLO attainment >= 0.98, GPU-hours <= 2.4x the oracle's (pre-warming pays for its safety in
# GPU-hours), <= 30 scale actions per hour, within the context's bounds.
#
# *What you may use:* `metric_values` (and `clamp`) from `inferlab.policies.autoscale`, `math`; its
# ready-made policies (`hpa_policy`, `kpa_policy`, `ray_default_policy`, `slo_aware` ones) score zero.

# %% solution id=autoscaler
def capstone_autoscaler(ctx, hold_s: float = 300.0, target_utilization: float = 0.7, trend_s: float = 60.0):
    """Pre-warming: the need one cold start ahead (its trend over `trend_s`), up at once, down after `hold_s`."""
    ### BEGIN SOLUTION
    state = dict(ctx.policy_state)
    now, current = ctx.current_time, ctx.target_num_replicas
    num_starting = max(0, ctx.target_num_replicas - ctx.current_num_replicas)
    need = max(sum(metric_values(ctx, "kv_utilization")),
               sum(metric_values(ctx, "compute_utilization"))) / target_utilization
    if sum(metric_values(ctx, "num_waiting_requests")) > 4 * max(ctx.current_num_replicas, 1) and num_starting == 0:
        need = max(need, 2 * current)
    history = [row for row in state.get("history", []) if now - row[0] <= max(hold_s, trend_s)] + [[now, need]]
    state["history"] = history
    started = state.setdefault("started_s", now)
    recent = [row for row in history if now - row[0] <= trend_s]
    slope = 0.0
    if now - started >= trend_s and len(recent) >= 3:
        mean_t, mean_v = sum(r[0] for r in recent) / len(recent), sum(r[1] for r in recent) / len(recent)
        var = sum((r[0] - mean_t) ** 2 for r in recent)
        slope = sum((r[0] - mean_t) * (r[1] - mean_v) for r in recent) / var if var > 0 else 0.0
    forecast = min(need + max(0.0, slope) * getattr(ctx, "cold_start_s", 0.0), 1.25 * need)
    up = math.ceil(1.2 * forecast)
    if up > current:
        state["low_since"] = None
        return min(ctx.capacity_adjusted_max_replicas, up), state
    held = max(row[1] for row in history if now - row[0] <= hold_s)
    down = max(ctx.capacity_adjusted_min_replicas, math.ceil(1.2 * held / target_utilization), math.ceil(current / 2))
    if down < current:
        if state.get("low_since") is None:
            state["low_since"] = now
        if now - state["low_since"] >= hold_s:
            state["low_since"] = None
            return down, state
    else:
        state["low_since"] = None
    return current, state
    ### END SOLUTION

# %%
def autoscaled_run(spec: TraceSpec, policy):
    """`policy` on the trace `spec` names; (the simulator's result, the oracle's plan, the review)."""
    trace = generate(spec)
    plan = oracle_plan(trace, MODEL, SLO_)
    config = ClusterConfig(autoscaling=AutoscalingConfig(min_replicas=1, max_replicas=32, initial_replicas=plan.schedule[0]),
                           cold_start_s=90.0)
    result = simulate(trace, MODEL, config, policy)
    tokens = sum(r.num_output_tokens for r in result.records)
    review = {**review_from_records(result.records, SLO_),
              **fleet_review(result.timeline, result.end_time_s, tokens, plan.oracle_gpu_hours,
                             config.on_demand_usd_per_gpu_hour)}
    return result, plan, review


SPEC = TraceSpec("smooth", 0, rate_scale=4, num_minutes=pick(20, 10), split="tune")
SCALED, PLAN, SCALED_REVIEW = autoscaled_run(SPEC, capstone_autoscaler)
print(f"{SPEC.name}: attainment {SCALED_REVIEW['slo_attainment']:.4f}, GPU-h {SCALED_REVIEW['gpu_hours_vs_oracle']:.2f}x "
      f"oracle, {SCALED_REVIEW['scale_actions_per_hour']:.0f} scale actions/h, "
      f"${SCALED_REVIEW['usd_per_million_output_tokens']:.2f} per million output tokens")
fig, ax = plt.subplots(figsize=(8, 2.5))
ax.step([row["time_s"] / 60 for row in SCALED.timeline], [row["target"] for row in SCALED.timeline], label="yours")
ax.step([i * PLAN.window_s / 60 for i in range(len(PLAN.schedule))], PLAN.schedule, where="post", ls="--", color="k",
        label="oracle")
ax.set(xlabel="minutes", ylabel="replicas")
ax.legend()
plt.show()

# %% tests id=test_autoscaler points=3
from inferlab.policies.autoscale import AutoscalingContext


def ramp_decision(policy, rise_per_s: float, cold_start_s: float, base: float = 2.0, until_s: float = 120.0,
                  period_s: float = 10.0):
    """Feed `policy` contexts whose compute utilisation sums to 0.7 x (base + rise_per_s x t); (need, ask) at the end."""
    state, target, ask, need = {}, 3, 3, base
    for t in range(0, int(until_s) + 1, int(period_s)):
        need = base + rise_per_s * t
        ctx = AutoscalingContext(current_num_replicas=target, target_num_replicas=target, total_num_requests=0.0,
                                 total_queued_requests=0.0, capacity_adjusted_min_replicas=1,
                                 capacity_adjusted_max_replicas=64, current_time=float(t), policy_state=state,
                                 aggregated_metrics={"compute_utilization": {0: 0.7 * need}, "kv_utilization": {0: 0.0},
                                                     "num_waiting_requests": {0: 0.0}}, cold_start_s=cold_start_s)
        ask, state = policy(ctx)
        target = max(target, ask)
    return need, ask


_need, _ask = ramp_decision(capstone_autoscaler, 1 / 60, 90.0)
assert _ask >= math.ceil(1.2 * min(_need + 1.5, 1.25 * _need) - 1e-9), \
    f"the need rises 1 replica a minute and a cold start is 90 s: asked {_ask} for a need of {_need:.2f} now"
_need, _ask = ramp_decision(capstone_autoscaler, 0.0, 90.0)
assert _ask <= math.ceil(1.2 * _need), "a flat need: nothing to pre-warm"
assert SCALED_REVIEW["slo_attainment"] >= 0.98, f"attainment {SCALED_REVIEW['slo_attainment']:.4f} < 0.98"
assert SCALED_REVIEW["gpu_hours_vs_oracle"] <= 2.4, f"{SCALED_REVIEW['gpu_hours_vs_oracle']:.2f}x the oracle's GPU-hours"
assert SCALED_REVIEW["scale_actions_per_hour"] <= 30, "too many scale actions"
assert all(1 <= row["target"] <= 32 for row in SCALED.timeline), "out of the context's bounds"
### BEGIN HIDDEN TESTS
for _rise, _cold, _base in [(1 / 30, 60.0, 4.0), (1 / 120, 120.0, 6.0), (0.05, 30.0, 1.0)]:
    _need, _ask = ramp_decision(capstone_autoscaler, _rise, _cold, base=_base, until_s=150.0)
    assert _ask >= math.ceil(1.2 * min(_need + _rise * _cold, 1.25 * _need) - 1e-9), "a hidden ramp: not pre-warmed"
_need, _ask = ramp_decision(capstone_autoscaler, 1 / 30, 0.0, base=4.0, until_s=150.0)
assert _ask <= math.ceil(1.2 * _need), "a hidden ramp without cold start: pre-warmed for nothing"
for _seed in (pick([1, 2, 4], [1, 2])):
    _, _, _rev = autoscaled_run(TraceSpec("smooth", _seed, rate_scale=4, num_minutes=pick(20, 10), split="eval"),
                                capstone_autoscaler)
    assert _rev["slo_attainment"] >= 0.98, "an unseen evaluation trace: SLO attainment below the threshold"
    assert _rev["gpu_hours_vs_oracle"] <= 2.4, "an unseen evaluation trace: too many GPU-hours against the oracle"
    assert _rev["scale_actions_per_hour"] <= 30, "an unseen evaluation trace: too many scale actions"
### END HIDDEN TESTS

# %% [markdown]
# ## 1.7 The live pipeline (demo, not graded; ~1 min)
#
# Your pipeline on this machine: `inferlab serve` replicas of the tiny model behind `inferlab route` with
# **your router** (paste your lab 4 policy; below, power of two choices), scaled by **your autoscaler**
# (Exercise 6, the same function, on a live context: `inferlab.serving.fleet`) between 1 and 3 replicas,
# a managed Prometheus scraping every replica slot every 0.5 s, and a replay of an unseen evaluation trace
# of the family, rate-scaled so that one CPU replica is too few (prompts cut to 96 tokens, outputs to 32).
# The fleet's cold start is the real process start (measured, and passed to your policy as
# `ctx.cold_start_s`); a replica scaled down is drained (the router stops routing to it, its requests
# finish) before it is stopped. The review is computed from the live records **and** from the real
# Prometheus, compared, with the fleet's replica-hours, scale actions and $ per million tokens against an
# oracle of the same trace (in each 10 s window, the fewest replicas that at the best per-replica
# throughput this run measured would have made its tokens, with no cold start), and written with plots to
# **one HTML report**, `build/capstone/report.html` (`inferlab.observe.report`). Skipped while autograding.
#
# Live, the counts always agree, but the client times TTFT from *sending* the request (through the router
# and HTTP), each replica from *receiving* it: on an idle machine the SLIs agree and a quantile may fall a
# bucket off; while the one replica is overloaded (before the new ones are ready) requests wait in the
# router and HTTP stack, and the client's TTFT attainment falls below the replicas' (measured on a shared
# 2-core VM: 234 requests, 0.28 from the records against 0.34 from Prometheus). Which one does your SLO
# promise? Say it in your review.

# %%
def my_router(ctx):
    """Your router (lab 4): here, power of two choices on outstanding requests."""
    if len(ctx.num_outstanding) == 1:
        return 0, ctx.policy_state
    i, j = ctx.rng.sample(range(len(ctx.num_outstanding)), 2)
    return (i if ctx.num_outstanding[i] <= ctx.num_outstanding[j] else j), ctx.policy_state


def live_autoscaler(ctx):
    """Your Exercise 6 on the demo's seconds (the replay lasts ~30 s, not hours)."""
    return capstone_autoscaler(ctx, hold_s=4.0, target_utilization=0.6, trend_s=3.0)


LIVE = {}
if run_demo("the live pipeline: your router and autoscaler, 1-3 replicas, Prometheus, a replay, the report (~60 s)"):
    import asyncio
    import dataclasses
    import threading
    import time

    from inferlab.observe.prometheus import PrometheusServer
    from inferlab.observe.report import figure_html, table_html, write_report
    from inferlab.observe.review import fleet_samples
    from inferlab.serving.fleet import FleetConfig, best_replica_tokens_per_s, live_fleet, oracle_replica_seconds
    from inferlab.serving.loadgen import run_load
    from inferlab.serving.router import RouterConfig

    _rng = np.random.default_rng(0)
    _trace = [dataclasses.replace(r, num_prompt_tokens=min(r.num_prompt_tokens, 96), num_output_tokens=min(r.num_output_tokens, 32))
              for r in generate(TraceSpec("smooth", 7, rate_scale=2, num_minutes=5))]
    _trace = [r for r in _trace if r.arrival_time_s < pick(40.0, 24.0)]  # ~10 requests/s
    _prompts = [_rng.integers(1, 500, r.num_prompt_tokens).tolist() for r in _trace]
    _config = FleetConfig(max_num_seqs=4, period_s=0.5,
                          autoscaling=AutoscalingConfig(min_replicas=1, max_replicas=3, initial_replicas=1))
    with live_fleet(live_autoscaler, _config, RouterConfig(my_router)) as fleet, \
            PrometheusServer(fleet.scrape_targets(), scrape_interval_s=0.5) as prom:
        out = {}  # the kernel runs an event loop: the client gets its own thread
        client = threading.Thread(target=lambda: out.update(r=asyncio.run(run_load(fleet.base_url, "tiny", _trace, _prompts))))
        client.start()
        client.join()
        records, errors = out["r"]
        fleet.wait_until(lambda f: f.target == 1 and not f.in_state("draining"), timeout_s=pick(30.0, 20.0))
        time.sleep(1.5)  # more scrapes: Prometheus has seen every finished request
        samples = fleet_samples(prom)
        timeline, actions, end_s = list(fleet.timeline), list(fleet.actions), fleet.end_s
        cold_starts = fleet.measured_cold_starts_s()
    live_slo = SLO(ttft_s=0.5, tpot_s=0.1)
    live_records = review_from_records(records, live_slo)
    live_prom = review_from_prometheus(samples, live_slo, duration_s(records))
    # the oracle: the best per-replica throughput of this run (tokens per running-replica-second, 10 s windows)
    _token_times = [fleet.fleet_time(t) for r in records for t in (r.token_times_s or [r.finish_time_s])]
    _oracle_s = oracle_replica_seconds(_token_times, end_s, best_replica_tokens_per_s(_token_times, timeline, end_s))
    live_fleet_review = fleet_review(timeline, end_s, live_records["output_tokens"], _oracle_s / 3600,
                                     usd_per_gpu_hour=0.10)  # a CPU replica: ~$0.10/h (2 vCPUs on demand)
    LIVE = {"records": live_records, "prometheus": live_prom, "disagreements": disagreements(live_records, live_prom),
            "fleet": live_fleet_review, "actions": actions}
    print(f"{len(records)} served, {len(errors)} failed; up to {max(r['num_running_on_demand'] for r in timeline)} "
          f"replicas, scale actions {[(round(t, 1), a, b) for t, a, b in actions]}, cold starts "
          f"{[round(c, 1) for c in cold_starts]} s; disagreements: {LIVE['disagreements']}")
    if errors:
        print("failed requests (first 3):", errors[:3])
    print({k: round(v, 4) for k, v in live_fleet_review.items()})
    fig, axes = plt.subplots(1, 3, figsize=(12, 3))
    for ax, values, name in ((axes[0], [ttft_s(r) for r in records], "TTFT (s)"),
                             (axes[1], [tpot_s(r) for r in records if r.num_output_tokens > 1], "TPOT (s)")):
        values = np.sort(values)
        ax.plot(values, np.arange(1, len(values) + 1) / len(values))
        ax.set(xlabel=name, ylabel="CDF")
    axes[2].step([r["time_s"] for r in timeline], [r["target"] for r in timeline], where="post", label="target")
    axes[2].step([r["time_s"] for r in timeline], [r["num_running_on_demand"] for r in timeline], where="post",
                 label="running")
    axes[2].set(xlabel="seconds", ylabel="replicas")
    axes[2].legend()
    plt.tight_layout()
    _path = write_report([
        ("Layout for the budget", f"<p>Llama-2-70B, 8 H100s, 3 s: {_choice.layout}, "
                                  f"{_choice.latency.request_latency_s:.3f} s per request</p>"),
        ("Live replay: records vs Prometheus (SLO TTFT 0.5 s, TPOT 0.1 s)",
         table_html({"records": live_records, "Prometheus": live_prom})
         + f"<p>disagreements: {LIVE['disagreements'] or 'none'}; {len(errors)} failed requests</p>"),
        ("Live fleet: replica-hours against the oracle, scale actions",
         table_html({"live fleet": live_fleet_review})
         + f"<p>scale actions (s, from, to): {[(round(t, 1), a, b) for t, a, b in actions]}; measured cold starts "
           f"{[round(c, 1) for c in cold_starts]} s</p>"),
        ("Live latency distributions and the fleet", figure_html(fig)),
        (f"Simulated fleet, your autoscaler on {SPEC.name}", table_html({"review": SCALED_REVIEW})),
    ])
    plt.show()
    print("report:", _path)

# %% [markdown]
# ### 1.7b The same fleet on a 3-node cluster (demo, not graded; full mode, root only)
#
# Multi-node on one machine (`inferlab cluster`, network namespaces joined by a bridge): the fleet's router
# and controller run in node 0, its replicas in nodes 1 and 2 (`inferlab.cluster.fleet`), your
# autoscaler and router unchanged; the replay is sent from node 0. The cluster is one shared resource of
# the machine: the demo takes its lock (waiting at most 60 s) and always takes the cluster down. It runs in
# full mode only (fast mode keeps the notebook's test run short) and is skipped, with the reason, where
# network namespaces are not allowed (not root, no `ip`, a kernel that refuses them).

# %%
CLUSTER = {}
if run_demo("the fleet on a 3-node cluster of network namespaces (~1.5 min; full mode, root only)"):
    if pick(True, False):
        from inferlab.cluster.fleet import run_cluster_fleet
        from inferlab.cluster.netns import ClusterError

        try:
            CLUSTER = run_cluster_fleet(live_autoscaler, _trace, _prompts, _config, num_nodes=3, lock_timeout_s=60.0)
        except ClusterError as exc:
            print("SKIPPED, no cluster here:", exc)
        else:
            print(f"{CLUSTER['num_served']} of {CLUSTER['num_requests']} served, {CLUSTER['num_errors']} failed; "
                  f"scale actions {CLUSTER['actions']}")
            for r in CLUSTER["replicas"]:
                print(f"  replica {r['url']}: launched {r['launch_s']} s, ready {r['ready_s']} s, "
                      f"{r['num_requests']} requests {r['error']}")
            print({k: round(v, 4) for k, v in fleet_review(CLUSTER["timeline"], CLUSTER["end_s"], CLUSTER["output_tokens"],
                                                            1.0, 0.10).items() if k != "gpu_hours_vs_oracle"})
    else:
        print("SKIPPED in fast mode: the cluster demo runs in full mode (INFERLAB_FAST=0)")

# %% [markdown]
# ## 1.8 The written metrics review (graded by hand, 6 points)
#
# Write the review a reviewer reads with the report: the layout you chose and why (GPU-seconds against
# latency); SLO attainment, TTFT/TPOT p50 and p99, goodput, from records and from Prometheus, and why
# they differ where they do; GPU-hours and $ per million output tokens against the oracle, where the gap
# comes from (cold starts, hold time, headroom); scale actions per hour; one change you would make.
#
# Rubric: layout choice justified with the cost model's numbers (1); every SLI stated from both sources
# with the quantile's bucket error explained (2); the cost gap to the oracle explained from the timeline
# (cold starts, hold) in numbers (2); one concrete, measurable improvement (1).

# %% [markdown] manual id=review points=6
# **Layout.** Llama-2-70B on at most 8 H100s within 3 s: TP4 (2.79 s, 1.39 GPU-s per request) over TP8
# (1.65 s but 1.65 GPU-s): half the GPUs for 1.7x the latency, so two TP4 replicas serve more per GPU.
# **SLIs.** On the 2-replica run, attainment and the two per-SLI attainments agree exactly between records
# and Prometheus (the SLO's thresholds are bucket bounds); the p99 TTFT differs inside its bucket (linear
# interpolation: Prometheus cannot see inside a bucket), the joint attainment only as bounds.
# **Cost.** The autoscaler used ~1.6x the oracle's GPU-hours: each scale-up bills 90 s of cold start per
# replica, and the 300 s hold keeps the peak fleet after the load falls. **Change:** a 150 s hold with
# a 0.75 utilisation target, measured on the evaluation split.

# %% [markdown]
# # Part 2. Incident tabletop
#
# A `Tabletop` is one scripted incident on a 3-replica fleet: one of lab 6's faults (`TABLETOP_FAULTS`)
# on one replica. `table.next_inject()` reveals the next phase: its index, an `Inject` (time and a line
# of scenario text), and the `MetricSnapshot` **up to that time only** (lab 6's series: `up`,
# `client_error_ratio`, `client_ttft_p99_s`, `kv_cache_usage_perc`, ...). Injects come every 10 s from
# 20 s before the fault. The page alert of the exercise (`inferlab.observe.tabletop.page_time_s`)
# fires once, for 3 consecutive seconds, the fleet's mean client error ratio exceeds 0.05 or a replica's
# client p99 TTFT exceeds 1 s.
#
# Worked example: play a tabletop, printing each inject and the worst client error ratio so far.

# %%
_table = Tabletop("network_drop", 2, 60.0, seed=1)
while (_step := _table.next_inject()) is not None:
    _phase, _inject, _snap = _step
    print(f"phase {_phase} at {_inject.at_s:5.0f} s: {_inject.text} "
          f"(worst client error ratio {np.nanmax(_snap.series['client_error_ratio']):.2f})")

# %% [markdown]
# **Exercise 7.** Write `play_tabletop(table) -> list[dict]`, your decision log: play the injects in order
# and append a dict per decision with `phase` (the inject's index), `t_s` (the snapshot time the decision
# refers to: never after the inject's time), `action` (one of `observe`, `detect`, `diagnose`, `mitigate`,
# `resolve`, `escalate`, `communicate`), and for `diagnose` the `fault` (one of `TABLETOP_FAULTS`) and
# `replica` (an index), plus a `note`. Entries in time order. Auto-checked on hidden incidents: your
# first `detect` is not before the fault began and at most 10 s after the page (detect from the
# metrics; the page's rule is above); your last `diagnose` names the right fault (2) and replica (2).
#
# *What you may use:* numpy; your lab 6 diagnosis. `inferlab.observe.snapshots.reference_diagnose`,
# `page_time_s` and `check_log` score zero here.

# %% solution id=tabletop
def detect_time(snap):
    """The first time (s) the page's condition has held for 3 s in `snap`, or None."""
    ### BEGIN SOLUTION
    errors = np.nan_to_num(np.nanmean(snap.series["client_error_ratio"], axis=0), nan=1.0)
    ttft = np.nan_to_num(snap.series["client_ttft_p99_s"], nan=0.0).max(axis=0)
    run = 0
    for i, bad in enumerate((errors > 0.05) | (ttft > 1.0)):
        run = run + 1 if bad else 0
        if run >= 3:
            return float(snap.time_s[i])
    return None
    ### END SOLUTION


def diagnose(snap):
    """(fault, replica) of the incident in `snap` (lab 6's rules, most specific first)."""
    ### BEGIN SOLUTION
    s = snap.series
    down = s["up"] < 0.5
    if down.any():
        r = int(np.argmax(down.sum(axis=1)))
        return ("replica_down" if np.nanmean(s["client_error_ratio"][r, down[r]]) > 0.95 else "paused"), r
    if np.nanmax(s["client_error_ratio"]) > 0.2:
        return "network_drop", int(np.argmax(np.nanmean(s["client_error_ratio"], axis=1)))
    if np.nanmax(s["kv_cache_usage_perc"]) > 0.8:
        return "kv_exhaustion", int(np.argmax(np.nanmax(s["kv_cache_usage_perc"], axis=1)))
    gap = s["client_ttft_p99_s"] - s["ttft_p99_s"]
    return "network_latency", int(np.argmax(np.nanmax(gap, axis=1)))
    ### END SOLUTION


def play_tabletop(table) -> list[dict]:
    """Your decision log of one tabletop."""
    ### BEGIN SOLUTION
    log, detected = [], None
    while (step := table.next_inject()) is not None:
        phase, inject, snap = step
        if phase == 0:
            log.append({"phase": 0, "t_s": inject.at_s, "action": "observe", "note": inject.text})
        if detected is None:
            detected = detect_time(snap)
            if detected is not None:
                log.append({"phase": phase, "t_s": detected, "action": "detect", "note": "page condition held 3 s"})
                log.append({"phase": phase, "t_s": inject.at_s, "action": "communicate", "note": "IC named; status posted"})
        elif phase == table.num_injects - 1 or phase % 3 == 0:
            fault, replica = diagnose(snap)
            log.append({"phase": phase, "t_s": inject.at_s, "action": "diagnose", "fault": fault, "replica": replica,
                        "note": f"{fault} on replica {replica}"})
            log.append({"phase": phase, "t_s": inject.at_s, "action": "mitigate", "note": f"drain replica {replica}"})
    log.append({**log[-1], "action": "resolve", "note": "metrics back to baseline"})
    return log
    ### END SOLUTION

# %%
_log = play_tabletop(Tabletop("kv_exhaustion", 1, 90.0, seed=2))
for _e in _log:
    print(_e)

# %% [markdown]
# The tests grade the log with `inferlab.observe.tabletop.check_log`.

# %% tests id=test_tabletop_detect points=2
from inferlab.observe.tabletop import check_log

_VISIBLE = [("replica_down", 0, 50.0, 1), ("kv_exhaustion", 2, 100.0, 2), ("network_drop", 1, 40.0, 3)]
for _f, _r, _s, _seed in _VISIBLE:
    _t = Tabletop(_f, _r, _s, seed=_seed)
    _problems = check_log(_t, play_tabletop(_t))
    assert not [p for p in _problems if "detect" in p or p.startswith("entry") or "order" in p], f"{_f}: {_problems}"
### BEGIN HIDDEN TESTS
_HIDDEN = [("paused", 1, 70.0, 11), ("network_latency", 0, 40.0, 12), ("network_drop", 2, 120.0, 13),
           ("replica_down", 2, 25.0, 14), ("kv_exhaustion", 0, 60.0, 15), ("paused", 0, 130.0, 17)]
for _i, (_f, _r, _s, _seed) in enumerate(_HIDDEN):
    _t = Tabletop(_f, _r, _s, seed=_seed)
    _problems = check_log(_t, play_tabletop(_t))
    assert not [p for p in _problems if "detect" in p or p.startswith("entry") or "order" in p], \
        f"hidden incident {_i}: the log is malformed or the detection time is out of bounds"
### END HIDDEN TESTS

# %% tests id=test_tabletop_fault points=2
for _f, _r, _s, _seed in _VISIBLE:
    _t = Tabletop(_f, _r, _s, seed=_seed)
    assert "wrong fault named" not in check_log(_t, play_tabletop(_t)), f"the {_f} incident: wrong fault"
### BEGIN HIDDEN TESTS
_HIDDEN = [("paused", 1, 70.0, 11), ("network_latency", 0, 40.0, 12), ("network_drop", 2, 120.0, 13),
           ("replica_down", 2, 25.0, 14), ("kv_exhaustion", 0, 60.0, 15), ("paused", 0, 130.0, 17)]
for _i, (_f, _r, _s, _seed) in enumerate(_HIDDEN):
    _t = Tabletop(_f, _r, _s, seed=_seed)
    assert "wrong fault named" not in check_log(_t, play_tabletop(_t)), f"hidden incident {_i}: wrong fault"
### END HIDDEN TESTS

# %% tests id=test_tabletop_replica points=2
for _f, _r, _s, _seed in _VISIBLE:
    _t = Tabletop(_f, _r, _s, seed=_seed)
    assert "wrong replica named" not in check_log(_t, play_tabletop(_t)), f"the {_f} incident: wrong replica"
### BEGIN HIDDEN TESTS
_HIDDEN = [("paused", 1, 70.0, 11), ("network_latency", 0, 40.0, 12), ("network_drop", 2, 120.0, 13),
           ("replica_down", 2, 25.0, 14), ("kv_exhaustion", 0, 60.0, 15), ("paused", 0, 130.0, 17),
           ("replica_down", 1, 140.0, 18)]
for _i, (_f, _r, _s, _seed) in enumerate(_HIDDEN):
    _t = Tabletop(_f, _r, _s, seed=_seed)
    assert "wrong replica named" not in check_log(_t, play_tabletop(_t)), f"hidden incident {_i}: wrong replica"
### END HIDDEN TESTS

# %% [markdown]
# ## 2.2 The remediation backlog
#
# **Exercise 8.** Write `tabletop_backlog(log)`: the remediation backlog (a list of dicts in lab 6's
# format, `inferlab.observe.incident.BACKLOG_SCHEMA`) of an incident from your decision log: at least
# one item per incident, the first of priority P0 or P1 and linked to the SLI or alert that caught it;
# owners from `ROLES`. Checked on the logs of hidden incidents with `validate_backlog`.

# %%
print(template("backlog"))

# %% solution id=backlog
def tabletop_backlog(log: list[dict]) -> list[dict]:
    """The remediation backlog of the incident `log` records."""
    ### BEGIN SOLUTION
    fault = next((e["fault"] for e in reversed(log) if e["action"] == "diagnose"), "unknown")
    fixes = {"replica_down": ("Router health checks and retries; eject a refused replica within 1 s", "platform", "availability"),
             "paused": ("Request timeouts and ejection of a replica whose scrapes time out", "platform", "availability"),
             "network_drop": ("Retry idempotent requests on another replica; alert on per-replica client errors",
                              "operations", "availability"),
             "kv_exhaustion": ("Admission control on prompt tokens so long prompts cannot exhaust the KV cache",
                               "service_owner", "ttft"),
             "network_latency": ("Client-side TTFT per replica on the dashboard; eject slow paths", "operations", "ttft")}
    item, owner, linked = fixes.get(fault, ("Write the playbook entry for this alert", "service_owner", "availability"))
    return [{"item": item, "owner_role": owner, "priority": "P1", "linked": linked, "due": "2027-01-31"},
            {"item": "Add this scenario to the chaos experiments run before each release", "owner_role": "platform",
             "priority": "P2", "linked": "TTFTErrorBudgetBurnPage", "due": "2027-02-28"}]
    ### END SOLUTION

# %% tests id=test_backlog points=2
for _f, _r, _s, _seed in _VISIBLE:
    _items = tabletop_backlog(play_tabletop(Tabletop(_f, _r, _s, seed=_seed)))
    assert not validate_backlog(_items), f"the {_f} backlog: " + "; ".join(validate_backlog(_items))
    assert _items[0]["priority"] in ("P0", "P1"), "the first item is P0 or P1"
### BEGIN HIDDEN TESTS
for _i, (_f, _r, _s, _seed) in enumerate([("paused", 1, 70.0, 11), ("network_latency", 0, 40.0, 12),
                                          ("kv_exhaustion", 0, 60.0, 15)]):
    _items = tabletop_backlog(play_tabletop(Tabletop(_f, _r, _s, seed=_seed)))
    assert isinstance(_items, list) and _items and not validate_backlog(_items), f"hidden incident {_i}: invalid backlog"
    assert _items[0]["priority"] in ("P0", "P1"), f"hidden incident {_i}: the first item is not P0 or P1"
### END HIDDEN TESTS

# %% [markdown]
# ## 2.3 The live tabletop (demo, not graded; ~1.5 min)
#
# The same exercise against the running stack with lab 6's chaos tooling: the Chaos Toolkit experiment
# `kill-replica` (two replicas behind fault-injection proxies, Prometheus with the SLO rules, a steady
# client load) kills replica 1. `inferlab.observe.tabletop.run_live_tabletop` turns the run into a
# `LiveTabletop`: the same interface as `Tabletop`, its snapshot built from the real Prometheus (`up`,
# KV, TTFT per replica) and from the clients' attempts (error ratio, TTFT per replica), an inject every
# 5 s. **Your `play_tabletop` plays it** unchanged, and `check_log` checks your detection time against
# the firing time of the first page alert (`ReplicaDown` here) that Prometheus really fired, the fault
# and the replica you name. Your Exercise 8 writes the backlog. Skipped while autograding.

# %%
if run_demo("the live tabletop: a chaos experiment kills a replica, your decision log plays it (~1.5 min)"):
    from inferlab.observe.chaos.toolkit import format_row
    from inferlab.observe.tabletop import check_log, run_live_tabletop

    live_table, live_report = run_live_tabletop("kill-replica", warmup_s=12.0, recovery_s=pick(10.0, 5.0),
                                                fault_s=pick(20, 8))
    print(format_row(live_report))
    live_log = play_tabletop(live_table)  # your decisions, on the live injects
    for e in live_log:
        print(e)
    print(f"fault at {live_table.start_s:.1f} s; alerts (s since the snapshot began): "
          f"{ {k: round(v, 1) for k, v in live_table.alerts.items()} }; page at {live_table.alert_s():.1f} s")
    print("auto-checks of your live log:", check_log(live_table, live_log) or "all pass")
    print(yaml.safe_dump(tabletop_backlog(live_log), sort_keys=False))

# %% [markdown]
# ## 2.4 The postmortem (graded by hand, 4 points)
#
# A postmortem of one of your tabletops (or of the live one), in lab 6's format
# (`print(template("postmortem"))`): summary, impact, timeline from your decision log with the detection
# delay against the page, root cause, trigger, resolution, action items (your backlog).
#
# Rubric: impact in numbers (1); timeline from the log with the detection delay (1); root cause distinct
# from the trigger (1); action items linked to alerts/SLIs that would have prevented or shortened it (1).

# %% [markdown] manual id=postmortem points=4
# **Summary.** Replica 1 of 3 exhausted its KV cache for 45 s (long prompts); its p99 TTFT rose to ~3 s.
# **Impact:** about a third of requests slow for 45 s; TTFT SLI ~0.67 during the fault, ~25 minutes of a
# 99 % monthly budget. **Timeline:** t=90 s fault; t=95 s page condition (detect logged at 95 s: 5 s
# after onset, 0 s after the page); t=100 s IC named; t=120 s diagnosed kv_exhaustion on replica 1,
# drained; t=135 s recovered. **Root cause:** no admission control on prompt tokens; **trigger:** a client
# sending long prompts. **Action items:** the backlog above (admission control, P1, linked to ttft).
