"""sim/fleet.py: the bill (launch to stop, warm fleet from t=0, x GPUs x price) and the re-exports."""

import math

import pytest

import inferlab.sim as sim
from inferlab.sim import cluster, fleet
from inferlab.sim.fleet import DRAINING, RUNNING, STARTING, STOPPED, ClusterConfig, Node, bill_nodes


def _node(pool: str, launch_s: float, state: str = RUNNING, stop_s: float | None = None) -> Node:
    node = Node(None, pool, launch_s)  # type: ignore[arg-type]  # billing never reads the replica
    node.state = state
    if stop_s is not None:
        node.stop(stop_s)
    return node


def test_bill_counts_launch_to_stop_per_pool_times_gpus_and_price() -> None:
    config = ClusterConfig(num_gpus_per_replica=2, on_demand_usd_per_gpu_hour=3.0, spot_usd_per_gpu_hour=1.0)
    nodes = [_node("on_demand", -90.0, stop_s=1800.0),   # warm initial fleet: billed from t=0
             _node("spot", 600.0, stop_s=2400.0),         # 1800 s
             _node("spot", 1200.0, state=DRAINING),        # still up: billed until the end (3600 s)
             _node("on_demand", 3000.0, state=STARTING)]   # 600 s
    gpu_hours, cost = bill_nodes(nodes, 3600.0, config)
    assert gpu_hours["on_demand"] == pytest.approx((1800 + 600) * 2 / 3600)
    assert gpu_hours["spot"] == pytest.approx((1800 + 2400) * 2 / 3600)
    assert cost == pytest.approx(3.0 * gpu_hours["on_demand"] + 1.0 * gpu_hours["spot"])


def test_stop_never_bills_before_launch() -> None:
    node = _node("spot", 500.0, state=STARTING)
    assert math.isnan(node.stop_s)
    node.stop(100.0)  # a cancelled start stamped with an earlier drain time
    assert node.state == STOPPED and node.stop_s == 500.0
    assert bill_nodes([node], 1000.0, ClusterConfig())[0]["spot"] == 0.0


def test_compute_utilization_is_time_weighted_since_last_sample() -> None:
    class _Busy:
        budget_busy_s = 0.0

    node = Node(_Busy(), "on_demand", 0.0)  # type: ignore[arg-type]
    node.replica.budget_busy_s = 5.0
    assert node.compute_utilization(10.0) == pytest.approx(0.5)
    node.replica.budget_busy_s = 25.0
    assert node.compute_utilization(20.0) == 1.0  # capped
    assert node.compute_utilization(20.0) == 0.0  # no time passed


def test_cluster_and_package_reexport_the_fleet_types() -> None:
    assert cluster.ClusterConfig is fleet.ClusterConfig is sim.ClusterConfig
    assert cluster.SimResult is fleet.SimResult is sim.SimResult
    assert sim.simulate is cluster.simulate
    with pytest.raises(ValueError, match="spot_fraction"):
        ClusterConfig(spot_fraction=1.5)
