# %% [markdown]
# # Lab 5: autoscaling and capacity planning with a calibrated serving simulator
#
# **Module MOD-526, Distributed Inference & Scaling.** Objective served: *"Implement continuous
# batching, dynamic routing, and autoscaling strategies tied to performance KPIs"*. You size a fleet
# with queueing theory, write the Kubernetes HPA rule, then write an **SLO-aware autoscaler** and
# evaluate it in `inferlab.sim`, a discrete-event simulator of a fleet of Llama-2-7B replicas on
# H100s (roofline step times from `inferlab.costmodel`, 90 s cold starts), against the 5-minute
# oracle, HPA and Ray Serve's default policy.
#
# | | |
# |---|---|
# | Prerequisites | Lab 0 (TTFT/TPOT, SLO attainment), Lab 3 (continuous batching); the lecture on autoscaling |
# | Hardware tier | **CPU** (any laptop) |
# | Time | ~1 min in fast mode, ~3 min in full mode, plus reading (lab 2 h) |
# | Graded | Erlang C (3 points), HPA rule (3 points), your autoscaler: bounds (2), attainment (3), GPU-hours (3) |
#
# A policy is a plain function `policy(ctx) -> (num_replicas, new_state)`, the shape of Ray Serve's
# custom autoscaling policies: the same function runs in the simulator and in Ray Serve
# (`inferlab.deploy.ray_serve`). Read `inferlab/policies/autoscale.py` for the context's fields.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np

from inferlab.metrics import SLO, summarize
from inferlab.notebook import banner, pick, progress
from inferlab.policies.autoscale import (AutoscalingConfig, AutoscalingContext, hpa_policy, metric_values,
                                         ray_default_policy)
from inferlab.sim import ClusterConfig, oracle_plan, roofline_model, simulate
from inferlab.sim.queueing import mmc_wait_s
from inferlab.traces import LengthDist, profile_arrivals, synthesize

banner("lab5_autoscaling", tier="CPU", fast_min=1, full_min=3)
MODEL = roofline_model("llama-2-7b", "h100")
SLO_ = SLO(ttft_s=2.0, tpot_s=0.2)

# %% [markdown]
# ## 1. Queueing: how many servers for a wait target?
#
# In M/M/c (Poisson arrivals at rate λ, c servers each serving at rate μ, offered load a = λ/μ), the
# probability that an arrival must wait is **Erlang C**. It follows from **Erlang B**, the blocking
# probability of the same system without a queue, which has a stable recursion (worked example):

# %%
def erlang_b(num_servers: int, offered_load: float) -> float:
    """Erlang B blocking probability: B(0) = 1, B(k) = a B(k-1) / (k + a B(k-1))."""
    b = 1.0
    for k in range(1, num_servers + 1):
        b = offered_load * b / (k + offered_load * b)
    return b


print(f"B(4, 3.0) = {erlang_b(4, 3.0):.4f}")

# %% [markdown]
# **Exercise 1.** Write `erlang_c(num_servers, offered_load)`: with ρ = a / c,
# C = B / (1 − ρ (1 − B)). Raise `ValueError` when the system is unstable (a ≥ c).

# %% solution id=erlang_c
def erlang_c(num_servers: int, offered_load: float) -> float:
    """Probability an arrival waits in M/M/c.

    Args:
        num_servers: c >= 1.
        offered_load: a = lambda / mu, in Erlangs (must be < c).
    Returns:
        C(c, a) in [0, 1].
    """
    ### BEGIN SOLUTION
    if offered_load >= num_servers:
        raise ValueError(f"unstable: offered load {offered_load} >= {num_servers} servers")
    b = erlang_b(num_servers, offered_load)
    rho = offered_load / num_servers
    return b / (1 - rho * (1 - b))
    ### END SOLUTION

# %% tests id=test_erlang_c points=3
assert abs(erlang_c(1, 0.5) - 0.5) < 1e-12  # M/M/1: P(wait) = rho
assert abs(erlang_c(2, 1.0) - 1 / 3) < 1e-12
try:
    erlang_c(2, 2.0)
    raise AssertionError("erlang_c(2, 2.0) must raise ValueError (unstable)")
