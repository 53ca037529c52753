"""The capstone's metrics review: from per-request records, from Prometheus samples, and of a fleet.

Floor 3 of inferlab (observe/): it reads `metrics.py` (TTFT, TPOT, SLO), the vLLM histogram buckets of
`exposition.py` and the `Sample` of `prometheus.py`. Three views of one run must tell the same story:

- `records_review`: the SLIs straight from the clients' per-request records (exact);
- `prometheus_review`: the same SLIs from the replicas' Prometheus histograms (TTFT and per-request TPOT
  under vLLM's names and buckets), **summed over replicas before** `histogram_quantile`; the quantiles
  are interpolated inside a bucket, and the joint SLO (TTFT *and* TPOT) cannot be joined per request
  from two histograms, so its attainment and goodput come as bounds (Fréchet: lower
  max(0, a + b - 1), upper min(a, b));
- `fleet_review`: GPU-hours (every replica billed from launch, cold start included, until it stops),
  dollars per million output tokens, the ratio to the oracle and scale actions per hour, from the
  simulator's (or a live autoscaler's) timeline.

`histogram_samples` turns records (and the replica each one ran on) into the samples Prometheus would
return for `SAMPLES_QUERY` at the end of the run, so the two reviews can be checked against each other
on simulated runs; the live demo of the capstone queries a real Prometheus for the same samples.
These are the package's references of the capstone's exercises (`grading/references.py`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from inferlab.metrics import SLO, RequestRecord, duration_s, meets_slo, tpot_s, ttft_s
from inferlab.observe.exposition import INTER_TOKEN_LATENCY_BUCKETS, TIME_TO_FIRST_TOKEN_BUCKETS
from inferlab.observe.prometheus import Sample

TTFT = "vllm:time_to_first_token_seconds"
TPOT = "vllm:request_time_per_output_token_seconds"
GENERATION_TOKENS = "vllm:generation_tokens_total"
SAMPLES_QUERY = '{__name__=~"vllm:(time_to_first_token_seconds|request_time_per_output_token_seconds)_(bucket|count)' \
                '|vllm:generation_tokens_total"}'
BUCKETS = {TTFT: TIME_TO_FIRST_TOKEN_BUCKETS, TPOT: INTER_TOKEN_LATENCY_BUCKETS}
REVIEW_KEYS = ("num_requests", "output_tokens", "ttft_attainment", "tpot_attainment", "slo_attainment",
               "goodput_rps", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s")
FLEET_KEYS = ("gpu_hours", "gpu_hours_vs_oracle", "usd_per_million_output_tokens", "scale_actions_per_hour")


def _le(bound: float) -> str:
    """Prometheus's spelling of a bucket bound (prometheus_client's floatToGoString)."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def histogram_samples(records: Sequence[RequestRecord], replica_of: Sequence[int], model_name: str = "tiny",
                      job: str = "inferlab") -> list[Sample]:
    """What Prometheus returns for `SAMPLES_QUERY` after `records` ran, request i on replica `replica_of[i]`.

    One series per replica (`instance` "replica-<i>"): cumulative TTFT and per-request TPOT buckets (vLLM's
    bounds, `le` as Prometheus spells it), their `_count`, and the output-token counter. vLLM observes a
    request's TPOT only when it produced more than one token.
    """
    if len(records) != len(replica_of):
        raise ValueError(f"replica_of has {len(replica_of)} entries for {len(records)} records")
    out: list[Sample] = []
    for r in sorted(set(int(i) for i in replica_of)):
        mine = [rec for rec, i in zip(records, replica_of) if int(i) == r]
        base = {"model_name": model_name, "engine": "0", "instance": f"replica-{r}", "job": job}
        values = {TTFT: np.array([ttft_s(x) for x in mine]),
                  TPOT: np.array([tpot_s(x) for x in mine if x.num_output_tokens > 1])}
        for name, vals in values.items():
            for bound in (*BUCKETS[name], math.inf):
                out.append(Sample({"__name__": name + "_bucket", **base, "le": _le(bound)},
                                  float(np.count_nonzero(vals <= bound))))
            out.append(Sample({"__name__": name + "_count", **base}, float(len(vals))))
        out.append(Sample({"__name__": GENERATION_TOKENS, **base}, float(sum(x.num_output_tokens for x in mine))))
    return out


