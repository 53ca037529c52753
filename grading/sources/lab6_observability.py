# %% [markdown]
# # Lab 6: observability, SLO alerts, chaos experiments and incident response
#
# **Module MOD-526, Distributed Inference & Scaling.** Objective served (O3): *"Instrument distributed
# inference for observability and incident response coordination"*. `inferlab serve` exposes
# Prometheus metrics under **vLLM's own names** (`vllm:time_to_first_token_seconds`, ...), so what you
# write here works on a vLLM fleet unchanged. You write the **PromQL** of the service-level indicators
# (SLIs) and of the SRE workbook's **multi-window, multi-burn-rate alerts**, graded by running
# Prometheus's own `promtool test rules` on hidden input series; you **diagnose injected faults** from
# metric snapshots (which fault, which replica, when); you run a **chaos experiment** (Chaos Toolkit
# format) against a live local stack; and you write a playbook entry, a postmortem and a remediation
# backlog.
#
# | | |
# |---|---|
# | Prerequisites | Lab 0 (TTFT, TPOT, goodput); lecture deck `lectures/05_observability.ipynb` (1 h): SLIs, SLOs, error budgets, burn rates |
# | Hardware tier | **CPU** (any laptop). Needs Debian's `prometheus` package (`promtool`; `make install` installs it as root) |
# | Time | ~1 min in fast mode, ~2 min in full mode (the live chaos demo adds ~1-1.5 min) |
# | Hours | lecture 1 h, lab 2 h (the course: 12 h lecture, 18 h lab, 6 h portfolio, 4 h assessment; see COURSE.md) |
# | Graded (21 points automatically, 7 by hand) | TTFT SLI (3), p99 TTFT (2), page alert (3), ticket alert (2); a missing metric instrumented (2); diagnosis: fault (3), replica (2), start (2); remediation backlog schema (2); by hand: playbook entry (3), postmortem (4) |
#
# The PromQL exercises are graded by `promtool test rules` on input series you do not see (several
# replicas, fast and slow burns, short spikes). The diagnosis is graded on hidden incidents. The live
# stack demo (section 4) is not graded and is skipped while autograding.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import yaml

from inferlab.notebook import banner, pick, run_demo
from inferlab.observe import slo
from inferlab.observe.incident import template, validate_backlog
from inferlab.observe.snapshots import FAULTS, Diagnosis, MetricSnapshot, synthesize
from inferlab.observe.prometheus import PrometheusMissing, promtool_test_rules, require, rule_file, unit_test
from inferlab.observe.slo import record_name

banner("lab6_observability", tier="CPU", fast_min=1, full_min=2)
try:
    print("promtool:", require("promtool"))
except PrometheusMissing as exc:  # the PromQL tests below fail with this message until it is installed
    print("WARNING:", exc)
TTFT_SLO_S, OBJECTIVE = 1.0, 0.99  # a request is good when its TTFT <= 1 s; 99 % of requests must be good
BUDGET = 1 - OBJECTIVE

# %% [markdown]
# ## 1. SLIs in PromQL
#
# `vllm:time_to_first_token_seconds` is a Prometheus **histogram**: cumulative counters
# `..._bucket{le="x"}` (requests with TTFT <= x), `..._count` (all requests), `..._sum`. Every replica
# exports its own; the labels are `model_name`, `engine`, and Prometheus adds `instance` and `job`.
# Rates of counters are the only meaningful thing to aggregate, and they must be **summed over replicas
# before dividing**: a mean of per-replica ratios weighs an idle replica like a busy one.
#
# Worked example: the **goodput** of an end-to-end latency SLO of 10 s, requests per second per model.

# %%
def goodput_rps(window: str) -> str:
    """PromQL: requests per second, per model, that finished within 10 s over `window` (e.g. "5m")."""
    return f'sum by (model_name) (rate(vllm:e2e_request_latency_seconds_bucket{{le="10.0"}}[{window}]))'


print(goodput_rps("5m"))

# %% [markdown]
# **Exercise 1.** Write `ttft_error_ratio(window)`: the PromQL of the share of requests whose TTFT
# exceeded `TTFT_SLO_S` (bucket `le="1.0"`) over `window`, **one series per `model_name`** (no other
# label), summed over replicas before dividing. With no bad request it is 0; with all bad, 1.
#
# *What you may use:* PromQL. `inferlab.observe.slo.error_ratio_expr` and `recording_rules` already
# write it: calling them scores zero here.