except ValueError:
    pass
### BEGIN HIDDEN TESTS
for c, a in [(4, 3.0), (10, 8.5), (32, 30.0)]:
    lam, mu = a, 1.0
    expected = mmc_wait_s(lam, mu, c) * (c * mu - lam)  # the package's M/M/c, rearranged
    assert abs(erlang_c(c, a) - expected) < 1e-9, "erlang_c disagrees with the M/M/c reference"
### END HIDDEN TESTS

# %% [markdown]
# The mean wait is W_q = C / (c μ − λ). A replica that serves one request at a time for 0.5 s
# (μ = 2/s) at λ = 12 req/s: how many replicas keep the mean wait under 50 ms?

# %%
for c in range(7, 11):
    wait = erlang_c(c, 12 / 2) / (c * 2 - 12)
    print(f"{c} replicas: mean wait {wait * 1e3:7.1f} ms")

# %% [markdown]
# ## 2. The Kubernetes HPA rule
#
# Ray Serve's default policy asks for `total_num_requests / target_ongoing_requests` replicas
# (worked example below). The HPA instead scales the **current** count by the ratio of the metric to
# its target, and does nothing while that ratio is within a **tolerance** (10%) of 1.

# %%
def ray_desired(total_num_requests: float, target_ongoing_requests: float) -> int:
    """Ray Serve's default: enough replicas for `target_ongoing_requests` each (at least 1)."""
    return max(1, math.ceil(total_num_requests / target_ongoing_requests))


print(ray_desired(100, 32))

# %% [markdown]
# **Exercise 2.** Write `hpa_desired_replicas(current, metric, target, tolerance=0.1)`:
# `ceil(current * metric / target)`, or `current` when `|metric / target - 1| <= tolerance`.

# %% solution id=hpa
def hpa_desired_replicas(current: int, metric: float, target: float, tolerance: float = 0.1) -> int:
    """Kubernetes HPA's desired replica count.

    Args:
        current: replicas now.
        metric: the metric's current average per replica (e.g. ongoing requests).
        target: its target value per replica.
        tolerance: relative band around the target where nothing changes.
    Returns:
        desired replica count (before min/max bounds).
    """
    ### BEGIN SOLUTION
    ratio = metric / target
    if abs(ratio - 1.0) <= tolerance:
        return current
    return math.ceil(current * ratio - 1e-9)
    ### END SOLUTION

# %% tests id=test_hpa points=3
assert hpa_desired_replicas(4, 15.0, 10.0) == 6
assert hpa_desired_replicas(4, 10.5, 10.0) == 4
### BEGIN HIDDEN TESTS
assert hpa_desired_replicas(4, 11.2, 10.0) == 5, "outside the tolerance band the count must change"
assert hpa_desired_replicas(10, 3.1, 10.0) == 4, "scale-down rounds up"
assert hpa_desired_replicas(3, 9.05, 10.0) == 3, "inside the tolerance band nothing changes"
assert hpa_desired_replicas(2, 20.0, 10.0, tolerance=0.0) == 4
### END HIDDEN TESTS

# %% [markdown]
# ## 3. A fleet on a trace
#
# A 20-minute (fast mode) or 40-minute conversation-shaped trace whose rate rises to 4x and falls
# back. The **oracle** knows each 5-minute window's load in advance and provisions exactly the
# replicas that window needs (found by simulating it): its GPU-hours are the reference.

# %%
def lab_trace(minutes: int, seed: int = 0):
    """Azure-conversation-shaped lengths; the rate rises from 600 to 2400 requests/min and back."""
    rng = np.random.default_rng(seed)
    m = np.arange(minutes)
    rates = 600 + 1800 * np.exp(-0.5 * ((m - minutes * 0.45) / (minutes * 0.15)) ** 2)
    return synthesize(profile_arrivals(rates, rng), LengthDist(1020, 4000, max_tokens=8000),
                      LengthDist(129, 700, max_tokens=2000), rng)


