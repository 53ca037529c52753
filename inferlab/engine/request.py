"""Request state: what the engine knows about one request from arrival to finish.

Flow: `LLMEngine.add_request` builds a `Request` (WAITING) -> the scheduler admits it
(RUNNING), may preempt it (PREEMPTED, its KV dropped and recomputed later) -> the
engine appends sampled tokens until a stop condition (FINISHED with a `FinishReason`).
`Request.events` lists what happened when (`RequestEvent`).
`Request.to_record()` turns it into an `inferlab.metrics.RequestRecord`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Callable

from inferlab.metrics import RequestRecord


class RequestStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    PREEMPTED = "preempted"
    FINISHED = "finished"


class RequestEvent(enum.Enum):
    """What happened to a request, in order (recorded in `Request.events` with the engine's clock).

    The tracer turns them into span events, the metrics into queue time and preemption counts.
    """

    QUEUED = "queued"
    SCHEDULED = "scheduled"  # admitted to a step (again after each preemption)
    PREEMPTED = "preempted"
    FIRST_TOKEN = "first_token"
    FINISHED = "finished"


class FinishReason(enum.Enum):
    LENGTH = "length"  # max_tokens or the context length reached
    STOP = "stop"  # EOS, a stop token id or a stop string
    ABORT = "abort"  # aborted by the caller
    ERROR = "error"  # failed; `Request.error` says why


MAX_SEED = 2**63 - 1  # a request's seed is an integer in [0, MAX_SEED]


@dataclass(frozen=True)
class SamplingParams:
    """Per-request generation settings.

    Args:
        max_tokens: most tokens to generate (>= 1).
        temperature: 0 means greedy (argmax); > 0 samples from softmax(logits / temperature). Finite.
        top_p: nucleus sampling: keep the smallest set of tokens whose probability reaches top_p, in (0, 1].
        top_k: keep the top_k most likely tokens; 0 or -1 keeps all (vLLM's convention).
        ignore_eos: keep generating past EOS (benchmarks use it to fix output lengths).
        stop_token_ids: extra token ids that end generation (the token is kept in the output).
        stop: strings that end generation; the text from the stop string on is not returned (vLLM).
        seed: seed for this request's sampler (temperature > 0), in [0, MAX_SEED]; None draws from the global RNG.
    """

    max_tokens: int = 16
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    ignore_eos: bool = False
    stop_token_ids: tuple[int, ...] = ()
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if not _is_int(self.max_tokens) or self.max_tokens < 1:
            raise ValueError(f"max_tokens must be an integer >= 1, got {self.max_tokens!r}")
        if not _is_real(self.temperature) or not math.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature!r}")
        if not _is_real(self.top_p) or not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not _is_int(self.top_k) or self.top_k < -1:
            raise ValueError(f"top_k must be an integer >= 1, or 0 / -1 to keep every token, got {self.top_k!r}")
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed <= MAX_SEED):
            raise ValueError(f"seed must be an integer in [0, 2**63 - 1], got {self.seed!r}")
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        if not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError(f"stop must be non-empty strings, got {self.stop!r}")
        if not all(_is_int(t) and t >= 0 for t in self.stop_token_ids):
            raise ValueError(f"stop_token_ids must be integers >= 0, got {self.stop_token_ids!r}")
        object.__setattr__(self, "stop", tuple(self.stop))
        object.__setattr__(self, "stop_token_ids", tuple(int(t) for t in self.stop_token_ids))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class RequestOutput:
    """One streamed event: a new token of a request (or its finish without a token)."""

    request_id: str
    new_token_ids: tuple[int, ...]
    time_s: float
    is_finished: bool
    finish_reason: FinishReason | None = None
    error: str | None = None
    stop_reason: int | str | None = None  # the stop token id or stop string that ended it


@dataclass(eq=False)
class Request:
    """One request and its progress.

    `all_token_ids` = prompt + output so far; `num_computed_tokens` of them have their
    K/V in the cache; the next step computes tokens [num_computed_tokens, num_tokens).
    `block_table[i]` is the physical KV block holding positions [i*B, (i+1)*B).
    """

    request_id: str
    prompt_token_ids: list[int]
    sampling_params: SamplingParams
    arrival_time_s: float
    on_token: Callable[[RequestOutput], None] | None = None
    status: RequestStatus = RequestStatus.WAITING
    output_token_ids: list[int] = field(default_factory=list)
    token_times_s: list[float] = field(default_factory=list)
    finish_time_s: float | None = None
    finish_reason: FinishReason | None = None
    error: str | None = None
    stop_reason: int | str | None = None  # the stop token id or stop string that ended it (None for EOS)
    num_computed_tokens: int = 0
    num_cached_tokens: int = 0  # prompt tokens served by the prefix cache at the last admission
    num_preemptions: int = 0
    block_table: list[int] = field(default_factory=list)
    max_total_tokens: int = 0  # prompt + most output tokens allowed (set by the engine)
    events: list[tuple[RequestEvent, float]] = field(default_factory=list)  # (event, engine clock s)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.output_token_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_token_ids) + len(self.output_token_ids)

    @property
    def all_token_ids(self) -> list[int]:
        return self.prompt_token_ids + self.output_token_ids

    def token_ids(self, start: int, stop: int) -> list[int]:
        """all_token_ids[start:stop] without building all_token_ids (the runner's hot path)."""
        n = len(self.prompt_token_ids)
        if stop <= n:
            return self.prompt_token_ids[start:stop]
        if start >= n:
            return self.output_token_ids[start - n:stop - n]
        return self.prompt_token_ids[start:] + self.output_token_ids[:stop - n]

    def check_stop(self, eos_token_id: int) -> tuple[FinishReason | None, int | str | None]:
        """Does the request end after its newest token, and why: the stop rule of both engines
        (`inferlab.engine.stop.check_stop`, written once)."""
        from inferlab.engine import stop  # stop.py reads Request's fields; imported here, not at the top

        return stop.check_stop(self, eos_token_id)

    @property
    def is_finished(self) -> bool:
        return self.status is RequestStatus.FINISHED

    @property
    def first_token_time_s(self) -> float | None:
        return self.token_times_s[0] if self.token_times_s else None

    def event_time_s(self, event: RequestEvent) -> float | None:
        """When `event` first happened (engine clock, seconds), None if it has not."""
        return next((t for e, t in self.events if e is event), None)

    def to_record(self) -> RequestRecord:
        """This finished request as a metrics record (needs at least one output token)."""
        if not self.token_times_s:
            raise ValueError(f"request {self.request_id} produced no tokens ({self.finish_reason}: {self.error})")
        return RequestRecord(
            arrival_time_s=self.arrival_time_s,
            first_token_time_s=self.token_times_s[0],
            finish_time_s=self.finish_time_s if self.finish_time_s is not None else self.token_times_s[-1],
            num_prompt_tokens=self.num_prompt_tokens,
            num_output_tokens=self.num_output_tokens,
            token_times_s=tuple(self.token_times_s),
        )
