"""The forecasting autoscaler (issue 15): band from the attainment target, trend ahead, urgent queue,
scale-down only after the wait and never below the window's forecast, bounds, state, bad input."""

from __future__ import annotations

from typing import Any

import pytest

from inferlab.policies.autoscale import AutoscalingContext
from inferlab.policies.autoscale_forecast import FORECAST, ForecastParams, forecast_policy


def _ctx(now: float, target: int, busy: float, state: dict, ready: int | None = None, waiting: float = 0.0,
         lo: int = 1, hi: int = 32) -> AutoscalingContext:
    """`busy`: summed utilisation spread over the ready replicas; `waiting`: queued at the cluster."""
    ready = target if ready is None else ready
    share = busy / ready if ready else 0.0
    metrics = {name: {i: share for i in range(ready)} for name in ("compute_utilization", "kv_utilization")}
    metrics["num_waiting_requests"] = {i: 0 for i in range(ready)}
    return AutoscalingContext(current_num_replicas=ready, target_num_replicas=target, total_num_requests=busy,
                              total_queued_requests=waiting, capacity_adjusted_min_replicas=lo,
                              capacity_adjusted_max_replicas=hi, current_time=now, policy_state=state,
                              aggregated_metrics=metrics, cold_start_s=90.0)


def _run(busy_at, seconds: float, start: int, period_s: float = 2.0, **kwargs: Any) -> list[tuple[float, int]]:
    """Open loop: the fleet becomes what the policy asks for at once (the load is given, not simulated)."""
    state: dict[str, Any] = {}
    target, out, t = start, [], 0.0
    while t <= seconds:
        target, state = forecast_policy(_ctx(t, target, busy_at(t), state, **kwargs))
        out.append((t, target))
        t += period_s
    return out


def test_band_is_the_normal_quantile_of_the_attainment_target():
    assert FORECAST.z == pytest.approx(1.8808, abs=1e-3)
    assert ForecastParams(attainment_target=0.99).z > FORECAST.z


def test_constant_load_settles_without_flapping():
    out = _run(lambda t: 6.0, 3600.0, start=2)
    changes = sum(a[1] != b[1] for a, b in zip(out, out[1:]))
    assert changes <= 2, changes
    assert out[-1][1] == 8  # 6 busy replicas at 0.75 target utilisation, no variance, no trend


def test_rising_load_is_met_one_horizon_ahead():
    """A ramp: the trend adds what the load gains in one cold start, so the fleet is ahead of the need."""
    ramp = _run(lambda t: 2.0 + t / 60.0, 600.0, start=3, period_s=2.0)
    flat = 2.0 + 600.0 / 60.0
    assert ramp[-1][1] > flat / FORECAST.target_utilization


def test_urgent_queue_scales_up_at_once_but_not_while_replicas_start():
    state: dict[str, Any] = {}
    n, state = forecast_policy(_ctx(100.0, 2, 1.0, state, waiting=200.0))
    assert n >= min(2 * FORECAST.max_upscale_ratio, 2 + 200 / FORECAST.urgent_waiting_per_replica - 1)
    n2, _ = forecast_policy(_ctx(102.0, n, 1.0, state, ready=2, waiting=400.0))
    assert n2 == n  # the replicas already starting are the answer to the queue


def test_scale_down_waits_and_keeps_the_windows_forecast():
    load = lambda t: 12.0 if t < 600 else 3.0  # noqa: E731
    out = _run(load, 2400.0, start=16)
    wait = FORECAST.downscale_horizons * (90.0 + 2.0)
    high = [n for t, n in out if t < 600][-1]  # the fleet when the load drops
    assert all(n == high for t, n in out if 600 <= t < 600 + wait - 2.0), "scaled down before the wait"
    assert out[-1][1] == 4  # 3 busy at 0.80
    downs = sum(b[1] < a[1] for a, b in zip(out, out[1:]))
    assert downs <= 2


def test_stays_within_bounds_and_does_not_mutate_state():
    state = {"fc_started_s": 0.0}
    before = dict(state)
    ctx = _ctx(1000.0, 3, 30.0, state, lo=2, hi=5, waiting=500.0)
    n, new_state = forecast_policy(ctx)
    assert 2 <= n <= 5 and ctx.policy_state == before and new_state is not state
    idle = _run(lambda t: 0.0, 1200.0, start=5, lo=2, hi=5)
    assert all(2 <= n <= 5 for _, n in idle) and idle[-1][1] == 2


@pytest.mark.parametrize("field,value", [("target_utilization", 0.0), ("attainment_target", 1.0),
                                         ("band", "magic"), ("downscale_horizons", -1.0),
                                         ("max_upscale_ratio", 0.5)])
def test_bad_params_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        ForecastParams(**{field: value})
