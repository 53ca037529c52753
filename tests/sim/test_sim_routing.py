"""The simulator runs the routing and shaping policies: supermarket model, prefix cache, VTC."""

from __future__ import annotations

import numpy as np
import pytest


from inferlab.metrics import ttft_s
from inferlab.policies import route
from inferlab.policies.autoscale import AutoscalingConfig
from inferlab.policies.shape import fcfs, vtc
from inferlab.sim.cluster import ClusterConfig, simulate
from inferlab.sim.queueing import supermarket_time_in_system
from inferlab.sim.replica import ReplicaConfig
from inferlab.sim.steptime import Roof, StepTimeModel
from inferlab.traces import LengthDist, TraceRequest
from inferlab.workloads import block_hit_ceiling, multi_tenant_workload, prefix_sharing_workload


def _fleet(n: int, **replica) -> ClusterConfig:
    return ClusterConfig(autoscaling=AutoscalingConfig(min_replicas=n, max_replicas=n, initial_replicas=n),
                         replica=ReplicaConfig(**replica), control_period_s=1000.0)


def test_supermarket_model_matches_theory() -> None:
    n, load, rng = 16, 0.9, np.random.default_rng(1)
    arrivals = np.cumsum(rng.exponential(1 / (load * n), 12000))
    trace = [TraceRequest(float(a), 1, int(o)) for a, o in zip(arrivals, rng.geometric(1 / 50, 12000))]
    model = StepTimeModel((Roof(const_s=0.02),), max_kv_tokens=10 ** 7)  # service ~ Exp(mean 1 s)
    cfg = _fleet(n, max_num_seqs=1)
    sojourn = {}
    for name in ("random", "power-of-two"):
        recs = simulate(trace, model, cfg, router=route.ROUTERS[name]).records
        sojourn[name] = np.mean([r.finish_time_s - r.arrival_time_s for r in recs[2000:]])
    assert sojourn["random"] == pytest.approx(supermarket_time_in_system(load, 1), rel=0.25)
    assert sojourn["power-of-two"] == pytest.approx(supermarket_time_in_system(load, 2), rel=0.25)
    assert sojourn["random"] / sojourn["power-of-two"] > 2.5


def test_prefix_routing_raises_the_hit_rate() -> None:
    trace, _ = prefix_sharing_workload(1500, 30.0, np.random.default_rng(0))
    assert 0.3 < block_hit_ceiling(trace) < 0.45
    model = StepTimeModel((Roof(const_s=0.002, s_per_prefill_token=2e-4, s_per_decode_seq=1e-4),), max_kv_tokens=10 ** 6)
    cfg = _fleet(4, max_num_seqs=16, max_num_batched_tokens=512, num_prefix_cache_blocks=400)
    hit = {name: simulate(trace, model, cfg, router=route.ROUTERS[name]).prefix_hit_rate
           for name in ("least-outstanding", "prefix-aware", "prefix-load")}
    assert hit["prefix-aware"] > hit["least-outstanding"] + 0.05
    assert hit["prefix-load"] > hit["least-outstanding"] + 0.05
    assert np.isnan(simulate(trace, model, _fleet(4), router=route.prefix_aware).prefix_hit_rate)  # no cache


def test_vtc_protects_a_light_tenant_in_the_simulator() -> None:
    rng = np.random.default_rng(0)
    trace = multi_tenant_workload({"heavy": 60.0, "light": 3.0}, {"heavy": 600, "light": 30},
                                  LengthDist(100, 400, max_tokens=1000), LengthDist(20, 80, max_tokens=200), rng)
    model = StepTimeModel((Roof(const_s=0.01, s_per_prefill_token=1e-4),), max_kv_tokens=10 ** 6)
    cfg = ClusterConfig(autoscaling=AutoscalingConfig(min_replicas=2, max_replicas=2, initial_replicas=2),
                        replica=ReplicaConfig(max_num_seqs=4), control_period_s=1000.0, max_ongoing_requests=4)

    def light_p99(shaper):
        res = simulate(trace, model, cfg, shaper=shaper)
        return np.percentile([ttft_s(r) for r, t in zip(res.records, trace) if t.tenant == "light"], 99)

    assert light_p99(vtc) < 0.5 * light_p99(fcfs)


def test_prefix_cost_cuts_ttft_on_session_reuse_without_a_hot_spot() -> None:
    """Reuse in multi-turn histories, near saturation: routing by pending + uncached prefill hits the
    cache more and starts sooner than least-outstanding; under skew it does not pile onto one replica."""
    from dataclasses import replace

    from inferlab.bench.routing import PREFIX_FLEET_SETTINGS, PREFIX_MODEL, fleet
    from inferlab.workloads import SESSION_REUSE

    for skew in (0.0, 1.5):
        trace, _ = prefix_sharing_workload(1500, 170.0, np.random.default_rng(3), replace(SESSION_REUSE, skew=skew))
        res = {name: simulate(trace, PREFIX_MODEL, fleet(4, **PREFIX_FLEET_SETTINGS), router=route.ROUTERS[name])
               for name in ("least-outstanding", "prefix-cost")}
        mean = {n: np.mean([ttft_s(r) for r in x.records]) for n, x in res.items()}
        assert res["prefix-cost"].prefix_hit_rate > res["least-outstanding"].prefix_hit_rate + 0.1
        assert mean["prefix-cost"] < 0.85 * mean["least-outstanding"], mean
        assert np.bincount(res["prefix-cost"].routed_to, minlength=4).max() < 0.3 * len(trace)


def test_tenant_share_keeps_a_light_tenant_near_its_solo_latency() -> None:
    rng = np.random.default_rng(0)
    trace = multi_tenant_workload({"light": 4.0, "heavy": 40.0}, {"light": 200, "heavy": 2000},
                                  LengthDist(100, 400, max_tokens=1000), LengthDist(20, 80, max_tokens=200), rng)
    model = StepTimeModel((Roof(const_s=0.01, s_per_prefill_token=1e-4),), max_kv_tokens=10 ** 6)

    def light_p99(trace, **kw):
        cfg = ClusterConfig(autoscaling=AutoscalingConfig(min_replicas=2, max_replicas=2, initial_replicas=2),
                            replica=ReplicaConfig(max_num_seqs=8), control_period_s=1000.0, max_ongoing_requests=8, **kw)
        res = simulate(trace, model, cfg, shaper=vtc)
        return np.percentile([ttft_s(r) for r, t in zip(res.records, trace) if t.tenant == "light"], 99)

    solo = light_p99([r for r in trace if r.tenant == "light"])
    assert light_p99(trace) > 1.8 * solo  # VTC alone: the light request waits for a heavy one to finish
    assert light_p99(trace, max_tenant_share=0.7) < 1.5 * solo
    with pytest.raises(ValueError, match="max_tenant_share"):
        ClusterConfig(max_tenant_share=0.5)  # needs max_ongoing_requests
