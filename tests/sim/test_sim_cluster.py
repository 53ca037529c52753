"""Simulator invariants: nothing lost (spot too), cold starts honoured, costs = GPU-hours x price."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inferlab.metrics import SLO, summarize
from inferlab.policies.autoscale import AutoscalingConfig, make_static_policy
from inferlab.policies.route import least_outstanding, power_of_two, round_robin
from inferlab.sim.cluster import ClusterConfig, simulate
from inferlab.sim.replica import ReplicaConfig
from inferlab.sim.steptime import Roof, StepTimeModel
from inferlab.traces import LengthDist, TraceRequest, poisson_arrivals, synthesize

MODEL = StepTimeModel((Roof(0.01, 2e-5, 1e-4, 1e-7),), max_kv_tokens=50_000)


def _trace(rate: float, n: int, seed: int = 0) -> list[TraceRequest]:
    rng = np.random.default_rng(seed)
    return synthesize(poisson_arrivals(rate, n, rng), LengthDist(300, 2000, max_tokens=4000),
                      LengthDist(50, 400, max_tokens=800), rng)


def _fleet(n: int, **kw) -> ClusterConfig:
    return ClusterConfig(autoscaling=AutoscalingConfig(min_replicas=n, max_replicas=max(n, 8), initial_replicas=n),
                         **kw)


def _check_complete(trace, result) -> None:
    assert len(result.records) == len(trace)
    for req, rec in zip(trace, result.records):
        assert rec.arrival_time_s == req.arrival_time_s
        assert rec.num_output_tokens == req.num_output_tokens
        assert rec.arrival_time_s <= rec.first_token_time_s <= rec.finish_time_s


@pytest.mark.parametrize("router", [round_robin, least_outstanding, power_of_two])
def test_no_request_lost_and_records_consistent(router) -> None:
    trace = _trace(20, 2000)
    result = simulate(trace, MODEL, _fleet(3), router=router)
    _check_complete(trace, result)
    # an output of n tokens needs n-1 decode steps after the first token, each >= the 1-seq step
    for rec in result.records[:200]:
        assert rec.finish_time_s - rec.first_token_time_s >= (rec.num_output_tokens - 1) * 0.01 - 1e-9


def test_single_request_latency_is_exact() -> None:
    model = StepTimeModel((Roof(0.01, 1e-4, 0.0, 0.0),), max_kv_tokens=10_000)
    result = simulate([TraceRequest(5.0, 100, 11)], model, _fleet(1))
    rec = result.records[0]
    assert rec.first_token_time_s - 5.0 == pytest.approx(0.01 + 100 * 1e-4)
    assert rec.finish_time_s - rec.first_token_time_s == pytest.approx(10 * 0.01)


def test_spot_preemption_loses_nothing_and_requeues() -> None:
    trace = _trace(20, 3000, seed=3)
    config = _fleet(4, spot_fraction=1.0, spot_mean_lifetime_s=20.0, spot_notice_s=5.0, cold_start_s=10.0)
    result = simulate(trace, MODEL, config)
    assert result.num_spot_interruptions > 5 and result.num_requeued > 0
    _check_complete(trace, result)
    assert result.gpu_hours["spot"] > 0 and result.gpu_hours["on_demand"] == 0


def test_cold_start_is_honoured() -> None:
    # 0 -> 2 replicas at the first tick: nothing can start before the cold start ends
    config = ClusterConfig(autoscaling=AutoscalingConfig(min_replicas=0, max_replicas=2, initial_replicas=0),
                           cold_start_s=90.0)
    trace = [TraceRequest(0.5 * i, 100, 10) for i in range(20)]
    result = simulate(trace, MODEL, config, make_static_policy(2))
    assert min(r.first_token_time_s for r in result.records) >= 90.0
    assert result.timeline[0]["num_starting_on_demand"] == 2


def test_costs_are_gpu_hours_times_price() -> None:
    trace = _trace(5, 500)
    config = _fleet(2, spot_fraction=0.5, on_demand_usd_per_gpu_hour=3.0, spot_usd_per_gpu_hour=1.0,
                    num_gpus_per_replica=2, spot_mean_lifetime_s=1e9)
    result = simulate(trace, MODEL, config)
    assert result.cost_usd == pytest.approx(3.0 * result.gpu_hours["on_demand"] + 1.0 * result.gpu_hours["spot"])
    # one replica each, 2 GPUs, billed from t=0 to the end
    expected = 2 * result.end_time_s / 3600
    assert result.gpu_hours["on_demand"] == pytest.approx(expected, rel=1e-6)
    assert result.gpu_hours["spot"] == pytest.approx(expected, rel=1e-6)


def test_more_replicas_means_lower_latency() -> None:
    trace = _trace(150, 3000)
    few, many = (summarize(simulate(trace, MODEL, _fleet(n)).records).ttft_s["mean"] for n in (2, 6))
    assert many < 0.5 * few


def test_kv_capacity_limits_admission() -> None:
    model = StepTimeModel((Roof(0.01),), max_kv_tokens=1000)
    trace = [TraceRequest(0.0, 400, 100) for _ in range(4)]  # two fit at a time
    recs = simulate(trace, model, _fleet(1)).records
    assert sum(r.first_token_time_s < 0.05 for r in recs) == 2
    with pytest.raises(ValueError, match="max_kv_tokens"):
        simulate([TraceRequest(0.0, 900, 200)], model, _fleet(1))


def test_bad_input_names_the_field() -> None:
    with pytest.raises(ValueError, match="cold_start_s"):
        ClusterConfig(cold_start_s=-1)
    with pytest.raises(ValueError, match="spot_fraction"):
        ClusterConfig(spot_fraction=1.5)
    with pytest.raises(ValueError, match="max_num_seqs"):
        ReplicaConfig(max_num_seqs=0)
    with pytest.raises(ValueError, match="ttft_s"):
        SLO(ttft_s=0)
    with pytest.raises(ValueError, match="sorted"):
        simulate([TraceRequest(1.0, 10, 10), TraceRequest(0.5, 10, 10)], MODEL, _fleet(1))
