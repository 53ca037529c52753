"""The engine loop: schedule -> run -> append tokens -> stream -> free finished requests.

`LLMEngine` ties a `Scheduler` (who runs), a `BlockAllocator` (KV blocks), and a
`ModelRunner` (one forward step) together. Each `step()` returns the new tokens as
`RequestOutput`s (and calls each request's `on_token` callback) and appends a `StepRecord`
(prefill tokens, decode sequences, KV tokens, step time) for profiling. Finished requests
become `inferlab.metrics.RequestRecord`s through `records()`.

Failure isolation: whatever goes wrong for one request inside a step (its forward chunk,
its sampling, its stop check, its `on_token` callback) finishes that request with
`FinishReason.ERROR` and a message; the other requests go on. `fail_all` is the last resort
of a caller whose loop failed outside a step's guards. `finished` and `step_records` are
`History` buffers, bounded by the config for long-running servers.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Callable, Sequence

from inferlab.engine.config import EngineConfig
from inferlab.engine.history import EngineCounters, History, StepRecord
from inferlab.engine.kv_cache import BlockAllocator, PagedBlockAllocator
from inferlab.engine.request import FinishReason, Request, RequestEvent, RequestOutput, RequestStatus, SamplingParams
from inferlab.engine.runner import ModelRunner
from inferlab.engine.scheduler import ContinuousBatchingScheduler, Scheduler, SchedulerOutput
from inferlab.ints import cdiv
from inferlab.metrics import RequestRecord
from inferlab.model.llama import LlamaForCausalLM


MAX_IDLE_STEPS = 8  # consecutive empty plans before unfinished requests are failed


class LLMEngine:
    """A continuous-batching inference engine over a paged KV cache.

    Args:
        model: the model (its weights and layers are used as they are).
        config: engine settings.
        scheduler_factory: builds the scheduler from (config, allocator); default: the reference.
        allocator: the block allocator; default: `PagedBlockAllocator` sized by `config`.
        clock: time source in seconds (default `time.perf_counter`).
    """

    def __init__(
        self,
        model: LlamaForCausalLM,
        config: EngineConfig | None = None,
        scheduler_factory: Callable[[EngineConfig, BlockAllocator], Scheduler] = ContinuousBatchingScheduler,
        allocator: BlockAllocator | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.config = config or EngineConfig()
        if self.config.max_model_len > model.config.max_position_embeddings:
            raise ValueError(f"max_model_len {self.config.max_model_len} exceeds the model's context "
                             f"{model.config.max_position_embeddings}")
        self.model, self.clock = model, clock
        self.allocator = allocator or PagedBlockAllocator(
            self.config.num_kv_blocks, self.config.block_size, self.config.enable_prefix_caching)
        self.scheduler = scheduler_factory(self.config, self.allocator)
        self.runner = ModelRunner(model, self.config)
        self.requests: dict[str, Request] = {}  # unfinished
        self.finished: History = History(max_len=self.config.max_finished_requests)
        self.step_records: History = History(max_len=self.config.max_step_records)
        self.counters = EngineCounters()
        self._ids = itertools.count()
        self._num_idle_steps = 0

    @classmethod
    def from_checkpoint(cls, path: str | Path, config: EngineConfig | None = None, **kwargs) -> LLMEngine:
        from inferlab.model.checkpoint import load_checkpoint

        config = config or EngineConfig()
        return cls(load_checkpoint(path, device=config.device), config, **kwargs)

    # ---- requests -------------------------------------------------------------------------
    def add_request(
        self,
        prompt_token_ids: Sequence[int],
        sampling_params: SamplingParams | None = None,
        request_id: str | None = None,
        arrival_time_s: float | None = None,
        on_token: Callable[[RequestOutput], None] | None = None,
    ) -> str:
        """Queue a request; returns its id.

        Raises:
            ValueError: empty prompt, token id outside the vocabulary, prompt not shorter than
                max_model_len, a request too large for the whole KV pool, or a duplicate id.
                Nothing is queued then; other requests are unaffected.
        """
        params = sampling_params or SamplingParams()
        prompt = [int(t) for t in prompt_token_ids]
        vocab = self.model.config.vocab_size
        if not prompt:
            raise ValueError("prompt is empty")
        if any(not 0 <= t < vocab for t in prompt):
            raise ValueError(f"prompt token ids must be in [0, {vocab})")
        if len(prompt) >= self.config.max_model_len:
            raise ValueError(f"prompt has {len(prompt)} tokens; max_model_len is {self.config.max_model_len} "
                             "(at least one token must fit after it)")
        max_total = min(len(prompt) + params.max_tokens, self.config.max_model_len)
        if cdiv(max_total, self.config.block_size) > self.config.num_kv_blocks:
            raise ValueError(f"request needs up to {max_total} KV slots but the pool holds {self.config.max_kv_tokens}")
        request_id = str(next(self._ids)) if request_id is None else str(request_id)
        if request_id in self.requests:
            raise ValueError(f"request id {request_id!r} is already in use")
        req = Request(request_id, prompt, params, self.clock() if arrival_time_s is None else arrival_time_s,
                      on_token, max_total_tokens=max_total)
        req.events.append((RequestEvent.QUEUED, req.arrival_time_s))
        self.requests[request_id] = req
        self.scheduler.add(req)
        self.counters.num_requests += 1
        return request_id

    def abort(self, request_id: str) -> None:
        """Stop a request now (finish reason ABORT). Raises ValueError for an unknown id."""
        req = self.requests.get(str(request_id))
        if req is None:
            raise ValueError(f"unknown or already finished request id {request_id!r}")
        self._finish(req, FinishReason.ABORT, self.clock())

    def fail_all(self, error: str) -> list[RequestOutput]:
        """Finish every unfinished request with `FinishReason.ERROR` (a failed loop's last act).

        Each request's bookkeeping and callback are guarded on their own, so one that fails
        again cannot keep the others from hearing of the error.
        """
        outputs = []
        for req in list(self.requests.values()):
            try:
                outputs.append(self._finish(req, FinishReason.ERROR, self.clock(), error))
            except Exception:  # its state is broken: drop it, still tell its caller
                self.requests.pop(req.request_id, None)
                req.status, req.finish_reason, req.error = RequestStatus.FINISHED, FinishReason.ERROR, error
                out = RequestOutput(req.request_id, (), self.clock(), True, FinishReason.ERROR, error)
                self._notify(req, out)
                outputs.append(out)
        return outputs

    def has_unfinished(self) -> bool:
        return bool(self.requests)

    # ---- the loop -------------------------------------------------------------------------
    def step(self) -> list[RequestOutput]:
        """Schedule, run one forward step, append and stream tokens, free finished requests."""
        start = self.clock()
        plan: SchedulerOutput = self.scheduler.schedule()
        outputs: list[RequestOutput] = []
        if not plan.chunks:
            self._num_idle_steps += 1
            if self.requests and self._num_idle_steps > MAX_IDLE_STEPS:
                # the scheduler keeps planning nothing (a deadlocked scheduler must not hang the caller)
                for req in list(self.requests.values()):
                    outputs.append(self._finish(req, FinishReason.ERROR, start,
                                                f"scheduler made no progress for {MAX_IDLE_STEPS} steps"))
            return outputs
        self._num_idle_steps = 0
        _record_events(plan, start)
        num_decodes = sum(c.is_decode for c in plan.chunks)  # before the step advances num_computed_tokens
        try:
            logits = self.runner.execute(plan.chunks)
        except Exception as exc:  # a failed step fails its requests, not the engine
            now = self.clock()
            return [self._finish(c.request, FinishReason.ERROR, now, f"{type(exc).__name__}: {exc}")
                    for c in plan.chunks]
        sampling, rows = [], []
        for r, chunk in enumerate(plan.chunks):
            req = chunk.request
            req.num_computed_tokens += chunk.num_tokens
            if req.num_computed_tokens == req.num_tokens:
                sampling.append(req)
                rows.append(r)
        tokens = self._sample(logits[rows], sampling) if sampling else []
        now = self.clock()
        for req, token in zip(sampling, tokens):
            if isinstance(token, Exception):
                outputs.append(self._finish(req, FinishReason.ERROR, now, f"sampling failed: {_describe(token)}"))
            else:
                outputs.append(self._append(req, token, now))
        for chunk in plan.chunks:
            if not chunk.request.is_finished:
                self.allocator.cache_blocks(chunk.request.all_token_ids, chunk.request.block_table,
                                            chunk.request.num_computed_tokens)
        self._record(start, now, plan, num_decodes)
        return outputs

    def _sample(self, logits, requests: list[Request]) -> list[int | Exception]:
        """One batched draw; if it fails, one draw per request, so only the culprit fails."""
        try:
            return list(self.runner.sample(logits, requests))
        except Exception:
            tokens: list[int | Exception] = []
            for r, req in enumerate(requests):
                try:
                    tokens.append(int(self.runner.sample(logits[r:r + 1], [req])[0]))
                except Exception as exc:
                    tokens.append(exc)
            return tokens

    def _append(self, req: Request, token: int, now: float) -> RequestOutput:
        req.output_token_ids.append(token)
        req.token_times_s.append(now)
        if len(req.token_times_s) == 1:
            req.events.append((RequestEvent.FIRST_TOKEN, now))
        try:
            reason, stop_reason = req.check_stop(self.model.config.eos_token_id)
        except Exception as exc:
            return self._finish(req, FinishReason.ERROR, now, f"stop check failed: {_describe(exc)}", new_token=token)
        if reason is not None:
            return self._finish(req, reason, now, new_token=token, stop_reason=stop_reason)
        out = RequestOutput(req.request_id, (token,), now, False)
        if not self._notify(req, out):
            return self._finish(req, FinishReason.ERROR, now, req.error)
        return out

    def _finish(self, req: Request, reason: FinishReason, now: float, error: str | None = None,
                new_token: int | None = None, stop_reason: int | str | None = None) -> RequestOutput:
        self.requests.pop(req.request_id, None)
        req.status, req.finish_reason, req.error, req.finish_time_s = RequestStatus.FINISHED, reason, error, now
        req.stop_reason = stop_reason
        req.events.append((RequestEvent.FINISHED, now))
        self.finished.append(req)
        self.counters.num_finished += 1
        self.counters.num_aborted += reason is FinishReason.ABORT
        self.counters.num_errors += reason is FinishReason.ERROR
        self.scheduler.finish(req)
        self.runner.release(req)
        out = RequestOutput(req.request_id, () if new_token is None else (new_token,), now, True, reason, error,
                            stop_reason)
        self._notify(req, out)
        return out

    def _notify(self, req: Request, out: RequestOutput) -> bool:
        """Call the request's `on_token`; False (and `req.error` set) if the callback raised."""
        if req.on_token is None:
            return True
        try:
            req.on_token(out)
            return True
        except Exception as exc:
            if not req.is_finished:
                req.error = f"on_token callback failed: {_describe(exc)}"
            return False

    def _record(self, start: float, now: float, plan: SchedulerOutput, num_decodes: int) -> None:
        running = [r for r in self.requests.values() if r.status is RequestStatus.RUNNING]
        blocks = set().union(*(r.block_table for r in running))
        self.step_records.append(StepRecord(
            start_time_s=start, step_time_s=now - start,
            num_prefill_tokens=plan.num_tokens - num_decodes, num_decode_seqs=num_decodes,
            num_kv_tokens=_num_stored_tokens(running, self.config.block_size), num_kv_blocks_used=len(blocks),
            num_running_seqs=len(running), num_preempted=len(plan.preempted),
            num_decode_kv_slots=self.runner.last_decode_kv_slots))

    # ---- offline use ----------------------------------------------------------------------
    def run_until_done(self) -> None:
        while self.has_unfinished():
            self.step()

    def generate(self, prompts: Sequence[Sequence[int]],
                 sampling_params: SamplingParams | Sequence[SamplingParams] | None = None) -> list[Request]:
        """Offline batch: submit all prompts now, run to completion; returns the requests in order."""
        params = sampling_params if isinstance(sampling_params, Sequence) else [sampling_params] * len(prompts)
        ids = [self.add_request(p, sp) for p, sp in zip(prompts, params)]
        requests = [self.requests[i] for i in ids]  # held here: `finished` may be bounded
        self.run_until_done()
        return requests

    def records(self) -> list[RequestRecord]:
        """Metrics records of finished requests that produced at least one token."""
        return [r.to_record() for r in self.finished if r.output_token_ids]


def _record_events(plan: SchedulerOutput, now: float) -> None:
    """SCHEDULED for a request's first chunk after it queued or was preempted; PREEMPTED for the victims.

    Recorded here, not in the scheduler, so a learner's scheduler gets them too.
    """
    for req in plan.preempted:
        req.events.append((RequestEvent.PREEMPTED, now))
    for chunk in plan.chunks:
        events = chunk.request.events
        if not events or events[-1][0] in (RequestEvent.QUEUED, RequestEvent.PREEMPTED):
            events.append((RequestEvent.SCHEDULED, now))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _num_stored_tokens(running: list[Request], block_size: int) -> int:
    """Distinct K/V slots filled across running requests (a shared prefix block counts once)."""
    full: set[int] = set()  # blocks some request has filled (set.update over slices: no per-block Python)
    partial: dict[int, int] = {}  # the last, partly filled block of each request
    for req in running:
        num_full, rest = divmod(req.num_computed_tokens, block_size)
        full.update(req.block_table[:num_full])
        if rest and num_full < len(req.block_table):
            block = req.block_table[num_full]
            partial[block] = max(partial.get(block, 0), rest)
    return len(full) * block_size + sum(n for b, n in partial.items() if b not in full)