def bucket_quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus's `histogram_quantile` of one histogram: {upper bound: cumulative count}."""
    bounds = sorted(buckets)
    if not bounds or not math.isinf(bounds[-1]):
        return math.nan
    total = buckets[bounds[-1]]
    if total == 0:
        return math.nan
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            if bound == bounds[0] and bound <= 0:
                return bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def records_review(records: Sequence[RequestRecord], slo: SLO) -> dict[str, float]:
    """The review's SLIs from per-request records (`REVIEW_KEYS`); latencies in seconds."""
    if slo.ttft_s is None or slo.tpot_s is None:
        raise ValueError("the review needs an SLO with both ttft_s and tpot_s")
    n = len(records)
    if n == 0:
        raise ValueError("no records to review")
    ttft = np.array([ttft_s(r) for r in records])
    tpot = np.array([tpot_s(r) for r in records if r.num_output_tokens > 1])
    good = sum(meets_slo(r, slo) for r in records)
    return {"num_requests": float(n), "output_tokens": float(sum(r.num_output_tokens for r in records)),
            "ttft_attainment": float(np.mean(ttft <= slo.ttft_s)),
            "tpot_attainment": float(np.mean(tpot <= slo.tpot_s)) if tpot.size else 1.0,
            "slo_attainment": good / n, "goodput_rps": good / duration_s(records),
            "ttft_p50_s": float(np.percentile(ttft, 50)), "ttft_p99_s": float(np.percentile(ttft, 99)),
            "tpot_p50_s": float(np.percentile(tpot, 50)) if tpot.size else math.nan,
            "tpot_p99_s": float(np.percentile(tpot, 99)) if tpot.size else math.nan}


def _summed_buckets(samples: Sequence[Sample], name: str) -> dict[float, float]:
    out: dict[float, float] = {}
    for s in samples:
        if s.labels.get("__name__") == name + "_bucket":
            bound = float(s.labels["le"])
            out[bound] = out.get(bound, 0.0) + s.value
    return out


def prometheus_review(samples: Sequence[Sample], slo: SLO, duration: float) -> dict[str, float]:
    """The review's SLIs from Prometheus samples (`REVIEW_KEYS`, plus `slo_attainment_max` and
    `goodput_rps_max`: the joint SLO is bounded, not measured). The SLO's thresholds must be bucket bounds."""
    if slo.ttft_s is None or slo.tpot_s is None:
        raise ValueError("the review needs an SLO with both ttft_s and tpot_s")
    ttft, tpot = _summed_buckets(samples, TTFT), _summed_buckets(samples, TPOT)
    for name, b, threshold in ((TTFT, ttft, slo.ttft_s), (TPOT, tpot, slo.tpot_s)):
        if threshold not in b:
            raise ValueError(f"{name}: {threshold} s is not a bucket bound; the SLI needs one")
    n, n_tpot = ttft[math.inf], tpot[math.inf]
    if n == 0:
        raise ValueError("no requests in the samples")
    a = ttft[slo.ttft_s] / n
    b = tpot[slo.tpot_s] / n_tpot if n_tpot else 1.0
    # requests without a TPOT observation (one output token) meet the TPOT SLO
    b_all = (tpot[slo.tpot_s] + (n - n_tpot)) / n
    lower, upper = max(0.0, a + b_all - 1.0), min(a, b_all)
    tokens = sum(s.value for s in samples if s.labels.get("__name__") == GENERATION_TOKENS)
    return {"num_requests": n, "output_tokens": tokens, "ttft_attainment": a, "tpot_attainment": b,
            "slo_attainment": lower, "slo_attainment_max": upper,
            "goodput_rps": lower * n / duration, "goodput_rps_max": upper * n / duration,
            "ttft_p50_s": bucket_quantile(0.5, ttft), "ttft_p99_s": bucket_quantile(0.99, ttft),
            "tpot_p50_s": bucket_quantile(0.5, tpot), "tpot_p99_s": bucket_quantile(0.99, tpot)}


