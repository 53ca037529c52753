"""The router's gate: a bounded queue in front of the fleet's request slots, ordered by a shaper.

Floor 3 of inferlab, used by `serving/router.py`. With a capacity (slots per replica x healthy
replicas), a request beyond it waits here; when a slot frees, the shaper
(`inferlab.policies.shape`: FCFS, priority, VTC) picks which waiting request goes next. A full
queue refuses with 429 + Retry-After. A client that leaves while queued gives its place up.
With `max_tenant_share`, no tenant holds more than that share of the slots: the rest stay
free for the others, so a light tenant's request starts at once beside a flood instead of
waiting for a flood's request to finish (the engine does not preempt); a lone tenant then
uses only its share (the price of that isolation; `inferlab bench routing` measures both).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from inferlab.policies.shape import Queued, ShapeContext, Shaper
from inferlab.serving.openai_api import ApiError


class Gate:
    """The bounded queue in front of the fleet's slots; a shaper orders it."""

    def __init__(self, shaper: Shaper, capacity: Callable[[], int | None], max_queue: int,
                 max_tenant_share: float | None = None) -> None:
        if max_tenant_share is not None and not 0 < max_tenant_share <= 1:
            raise ValueError(f"max_tenant_share must be in (0, 1], got {max_tenant_share}")
        self.shaper, self.capacity, self.max_queue = shaper, capacity, max_queue
        self.max_tenant_share = max_tenant_share
        self.num_in_flight = 0
        self.num_in_flight_by_tenant: dict[str, int] = {}
        self.queue: list[tuple[Queued, asyncio.Future]] = []
        self.state: dict[str, Any] = {}

    def _has_room(self, tenant: str, cap: int) -> bool:
        if self.max_tenant_share is None:
            return True
        return self.num_in_flight_by_tenant.get(tenant, 0) < max(1, int(self.max_tenant_share * cap))

    def _dispatch(self, tenant: str) -> None:
        self.num_in_flight += 1
        self.num_in_flight_by_tenant[tenant] = self.num_in_flight_by_tenant.get(tenant, 0) + 1

    async def enter(self, item: Queued) -> None:
        cap = self.capacity()
        if cap is None or (self.num_in_flight < cap and self._has_room(item.tenant, cap)
                           and not any(self._has_room(q.tenant, cap) for q, _ in self.queue)):
            self._dispatch(item.tenant)
            if cap is not None:  # the shaper sees every dispatch (VTC counts this one too)
                _, self.state = self.shaper(ShapeContext([item], time.monotonic(), self.state))
            return
        if len(self.queue) >= self.max_queue:
            raise ApiError(429, f"the router's queue is full ({self.max_queue} requests waiting)", None,
                           {"Retry-After": "1"})
        fut = asyncio.get_running_loop().create_future()
        self.queue.append((item, fut))
        try:
            await fut
        except asyncio.CancelledError:  # the client left while queued
            if fut.done() and not fut.cancelled():
                self.leave(item.tenant)
            else:
                self.queue = [(q, f) for q, f in self.queue if f is not fut]
            raise

    def leave(self, tenant: str) -> None:
        self.num_in_flight -= 1
        self.num_in_flight_by_tenant[tenant] -= 1
        self.pump()

    def pump(self) -> None:
        cap = self.capacity()
        while self.queue and (cap is None or self.num_in_flight < cap):
            positions = [i for i, (q, _) in enumerate(self.queue) if cap is None or self._has_room(q.tenant, cap)]
            if not positions:  # every waiting tenant holds its share: a finish frees one
                return
            pick, self.state = self.shaper(ShapeContext([self.queue[i][0] for i in positions], time.monotonic(),
                                                        self.state))
            item, fut = self.queue.pop(positions[pick])
            if not fut.done():
                self._dispatch(item.tenant)
                fut.set_result(None)
