"""Autoscaling policies: formulas, windows, bounds, reaction to a step, no flapping."""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable

import pytest

import inferlab.policies.autoscale as autoscale_module
import inferlab.policies.slo_aware as slo_module
from inferlab.policies.autoscale import (AutoscalingConfig, AutoscalingContext, hpa_desired, hpa_policy,
                                         kpa_policy, make_oracle_policy, make_static_policy, ray_default_policy)
from inferlab.policies.slo_aware import SLO_AWARE, SloAwareParams, slo_aware_policy

TARGET = 10.0
POLICIES = {"hpa": hpa_policy, "ray": ray_default_policy, "kpa": kpa_policy, "slo": slo_aware_policy}


def _ctx(now: float, target: int, ready: int, load: float, state: dict, starting: int = 0,
         lo: int = 1, hi: int = 20, **metrics: dict) -> AutoscalingContext:
    return AutoscalingContext(current_num_replicas=ready, target_num_replicas=target, total_num_requests=load,
                              total_queued_requests=0, capacity_adjusted_min_replicas=lo,
                              capacity_adjusted_max_replicas=hi, current_time=now, policy_state=state,
                              config=AutoscalingConfig(min_replicas=lo, max_replicas=hi,
                                                       target_ongoing_requests=TARGET),
                              num_starting_replicas=starting, cold_start_s=90.0, aggregated_metrics=metrics)


def _drive(policy: Callable, load_at: Callable[[float], float], seconds: float, start: int = 2,
           cold_start_s: float = 90.0, period_s: float = 2.0, metrics_at: Callable | None = None) -> list[tuple]:
    """Closed loop with a toy fleet: replicas asked for become ready after the cold start."""
    state: dict[str, Any] = {}
    target, launches = start, [(-1e9, start)]
    out = []
    t = 0.0
    while t <= seconds:
        ready = min(target, sum(n for when, n in launches if when + cold_start_s <= t))
        ready = max(ready, 0)
        metrics = metrics_at(t, ready) if metrics_at else {}
        ctx = _ctx(t, target, ready, load_at(t), state, starting=target - ready, **metrics)
        desired, state = policy(ctx)
        if desired > target:
            launches.append((t, desired - target))
        elif desired < target:
            launches.append((-1e9, desired - target))
        target = desired
        out.append((t, target, ready))
        t += period_s
    return out


def test_hpa_formula_and_tolerance() -> None:
    assert hpa_desired(4, 15.0, 10.0) == 6  # ceil(4 * 1.5)
    assert hpa_desired(4, 10.9, 10.0) == 4  # within 10% tolerance
    assert hpa_desired(4, 11.1, 10.0) == 5
    assert hpa_desired(4, 5.0, 10.0) == 2


def test_hpa_scale_down_waits_for_stabilisation() -> None:
    trace = _drive(hpa_policy, lambda t: 80.0 if t < 100 else 10.0, 800, start=8)
    targets = {t: n for t, n, _ in trace}
    assert targets[98.0] == 8
    assert targets[380.0] == 8  # high recommendations still inside the 300 s window
    assert targets[800.0] == 1
    first_down = min(t for t, n, _ in trace if n < 8)
    assert first_down >= 100 + 300 - 15


def test_kpa_panics_on_a_burst_and_never_scales_down_in_panic() -> None:
    state: dict = {}
    for t in range(0, 62, 2):  # a full stable window at the target load (10 x 70% per replica)
        n, state = kpa_policy(_ctx(float(t), 2, 2, 14.0, state))
    assert n == 2 and state.get("kpa_panic_since") is None
    n, state = kpa_policy(_ctx(62.0, 2, 2, 200.0, state))  # 6 s window now asks for far more than 2x
    assert state["kpa_panic_since"] == 62.0 and n >= 4
    n2, state = kpa_policy(_ctx(64.0, n, 2, 0.0, state))
    assert n2 >= n  # in panic: no scale-down


