"""Triton's dynamic batcher as a plain object: when to run which queued requests.

Floor 1 (no clock, no threads, no HTTP): the caller says what time it is. The rule follows
Triton Inference Server's dynamic batcher (model_configuration.md, "Dynamic Batcher"):

- `offer(request_id, now_s)`: queue a request, or refuse it (False) when `max_queue_size`
  requests already wait (Triton's queue policy with REJECT: the client gets an error at once).
- `poll(now_s)`, called whenever the model is free: the batch to run now, or None to keep waiting.
  With n queued: n >= max_batch_size -> the first max_batch_size; else the largest preferred
  batch size <= n, if any -> that many; else, once the oldest request has waited
  `max_queue_delay_s` (now >= its arrival + the delay), all n; else None. Requests leave in arrival order.
- `next_deadline_s()`: when the oldest request's delay runs out (None with an empty queue), so a
  driver knows when to poll again without a new arrival.

`inferlab.sim.batching.run_batcher` drives any object with these three methods on a simulated
clock; `inferlab.frameworks.triton` runs the real Triton batcher with the same parameters.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class BatcherConfig:
    """Triton's knobs: max_batch_size, preferred_batch_size, max_queue_delay_microseconds (here s),
    default_queue_policy.max_queue_size (0 in Triton means unbounded; here None)."""

    max_batch_size: int = 8
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_s: float = 0.0
    max_queue_size: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_batch_size, int) or self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be an integer >= 1, got {self.max_batch_size!r}")
        for size in self.preferred_batch_sizes:
            if not isinstance(size, int) or not 1 <= size <= self.max_batch_size:
                raise ValueError(f"preferred batch sizes must be integers in [1, max_batch_size="
                                 f"{self.max_batch_size}], got {size!r}")
        if not self.max_queue_delay_s >= 0:
            raise ValueError(f"max_queue_delay_s must be >= 0, got {self.max_queue_delay_s!r}")
        if self.max_queue_size is not None and (not isinstance(self.max_queue_size, int) or self.max_queue_size < 1):
            raise ValueError(f"max_queue_size must be None or an integer >= 1, got {self.max_queue_size!r}")


class TritonDynamicBatcher:
    """The reference rule (see the module docstring)."""

    def __init__(self, config: BatcherConfig) -> None:
        self.config = config
        self.queue: deque[tuple[object, float]] = deque()  # (request id, arrival time)

    def offer(self, request_id: object, now_s: float) -> bool:
        if self.config.max_queue_size is not None and len(self.queue) >= self.config.max_queue_size:
            return False
        self.queue.append((request_id, now_s))
        return True

    def poll(self, now_s: float) -> list | None:
        n = len(self.queue)
        if n == 0:
            return None
        cfg = self.config
        if n >= cfg.max_batch_size:
            take = cfg.max_batch_size
        else:
            fitting = [p for p in cfg.preferred_batch_sizes if p <= n]
            if fitting:
                take = max(fitting)
            elif now_s >= self.queue[0][1] + cfg.max_queue_delay_s:  # the same sum as next_deadline_s
                take = n
            else:
                return None
        return [self.queue.popleft()[0] for _ in range(take)]

    def next_deadline_s(self) -> float | None:
        return self.queue[0][1] + self.config.max_queue_delay_s if self.queue else None
