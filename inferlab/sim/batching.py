"""A deterministic harness for dynamic batchers: arrivals, one model instance, a simulated clock.

Floor 2. `run_batcher(batcher, arrivals_s, service_s)` replays request arrivals (seconds) in
front of one model instance whose batch of size b takes `service_s(b)` seconds. The batcher is
any object with `offer(request_id, now_s) -> bool`, `poll(now_s) -> list | None` and
`next_deadline_s() -> float | None` (`inferlab.policies.batching.TritonDynamicBatcher` is the
reference). Events, in time order: arrivals (offered in order), the model finishing a batch,
and the batcher's deadline; after each, while the model is free, `poll` is asked for a batch.
Same-time events: arrivals first, then the poll. Nothing reads a real clock, so the outcome of
a batcher on an arrival sequence is exact.

Returns a `BatchRun`: per request its queue wait and latency (or rejection), and the batches.
Checks the batcher: a request served twice, never served, served before it arrived, or a
batch larger than `max_batch_size` raises `BatcherError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence


class Batcher(Protocol):
    def offer(self, request_id: object, now_s: float) -> bool: ...
    def poll(self, now_s: float) -> list | None: ...
    def next_deadline_s(self) -> float | None: ...


class BatcherError(AssertionError):
    """The batcher broke the contract (the message says how)."""


@dataclass
class BatchRun:
    """What happened: batches as (start s, [request ids]); per request wait/latency (NaN if rejected)."""

    batches: list[tuple[float, list[int]]] = field(default_factory=list)
    wait_s: list[float] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)

    @property
    def batch_sizes(self) -> list[int]:
        return [len(b) for _, b in self.batches]

    @property
    def mean_batch_size(self) -> float:
        return sum(self.batch_sizes) / len(self.batches) if self.batches else 0.0

    def served_latencies(self) -> list[float]:
        return [x for x in self.latency_s if not math.isnan(x)]


def linear_service(fixed_s: float, per_item_s: float) -> Callable[[int], float]:
    """service_s(b) = fixed_s + per_item_s * b (a model whose batch cost has a fixed part)."""
    return lambda b: fixed_s + per_item_s * b


def run_batcher(batcher: Batcher, arrivals_s: Sequence[float], service_s: Callable[[int], float],
                max_batch_size: int, max_events: int = 1_000_000) -> BatchRun:
    """Replay `arrivals_s` (non-decreasing) through `batcher` and one model instance."""
    arrivals = [float(t) for t in arrivals_s]
    if any(b < a for a, b in zip(arrivals, arrivals[1:])):
        raise ValueError("arrivals_s must be non-decreasing")
    n = len(arrivals)
    run = BatchRun(wait_s=[math.nan] * n, latency_s=[math.nan] * n)
    served = [False] * n
    next_arrival, model_free_s, now = 0, 0.0, 0.0
    for _ in range(max_events):
        candidates = []
        if next_arrival < n:
            candidates.append(arrivals[next_arrival])
        if model_free_s > now:
            candidates.append(model_free_s)
        deadline = batcher.next_deadline_s()
        if deadline is not None and model_free_s <= now:
            candidates.append(max(deadline, now))
        if not candidates:
            break
        now = max(now, min(candidates))
        while next_arrival < n and arrivals[next_arrival] <= now:
            if not batcher.offer(next_arrival, arrivals[next_arrival]):
                run.rejected.append(next_arrival)
            next_arrival += 1
        if model_free_s <= now:
            batch = batcher.poll(now)
            if batch:
                _check(batch, served, arrivals, now, max_batch_size, set(run.rejected))
                done = now + service_s(len(batch))
                for i in batch:
                    served[i] = True
                    run.wait_s[i] = now - arrivals[i]
                    run.latency_s[i] = done - arrivals[i]
                run.batches.append((now, list(batch)))
                model_free_s = done
            elif next_arrival >= n and batcher.next_deadline_s() is None:
                break
            elif batcher.next_deadline_s() is not None and batcher.next_deadline_s() <= now:
                raise BatcherError(f"at t={now:.6f} s the model is free and next_deadline_s() "
                                   f"({batcher.next_deadline_s():.6f} s) has passed, but poll() returned no batch")
    else:
        raise BatcherError(f"no end after {max_events} events (a poll loop that never empties the queue?)")
    missing = [i for i in range(n) if not served[i] and i not in set(run.rejected)]
    if missing:
        raise BatcherError(f"{len(missing)} accepted request(s) were never served, e.g. request {missing[0]}")
    return run


def _check(batch: list, served: list[bool], arrivals: list[float], now: float, max_batch_size: int,
           rejected: set[int]) -> None:
    if len(batch) > max_batch_size:
        raise BatcherError(f"batch of {len(batch)} requests exceeds max_batch_size {max_batch_size}")
    if len(set(batch)) != len(batch):
        raise BatcherError("a batch holds the same request twice")
    for i in batch:
        if not isinstance(i, int) or not 0 <= i < len(arrivals):
            raise BatcherError(f"unknown request id {i!r} in a batch")
        if served[i]:
            raise BatcherError(f"request {i} served twice")
        if i in rejected:
            raise BatcherError(f"request {i} was rejected by offer() and then served")
        if arrivals[i] > now:
            raise BatcherError(f"request {i} served at {now} s before it arrived at {arrivals[i]} s")
