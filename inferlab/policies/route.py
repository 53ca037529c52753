"""Routers: plain functions `router(ctx) -> (replica_index, policy_state)`.

Floor 1 of inferlab, called once per request by the simulator (`inferlab.sim.cluster`)
and by the real router (`inferlab.serving.router`): the very same functions.
`RouteContext` lists the replicas that accept requests, in a fixed order, with their
load; a router returns the index of the one to use and its new state.

Shipped: round-robin, least-outstanding (join the shortest queue), power-of-two choices
(least-outstanding of two replicas drawn at random: Ray Serve's default), session
affinity (consistent hash ring on a session key), prefix-aware (hash chain of the
prompt's blocks against an approximate per-replica LRU index, as llm-d's approximate
prefix scorer) and prefix-plus-load (stay on the cache-warm replica until its pending
uncached prefill exceeds a threshold, then route by load) and prefix-cost (the replica with the
least pending plus uncached prefill: Mooncake's estimated-TTFT choice).

Replicas are named by `replica_ids` (stable across ejections and restarts): state that
outlives one call (an index, a ring) is keyed by id, never by position.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

DEFAULT_BLOCK_SIZE = 16  # tokens per hashed prompt block (the engine's KV block size)


@dataclass
class RouteContext:
    """What a router sees for one request.

    Args:
        num_outstanding: per candidate replica, requests queued + running on it.
        kv_utilization: per candidate replica, reserved KV cache fraction (0-1).
        num_prompt_tokens: the request's prompt length.
        policy_state: what the router returned last time ({} at first).
        rng: a seeded `random.Random` owned by the caller (for randomised routers).
        block_hashes: chained hashes of the prompt's full blocks (`prompt_block_hashes`); () when unknown.
        session_key: the request's session (a header, a user id); None when it has none.
        now_s: the caller's clock (s), for policies that age their state.
        replica_ids: per candidate replica, a stable id (default: positions 0..n-1).
        num_pending_prefill_tokens: per candidate replica, prompt tokens sent to it whose
            prefill has not finished (default: zeros).
        block_size: tokens per hashed block.
        num_waiting: per candidate replica, requests the replica itself reports queued (the real
            router reads its /metrics; the simulator its waiting queue; default: zeros).
    """

    num_outstanding: Sequence[int]
    kv_utilization: Sequence[float]
    num_prompt_tokens: int
    policy_state: dict[str, Any] = field(default_factory=dict)
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    block_hashes: Sequence[int] = ()
    session_key: str | None = None
    now_s: float = 0.0
    replica_ids: Sequence[Hashable] = ()
    num_pending_prefill_tokens: Sequence[int] = ()
    block_size: int = DEFAULT_BLOCK_SIZE
    num_waiting: Sequence[int] = ()

    def __post_init__(self) -> None:
        n = len(self.num_outstanding)
        if n < 1:
            raise ValueError("RouteContext needs at least one candidate replica (num_outstanding is empty)")
        if not self.replica_ids:
            self.replica_ids = tuple(range(n))
        if not self.num_pending_prefill_tokens:
            self.num_pending_prefill_tokens = (0,) * n
        if not self.num_waiting:
            self.num_waiting = (0,) * n
        for name in ("kv_utilization", "replica_ids", "num_pending_prefill_tokens", "num_waiting"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"RouteContext.{name} has {len(getattr(self, name))} entries, "
                                 f"num_outstanding has {n}")


Router = Callable[[RouteContext], tuple[int, dict[str, Any]]]


def prompt_block_hashes(token_ids: Sequence[int], block_size: int = DEFAULT_BLOCK_SIZE) -> tuple[int, ...]:
    """Chained hashes of the full blocks of a prompt: block i's hash covers tokens [0, (i+1)*B).

    Deterministic across processes (ints hash to themselves), so two prompts share the
    first k hashes exactly when they share their first k full blocks.
    """
    out, prev = [], 0
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        prev = hash((prev, tuple(token_ids[start:start + block_size])))
        out.append(prev)
    return tuple(out)


def round_robin(ctx: RouteContext) -> tuple[int, dict[str, Any]]:
    """Each replica in turn."""
    index = ctx.policy_state.get("next", 0) % len(ctx.num_outstanding)
    return index, {**ctx.policy_state, "next": index + 1}


def random_choice(ctx: RouteContext) -> tuple[int, dict[str, Any]]:
    """A replica drawn uniformly at random (the supermarket model's d = 1)."""
    return ctx.rng.randrange(len(ctx.num_outstanding)), ctx.policy_state


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


# ---------------------------------------------------------------- session affinity
def _stable_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def make_session_affinity(num_virtual_nodes: int = 64, fallback: Router = least_outstanding) -> Router:
    """Consistent hashing of `ctx.session_key` onto a ring of `num_virtual_nodes` points per replica.

    A replica's leaving moves only its own sessions; requests without a key go to `fallback`.
    """
    if num_virtual_nodes < 1:
        raise ValueError(f"num_virtual_nodes must be >= 1, got {num_virtual_nodes}")

    def session_affinity(ctx: RouteContext) -> tuple[int, dict[str, Any]]:
        if ctx.session_key is None:
            return fallback(ctx)
        ids = tuple(ctx.replica_ids)
        ring = ctx.policy_state.get("ring")
        if ring is None or ring[0] != ids:  # rebuilt only when the set of replicas changes
            points = sorted((_stable_hash(f"{rid}#{v}"), i) for i, rid in enumerate(ids)
                            for v in range(num_virtual_nodes))
            ring = (ids, [p for p, _ in points], [i for _, i in points])
        _, keys, owners = ring
        at = bisect.bisect(keys, _stable_hash(ctx.session_key)) % len(keys)
        return owners[at], {**ctx.policy_state, "ring": ring}

    return session_affinity


session_affinity = make_session_affinity()


# ---------------------------------------------------------------- prefix-aware
def num_matched_blocks(index: "OrderedDict[int, None]", block_hashes: Sequence[int]) -> int:
    """Leading blocks of the chain found in a replica's index."""
    num = 0
    for h in block_hashes:
        if h not in index:
            break
        num += 1
    return num


def remember_blocks(index: "OrderedDict[int, None]", block_hashes: Sequence[int], max_blocks: int) -> None:
    """Mark the blocks most recently used on this replica, evicting the least recently used past `max_blocks`."""
    for h in block_hashes:
        index[h] = None
        index.move_to_end(h)
    while len(index) > max_blocks:
        index.popitem(last=False)


def _warmest(ctx: RouteContext, indexes: dict) -> tuple[int, int]:
    """(index of the replica with the longest cached prefix, its matched blocks); least loaded on ties."""
    best, best_key = 0, None
    for i, rid in enumerate(ctx.replica_ids):
        matched = num_matched_blocks(indexes.get(rid, OrderedDict()), ctx.block_hashes)
        key = (-matched, ctx.num_outstanding[i], i)
        if best_key is None or key < best_key:
            best, best_key = i, key
    return best, -best_key[0]


def make_prefix_aware(max_blocks_per_replica: int = 4096, min_matched_blocks: int = 1,
                      fallback: Router = least_outstanding) -> Router:
    """The replica whose approximate index holds the longest prefix of the prompt's block chain.

    The index (per replica id, in `policy_state["index"]`) is what this router sent there,
    kept LRU up to `max_blocks_per_replica` blocks: it approximates the replica's prefix cache
    without asking it. Fewer than `min_matched_blocks` matched anywhere: `fallback` (by load).
    """
    if max_blocks_per_replica < 1 or min_matched_blocks < 1:
        raise ValueError("max_blocks_per_replica and min_matched_blocks must be >= 1")

    def prefix_aware(ctx: RouteContext) -> tuple[int, dict[str, Any]]:
        indexes = ctx.policy_state.get("index", {})
        best, matched = _warmest(ctx, indexes)
        state = ctx.policy_state
        if matched < min_matched_blocks:
            best, state = fallback(ctx)
        index = indexes.setdefault(ctx.replica_ids[best], OrderedDict())
        remember_blocks(index, ctx.block_hashes, max_blocks_per_replica)
        return best, {**state, "index": indexes}

    return prefix_aware


prefix_aware = make_prefix_aware()


def make_prefix_load(max_pending_prefill_tokens: int = 2048, max_blocks_per_replica: int = 4096,
                     fallback: Router = least_outstanding) -> Router:
    """Prefix-aware while the warm replica keeps up, by load once it does not.

    Stay on the replica with the longest cached prefix unless its pending prefill plus this
    request's uncached tokens would exceed `max_pending_prefill_tokens`; then `fallback`.
    """
    if max_pending_prefill_tokens < 0 or max_blocks_per_replica < 1:
        raise ValueError("max_pending_prefill_tokens must be >= 0 and max_blocks_per_replica >= 1")

    def prefix_load(ctx: RouteContext) -> tuple[int, dict[str, Any]]:
        indexes = ctx.policy_state.get("index", {})
        best, matched = _warmest(ctx, indexes)
        uncached = max(0, ctx.num_prompt_tokens - matched * ctx.block_size)
        state = ctx.policy_state
        if matched == 0 or ctx.num_pending_prefill_tokens[best] + uncached > max_pending_prefill_tokens:
            best, state = fallback(ctx)
        remember_blocks(indexes.setdefault(ctx.replica_ids[best], OrderedDict()), ctx.block_hashes,
                        max_blocks_per_replica)
        return best, {**state, "index": indexes}

    return prefix_load


prefix_load = make_prefix_load()


def make_prefix_cost(max_blocks_per_replica: int = 4096) -> Router:
    """The replica where this request's first token comes soonest by an estimate in prefill tokens.

    Each replica's cost is its pending prefill (`num_pending_prefill_tokens`) plus this prompt's
    tokens that its approximate index does not hold; the cheapest wins (fewest outstanding on
    ties). A short shared match (a system prompt every replica holds) weighs one block, a long
    session history many, and a warm replica with a long queue loses to a cold idle one: the
    KV-cache-centric choice of Mooncake's Conductor (Qin et al., FAST '25), with the router's
    own index in place of the cache's reports.
    """
    if max_blocks_per_replica < 1:
        raise ValueError(f"max_blocks_per_replica must be >= 1, got {max_blocks_per_replica}")

    def prefix_cost(ctx: RouteContext) -> tuple[int, dict[str, Any]]:
        indexes = ctx.policy_state.get("index", {})
        best, best_key = 0, None
        for i, rid in enumerate(ctx.replica_ids):
            matched = num_matched_blocks(indexes.get(rid, OrderedDict()), ctx.block_hashes)
            uncached = max(0, ctx.num_prompt_tokens - matched * ctx.block_size)
            key = (ctx.num_pending_prefill_tokens[i] + uncached, ctx.num_outstanding[i], i)
            if best_key is None or key < best_key:
                best, best_key = i, key
        remember_blocks(indexes.setdefault(ctx.replica_ids[best], OrderedDict()), ctx.block_hashes,
                        max_blocks_per_replica)
        return best, {**ctx.policy_state, "index": indexes}

    return prefix_cost


prefix_cost = make_prefix_cost()

ROUTERS: dict[str, Router] = {
    "round-robin": round_robin,
    "random": random_choice,
    "least-outstanding": least_outstanding,
    "power-of-two": power_of_two,
    "session-affinity": session_affinity,
    "prefix-aware": prefix_aware,
    "prefix-load": prefix_load,
    "prefix-cost": prefix_cost,
}