# %% solution id=sli
def ttft_error_ratio(window: str) -> str:
    """PromQL: share of requests with TTFT > 1 s over `window`, per model.

    Args:
        window: a Prometheus duration ("5m", "1h").
    Returns:
        a PromQL expression string.
    """
    ### BEGIN SOLUTION
    good = f'sum by (model_name) (rate(vllm:time_to_first_token_seconds_bucket{{le="1.0"}}[{window}]))'
    total = f"sum by (model_name) (rate(vllm:time_to_first_token_seconds_count[{window}]))"
    return f"1 - ({good} / {total})"
    ### END SOLUTION

# %% tests id=test_sli points=3
def _ttft_series(instance: str, good: str, total: str, model: str = "tiny") -> dict:
    return {f'vllm:time_to_first_token_seconds_bucket{{le="1.0", model_name="{model}", instance="{instance}"}}': good,
            f'vllm:time_to_first_token_seconds_bucket{{le="+Inf", model_name="{model}", instance="{instance}"}}': total,
            f'vllm:time_to_first_token_seconds_count{{model_name="{model}", instance="{instance}"}}': total}


_ok, _out = promtool_test_rules(rule_file({"sli:ratio_rate5m": ttft_error_ratio("5m")}), unit_test(
    _ttft_series("a", "0+80x20", "0+100x20"), [("round(sli:ratio_rate5m, 0.0001)", "20m", [('{model_name="tiny"}', 0.2)])]))
assert _ok, "one replica, 20 % of requests over 1 s: expected 0.2 per model\n" + _out
### BEGIN HIDDEN TESTS
_series = {**_ttft_series("a", "0+100x30", "0+100x30"), **_ttft_series("b", "0+0x30", "0+300x30"),
           **_ttft_series("c", "0+40x30", "0+40x30", model="other")}
_ok, _out = promtool_test_rules(rule_file({"sli:ratio_rate10m": ttft_error_ratio("10m")}), unit_test(
    _series, [("round(sli:ratio_rate10m, 0.0001)", "30m", [('{model_name="tiny"}', 0.75), ('{model_name="other"}', 0.0)])]))
assert _ok, "two replicas of one model and a second model: the hidden case failed\n" + _out
_ok, _out = promtool_test_rules(rule_file({"sli:ratio_rate1h": ttft_error_ratio("1h")}), unit_test(
    _ttft_series("a", "0+100x90 9010+10x29", "0+100x120"), [("round(sli:ratio_rate1h, 0.0001)", "120m", [('{model_name="tiny"}', 0.45)])]))
assert _ok, "the window must be the one given: the hidden case failed\n" + _out
### END HIDDEN TESTS

# %% [markdown]
# ### Quantiles from histograms
#
# `histogram_quantile(q, v)` interpolates inside the buckets of `v`, which must be **rates of buckets
# summed over replicas, keeping the `le` label**: `histogram_quantile` of each replica's buckets gives
# one quantile per replica (not the fleet's), and summing away `le` leaves nothing to interpolate.
#
# **Exercise 2.** Write `ttft_p99(window)`: the fleet's p99 TTFT per model over `window`, one series
# per `model_name`.
#
# *What you may use:* PromQL.

# %% solution id=quantile
def ttft_p99(window: str) -> str:
    """PromQL: p99 TTFT in seconds over `window`, per model (buckets summed over replicas)."""
    ### BEGIN SOLUTION
    return f"histogram_quantile(0.99, sum by (model_name, le) (rate(vllm:time_to_first_token_seconds_bucket[{window}])))"
    ### END SOLUTION

# %% tests id=test_quantile points=2
_ok, _out = promtool_test_rules(rule_file({"p99": ttft_p99("5m")}), unit_test(
    _ttft_series("a", "0+100x10", "0+100x10"), [("round(p99, 0.001)", "10m", [('{model_name="tiny"}', 0.99)])]))
assert _ok, "one replica, every TTFT in (0, 1] s: expected p99 = 0.99 s per model\n" + _out
### BEGIN HIDDEN TESTS
_series = {**_ttft_series("a", "0+100x10", "0+100x10"), **_ttft_series("b", "0+0x10", "0+300x10")}
_series.update({'vllm:time_to_first_token_seconds_bucket{le="2.5", model_name="tiny", instance="a"}': "0+100x10",
                'vllm:time_to_first_token_seconds_bucket{le="2.5", model_name="tiny", instance="b"}': "0+300x10"})
_ok, _out = promtool_test_rules(rule_file({"p99": ttft_p99("5m")}), unit_test(
    _series, [("round(p99, 0.001)", "10m", [('{model_name="tiny"}', 2.48)])]))