@pytest.mark.parametrize("name", list(POLICIES))
def test_bounds_respected(name: str) -> None:
    policy = POLICIES[name]
    for load in (0.0, 1e6):
        state: dict = {}
        for t in range(0, 1200, 2):
            n, state = policy(_ctx(float(t), 3, 3, load, state, lo=2, hi=7))
            assert 2 <= n <= 7


@pytest.mark.parametrize("name", list(POLICIES))
def test_scales_up_within_cold_start_plus_a_period_of_a_step(name: str) -> None:
    # load steps from 2 replicas' worth to 6 at t=300: capacity asked for by t=300 + 90 + one period
    step = lambda t: 20.0 if t < 300 else 60.0
    kv = lambda t, ready: {"kv_utilization": {i: step(t) / TARGET * 0.6 / max(ready, 1) for i in range(ready)},
                           "compute_utilization": {i: 0.0 for i in range(ready)}}
    trace = _drive(POLICIES[name], step, 600, metrics_at=kv)
    # each one's own period: HPA sync, Ray's upscale delay, KPA's panic window, our upscale hold
    delay = {"hpa": 15.0, "ray": 30.0, "kpa": 6.0, "slo": SLO_AWARE.upscale_hold}[name]
    asked = min(t for t, n, _ in trace if n >= 6)
    assert asked <= 300 + delay + 2.0
    assert min(t for t, _, ready in trace if ready >= 6) <= 300 + 90 + delay + 2.0


@pytest.mark.parametrize("name", list(POLICIES))
def test_no_flapping_on_constant_load(name: str) -> None:
    kv = lambda t, ready: {"kv_utilization": {i: 50.0 / TARGET * 0.6 / max(ready, 1) for i in range(ready)},
                           "compute_utilization": {i: 0.0 for i in range(ready)}}
    trace = _drive(POLICIES[name], lambda t: 50.0, 3600, start=5, metrics_at=kv)
    changes = sum(1 for a, b in zip(trace, trace[1:]) if a[1] != b[1])
    assert changes <= 2


def test_kpa_scale_to_target_with_70_percent_utilisation() -> None:
    state: dict = {}
    for t in range(0, 64, 2):  # 70 requests, target 10 x 70% = 7 per replica: 10 replicas
        n, state = kpa_policy(_ctx(float(t), 10, 10, 70.0, state))
    assert n == 10 and state.get("kpa_panic_since") is None


def test_kpa_scale_down_at_most_halves_the_ready_replicas_per_decision() -> None:
    state: dict = {}
    for t in range(0, 62, 2):
        n, state = kpa_policy(_ctx(float(t), 16, 16, 112.0, state))
    assert n == 16  # 112 / (10 x 70%)
    state["kpa_history"] = [[60.0, 0.0]]  # the stable window now sees no load
    n, state = kpa_policy(_ctx(62.0, 16, 16, 0.0, state))
    assert n == 8  # floor(16 / max_scale_down_rate), not 1
    n, state = kpa_policy(_ctx(64.0, 8, 16, 0.0, state))
    assert n == 8  # still 16 ready: the bound is relative to the ready replicas


def test_kpa_no_scale_down_in_panic_and_unpanic_after_a_stable_window() -> None:
    state: dict = {}
    for t in range(0, 62, 2):
        n, state = kpa_policy(_ctx(float(t), 2, 2, 14.0, state))
    n, state = kpa_policy(_ctx(62.0, 2, 2, 400.0, state))  # the 6 s mean asks for >= 2 x 2 ready
    peak = n
    assert state["kpa_panic_since"] == 62.0 and peak > 4
    t, target = 64.0, peak
    while t <= 62.0 + 60.0:  # load gone, but panic holds the count for a stable window
        target, state = kpa_policy(_ctx(t, target, 2, 0.0, state))
        assert target == peak
        t += 2.0
    while t <= 68.0 + 60.0:  # the 6 s window held the burst until t=68: panic until a stable window later
        target, state = kpa_policy(_ctx(t, target, target, 0.0, state))
        assert target == peak and state["kpa_panic_since"] == 62.0
        t += 2.0
    target, state = kpa_policy(_ctx(t, target, target, 0.0, state))
    assert state["kpa_panic_since"] is None and target == peak // 2  # then down, at most halving


