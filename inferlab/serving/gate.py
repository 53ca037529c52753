"""The router's gate: a bounded queue in front of the fleet's request slots, ordered by a shaper.

Floor 3 of inferlab, used by `serving/router.py`. With a capacity (slots per replica x healthy
replicas), a request beyond it waits here; when a slot frees, the shaper
(`inferlab.policies.shape`: FCFS, priority, VTC) picks which waiting request goes next. A full
queue refuses with 429 + Retry-After. A client that leaves while queued gives its place up.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from inferlab.policies.shape import Queued, ShapeContext, Shaper
from inferlab.serving.openai_api import ApiError


class Gate:
    """The bounded queue in front of the fleet's slots; a shaper orders it."""

    def __init__(self, shaper: Shaper, capacity: Callable[[], int | None], max_queue: int) -> None:
        self.shaper, self.capacity, self.max_queue = shaper, capacity, max_queue
        self.num_in_flight = 0
        self.queue: list[tuple[Queued, asyncio.Future]] = []
        self.state: dict[str, Any] = {}

    async def enter(self, item: Queued) -> None:
        cap = self.capacity()
        if cap is None or (not self.queue and self.num_in_flight < cap):
            self.num_in_flight += 1
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
                self.leave()
            else:
                self.queue = [(q, f) for q, f in self.queue if f is not fut]
            raise

    def leave(self) -> None:
        self.num_in_flight -= 1
        self.pump()

    def pump(self) -> None:
        cap = self.capacity()
        while self.queue and (cap is None or self.num_in_flight < cap):
            index, self.state = self.shaper(ShapeContext([q for q, _ in self.queue], time.monotonic(), self.state))
            _, fut = self.queue.pop(index)
            if not fut.done():
                self.num_in_flight += 1
                fut.set_result(None)
