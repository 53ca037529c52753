"""What the engine did: step records, counters, and the bounded buffers that hold them.

An offline run (`generate`, `inferlab profile`, the benchmarks) keeps everything
(`max_len=None`); a long-running server keeps the newest `max_len` entries, so memory
stays flat however many requests it serves (`EngineConfig.max_finished_requests`,
`max_step_records`). `History` is a deque that also takes slices, so callers written for a
list (`records[-2000:]`, `finished[0]`) keep working.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass
from typing import Iterable, TypeVar

T = TypeVar("T")


@dataclass
class EngineCounters:
    """Totals since the engine started (for /stats now, Prometheus counters later)."""

    num_requests: int = 0
    num_finished: int = 0
    num_aborted: int = 0
    num_errors: int = 0


@dataclass(frozen=True)
class StepRecord:
    """What one engine step did and how long it took (input for `inferlab profile` and the simulator).

    num_kv_tokens: tokens whose K/V are stored after the step (all running requests);
    num_kv_blocks_used: blocks owned by running requests after the step;
    num_decode_kv_slots: K/V slots the step's decode attention read, padding included
    (`runner.decode_kv_slots`).
    """

    start_time_s: float
    step_time_s: float
    num_prefill_tokens: int
    num_decode_seqs: int
    num_kv_tokens: int
    num_kv_blocks_used: int
    num_running_seqs: int
    num_preempted: int
    num_decode_kv_slots: int = 0


class History(deque):
    """A deque of at most `max_len` items (None: unbounded) that supports `h[i]` and `h[a:b]`.

    `num_dropped` counts the items pushed out at the front.
    """

    def __init__(self, items: Iterable[T] = (), max_len: int | None = None) -> None:
        if max_len is not None and (not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 0):
            raise ValueError(f"max_len must be None or an integer >= 0, got {max_len!r}")
        super().__init__(items, max_len)
        self.num_dropped = 0

    def append(self, item: T) -> None:  # type: ignore[override]
        if self.maxlen is not None and len(self) == self.maxlen:
            self.num_dropped += 1
        super().append(item)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step == 1:
                return list(itertools.islice(self, start, stop))
            return list(self)[index]
        return super().__getitem__(index)