assert _ok, "two replicas: the fleet's p99 is wrong or not one series per model\n" + _out
### END HIDDEN TESTS

# %% [markdown]
# ## 2. Multi-window, multi-burn-rate alerts
#
# The **burn rate** is the error ratio divided by the error budget (1 − objective): at burn rate 1 the
# budget lasts exactly the SLO period (30 days); at 14.4 a 30-day budget is 2 % spent in one hour. The
# SRE workbook (chapter 5) pages when **both** a long and a short window burn fast, so that a short
# spike does not page (the long window stays low) and the alert stops soon after the burn ends (the short
# window drops):
#
# | severity | long window | short window | burn rate |
# |---|---|---|---|
# | page | 1h | 5m | 14.4 |
# | page | 6h | 30m | 6 |
# | ticket | 3d | 6h | 1 |
#
# The error ratios are recorded for you (`record_name("ttft", "1h")` is
# `inferlab:ttft_slo_error:ratio_rate1h`, the output of recording rules like your Exercise 1 over each
# window). Worked example: a single-window alert that fires when the last hour burned the budget 2x.

# %%
def budget_spent_alert(sli: str, budget: float) -> str:
    """PromQL: fires while the 1 h error ratio of `sli` is above twice the budget (one window: noisy)."""
    return f"{record_name(sli, '1h')} > {2 * budget}"


print(budget_spent_alert("ttft", BUDGET))

# %% [markdown]
# **Exercise 3.** Write `burn_rate_alert(sli, budget, severity)`: the PromQL of the page alert
# (`severity="page"`: both rows of the table, either one firing) or of the ticket alert
# (`severity="ticket"`), over the recorded series of `sli`. Threshold: burn rate × `budget`. Raise
# `ValueError` for another severity.
#
# *What you may use:* `record_name`. `inferlab.observe.slo.burn_rate_expr` and `alert_rules` already
# write these: calling them scores zero here.

# %% solution id=alerts
def burn_rate_alert(sli: str, budget: float, severity: str) -> str:
    """PromQL of the multi-window, multi-burn-rate alert of `sli`.

    Args:
        sli: "ttft", "tpot" or "availability" (the recorded error ratios' prefix).
        budget: the error budget, 1 - objective (0.01 for 99 %).
        severity: "page" or "ticket".
    Returns:
        a PromQL expression string.
    """
    ### BEGIN SOLUTION
    rows = {"page": [("1h", "5m", 14.4), ("6h", "30m", 6.0)], "ticket": [("3d", "6h", 1.0)]}
    if severity not in rows:
        raise ValueError(f"severity must be 'page' or 'ticket', got {severity!r}")
    parts = []
    for long, short, factor in rows[severity]:
        threshold = factor * budget
        parts.append(f"({record_name(sli, long)} > {threshold} and {record_name(sli, short)} > {threshold})")
    return " or ".join(parts)
    ### END SOLUTION

# %% [markdown]
# The tests run your alerts with the package's recording rules (`slo.recording_rules()`) on series of
# one model, one sample a minute.

# %% tests id=test_page_alert points=3
def _alert_case(good: str, total: str, at: str, fires: dict[str, bool], budget: float = BUDGET) -> tuple[bool, str]:
    records = {r["record"]: r["expr"] for r in slo.recording_rules()}
    alerts = {sev.capitalize(): (burn_rate_alert("ttft", budget, sev), {"severity": sev}) for sev in fires}
    checks = [(sev.capitalize(), at, [{"severity": sev, "model_name": "tiny"}] if fire else []) for sev, fire in fires.items()]
    return promtool_test_rules(rule_file(records, alerts), unit_test(_ttft_series("a", good, total), alerts=checks))


_ok, _out = _alert_case("0+80x70", "0+100x70", "70m", {"page": True})
assert _ok, "20 % of requests bad for 70 min (20x the budget): the page must fire\n" + _out
_ok, _out = _alert_case("0+100x180 18000+0x3", "0+100x184", "184m", {"page": False})
assert _ok, "3 h good, then 4 min all bad: the 1 h and 6 h windows are low, no page\n" + _out
try:
    burn_rate_alert("ttft", BUDGET, "urgent")
    raise AssertionError("severity 'urgent' must raise ValueError")
except ValueError:
    pass
