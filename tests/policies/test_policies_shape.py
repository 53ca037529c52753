"""Shaping: token buckets admit and refuse with a retry time; priority and VTC order the queue."""

from __future__ import annotations

import math

import pytest

from inferlab.policies.shape import (
    AdmitContext, Queued, ShapeContext, TenantLimits, admit, make_vtc, parse_tenants, priority_fcfs, take,
)


def test_bucket_refills_at_its_rate_up_to_capacity() -> None:
    ok, _, b = take(None, 3, 0.0, rate_per_s=1.0, capacity=3)
    assert ok and b.level == 0
    ok, wait, b = take(b, 2, 1.0, 1.0, 3)
    assert not ok and wait == pytest.approx(1.0)
    ok, _, b = take(b, 2, 2.0, 1.0, 3)
    assert ok and b.level == pytest.approx(0.0)
    ok, _, b = take(b, 3, 100.0, 1.0, 3)  # capped at capacity, not 98
    assert ok and b.level == 0
    assert take(None, 4, 0.0, 1.0, 3)[1] == math.inf


def test_admit_limits_requests_and_tokens_per_tenant() -> None:
    lim = TenantLimits(max_requests_per_s=2, max_request_burst=2, max_tokens_per_s=100, max_token_burst=150)
    state: dict = {}
    decisions = []
    for t in (0.0, 0.0, 0.0):
        d, state = admit(AdmitContext("a", 10, t, lim, state))
        decisions.append(d.is_admitted)
    assert decisions == [True, True, False]
    d, state = admit(AdmitContext("b", 10, 0.0, lim, state))  # another tenant has its own buckets
    assert d.is_admitted
    d, state = admit(AdmitContext("b", 140, 0.0, lim, state))  # 10 + 140 = 150: the token burst
    assert d.is_admitted
    d, state = admit(AdmitContext("b", 50, 0.1, lim, state))  # 10 tokens refilled, 50 asked
    assert not d.is_admitted and d.retry_after_s == pytest.approx(0.4) and "tokens" in d.reason
    d, _ = admit(AdmitContext("b", 1000, 9.0, lim, state))
    assert not d.is_admitted and math.isinf(d.retry_after_s) and "at most 150" in d.reason


def test_priority_and_vtc_order() -> None:
    q = [Queued("a", 10, 10, 0.0, priority=1), Queued("b", 10, 10, 1.0, priority=0)]
    assert priority_fcfs(ShapeContext(q))[0] == 1
    vtc = make_vtc()
    # heavy sends 10 requests, light 1 per 10: light is served as soon as it has something queued
    queue = [Queued("heavy", 100, 50, float(i)) for i in range(10)] + [Queued("light", 100, 50, 10.0)]
    state: dict = {}
    order = []
    while queue:
        i, state = vtc(ShapeContext(queue, 0.0, state))
        order.append(queue.pop(i).tenant)
    assert order.index("light") <= 1


def test_vtc_counts_tokens_not_requests() -> None:
    vtc = make_vtc()
    # "big" has received 1 request of 1000 tokens; "small" 3 of 10: small has the smaller counter
    queue = [Queued("big", 1000, 0, 0.0), Queued("small", 10, 0, 0.1), Queued("small", 10, 0, 0.2),
             Queued("small", 10, 0, 0.3), Queued("big", 10, 0, 0.4)]
    state: dict = {}
    order = []
    while queue:
        i, state = vtc(ShapeContext(queue, 0.0, state))
        order.append(queue.pop(i).tenant)
    assert order == ["big", "small", "small", "small", "big"]
    assert state["counters"]["big"] == pytest.approx(1010) and state["counters"]["small"] == pytest.approx(30)


def test_vtc_idle_tenant_cannot_bank_credit() -> None:
    vtc = make_vtc(output_weight=0.0)
    state: dict = {"counters": {"a": 1000.0, "b": 0.0}, "backlogged": ("a",)}
    i, state = vtc(ShapeContext([Queued("a", 10, 0, 0.0), Queued("b", 10, 0, 0.1)], 0.0, state))
    assert state["counters"]["b"] >= 1000.0  # lifted to a's counter on return


def test_parse_tenants() -> None:
    t = parse_tenants("gold:rps=10,priority=0; free:rps=1,tps=500,priority=2")
    assert t["free"].max_tokens_per_s == 500 and t["free"].priority == 2 and t["gold"].max_requests_per_s == 10
    with pytest.raises(ValueError, match="bad limit"):
        parse_tenants("x:speed=3")
    with pytest.raises(ValueError, match="must be > 0"):
        parse_tenants("x:rps=0")
