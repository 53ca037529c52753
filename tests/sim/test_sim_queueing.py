"""Queueing formulas, and the simulator against them on an M/M/c-like setup."""

from __future__ import annotations

import numpy as np
import pytest

from inferlab.metrics import e2e_s, ttft_s
from inferlab.policies.autoscale import AutoscalingConfig
from inferlab.policies.route import power_of_two
from inferlab.sim.cluster import ClusterConfig, simulate
from inferlab.sim.queueing import (allen_cunneen_wait_s, erlang_c, kingman_wait_s, min_servers_for_wait,
                                   mmc_wait_s, supermarket_time_in_system)
from inferlab.sim.replica import ReplicaConfig
from inferlab.sim.steptime import Roof, StepTimeModel
from inferlab.traces import TraceRequest

STEP_S = 0.01


def test_erlang_c_known_values() -> None:
    assert erlang_c(1, 0.5) == pytest.approx(0.5)  # M/M/1: P(wait) = rho
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)  # textbook: c=2, a=1
    assert mmc_wait_s(0.5, 1.0, 1) == pytest.approx(0.5 / (1 - 0.5))  # M/M/1: rho/(mu - lambda)
    assert kingman_wait_s(0.5, 1.0) == pytest.approx(mmc_wait_s(0.5, 1.0, 1))  # exact for M/M/1
    assert allen_cunneen_wait_s(3.0, 1.0, 4, ca2=1, cs2=0) == pytest.approx(mmc_wait_s(3.0, 1.0, 4) / 2)
    assert min_servers_for_wait(10.0, 1.0, 0.1) == 13
    with pytest.raises(ValueError, match="unstable"):
        mmc_wait_s(4.0, 1.0, 4)


def _mmc_sim(num_servers: int, arrival_rate: float, mean_tokens: float, n: int, seed: int,
             is_constant: bool = False) -> float:
    """Mean queueing wait of a simulated fleet of one-at-a-time servers with a central queue."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / arrival_rate, n))
    # service = tokens x STEP_S: constant, or geometric tokens (~exponential service)
    outputs = np.full(n, int(mean_tokens)) if is_constant else rng.geometric(1 / mean_tokens, n)
    trace = [TraceRequest(float(t), 16, int(o)) for t, o in zip(arrivals, outputs)]
    model = StepTimeModel((Roof(STEP_S),), max_kv_tokens=100_000)
    config = ClusterConfig(autoscaling=AutoscalingConfig(min_replicas=num_servers, max_replicas=num_servers,
                                                         initial_replicas=num_servers),
                           replica=ReplicaConfig(max_num_seqs=1), max_ongoing_requests=1, cold_start_s=0)
    records = simulate(trace, model, config).records
    return float(np.mean([ttft_s(r) for r in records])) - STEP_S  # first token = one step after service starts


def test_simulator_matches_kingman_md1() -> None:
    # M/D/1: Kingman with cs^2 = 0 is exact (Pollaczek-Khinchine)
    mean_tokens, rho = 50, 0.7
    arrival_rate = rho / (mean_tokens * STEP_S)
    simulated = _mmc_sim(1, arrival_rate, mean_tokens, 20_000, seed=0, is_constant=True)
    assert simulated == pytest.approx(kingman_wait_s(arrival_rate, mean_tokens * STEP_S, cs2=0.0), rel=0.08)


def test_simulator_matches_erlang_c_mmc() -> None:
    num_servers, rho, mean_tokens = 4, 0.7, 50
    service_rate = 1 / (mean_tokens * STEP_S)
    arrival_rate = rho * num_servers * service_rate
    simulated = _mmc_sim(num_servers, arrival_rate, mean_tokens, 20_000, seed=4)
    # geometric service has cs^2 = 1 - 1/mean: Allen-Cunneen accounts for it
    expected = allen_cunneen_wait_s(arrival_rate, service_rate, num_servers, cs2=1 - 1 / mean_tokens)
    assert simulated == pytest.approx(expected, rel=0.15)
    # and a fleet of 3 at the same load waits much longer (the formula's direction holds)
    assert mmc_wait_s(arrival_rate, service_rate, 3) > 3 * mmc_wait_s(arrival_rate, service_rate, 4)


def test_supermarket_known_values() -> None:
    assert supermarket_time_in_system(0.5, 1) == pytest.approx(2.0)  # M/M/1: 1/(1 - rho)
    # d = 2: 1 + rho^2 + rho^6 + rho^14 + ...
    assert supermarket_time_in_system(0.9, 2) == pytest.approx(sum(0.9 ** (2 ** i - 2) for i in range(1, 12)))
    assert supermarket_time_in_system(0.0, 3) == pytest.approx(1.0)
    assert supermarket_time_in_system(0.9, 3) < supermarket_time_in_system(0.9, 2) < supermarket_time_in_system(0.9, 1)
    with pytest.raises(ValueError, match="load"):
        supermarket_time_in_system(1.0, 2)


def test_simulator_with_power_of_two_matches_the_supermarket_model() -> None:
    # 40 one-at-a-time servers, exponential-ish service (geometric tokens), power-of-two routing at rho 0.8
    num_servers, mean_tokens, rho, n = 40, 20, 0.8, 10_000
    rng = np.random.default_rng(0)
    arrivals = np.cumsum(rng.exponential(mean_tokens * STEP_S / (rho * num_servers), n))
    trace = [TraceRequest(float(t), 16, int(o)) for t, o in zip(arrivals, rng.geometric(1 / mean_tokens, n))]
    config = ClusterConfig(autoscaling=AutoscalingConfig(min_replicas=num_servers, max_replicas=num_servers,
                                                         initial_replicas=num_servers),
                           replica=ReplicaConfig(max_num_seqs=1), cold_start_s=0)
    records = simulate(trace, StepTimeModel((Roof(STEP_S),), max_kv_tokens=100_000), config, router=power_of_two).records
    measured = float(np.mean([e2e_s(r) for r in records])) / (mean_tokens * STEP_S)
    assert measured == pytest.approx(supermarket_time_in_system(rho, 2), rel=0.1)
    assert measured < 0.6 * supermarket_time_in_system(rho, 1)