TRACE = lab_trace(pick(40, 20))
PLAN = oracle_plan(TRACE, MODEL, SLO_)
print(f"{len(TRACE)} requests; oracle replicas per window {PLAN.schedule}; "
      f"oracle {PLAN.oracle_gpu_hours:.2f} GPU-h, static peak {PLAN.static_peak_gpu_hours:.2f} GPU-h")


def evaluate(policy, trace=TRACE, plan=PLAN):
    """Simulate `policy` on `trace`: SLO attainment, GPU-hours / oracle, scale actions, timeline."""
    config = ClusterConfig(autoscaling=AutoscalingConfig(min_replicas=1, max_replicas=32,
                                                         initial_replicas=plan.schedule[0]), cold_start_s=90.0)
    result = simulate(trace, MODEL, config, policy)
    summary = summarize(result.records, SLO_)
    return {"slo_attainment": summary.slo_attainment, "gpu_hours_ratio": result.total_gpu_hours / plan.oracle_gpu_hours,
            "num_scale_actions": result.num_scale_actions, "timeline": result.timeline}


baselines = {name: evaluate(p) for name, p in progress([("hpa", hpa_policy), ("ray", ray_default_policy)],
                                                         desc="baselines")}
for name, r in baselines.items():
    print(f"{name:>4}: attainment {r['slo_attainment']:.4f}, GPU-h {r['gpu_hours_ratio']:.2f}x oracle, "
          f"{r['num_scale_actions']} scale actions")

# %% [markdown]
# ## 4. Your SLO-aware autoscaler (graded)
#
# The simulator reports per running replica, in `ctx.aggregated_metrics`: `"kv_utilization"` (share of
# the KV cache reserved), `"compute_utilization"` (share of the step token budget used, time-weighted)
# and `"num_waiting_requests"` (requests still waiting for their first token). Use
# `metric_values(ctx, name)` to get a list. A good policy
# - estimates the replicas needed from utilisation (e.g. sum of utilisations / a target of ~0.7),
# - reacts to queues (many waiting requests: the fleet is already short),
# - scales **up at once** (a replica asked for now serves only after the 90 s cold start),
# - scales **down slowly** (hysteresis: only after the need stayed low for a few minutes), and
# - stays within `[ctx.capacity_adjusted_min_replicas, ctx.capacity_adjusted_max_replicas]`.
# Keep your memory in the returned state dict (never mutate `ctx.policy_state`).
#
# **Exercise 3.** Write `my_autoscaler(ctx) -> (num_replicas, state)`. Graded: bounds, SLO
# attainment >= 0.99 and GPU-hours <= 1.6x the oracle on this trace (and similar bounds on a hidden one).

# %% solution id=autoscaler
def my_autoscaler(ctx):
    """SLO-aware autoscaler: utilisation- and queue-driven, up at once, down after a 300 s hold."""
    ### BEGIN SOLUTION
    state = dict(ctx.policy_state)
    now, current = ctx.current_time, ctx.target_num_replicas
    need = max(sum(metric_values(ctx, "kv_utilization")) / 0.7,
               sum(metric_values(ctx, "compute_utilization")) / 0.7)
    if sum(metric_values(ctx, "num_waiting_requests")) > 4 * max(ctx.current_num_replicas, 1):
        need = max(need, 2 * ctx.current_num_replicas)
    history = [row for row in state.get("history", []) if now - row[0] <= 300] + [[now, need]]
    state["history"] = history
    up = math.ceil(1.2 * need)
    if up > current:
        state["low_since"] = None
        return min(ctx.capacity_adjusted_max_replicas, up), state
    down = max(ctx.capacity_adjusted_min_replicas, math.ceil(1.2 * max(r[1] for r in history) / 0.7),
               math.ceil(current / 2))
    if down < current:
        if state.get("low_since") is None:
            state["low_since"] = now
        elif now - state["low_since"] >= 300:
            state["low_since"] = None
            return down, state
    else:
        state["low_since"] = None
    return current, state
    ### END SOLUTION

