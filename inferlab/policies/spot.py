"""Spot/on-demand mix policies: how many of the replicas the autoscaler wants run on spot.

Floor 1 of inferlab, next to `autoscale.py`: the autoscaler decides *how many*
replicas; a spot policy decides *where* the ones about to be launched go. It is a plain
function `spot_policy(ctx: SpotContext) -> (num_spot_replicas, policy_state)`, called
by the simulator (`inferlab.sim.simulate(..., spot_policy=...)`) whenever replicas
are launched: after a scale-up, and at once on a spot preemption notice (whose
replacement is launched right then). Replicas already running are never moved from
one pool to the other; the count returned is a target for the whole fleet, so
returning fewer spot replicas than are active makes every new launch on-demand.

Shipped: `make_fixed_spot_policy(fraction)` (what `ClusterConfig.spot_fraction` does)
and `notice_aware_spot_policy` (cheap spot while the market is calm; on-demand
replacements for a while after preemption notices).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class SpotContext:
    """What a spot policy sees when replicas are about to be launched.

    Args:
        target_num_replicas: replicas the autoscaler wants (both pools).
        num_spot_replicas: active spot replicas (starting or running, none under notice).
        num_on_demand_replicas: active on-demand replicas.
        spot_price_ratio: spot price / on-demand price per GPU-hour (e.g. 0.35).
        current_time: seconds (simulated clock).
        notice_times_s: times of the preemption notices of the last hour, oldest first.
        spot_notice_s: seconds between a notice and the preemption.
        cold_start_s: seconds from launch to ready.
        policy_state: what the policy returned last time ({} at first).
    """

    target_num_replicas: int
    num_spot_replicas: int
    num_on_demand_replicas: int
    spot_price_ratio: float
    current_time: float
    notice_times_s: tuple[float, ...] = ()
    spot_notice_s: float = 30.0
    cold_start_s: float = 90.0
    policy_state: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if min(self.target_num_replicas, self.num_spot_replicas, self.num_on_demand_replicas) < 0:
            raise ValueError("SpotContext replica counts must be >= 0")
        if not self.spot_price_ratio >= 0:
            raise ValueError(f"SpotContext.spot_price_ratio must be >= 0, got {self.spot_price_ratio}")


SpotPolicy = Callable[[SpotContext], tuple[int, dict[str, Any]]]


def clamp_spot(ctx: SpotContext, num_spot: float) -> int:
    """Round to the nearest count and keep within [0, target_num_replicas]."""
    return int(min(ctx.target_num_replicas, max(0, round(num_spot))))


def make_fixed_spot_policy(fraction: float) -> SpotPolicy:
    """A fixed share of the fleet on spot, whatever happens (ClusterConfig.spot_fraction's rule)."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")

    def fixed_spot_policy(ctx: SpotContext) -> tuple[int, dict[str, Any]]:
        return clamp_spot(ctx, fraction * ctx.target_num_replicas), dict(ctx.policy_state)

    return fixed_spot_policy


def notice_aware_spot_policy(ctx: SpotContext, max_fraction: float = 0.7, calm_s: float = 600.0,
                             break_even_ratio: float = 0.8) -> tuple[int, dict[str, Any]]:
    """Spot for up to `max_fraction` of the fleet while it is cheap and calm.

    No spot when spot costs >= `break_even_ratio` of on-demand (restarts eat the
    saving). After a notice, no new spot for `calm_s` (the replacement is on-demand at
    once), and each further notice in the last hour lowers the share by a quarter.
    """
    state = dict(ctx.policy_state)
    if ctx.spot_price_ratio >= break_even_ratio:
        return 0, state
    now = ctx.current_time
    recent = [t for t in ctx.notice_times_s if now - t <= 3600.0]
    if recent and now - recent[-1] < calm_s:
        return min(ctx.num_spot_replicas, clamp_spot(ctx, max_fraction * ctx.target_num_replicas)), state
    fraction = max_fraction * max(0.0, 1.0 - 0.25 * len(recent))
    return clamp_spot(ctx, math.floor(fraction * ctx.target_num_replicas)), state
