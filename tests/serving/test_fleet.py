"""The live fleet controller: real `inferlab serve` processes behind the router, scaled by a policy."""

import asyncio
import math

import numpy as np
import pytest

from inferlab.policies.autoscale import AutoscalingConfig, clamp, metric_values
from inferlab.serving.fleet import FleetConfig, live_fleet, oracle_replica_seconds
from inferlab.serving.loadgen import run_load
from inferlab.traces import TraceRequest

pytestmark = pytest.mark.slow


def busy_policy(ctx):
    """Up by one while replicas are more than half busy or queue; down by one after 2 s idle."""
    state = dict(ctx.policy_state)
    busy = sum(metric_values(ctx, "compute_utilization")) + sum(metric_values(ctx, "num_waiting_requests"))
    if busy > 0.5 * max(ctx.current_num_replicas, 1) and ctx.num_starting_replicas == 0:
        state["idle_since"] = None
        return clamp(ctx, ctx.target_num_replicas + 1), state
    if ctx.total_num_requests > 0:
        state["idle_since"] = None
        return ctx.target_num_replicas, state
    idle_since = state.setdefault("idle_since", ctx.current_time) or ctx.current_time
    state["idle_since"] = idle_since
    if ctx.current_time - idle_since >= 2.0:
        state["idle_since"] = None
        return clamp(ctx, ctx.target_num_replicas - 1), state
    return ctx.target_num_replicas, state


def test_scales_up_under_load_and_down_after_without_losing_a_request():
    # one sequence at a time per replica and 20 requests/s of 144 tokens (2,880 tokens/s at batch 1, a step
    # every 0.35 ms with HTTP streaming on top): a queue builds on one replica, so the policy must scale up.
    # (48 tokens, 960 tokens/s, stopped queueing once the engine's C kernels made a batch-1 step ~1 ms.)
    num_output_tokens = 144
    config = FleetConfig(max_num_seqs=1, autoscaling=AutoscalingConfig(min_replicas=1, max_replicas=2,
                                                                       initial_replicas=1), period_s=0.3)
    rng = np.random.default_rng(0)
    trace = [TraceRequest(0.05 * i, 32, num_output_tokens) for i in range(100)]
    prompts = [rng.integers(1, 500, 32).tolist() for _ in trace]
    with live_fleet(busy_policy, config) as fleet:
        records, errors = asyncio.run(run_load(fleet.base_url, "tiny", trace, prompts, timeout_s=120))
        assert fleet.wait_until(lambda f: f.target == 1 and not f.in_state("draining"), timeout_s=30), \
            f"the fleet did not scale back to 1 after the load: {fleet.timeline[-1]}"
        timeline, actions, replicas = list(fleet.timeline), list(fleet.actions), list(fleet.replicas)
        stats = fleet.router.stats_json()
    assert errors == [] and len(records) == len(trace), f"{len(errors)} requests lost: {errors[:3]}"
    assert all(r.num_output_tokens == num_output_tokens for r in records), "a request was cut short"
    assert max(row["num_running_on_demand"] for row in timeline) >= 2, f"never scaled up: {actions}"
    assert [a for a in actions if a[2] > a[1]] and [a for a in actions if a[2] < a[1]], actions
    served = {r["url"]: r["num_requests"] for r in stats["replicas"]}
    assert len(replicas) >= 2 and all(not r.error for r in replicas), [r.error for r in replicas]
    assert all(r.ready_s - r.launch_s > 0 for r in replicas), "a cold start is the real process start"
    assert fleet.num_forced_stops == 0, "a draining replica was stopped with requests in flight"
    assert sum(served.values()) <= len(trace) and len(served) == 1, "the pool holds the one replica left"


def test_oracle_replica_seconds():
    # 30 tokens in the first 10 s window (3 replicas at 1 token/s), none in the second (the minimum, 1)
    assert oracle_replica_seconds([1.0] * 30, 20.0, 1.0) == 3 * 10 + 1 * 10
    assert math.isclose(oracle_replica_seconds([0.5], 5.0, 1.0), 5.0), "a partial window bills its span"
    with pytest.raises(ValueError, match="replica_tokens_per_s"):
        oracle_replica_seconds([1.0], 10.0, 0.0)


def test_bad_config_names_the_field():
    with pytest.raises(ValueError, match="max_num_seqs"):
        FleetConfig(max_num_seqs=0)
    with pytest.raises(ValueError, match="--port"):
        FleetConfig(server_args=("--port", "1"))