### BEGIN HIDDEN TESTS
_ok, _out = _alert_case("0+97x420", "0+100x420", "420m", {"page": False})
assert _ok, "a slow burn must not page (hidden case)\n" + _out
_ok, _out = _alert_case("0+92x420", "0+100x420", "420m", {"page": True})
assert _ok, "a 7 h burn at 8x must page through the 6 h / 30 m pair (hidden case)\n" + _out
_ok, _out = _alert_case("0+99x120 11880+95x70", "0+100x190", "190m", {"page": True}, budget=0.003)
assert _ok, "another budget (hidden case)\n" + _out
_ok, _out = _alert_case("0+100x120 12000+95x70", "0+100x190", "190m", {"page": False})
assert _ok, "5 % bad at a 1 % budget is a 5x burn: no page (hidden case)\n" + _out
### END HIDDEN TESTS

# %% tests id=test_ticket_alert points=2
_ok, _out = _alert_case("0+97x420", "0+100x420", "420m", {"ticket": True})
assert _ok, "3 % of requests bad for 7 h (3x the budget): the ticket must fire\n" + _out
### BEGIN HIDDEN TESTS
_ok, _out = _alert_case("0+99.5x420", "0+100x420", "420m", {"ticket": False})
assert _ok, "0.5 % bad is within budget: no ticket (hidden case)\n" + _out
_ok, _out = _alert_case("0+98x400 39200+100x380", "0+100x780", "780m", {"ticket": False})
assert _ok, "the 6 h window recovered: the ticket must stop (hidden case)\n" + _out
### END HIDDEN TESTS

# %% [markdown]
# ### Plot: SLI and burn rate through an incident
#
# Below, a synthetic incident (section 3 explains these snapshots): replica 1 of 3 is killed 60 s in,
# for 45 s. The fleet's availability SLI (the clients' success ratio) and its burn rate against a
# 99.9 % objective, with the page threshold. A burn of 300x for 45 s spends what a 14.4x burn spends in
# about 15 minutes.

# %%
_snap = synthesize("replica_down", 1, 60.0, seed=3)
_availability = 1 - np.nanmean(_snap.series["client_error_ratio"], axis=0)
_burn = (1 - _availability) / 0.001
fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 4), sharex=True)
ax1.plot(_snap.time_s, _availability)
ax1.set_ylabel("availability")
ax2.plot(_snap.time_s, _burn, color="C3")
ax2.axhline(14.4, ls="--", color="k", label="page: 14.4x")
ax2.set_yscale("symlog")
ax2.set_ylabel("burn rate")
ax2.set_xlabel("seconds")
ax2.legend()
plt.show()
print(f"peak burn rate {np.nanmax(_burn):.0f}x, SLI min {np.nanmin(_availability):.2f}")

# %% [markdown]
# ### Instrument a missing metric
#
# The kit's server exports the metrics of `inferlab.observe.exposition.EngineMetrics`, an
# `EngineObserver`: the engine loop calls `on_output(req, out)` for every token and for the finish of
# each request (`out.is_finished`), and `on_step(engine)` after every step. One vLLM metric is missing:
# the histogram of prompt lengths, `vllm:request_prompt_tokens`. Worked example: an observer counting
# finished requests by finish reason, in the registry it is given.

# %%
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from inferlab.engine import EngineConfig, LLMEngine
from inferlab.model import build_model
from inferlab.observe.exposition import observe_offline


class FinishedCounter:
    """Counts finished requests per finish reason (an EngineObserver)."""

    def __init__(self, model_name: str, registry: CollectorRegistry) -> None:
        self.counter = Counter("inferlab_finished", "Finished requests.", ("model_name", "finished_reason"),
                               registry=registry)
        self.model_name = model_name

    def on_output(self, req, out) -> None:
        if out.is_finished:
            self.counter.labels(self.model_name, out.finish_reason.value).inc()

    def on_step(self, engine) -> None:
        pass


_registry = CollectorRegistry()
observe_offline(LLMEngine(build_model("tiny"), EngineConfig(num_kv_blocks=128)), (FinishedCounter("tiny", _registry),),
                [[1, 2, 3], [4, 5]])
print(generate_latest(_registry).decode())

# %% [markdown]
# **Exercise 4.** Write `PromptTokensMetric`, an observer exporting vLLM's
# `vllm:request_prompt_tokens`: a histogram with labels `model_name` and `engine` (always "0"), one
# observation per **request** (its prompt length in tokens, when it finishes), with vLLM's buckets for
# request token counts: the 1-2-5 series up to `max_model_len` (1, 2, 5, 10, 20, 50, ... <= max_model_len).
#
# *What you may use:* `prometheus_client`.