def test_kpa_action_rate_is_sane_on_a_slow_ramp() -> None:
    ramp = lambda t: 20.0 + 60.0 * t / 3600.0  # 2 to 8 replicas' worth over an hour
    trace = _drive(kpa_policy, ramp, 3600, start=3)
    changes = sum(1 for a, b in zip(trace, trace[1:]) if a[1] != b[1])
    assert 3 <= changes <= 20


def test_slo_ignores_a_blip_shorter_than_its_upscale_hold() -> None:
    # one replica at real rates: a 10 s burst drains long before a cold replica would serve
    kv = lambda t, ready: {"kv_utilization": {i: (0.9 if 100 <= t < 110 else 0.1) / max(ready, 1)
                                              for i in range(ready)},
                           "compute_utilization": {i: 0.0 for i in range(ready)},
                           "num_waiting_requests": {i: 2.0 for i in range(ready)}}
    trace = _drive(slo_aware_policy, lambda t: 5.0, 600, start=1, metrics_at=kv)
    assert {n for _, n, _ in trace} == {1}


def test_slo_scales_up_at_once_on_a_long_queue() -> None:
    queue = lambda t, ready: {"kv_utilization": {i: 0.5 for i in range(ready)},
                              "compute_utilization": {i: 1.0 for i in range(ready)},
                              "num_waiting_requests": {i: 0.0 if t < 100 else 40.0 for i in range(ready)}}
    trace = _drive(slo_aware_policy, lambda t: 30.0, 200, start=2, metrics_at=queue)
    assert min(t for t, n, _ in trace if n > 2) <= 100 + 2.0


def test_slo_does_not_repeat_an_urgent_upscale_while_replicas_start() -> None:
    # a long, growing queue: one urgent jump, then the starting replicas get a rest to arrive in
    growing = lambda t, ready: {"kv_utilization": {i: (1.0 + 0.05 * max(0.0, t - 100)) / max(ready, 1)
                                                   for i in range(ready)},
                                "compute_utilization": {i: 0.0 for i in range(ready)},
                                "num_waiting_requests": {i: 0.0 if t < 100 else 40.0 for i in range(ready)}}
    trace = _drive(slo_aware_policy, lambda t: 30.0, 300, start=2, metrics_at=growing)
    times = [b[0] for a, b in zip(trace, trace[1:]) if a[1] != b[1]]
    assert times and times[0] <= 100 + 2.0
    assert all(t >= times[0] + SLO_AWARE.min_action_interval - 1e-9 for t in times[1:]), times


def test_slo_downscale_is_not_pinned_by_one_spike() -> None:
    # 8 replicas, a steady need of 2 and one 4 s spike inside the hold: at the hold's end the fleet
    # is sized on the hold's 95th percentile (down to 4, the step cap); sized on its peak it keeps 7
    spike = lambda t, ready: {"kv_utilization": {i: (6.0 if 250 <= t < 254 else 1.5) / max(ready, 1)
                                                 for i in range(ready)},
                              "compute_utilization": {i: 0.0 for i in range(ready)},
                              "num_waiting_requests": {i: 0.0 for i in range(ready)}}
    end_of_hold = lambda trace: {t: n for t, n, _ in trace}[SLO_AWARE.downscale_hold_s + 2.0]
    assert end_of_hold(_drive(slo_aware_policy, lambda t: 0.0, 400, start=8, metrics_at=spike)) == 4
    at_peak = lambda ctx: slo_aware_policy(ctx, SloAwareParams(downscale_quantile=1.0))
    assert end_of_hold(_drive(at_peak, lambda t: 0.0, 400, start=8, metrics_at=spike)) > 4


