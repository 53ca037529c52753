"""Spot/on-demand mix policies, alone and plugged into the simulator."""

from __future__ import annotations

import numpy as np
import pytest

from inferlab.policies.autoscale import AutoscalingConfig, make_static_policy
from inferlab.policies.spot import SpotContext, make_fixed_spot_policy, notice_aware_spot_policy
from inferlab.sim import ClusterConfig, Roof, StepTimeModel, simulate
from inferlab.traces import TraceRequest


def _ctx(**kw) -> SpotContext:
    base = dict(target_num_replicas=10, num_spot_replicas=5, num_on_demand_replicas=5, spot_price_ratio=0.35,
                current_time=5000.0)
    base.update(kw)
    return SpotContext(**base)


def test_fixed_and_notice_aware_counts() -> None:
    assert make_fixed_spot_policy(0.5)(_ctx())[0] == 5
    assert make_fixed_spot_policy(0.0)(_ctx())[0] == 0
    assert notice_aware_spot_policy(_ctx())[0] == 7  # calm: 70% of 10
    assert notice_aware_spot_policy(_ctx(spot_price_ratio=0.9))[0] == 0  # too dear
    after = notice_aware_spot_policy(_ctx(notice_times_s=(4990.0,)))[0]
    assert after <= 5  # replacement is on-demand
    with pytest.raises(ValueError):
        make_fixed_spot_policy(1.5)
    with pytest.raises(ValueError):
        _ctx(num_spot_replicas=-1)


def _run(spot_policy, spot_fraction: float = 0.0):
    rng = np.random.default_rng(0)
    arrivals = np.cumsum(rng.exponential(1 / 2.0, 3000))
    trace = [TraceRequest(float(t), 64, 32) for t in arrivals]
    model = StepTimeModel((Roof(0.01),), max_kv_tokens=100_000)
    config = ClusterConfig(autoscaling=AutoscalingConfig(min_replicas=4, max_replicas=4, initial_replicas=4),
                           cold_start_s=30.0, spot_fraction=spot_fraction, spot_mean_lifetime_s=300.0, seed=1)
    return simulate(trace, model, config, make_static_policy(4), spot_policy=spot_policy)


def test_simulator_asks_spot_policy() -> None:
    default = _run(None, spot_fraction=0.5)
    fixed = _run(make_fixed_spot_policy(0.5))
    assert default.gpu_hours == pytest.approx(fixed.gpu_hours)  # same rule, same numbers
    assert fixed.num_spot_interruptions > 0 and fixed.gpu_hours["spot"] > 0
    aware = _run(notice_aware_spot_policy)
    # after notices it replaces spot by on-demand: fewer preemptions and more on-demand hours
    assert aware.num_spot_interruptions < fixed.num_spot_interruptions
    assert aware.gpu_hours["on_demand"] > fixed.gpu_hours["on_demand"]
    assert len(aware.records) == 3000