# %% solution id=instrument
class PromptTokensMetric:
    """`vllm:request_prompt_tokens` (an EngineObserver registering in `registry`)."""

    def __init__(self, model_name: str, registry: CollectorRegistry, max_model_len: int = 1024) -> None:
        ### BEGIN SOLUTION
        buckets = [m * 10 ** e for e in range(12) for m in (1, 2, 5) if m * 10 ** e <= max_model_len]
        self.histogram = Histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.",
                                   ("model_name", "engine"), buckets=buckets, registry=registry).labels(model_name, "0")
        ### END SOLUTION

    def on_output(self, req, out) -> None:
        ### BEGIN SOLUTION
        if out.is_finished:
            self.histogram.observe(req.num_prompt_tokens)
        ### END SOLUTION

    def on_step(self, engine) -> None:
        pass

# %% tests id=test_instrument points=2
def _prompt_histogram(prompts, max_model_len=1024):
    registry = CollectorRegistry()
    engine = LLMEngine(build_model("tiny"), EngineConfig(num_kv_blocks=128, max_model_len=max_model_len))
    observe_offline(engine, (PromptTokensMetric("tiny", registry, max_model_len),), prompts)
    fams = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert "vllm:request_prompt_tokens" in fams, f"no vllm:request_prompt_tokens family (found {sorted(fams)})"
    fam = fams["vllm:request_prompt_tokens"]
    assert fam.type == "histogram", f"vllm:request_prompt_tokens must be a histogram, is a {fam.type}"
    samples = {(s.name, s.labels.get("le")): s for s in fam.samples}
    assert all(s.labels.get("model_name") == "tiny" and s.labels.get("engine") == "0" for s in fam.samples), \
        "labels must be model_name and engine"
    return samples


_h = _prompt_histogram([[1, 2, 3], list(range(1, 40)), [5] * 7])
assert _h[("vllm:request_prompt_tokens_count", None)].value == 3, "one observation per request"
assert _h[("vllm:request_prompt_tokens_sum", None)].value == 49, "observe each request's prompt length"
assert _h[("vllm:request_prompt_tokens_bucket", "5.0")].value == 1 and _h[("vllm:request_prompt_tokens_bucket", "50.0")].value == 3
assert sorted(float(le) for n, le in _h if le) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, math.inf], "vLLM's buckets"
### BEGIN HIDDEN TESTS
_h = _prompt_histogram([[7] * 300, [1], [2] * 12, [3] * 120], max_model_len=512)
assert sorted(float(le) for n, le in _h if le) == [1, 2, 5, 10, 20, 50, 100, 200, 500, math.inf], "buckets for another max_model_len"
assert _h[("vllm:request_prompt_tokens_count", None)].value == 4 and _h[("vllm:request_prompt_tokens_sum", None)].value == 433, \
    "another workload (hidden)"
assert _h[("vllm:request_prompt_tokens_bucket", "100.0")].value == 2, "another workload (hidden)"
### END HIDDEN TESTS

# %% [markdown]
# Check it in Prometheus (not graded; skipped while autograding): your observer joins the server's own
# metrics (`build_app(..., metrics=m, observers=(yours,))`, registered in `m.registry`), the server runs
# in this kernel, a real Prometheus scrapes it, and PromQL reads your histogram back.

# %%
if run_demo("your metric, scraped by a real Prometheus (~20 s)"):
    import json
    import time
    import urllib.request

    from inferlab.model import ensure_checkpoint
    from inferlab.observe.exposition import EngineMetrics
    from inferlab.observe.prometheus import PrometheusServer
    from inferlab.serving.server import build_app, serve_in_thread

    _metrics = EngineMetrics("tiny")
    _app = build_app(LLMEngine.from_checkpoint(ensure_checkpoint("tiny"), EngineConfig(num_kv_blocks=128)), "tiny",
                     metrics=_metrics, observers=(PromptTokensMetric("tiny", _metrics.registry),))
    with serve_in_thread(_app) as base, PrometheusServer([base.removeprefix("http://")], scrape_interval_s=0.5) as prom:
        for n in (4, 40, 400):
            body = json.dumps({"model": "tiny", "prompt": list(range(1, n + 1)), "max_tokens": 2}).encode()
            urllib.request.urlopen(urllib.request.Request(base + "/v1/completions", body,
                                                          {"Content-Type": "application/json"})).read()
        _end = time.monotonic() + 30  # Prometheus scrapes every 0.5 s once it has started
        while not prom.query("vllm:request_prompt_tokens_count") and time.monotonic() < _end:
            time.sleep(0.5)
        for q in ("vllm:request_prompt_tokens_count", "vllm:request_prompt_tokens_sum",
                  "histogram_quantile(0.5, sum by (le) (vllm:request_prompt_tokens_bucket))"):
            print(q, "=", [s.value for s in prom.query(q)])

