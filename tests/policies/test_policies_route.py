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
