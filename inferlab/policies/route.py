"""Routers: plain functions `router(ctx) -> (replica_index, policy_state)`.

Floor 1 of inferlab, called by the simulator (`inferlab.sim.cluster`) once per
request. `RouteContext` lists the replicas that accept requests, in a fixed order,
with their load; a router returns the index of the one to use.

Shipped: round-robin, least-outstanding (join the shortest queue) and power-of-two
choices (least-outstanding of two replicas drawn at random: Ray Serve's default).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence


@dataclass
class RouteContext:
    """What a router sees for one request.

    Args:
        num_outstanding: per candidate replica, requests queued + running on it.
        kv_utilization: per candidate replica, reserved KV cache fraction (0-1).
        num_prompt_tokens: the request's prompt length.
        policy_state: what the router returned last time ({} at first).
        rng: a seeded `random.Random` owned by the caller (for randomised routers).
    """

    num_outstanding: Sequence[int]
    kv_utilization: Sequence[float]
    num_prompt_tokens: int
    policy_state: dict[str, Any] = field(default_factory=dict)
    rng: random.Random = field(default_factory=lambda: random.Random(0))


Router = Callable[[RouteContext], tuple[int, dict[str, Any]]]


def round_robin(ctx: RouteContext) -> tuple[int, dict[str, Any]]:
    """Each replica in turn."""
    index = ctx.policy_state.get("next", 0) % len(ctx.num_outstanding)
    return index, {"next": index + 1}


def least_outstanding(ctx: RouteContext) -> tuple[int, dict[str, Any]]:
    """The replica with the fewest outstanding requests (lowest index on ties)."""
    loads = ctx.num_outstanding
    return min(range(len(loads)), key=loads.__getitem__), ctx.policy_state


def power_of_two(ctx: RouteContext) -> tuple[int, dict[str, Any]]:
    """Of two replicas drawn at random, the one with fewer outstanding requests."""
    n = len(ctx.num_outstanding)
    if n == 1:
        return 0, ctx.policy_state
    a, b = ctx.rng.sample(range(n), 2)
    return (a if ctx.num_outstanding[a] <= ctx.num_outstanding[b] else b), ctx.policy_state