# %% [markdown]
# ## 3. Diagnose injected faults from metric snapshots
#
# A `MetricSnapshot` is what you would export from Prometheus during an incident: per replica, one
# sample a second, NaN where a scrape failed. Server side: `up`, `requests_per_s`, `ttft_p99_s`,
# `kv_cache_usage_perc`, `num_requests_waiting`, `preemptions_per_s`; client side (the load balancer):
# `client_error_ratio`, `client_ttft_p99_s`. Each snapshot holds one of these faults, as measured on
# the real stack with `inferlab chaos run` (README, Lab 6):
#
# | fault | what it looks like |
# |---|---|
# | `replica_down` (killed) | `up` = 0; its clients fail at once (connection refused: error ratio 1, no TTFT) |
# | `paused` (SIGSTOP) | `up` = 0 (scrapes time out) but its clients *wait*: TTFT grows to the timeout, errors come late and partial; TTFT spikes on resume |
# | `network_latency` (proxy) | the server looks healthy; only the client's TTFT of one replica grows |
# | `network_drop` (proxy) | client errors on one replica, its server-side rate drops; `up` stays 1 |
# | `kv_exhaustion` (long prompts) | one replica's KV usage near 1, preemptions, a queue, TTFT up |
# | `burst` | every replica's rate several times its baseline, queues everywhere (`replica` is None) |
#
# Worked example: plot one snapshot.

# %%
def plot_snapshot(snap: MetricSnapshot, names=("up", "client_error_ratio", "client_ttft_p99_s", "kv_cache_usage_perc",
                                                "requests_per_s")) -> None:
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 1.4 * len(names)), sharex=True)
    for ax, name in zip(axes, names):
        for r in range(snap.num_replicas):
            ax.plot(snap.time_s, snap.series[name][r], label=f"replica {r}")
        ax.set_ylabel(name, fontsize=7)
    axes[0].legend(fontsize=7, ncol=3)
    axes[-1].set_xlabel("seconds")
    plt.show()


plot_snapshot(synthesize("network_drop", 2, 80.0, seed=7))

# %% [markdown]
# **Exercise 5.** Write `diagnose(snap)`: which fault (one of `FAULTS`), which replica (an index, or None
# for a burst) and when it began (seconds, graded within 30 s). Check the most specific signs first.
#
# *What you may use:* numpy. `inferlab.observe.snapshots.reference_diagnose` scores zero here.

# %% solution id=diagnose
def diagnose(snap: MetricSnapshot) -> Diagnosis:
    """The fault in `snap`, its replica (None: all) and its start in seconds."""
    ### BEGIN SOLUTION
    s, t = snap.series, snap.time_s
    down = s["up"] < 0.5
    if down.any():
        r = int(np.argmax(down.sum(axis=1)))
        refused = np.nanmean(s["client_error_ratio"][r, down[r]]) > 0.95
        return Diagnosis("replica_down" if refused else "paused", r, float(t[np.argmax(down[r])]))
    errors = s["client_error_ratio"]
    if np.nanmax(errors) > 0.2:
        r = int(np.argmax(np.nanmean(errors, axis=1)))
        return Diagnosis("network_drop", r, float(t[np.argmax(errors[r] > 0.2)]))
    kv = s["kv_cache_usage_perc"]
    if np.nanmax(kv) > 0.8:
        r = int(np.argmax(np.nanmax(kv, axis=1)))
        return Diagnosis("kv_exhaustion", r, float(t[np.argmax(kv[r] > 0.8)]))
    rate = np.nansum(s["requests_per_s"], axis=0)
    if rate.max() > 2 * np.median(rate):
        return Diagnosis("burst", None, float(t[np.argmax(rate > 2 * np.median(rate))]))
    gap = s["client_ttft_p99_s"] - s["ttft_p99_s"]
    r = int(np.argmax(np.nanmax(gap, axis=1)))
    return Diagnosis("network_latency", r, float(t[np.argmax(gap[r] > 0.5)]))
    ### END SOLUTION

# %%
_visible = [("replica_down", 0, 50.0, 1), ("kv_exhaustion", 2, 100.0, 2), ("burst", None, 30.0, 3)]
for _fault, _replica, _start, _seed in _visible:
    print(f"{_fault:>16} on {_replica}, {_start:5.0f} s -> {diagnose(synthesize(_fault, _replica, _start, seed=_seed))}")

