"""Traffic shaping: admit or defer (token buckets), and who goes next (priority, VTC).

Floor 1 of inferlab: plain functions of a context, run by the real router
(`inferlab.serving.router`) and by the simulator's shaped queue (`inferlab.sim.shaped`).

- Admission: `admit(ctx) -> (Admission, state)`: per-tenant token buckets, one for
  requests and one for tokens (prompt + max output). A refused request is told when the
  buckets will hold enough (`retry_after_s`, the HTTP Retry-After).
- Order: a shaper `shaper(ctx) -> (position, state)` picks which queued request is
  dispatched next. `fcfs`, `priority_fcfs` (strict priority classes, FCFS inside) and
  `vtc`: the Virtual Token Counter of "Fairness in Serving Large Language Models"
  (Sheng et al., OSDI '24): each tenant's counter grows by the tokens it was served,
  input weighted `input_weight` and output `output_weight` (the paper's w_p = 1, w_q = 2);
  the backlogged tenant with the smallest counter goes next, and a tenant that was idle
  is lifted to the smallest counter of the backlogged ones so it cannot bank credit.
  Here a request's output is charged at dispatch by its `max_tokens` (the paper's
  variant with a known output length), so the shaper needs no callback per token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

VTC_INPUT_WEIGHT = 1.0
VTC_OUTPUT_WEIGHT = 2.0


@dataclass(frozen=True)
class TenantLimits:
    """One tenant's rate limits (`None`: unlimited) and priority class (lower runs first)."""

    max_requests_per_s: float | None = None
    max_request_burst: float | None = None
    max_tokens_per_s: float | None = None
    max_token_burst: float | None = None
    priority: int = 0

    def __post_init__(self) -> None:
        for name in ("max_requests_per_s", "max_request_burst", "max_tokens_per_s", "max_token_burst"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"TenantLimits.{name} must be > 0 or None, got {value}")


@dataclass(frozen=True)
class Bucket:
    """A token bucket: `level` tokens at time `updated_s`; refills at `rate_per_s` up to `capacity`."""

    level: float
    updated_s: float


def refill(bucket: Bucket | None, now_s: float, rate_per_s: float, capacity: float) -> Bucket:
    """The bucket at `now_s` (a new bucket starts full)."""
    if bucket is None:
        return Bucket(capacity, now_s)
    elapsed = max(0.0, now_s - bucket.updated_s)
    return Bucket(min(capacity, bucket.level + elapsed * rate_per_s), now_s)


def take(bucket: Bucket | None, cost: float, now_s: float, rate_per_s: float,
         capacity: float) -> tuple[bool, float, Bucket]:
    """Try to take `cost` tokens: (taken, seconds until it could be, the bucket after).

    A cost above `capacity` can never be taken: wait is `math.inf`.
    """
    current = refill(bucket, now_s, rate_per_s, capacity)
    if cost <= current.level:
        return True, 0.0, Bucket(current.level - cost, now_s)
    if cost > capacity:
        return False, math.inf, current
    return False, (cost - current.level) / rate_per_s, current


@dataclass
class AdmitContext:
    """One arriving request, for `admit`.

    Args:
        tenant: who sends it.
        num_tokens: its token cost (prompt tokens + max output tokens).
        now_s: the caller's clock (s).
        limits: the tenant's limits.
        policy_state: what `admit` returned last time ({} at first).
    """

    tenant: str
    num_tokens: int
    now_s: float
    limits: TenantLimits
    policy_state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Admission:
    is_admitted: bool
    retry_after_s: float = 0.0
    reason: str = ""


def admit(ctx: AdmitContext) -> tuple[Admission, dict[str, Any]]:
    """Both of the tenant's buckets must hold enough; a refused request takes nothing."""
    lim, state = ctx.limits, dict(ctx.policy_state)
    checks = []
    if lim.max_requests_per_s is not None:
        checks.append(("requests", 1.0, lim.max_requests_per_s, lim.max_request_burst or lim.max_requests_per_s))
    if lim.max_tokens_per_s is not None:
        checks.append(("tokens", float(ctx.num_tokens), lim.max_tokens_per_s, lim.max_token_burst or lim.max_tokens_per_s))
    after, waits = {}, []
    for kind, cost, rate, capacity in checks:
        key = (ctx.tenant, kind)
        ok, wait, bucket = take(state.get(key), cost, ctx.now_s, rate, capacity)
        after[key] = bucket if ok else refill(state.get(key), ctx.now_s, rate, capacity)
        if not ok:
            waits.append((wait, kind, cost, capacity))
    if waits:
        wait, kind, cost, capacity = max(waits)
        reason = (f"tenant {ctx.tenant!r} asks {cost:.0f} {kind} but its bucket holds at most {capacity:.0f}"
                  if math.isinf(wait) else f"tenant {ctx.tenant!r} is over its {kind} rate limit")
        return Admission(False, wait, reason), state  # nothing taken
    state.update(after)
    return Admission(True), state