def _bucket_of(value: float, bounds: Sequence[float]) -> tuple[float, float]:
    lower = 0.0
    for bound in (*bounds, math.inf):
        if value <= bound:
            return lower, bound
        lower = bound
    return lower, math.inf


def review_disagreements(from_records: dict[str, float], from_prometheus: dict[str, float], rel_tol: float = 1e-6) -> list[str]:
    """Where the two reviews disagree (empty: they agree). Counts and per-SLI attainments must be equal;
    each quantile from Prometheus must lie in the bucket holding the records' one; the joint attainment
    and goodput from records must lie within Prometheus's bounds."""
    problems = []
    for key in ("num_requests", "output_tokens", "ttft_attainment", "tpot_attainment"):
        if not math.isclose(from_records[key], from_prometheus[key], rel_tol=rel_tol, abs_tol=1e-9):
            problems.append(f"{key}: records {from_records[key]:.6g} != Prometheus {from_prometheus[key]:.6g}")
    for key, bounds in (("ttft_p50_s", TIME_TO_FIRST_TOKEN_BUCKETS), ("ttft_p99_s", TIME_TO_FIRST_TOKEN_BUCKETS),
                        ("tpot_p50_s", INTER_TOKEN_LATENCY_BUCKETS), ("tpot_p99_s", INTER_TOKEN_LATENCY_BUCKETS)):
        lo, hi = _bucket_of(from_records[key], bounds)
        if not lo - 1e-9 <= from_prometheus[key] <= hi + 1e-9:
            problems.append(f"{key}: Prometheus {from_prometheus[key]:.4g} s outside the records' bucket ({lo}, {hi}]")
    for key in ("slo_attainment", "goodput_rps"):
        lo, hi = from_prometheus[key], from_prometheus[key + "_max"]
        if not lo * (1 - rel_tol) - 1e-9 <= from_records[key] <= hi * (1 + rel_tol) + 1e-9:
            problems.append(f"{key}: records {from_records[key]:.6g} outside Prometheus's bounds [{lo:.6g}, {hi:.6g}]")
    return problems


def fleet_review(timeline: Sequence[dict[str, float]], end_s: float, output_tokens: float, oracle_gpu_hours: float,
                 usd_per_gpu_hour: float, num_gpus_per_replica: int = 1) -> dict[str, float]:
    """GPU-hours (starting, running and draining replicas: a cold start is billed), $ per million output
    tokens, GPU-hours over the oracle's, scale actions (changes of the target) per hour, from a timeline
    (rows: time_s, target, num_<state>_<pool>) that holds until the next row, the last one until `end_s`."""
    if not timeline:
        raise ValueError("empty timeline")
    replica_s = 0.0
    for row, stop in zip(timeline, [r["time_s"] for r in timeline[1:]] + [end_s]):
        billed = sum(v for k, v in row.items() if k.startswith(("num_starting", "num_running", "num_draining")))
        replica_s += billed * max(0.0, min(stop, end_s) - row["time_s"])
    gpu_hours = replica_s * num_gpus_per_replica / 3600
    actions = sum(a["target"] != b["target"] for a, b in zip(timeline, timeline[1:]))
    return {"gpu_hours": gpu_hours, "gpu_hours_vs_oracle": gpu_hours / oracle_gpu_hours,
            "usd_per_million_output_tokens": gpu_hours * usd_per_gpu_hour / output_tokens * 1e6,
            "scale_actions_per_hour": actions / (end_s / 3600)}


def fleet_samples(prometheus, window_s: float = 600.0) -> list:
    """`SAMPLES_QUERY`'s series for a fleet whose replicas came and went: each series' last value within
    `window_s` (`last_over_time`), so a replica stopped before the query still counts; the metric name is
    put back in `labels["__name__"]` (PromQL functions drop it). `prometheus`: a `PrometheusServer`."""
    out = []
    for name in (TTFT + "_bucket", TTFT + "_count", TPOT + "_bucket", TPOT + "_count", GENERATION_TOKENS):
        for s in prometheus.query(f"last_over_time({name}[{int(window_s)}s])"):
            out.append(type(s)({**s.labels, "__name__": name}, s.value))
    return out