# %% tests id=test_diagnose_fault points=3
for _fault, _replica, _start, _seed in _visible:
    assert diagnose(synthesize(_fault, _replica, _start, seed=_seed)).fault == _fault, f"the {_fault} incident: wrong fault"
### BEGIN HIDDEN TESTS
_HIDDEN = [("paused", 1, 70.0, 11), ("network_latency", 0, 40.0, 12), ("network_drop", 2, 120.0, 13),
           ("replica_down", 2, 15.0, 14), ("kv_exhaustion", 0, 60.0, 15), ("burst", None, 100.0, 16),
           ("paused", 0, 130.0, 17), ("network_latency", 2, 90.0, 18), ("network_drop", 1, 25.0, 19)]
for _i, (_fault, _replica, _start, _seed) in enumerate(_HIDDEN):
    assert diagnose(synthesize(_fault, _replica, _start, seed=_seed)).fault == _fault, f"hidden incident {_i}: wrong fault"
### END HIDDEN TESTS

# %% tests id=test_diagnose_replica points=2
for _fault, _replica, _start, _seed in _visible:
    assert diagnose(synthesize(_fault, _replica, _start, seed=_seed)).replica == _replica, \
        f"the {_fault} incident: wrong replica"
### BEGIN HIDDEN TESTS
_HIDDEN = [("paused", 1, 70.0, 11), ("network_latency", 0, 40.0, 12), ("network_drop", 2, 120.0, 13),
           ("replica_down", 2, 15.0, 14), ("kv_exhaustion", 0, 60.0, 15), ("burst", None, 100.0, 16),
           ("network_latency", 2, 90.0, 18), ("network_drop", 1, 25.0, 19)]
for _i, (_fault, _replica, _start, _seed) in enumerate(_HIDDEN):
    assert diagnose(synthesize(_fault, _replica, _start, seed=_seed)).replica == _replica, \
        f"hidden incident {_i}: wrong replica"
### END HIDDEN TESTS

# %% tests id=test_diagnose_start points=2
for _fault, _replica, _start, _seed in _visible:
    assert abs(diagnose(synthesize(_fault, _replica, _start, seed=_seed)).start_s - _start) <= 30, \
        f"the {_fault} incident: start more than 30 s off"
### BEGIN HIDDEN TESTS
_HIDDEN = [("paused", 1, 70.0, 11), ("network_latency", 0, 40.0, 12), ("network_drop", 2, 120.0, 13),
           ("kv_exhaustion", 0, 60.0, 15), ("burst", None, 100.0, 16), ("replica_down", 1, 140.0, 20)]
for _i, (_fault, _replica, _start, _seed) in enumerate(_HIDDEN):
    assert abs(diagnose(synthesize(_fault, _replica, _start, seed=_seed)).start_s - _start) <= 30, \
        f"hidden incident {_i}: start more than 30 s off"
### END HIDDEN TESTS

# %% [markdown]
# ## 4. A chaos experiment on a live stack (demo, not graded)
#
# `inferlab chaos run kill-replica` starts two `inferlab serve` replicas behind fault-injection proxies,
# a real Prometheus on loopback loaded with the SLO rules (windows divided by 120: the 1 h window is
# 30 s, so a one-minute experiment shows what an hour would), and a steady client load; then the Chaos
# Toolkit (chaoslib) runs the experiment file: check the steady-state hypothesis (client SLIs), kill
# replica 1, wait 20 s, check the hypothesis again, roll back (restart). Read the experiment:
# `inferlab/observe/chaos/experiments/kill-replica.yml`. The other shipped experiments: `inferlab chaos list`.
# In fast mode the fault lasts 8 s instead of 20. (Skipped while autograding; ~1 min.)

# %%
if run_demo("a Chaos Toolkit experiment on a live stack: kill a replica (~1 min)"):
    from inferlab.observe.chaos.toolkit import format_row, load, run_experiment

    experiment = load("kill-replica")
    experiment["method"][0]["pauses"]["after"] = pick(20, 8)
    report = run_experiment(experiment, warmup_s=pick(8.0, 5.0), recovery_s=pick(10.0, 5.0))
    print(format_row(report))
    fig, ax = plt.subplots(figsize=(8, 3))
    for name in ("ttft_error_ratio_5m", "ttft_error_ratio_1h", "up"):
        pts = report["series"][name]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name)
    ax.set_xlabel("seconds since the stack started")
    ax.legend()
    plt.show()

