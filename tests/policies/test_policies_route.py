"""Routers pick replicas as documented."""

from __future__ import annotations

import random

from inferlab.policies.route import RouteContext, least_outstanding, power_of_two, round_robin


def test_round_robin_cycles() -> None:
    state: dict = {}
    picks = []
    for _ in range(6):
        i, state = round_robin(RouteContext([0, 0, 0], [0, 0, 0], 10, state))
        picks.append(i)
    assert picks == [0, 1, 2, 0, 1, 2]


def test_least_outstanding_and_power_of_two() -> None:
    assert least_outstanding(RouteContext([3, 1, 2], [0, 0, 0], 10))[0] == 1
    rng = random.Random(0)
    picks = [power_of_two(RouteContext([5, 0, 5, 5], [0] * 4, 10, {}, rng))[0] for _ in range(200)]
    assert picks.count(1) > 80  # replica 1 wins whenever it is drawn (half the time)
    assert power_of_two(RouteContext([7], [0], 10))[0] == 0


# ---------------------------------------------------------------- new policies
from collections import Counter  # noqa: E402

from inferlab.policies.route import (  # noqa: E402
    make_prefix_aware, make_prefix_load, prompt_block_hashes, session_affinity,
)


def _ctx(loads, state, *, hashes=(), key=None, ids=(), pending=(), prompt=64):
    return RouteContext(list(loads), [0.0] * len(loads), prompt, state, random.Random(0), tuple(hashes), key,
                        0.0, tuple(ids), tuple(pending))


def test_block_hashes_chain_shared_prefixes() -> None:
    a = prompt_block_hashes(list(range(40)), 16)
    b = prompt_block_hashes(list(range(32)) + [99] * 16, 16)
    assert len(a) == 2 and a == b[:2] and len(b) == 3
    c = prompt_block_hashes([1] + list(range(1, 40)), 16)
    assert c[0] != a[0] and c[1] != a[1]  # a different first block changes every later hash


def test_context_rejects_mismatched_lengths() -> None:
    import pytest
    with pytest.raises(ValueError, match="replica_ids"):
        RouteContext([0, 0], [0, 0], 1, replica_ids=("a",))
    with pytest.raises(ValueError, match="at least one"):
        RouteContext([], [], 1)


def test_session_affinity_sticks_and_moves_only_the_lost_replicas_sessions() -> None:
    state: dict = {}
    keys = [f"user{i}" for i in range(300)]
    first = {}
    for k in keys:
        i, state = session_affinity(_ctx([5, 0, 9], state, key=k, ids=("a", "b", "c")))
        first[k] = ("a", "b", "c")[i]
    assert 50 < min(Counter(first.values()).values())  # spread over the three
    for k in keys[:20]:  # same key, same replica, whatever the load
        i, state = session_affinity(_ctx([0, 100, 100], state, key=k, ids=("a", "b", "c")))
        assert ("a", "b", "c")[i] == first[k]
    moved = 0
    for k in keys:  # "b" leaves: only its sessions move
        i, state = session_affinity(_ctx([0, 0], state, key=k, ids=("a", "c")))
        moved += ("a", "c")[i] != first[k]
        if first[k] != "b":
            assert ("a", "c")[i] == first[k]
    assert moved == sum(v == "b" for v in first.values())
    assert session_affinity(_ctx([3, 1, 2], {}, ids=("a", "b", "c")))[0] == 1  # no key: least outstanding


def test_prefix_aware_follows_the_warm_replica_and_evicts() -> None:
    router = make_prefix_aware(max_blocks_per_replica=4)
    sys_a, sys_b = prompt_block_hashes(list(range(48))), prompt_block_hashes(list(range(100, 148)))
    i_a, state = router(_ctx([0, 0, 0], {}, hashes=sys_a))
    i_b, state = router(_ctx([0, 0, 0] if i_a else [1, 0, 0], state, hashes=sys_b))
    assert i_a != i_b
    for _ in range(5):  # warm beats load
        assert router(_ctx([9, 9, 0], state, hashes=sys_a))[0] == i_a
    assert all(len(index) <= 4 for index in state["index"].values())
    other = prompt_block_hashes(list(range(500, 564)))  # 4 new blocks push sys_a out of i_a's index
    state["index"][i_a]  # exists
    from inferlab.policies.route import remember_blocks
    remember_blocks(state["index"][i_a], other, 4)
    assert router(_ctx([9, 9, 0], state, hashes=sys_a))[0] == 2  # evicted: by load


def test_prefix_load_leaves_a_hot_replica() -> None:
    router = make_prefix_load(max_pending_prefill_tokens=100)
    hashes = prompt_block_hashes(list(range(64)))
    i, state = router(_ctx([0, 0], {}, hashes=hashes, prompt=80))
    j, state = router(_ctx([1, 1], state, hashes=hashes, pending=(50, 0) if i == 0 else (0, 50), prompt=80))
    assert j == i  # warm and keeping up (50 + 16 uncached <= 100)
    k, state = router(_ctx([5, 0] if i == 0 else [0, 5], state, hashes=hashes,
                           pending=(95, 0) if i == 0 else (0, 95), prompt=80))
    assert k != i  # warm but behind: by load
