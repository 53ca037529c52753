"""The live fleet on a 3-node cluster: router and controller in node 0, replicas in nodes 1 and 2."""

import numpy as np
import pytest

from inferlab.cluster.netns import SUBNET

from .conftest import NEEDS_NAMESPACES

pytestmark = [pytest.mark.slow, NEEDS_NAMESPACES]


def up_then_idle_down(ctx):
    """Two replicas while requests are in flight or queued, back to one after 1 s idle."""
    state = dict(ctx.policy_state)
    if ctx.total_num_requests > 0:
        state["idle_since"] = None
        return 2, state
    state["idle_since"] = state.get("idle_since") or ctx.current_time
    return (1 if ctx.current_time - state["idle_since"] >= 1.0 else ctx.target_num_replicas), state


def test_fleet_across_nodes_scales_and_loses_nothing():
    from inferlab.cluster.fleet import run_cluster_fleet
    from inferlab.policies.autoscale import AutoscalingConfig
    from inferlab.serving.fleet import FleetConfig
    from inferlab.traces import TraceRequest

    rng = np.random.default_rng(0)
    trace = [TraceRequest(0.1 * i, 32, 32) for i in range(80)]
    prompts = [rng.integers(1, 500, 32).tolist() for _ in trace]
    config = FleetConfig(max_num_seqs=4, period_s=0.3,
                         autoscaling=AutoscalingConfig(min_replicas=1, max_replicas=2, initial_replicas=1))
    out = run_cluster_fleet(up_then_idle_down, trace, prompts, config, num_nodes=3)  # waits for the shared lock
    assert out["num_errors"] == 0 and out["num_served"] == len(trace), out["errors"]
    hosts = {r["url"].split("//")[1].split(":")[0] for r in out["replicas"]}
    assert hosts == {f"{SUBNET}.2", f"{SUBNET}.3"}, f"replicas not spread over nodes 1 and 2: {hosts}"
    assert [a for a in out["actions"] if a[2] > a[1]] and [a for a in out["actions"] if a[2] < a[1]], out["actions"]
    assert out["num_forced_stops"] == 0 and not out["policy_errors"]
    assert all(not r["error"] for r in out["replicas"]), [r["error"] for r in out["replicas"]]