# %% [markdown]
# ## 5. Incident response
#
# **Exercise 6 (auto-checked).** Write the remediation backlog of the incidents above as YAML: at least
# three items, at least two different linked alerts or SLIs, at least one of priority P0 or P1. The
# schema (`inferlab.observe.incident.BACKLOG_SCHEMA`): `item` (at least 10 characters), `owner_role`
# (one of incident_commander, operations, communications, scribe, service_owner, platform), `priority`
# (P0..P3), `linked` (an alert name from the rules, or an SLI: ttft, tpot, availability, goodput),
# `due` ("YYYY-MM-DD"), optional `status`. `validate_backlog(text)` lists what is wrong. The template:

# %%
print(template("backlog"))

# %% solution id=backlog
def remediation_backlog() -> str:
    """The remediation backlog, YAML text."""
    ### BEGIN SOLUTION
    return """
- item: Put a router with health checks and retries in front of the replicas; drain on ReplicaDown
  owner_role: platform
  priority: P0
  linked: ReplicaDown
  due: "2027-01-15"
- item: Client-side availability SLI from the router's logs (server metrics miss refused connections)
  owner_role: service_owner
  priority: P1
  linked: availability
  due: "2027-01-31"
- item: Admission control on prompt tokens so long prompts cannot exhaust the KV cache
  owner_role: operations
  priority: P2
  linked: TTFTErrorBudgetBurnPage
  due: "2027-02-28"
"""
    ### END SOLUTION

# %% tests id=test_backlog points=2
_text = remediation_backlog()
_problems = validate_backlog(_text)
assert not _problems, "the backlog does not match the schema:\n" + "\n".join(_problems)
_items = yaml.safe_load(_text)
assert len(_items) >= 3, "at least three items"
assert len({i["linked"] for i in _items}) >= 2, "at least two different linked alerts or SLIs"
assert any(i["priority"] in ("P0", "P1") for i in _items), "at least one P0 or P1 item"

# %% [markdown]
# **Exercise 7 (graded by hand, 3 points).** The playbook entry for `TTFTErrorBudgetBurnPage`: severity,
# who does what (incident commander, operations, communications, scribe), the first three PromQL queries
# you run and what each would tell you, and the first mitigation for each of the faults of section 3.
# Start from `print(template("playbook"))`.
#
# Rubric: severity and roles named and justified (1); queries that separate the faults of section 3 (1);
# a mitigation per fault that stops the bleeding before root cause (1).

# %% [markdown] manual id=playbook points=3
# **TTFTErrorBudgetBurnPage, SEV2 (SEV1 if availability also burns).** IC: the on-call; operations: the
# second on-call; communications: the service owner; scribe: whoever joins third. Queries:
# (1) `up{job="inferlab"}` - a replica down or paused; (2) `sum by (instance) (vllm:num_requests_waiting)`
# and `vllm:kv_cache_usage_perc` - queueing or KV exhaustion on one replica vs all (burst);
# (3) client p99 TTFT per replica against the server's - network (proxy) latency when only the client
# sees it. Mitigations: down/paused - drain it, restart; latency/drops - drain that path; KV
# exhaustion - cap prompt tokens (`--max-waiting-tokens`), shed long prompts; burst - shed or scale out.

# %% [markdown]
# **Exercise 8 (graded by hand, 4 points).** A postmortem of the kill-replica experiment (or of one of
# the incidents above): summary, impact (requests lost, error budget spent), timeline, root cause,
# trigger, detection (which alert, how long after), resolution, action items (your backlog). Start from
# `print(template("postmortem"))`.
#
# Rubric: impact in numbers (1); timeline with detection delay (1); root cause distinct from trigger (1);
# action items that would have prevented or shortened it, linked to alerts/SLIs (1).

# %% [markdown] manual id=postmortem points=4
# **Summary.** Replica 1 of 2 was killed for 20 s; half the requests failed. **Impact:** 48 of 95
# requests lost (availability 0.49 during the fault), about 50 minutes' worth of a 99.9 % monthly budget
# in 20 s. **Timeline:** t=0 kill; t=+1 s ReplicaDown fired; t=+20 s restart; t=+24 s healthy.
# **Root cause:** clients address replicas directly, with no health checks or retries. **Trigger:** the
# process was killed. **Detection:** ReplicaDown after 1 s; no availability alert, because the server's
# own metrics cannot count refused connections. **Resolution:** restart. **Action items:** the backlog above.