# %%
mine = evaluate(my_autoscaler)
print(f"mine: attainment {mine['slo_attainment']:.4f}, GPU-h {mine['gpu_hours_ratio']:.2f}x oracle, "
      f"{mine['num_scale_actions']} scale actions")
fig, ax = plt.subplots(figsize=(9, 3))
for name, r in [*baselines.items(), ("mine", mine)]:
    ax.step([row["time_s"] / 60 for row in r["timeline"]], [row["target"] for row in r["timeline"]], label=name)
ax.step([i * PLAN.window_s / 60 for i in range(len(PLAN.schedule))], PLAN.schedule, where="post", ls="--",
        color="k", label="oracle")
ax.set_xlabel("minute")
ax.set_ylabel("replicas (target)")
ax.legend()
plt.show()

# %% tests id=test_autoscaler_bounds points=2
def _ctx(load_share, target=3, lo=2, hi=5):
    return AutoscalingContext(current_num_replicas=target, target_num_replicas=target, total_num_requests=0,
                              total_queued_requests=0, capacity_adjusted_min_replicas=lo,
                              capacity_adjusted_max_replicas=hi, current_time=1000.0, policy_state={},
                              aggregated_metrics={"kv_utilization": {i: load_share for i in range(target)},
                                                  "compute_utilization": {i: load_share for i in range(target)},
                                                  "num_waiting_requests": {i: 0 for i in range(target)}})
_low, _high = _ctx(0.0), _ctx(1.0)
_state_before = dict(_high.policy_state)
assert 2 <= my_autoscaler(_low)[0] <= 5 and 2 <= my_autoscaler(_high)[0] <= 5
assert _high.policy_state == _state_before, "do not mutate ctx.policy_state; return a new dict"
### BEGIN HIDDEN TESTS
assert my_autoscaler(_high)[0] == 5, "at full utilisation the policy must ask for more (up to max)"
_s = {}
for _t in range(0, 1200, 2):
    _c = _ctx(0.0, lo=1, hi=5)
    _c.current_time, _c.policy_state = float(_t), _s
    _n, _s = my_autoscaler(_c)
    assert 1 <= _n <= 5, "out of bounds"
### END HIDDEN TESTS

# %% tests id=test_autoscaler_attainment points=3
assert mine["slo_attainment"] >= 0.99, mine["slo_attainment"]
### BEGIN HIDDEN TESTS
_hidden_trace = lab_trace(20, seed=7)
_hidden_plan = oracle_plan(_hidden_trace, MODEL, SLO_)
_hidden = evaluate(my_autoscaler, _hidden_trace, _hidden_plan)
assert _hidden["slo_attainment"] >= 0.98, "attainment too low on another trace"
### END HIDDEN TESTS

# %% tests id=test_autoscaler_gpu_hours points=3
assert mine["gpu_hours_ratio"] <= 1.6, mine["gpu_hours_ratio"]
### BEGIN HIDDEN TESTS
assert mine["num_scale_actions"] <= 12, "too many scale actions: add hysteresis"
_hidden_trace = lab_trace(20, seed=7)
_hidden_plan = oracle_plan(_hidden_trace, MODEL, SLO_)
assert evaluate(my_autoscaler, _hidden_trace, _hidden_plan)["gpu_hours_ratio"] <= 2.3, "too many GPU-hours on another trace"
### END HIDDEN TESTS

# %% [markdown]
# **Questions for your portfolio** (not autograded): run `inferlab simulate` on
# `datasets/azure_code_synth.csv` with `--rate-scale 10` for `hpa`, `ray`, `kpa` and `slo`: which
# fails on the bursts, and why does a concurrency target that suits conversations starve code
# completion? Add `--spot-fraction 0.5 --spot-notice-s 30` and then `120`: what does the notice buy
# with a 90 s cold start? Finally `python -m inferlab.deploy.ray_serve` runs the reference policy
# inside Ray Serve on the tiny engine: compare its timeline with the simulator's.
