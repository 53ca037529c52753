"""Who runs next: the scheduler picks, each step, which requests compute how many tokens.

Flow: the engine calls `schedule()` -> a `SchedulerOutput` (chunks of requests to compute,
requests preempted) -> the model runner executes the chunks -> the engine appends tokens
and calls `finish()` for finished requests. `Scheduler` is the interface (learners write
their own in lab 3); `ContinuousBatchingScheduler` is the reference: iteration-level
scheduling with a token budget (decodes first, then prefill chunks), admission only when
KV blocks are free, and preemption by recompute of the most recently admitted request.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field

from inferlab.engine.config import EngineConfig
from inferlab.engine.kv_cache import BlockAllocator
from inferlab.engine.request import Request, RequestStatus


@dataclass(frozen=True)
class ScheduledChunk:
    """Compute tokens [request.num_computed_tokens, + num_tokens) of `request` this step."""

    request: Request
    num_tokens: int

    @property
    def is_decode(self) -> bool:
        """The one definition of a decode: one token of a request whose prompt is all computed
        (used by the scheduler, the runner and the step records)."""
        return self.num_tokens == 1 and self.request.num_computed_tokens >= self.request.num_prompt_tokens

    @property
    def is_prefill(self) -> bool:
        """Not a decode: a chunk of the prompt (or of prompt + output after a preemption)."""
        return not self.is_decode


@dataclass
class SchedulerOutput:
    """One step's plan: chunks to run (at most one per request) and requests preempted this step."""

    chunks: list[ScheduledChunk] = field(default_factory=list)
    preempted: list[Request] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(c.num_tokens for c in self.chunks)


class Scheduler(ABC):
    """Decides each step which requests run; owns their KV blocks through a `BlockAllocator`.

    Contract: every chunk's request holds blocks for all tokens up to num_computed_tokens +
    num_tokens; sum of chunk tokens <= config.max_num_batched_tokens; at most
    config.max_num_seqs requests hold blocks; a request is never lost (it is waiting,
    running, or finished through `finish`).
    """

    def __init__(self, config: EngineConfig, allocator: BlockAllocator) -> None:
        self.config, self.allocator = config, allocator

    @abstractmethod
    def add(self, request: Request) -> None:
        """Queue a new request (status WAITING)."""

    @abstractmethod
    def schedule(self) -> SchedulerOutput:
        """Plan the next step.

        Returns:
            chunks to compute (possibly empty when nothing can run) and the requests
            preempted to make room (their blocks freed, num_computed_tokens reset to 0).
        """

    @abstractmethod
    def finish(self, request: Request) -> None:
        """Forget a finished or aborted request and free its blocks (it may be waiting or running)."""

    @abstractmethod
    def has_unfinished(self) -> bool:
        """True while any request is waiting or running."""

    @abstractmethod
    def num_running(self) -> int:
        """Requests holding KV blocks now."""


class ContinuousBatchingScheduler(Scheduler):
    """Reference iteration-level scheduler (vLLM-style, recompute preemption)."""

    def __init__(self, config: EngineConfig, allocator: BlockAllocator) -> None:
        super().__init__(config, allocator)
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []  # in admission order: the last one is preempted first

    def add(self, request: Request) -> None:
        request.status = RequestStatus.WAITING
        self.waiting.append(request)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def num_running(self) -> int:
        return len(self.running)

    def finish(self, request: Request) -> None:
        if request in self.running:
            self.running.remove(request)
        elif request in self.waiting:
            self.waiting.remove(request)
        self.allocator.free(request.block_table)

    def _preempt(self, request: Request, out: SchedulerOutput) -> None:
        self.running.remove(request)
        self.allocator.free(request.block_table)
        request.num_computed_tokens = 0
        request.status = RequestStatus.PREEMPTED
        request.num_preemptions += 1
        self.waiting.appendleft(request)
        out.preempted.append(request)

    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        budget = self.config.max_num_batched_tokens
        # 1. decodes first, oldest first; free blocks by preempting the newest when the pool is full
        for req in list(self.running):
            if budget == 0:
                break
            if req not in self.running or not _decode(req):
                continue
            while not self.allocator.append_slots(req.block_table, req.num_tokens):
                victim = self.running[-1]
                self._preempt(victim, out)
                if victim is req:
                    break
            if req in self.running:
                out.chunks.append(ScheduledChunk(req, 1))
                budget -= 1
        # 2. running requests still in prefill (chunked): the rest of their prompt, as the budget allows
        #    (its slots were allocated at admission)
        for req in self.running:
            remaining = req.num_tokens - req.num_computed_tokens
            if remaining and budget > 0 and not _decode(req):
                n = min(remaining, budget)
                out.chunks.append(ScheduledChunk(req, n))
                budget -= n
        # 3. admit waiting requests in arrival order while blocks, seats and budget last
        #    (not after a preemption: the freed blocks are for the running requests' next tokens)
        while not out.preempted and self.waiting and budget > 0 and len(self.running) < self.config.max_num_seqs:
            req = self.waiting[0]
            if not self.config.enable_chunked_prefill and req.num_tokens > budget:
                break
            allocation = self.allocator.allocate(req.all_token_ids)
            if allocation is None:
                break
            self.waiting.popleft()
            req.block_table, req.num_computed_tokens = allocation
            req.num_cached_tokens = req.num_computed_tokens
            req.status = RequestStatus.RUNNING
            self.running.append(req)
            n = min(req.num_tokens - req.num_computed_tokens, budget)
            out.chunks.append(ScheduledChunk(req, n))
            budget -= n
        return out


def _decode(req: Request) -> bool:
    """The request's next chunk is a decode (`ScheduledChunk.is_decode`, the one definition)."""
    return req.num_tokens - req.num_computed_tokens == 1 and ScheduledChunk(req, 1).is_decode