# ---------------------------------------------------------------- order
@dataclass(frozen=True)
class Queued:
    """A request waiting in the shaper's queue."""

    tenant: str
    num_prompt_tokens: int
    num_output_tokens: int
    arrival_s: float
    priority: int = 0


@dataclass
class ShapeContext:
    """The queue, oldest first, for a shaper to pick from.

    Args:
        queue: waiting requests in arrival order (not empty).
        now_s: the caller's clock (s).
        policy_state: what the shaper returned last time ({} at first).
    """

    queue: Sequence[Queued]
    now_s: float = 0.0
    policy_state: dict[str, Any] = field(default_factory=dict)


Shaper = Callable[[ShapeContext], tuple[int, dict[str, Any]]]


def fcfs(ctx: ShapeContext) -> tuple[int, dict[str, Any]]:
    """The oldest request."""
    return 0, ctx.policy_state


def priority_fcfs(ctx: ShapeContext) -> tuple[int, dict[str, Any]]:
    """The oldest request of the most urgent (lowest) priority class."""
    return min(range(len(ctx.queue)), key=lambda i: (ctx.queue[i].priority, i)), ctx.policy_state


def vtc_cost(request: Queued, input_weight: float = VTC_INPUT_WEIGHT,
             output_weight: float = VTC_OUTPUT_WEIGHT) -> float:
    """The service a request counts for in VTC: weighted input plus output tokens."""
    return input_weight * request.num_prompt_tokens + output_weight * request.num_output_tokens


def make_vtc(input_weight: float = VTC_INPUT_WEIGHT, output_weight: float = VTC_OUTPUT_WEIGHT) -> Shaper:
    """The VTC shaper (see the module docstring); priority classes first, VTC inside a class."""

    def vtc(ctx: ShapeContext) -> tuple[int, dict[str, Any]]:
        counters: dict[str, float] = dict(ctx.policy_state.get("counters", {}))
        backlogged = {r.tenant for r in ctx.queue}
        before = set(ctx.policy_state.get("backlogged", ())) & backlogged
        floor = min((counters.get(t, 0.0) for t in before), default=None)
        for tenant in backlogged - before:  # counter lift: a tenant back from idle cannot bank credit
            counters[tenant] = max(counters.get(tenant, 0.0), floor if floor is not None else 0.0)
        top = min(r.priority for r in ctx.queue)
        first: dict[str, int] = {}
        for i, r in enumerate(ctx.queue):
            if r.priority == top and r.tenant not in first:
                first[r.tenant] = i
        tenant = min(first, key=lambda t: (counters[t], first[t]))
        pick = first[tenant]
        counters[tenant] += vtc_cost(ctx.queue[pick], input_weight, output_weight)
        rest = backlogged if any(r.tenant == tenant for j, r in enumerate(ctx.queue) if j != pick) \
            else backlogged - {tenant}
        return pick, {**ctx.policy_state, "counters": counters, "backlogged": tuple(sorted(rest))}

    return vtc


vtc = make_vtc()

SHAPERS: Mapping[str, Shaper] = {"fcfs": fcfs, "priority": priority_fcfs, "vtc": vtc}


def parse_tenants(spec: str) -> dict[str, TenantLimits]:
    """Tenants from `name:key=value,key=value;name2:...` (keys: rps, burst, tps, token_burst, priority)."""
    keys = {"rps": "max_requests_per_s", "burst": "max_request_burst", "tps": "max_tokens_per_s",
            "token_burst": "max_token_burst", "priority": "priority"}
    out: dict[str, TenantLimits] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        name, _, rest = part.partition(":")
        kwargs: dict[str, Any] = {}
        for item in filter(None, (i.strip() for i in rest.split(","))):
            key, eq, value = item.partition("=")
            if not eq or key not in keys:
                raise ValueError(f"tenant {name!r}: bad limit {item!r}; use key=value with key in {', '.join(keys)}")
            try:
                kwargs[keys[key]] = int(value) if key == "priority" else float(value)
            except ValueError:
                raise ValueError(f"tenant {name!r}: {key}={value!r} is not a number") from None
        if not name.strip():
            raise ValueError(f"tenant spec {part!r} has no name")
        out[name.strip()] = TenantLimits(**kwargs)
    return out