def test_slo_rests_between_actions() -> None:
    # a load that swings every 30 s: at most one non-urgent action per min_action_interval
    swing = lambda t, ready: {"kv_utilization": {i: (4.0 if (t // 30) % 2 else 1.0) / max(ready, 1)
                                                 for i in range(ready)},
                              "compute_utilization": {i: 0.0 for i in range(ready)}}
    trace = _drive(slo_aware_policy, lambda t: 0.0, 1800, start=2, metrics_at=swing)
    times = [b[0] for a, b in zip(trace, trace[1:]) if a[1] != b[1]]
    assert times and all(b - a >= SLO_AWARE.min_action_interval - 1e-9 for a, b in zip(times, times[1:]))


def test_slo_scales_a_small_idle_fleet_all_the_way_down() -> None:
    # the per-step downscale cap must still allow one replica down (ceil(3 * 0.75) == 3)
    idle = lambda t, ready: {"kv_utilization": {i: 0.0 for i in range(ready)},
                             "compute_utilization": {i: 0.0 for i in range(ready)},
                             "num_waiting_requests": {i: 0.0 for i in range(ready)}}
    trace = _drive(slo_aware_policy, lambda t: 0.0, 3000, start=3, metrics_at=idle)
    assert trace[-1][1] == 1, [n for _, n, _ in trace[::60]]


def test_slo_params_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="upscale_hold_s"):
        SloAwareParams(upscale_hold_s=-1.0)
    with pytest.raises(ValueError, match="urgent_waiting_per_replica"):
        SloAwareParams(urgent_waiting_per_replica=1.0)
    with pytest.raises(ValueError, match="downscale_quantile"):
        SloAwareParams(downscale_quantile=0.0)
    with pytest.raises(ValueError, match="max_downscale_ratio"):
        SloAwareParams(max_downscale_ratio=1.0)
    assert SloAwareParams(smoothing_window_s=3.0).upscale_hold == 6.0


def test_static_and_oracle() -> None:
    n, _ = make_static_policy(5)(_ctx(0.0, 1, 1, 0.0, {}))
    assert n == 5
    oracle = make_oracle_policy([2, 6, 3], window_s=300)
    assert oracle(_ctx(100.0, 2, 2, 0.0, {}))[0] == 2
    assert oracle(_ctx(220.0, 2, 2, 0.0, {}))[0] == 6  # pre-warmed one cold start (90 s) early
    assert oracle(_ctx(610.0, 6, 6, 0.0, {}))[0] == 3


def test_policies_import_nothing_above_floor_1() -> None:
    for module in (autoscale_module, slo_module):
        imports = [line for line in inspect.getsource(module).splitlines() if line.startswith(("import", "from"))]
        assert imports and not any("ray" in line.split() or "inferlab.sim" in line for line in imports), imports


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="max_replicas"):
        AutoscalingConfig(min_replicas=3, max_replicas=2)
    with pytest.raises(ValueError, match="target_ongoing_requests"):
        AutoscalingConfig(target_ongoing_requests=0)


def test_lagged_schedule_knows_only_the_past():
    from inferlab.policies.autoscale import lagged_schedule

    schedule = [2, 2, 6, 2, 3, 2]
    assert lagged_schedule(schedule, 1) == [2, 2, 2, 6, 2, 3]  # the burst window is met one window late
    assert lagged_schedule(schedule, 2) == [2, 2, 2, 6, 6, 3]
    assert lagged_schedule(schedule, 1, factor=1.5) == [2, 3, 3, 9, 3, 5]
    with pytest.raises(ValueError, match="num_windows"):
        lagged_schedule(schedule, 0)


def test_oracle_without_lead_asks_at_the_window_start():
    from inferlab.policies.autoscale import AutoscalingContext, make_oracle_policy

    def ask(policy, now):
        ctx = AutoscalingContext(current_num_replicas=1, target_num_replicas=1, total_num_requests=0,
                                 total_queued_requests=0, capacity_adjusted_min_replicas=1,
                                 capacity_adjusted_max_replicas=16, current_time=now, cold_start_s=90.0)
        return policy(ctx)[0]

    early, late = make_oracle_policy([1, 5], 300.0), make_oracle_policy([1, 5], 300.0, lead_s=0.0)
    assert ask(early, 250.0) == 5 and ask(late, 250.0) == 1  # one cold start before window 1
    assert ask(late, 300.0) == 5
