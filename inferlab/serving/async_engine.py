"""The engine loop thread behind the server: submit, stream, abort, admit, and report health.

Flow: `AsyncEngine.submit` checks admission (`max_waiting` requests, `max_waiting_tokens`
prompt tokens queued; over either -> `Overloaded`, which the server answers with 429 and
Retry-After), then queues the request on the `LLMEngine`. A background thread calls
`step()`; each `RequestOutput` comes back through `on_token` onto the request's asyncio
queue. Before every step the thread asks each request's `is_disconnected` and aborts the
ones whose client left (streaming or not), so an abandoned request costs at most one more
step and its KV blocks are freed.

If a step raises outside the engine's per-request guards, every in-flight request gets an
error (`LLMEngine.fail_all`) and the loop goes on; after `max_loop_failures` failures in a
row it stops and `is_alive` turns False (the server's /health answers 503 so an
orchestrator restarts the process). `stats()` holds the counters.

Observers (`EngineObserver`: the Prometheus metrics, the tracer) see every output and every
step in the engine thread; one that raises is reported once and never fails a request.
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Callable, Protocol

from inferlab.engine import LLMEngine, Request, RequestOutput, RequestStatus, SamplingParams


class EngineObserver(Protocol):
    """Watches the engine from its loop thread (called under the loop's lock: keep it cheap)."""

    def on_output(self, req: Request, out: RequestOutput) -> None:
        """A token of `req` or its finish (`out.is_finished`)."""

    def on_step(self, engine: LLMEngine) -> None:
        """After every step and every submit."""


@dataclass(frozen=True)
class AdmissionConfig:
    """Admission limits: most requests waiting (not yet running) and most prompt tokens among them
    (None: no limit); `max_loop_failures` consecutive loop failures before the loop gives up."""

    max_waiting: int | None = None
    max_waiting_tokens: int | None = None
    max_loop_failures: int = 3
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        for name in ("max_waiting", "max_waiting_tokens"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(f"AdmissionConfig.{name} must be None or an integer >= 0, got {value!r}")
        if not isinstance(self.max_loop_failures, int) or self.max_loop_failures < 1:
            raise ValueError(f"AdmissionConfig.max_loop_failures must be >= 1, got {self.max_loop_failures!r}")
        if not isinstance(self.retry_after_s, int) or self.retry_after_s < 0:
            raise ValueError(f"AdmissionConfig.retry_after_s must be an integer >= 0, got {self.retry_after_s!r}")


class Overloaded(Exception):
    """The waiting queue is full; retry after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class EngineDead(Exception):
    """The engine loop has stopped; no request can be served."""


class AsyncEngine:
    """Runs `LLMEngine.step()` in a background thread; hands tokens to asyncio queues."""

    def __init__(self, engine: LLMEngine, admission: AdmissionConfig | None = None,
                 observers: tuple[EngineObserver, ...] = ()) -> None:
        self.engine = engine
        self.admission = admission or AdmissionConfig()
        self.observers = tuple(observers)
        self.observer_errors: list[str] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="inferlab-engine", daemon=True)
        self._watch: dict[str, Callable[[], bool]] = {}  # request id -> is_disconnected
        self.last_error: str | None = None
        self.num_loop_failures = 0
        self.num_disconnect_aborts = 0
        self.num_rejected = 0
        self.last_step_end_s = time.monotonic()

    # ---- lifecycle and health ---------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    @property
    def is_alive(self) -> bool:
        """The loop thread is running and has not given up."""
        return self._thread.is_alive() and not self._stop

    def stats(self) -> dict:
        c = self.engine.counters
        with self._lock:
            num_waiting = sum(1 for r in self.engine.requests.values() if r.status is RequestStatus.WAITING)
            num_running = len(self.engine.requests) - num_waiting
        return {"is_alive": self.is_alive, "num_waiting": num_waiting, "num_running": num_running,
                "num_requests": c.num_requests, "num_finished": c.num_finished, "num_aborted": c.num_aborted,
                "num_errors": c.num_errors, "num_disconnect_aborts": self.num_disconnect_aborts,
                "num_rejected": self.num_rejected, "num_loop_failures": self.num_loop_failures,
                "num_free_kv_blocks": self.engine.allocator.num_free_blocks(),
                "num_prefix_hit_blocks": getattr(self.engine.allocator, "num_cache_hits", 0),
                "last_error": self.last_error}

    # ---- the loop ---------------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            self._run()
        finally:  # however the loop ends (given up, stopped, or killed by a BaseException), nobody waits forever
            self._stop = True
            with self._lock:
                self.engine.fail_all(self.last_error or "the engine loop stopped")
                self._watch.clear()

    def _run(self) -> None:
        consecutive = 0
        while not self._stop:
            try:
                with self._lock:
                    self._abort_disconnected()
                    busy = self.engine.has_unfinished()
                    if busy:
                        self.engine.step()
                        consecutive = 0
                        self._observe_step()
            except Exception as exc:  # outside the engine's per-request guards: fail everyone in flight
                consecutive += 1
                self.num_loop_failures += 1
                self.last_error = f"engine loop failed: {type(exc).__name__}: {exc}"
                traceback.print_exc()
                with self._lock:
                    self.engine.fail_all(self.last_error)
                    self._watch.clear()
                if consecutive >= self.admission.max_loop_failures:
                    self.last_error += f" ({consecutive} times in a row: the loop gave up)"
                    return  # /health turns 503; restarting the process is for its supervisor
                busy = False
            self.last_step_end_s = time.monotonic()
            if not busy:
                self._wake.wait(0.05)
                self._wake.clear()

    def _observe_step(self) -> None:
        for obs in self.observers:
            self._guard(obs.on_step, self.engine)

    def _guard(self, fn: Callable, *args) -> None:
        """Run an observer's hook; its failure is recorded (first few) and never reaches a request."""
        try:
            fn(*args)
        except Exception as exc:
            if len(self.observer_errors) < 10:
                self.observer_errors.append(f"{getattr(fn, '__qualname__', fn)}: {type(exc).__name__}: {exc}")
                traceback.print_exc()

    def _abort_disconnected(self) -> None:
        for rid, is_disconnected in list(self._watch.items()):
            if rid not in self.engine.requests:
                del self._watch[rid]
            elif is_disconnected():
                self.engine.abort(rid)
                del self._watch[rid]
                self.num_disconnect_aborts += 1

    # ---- requests ---------------------------------------------------------------------------
    def submit(self, prompt_ids: list[int], params: SamplingParams,
               is_disconnected: Callable[[], bool] = lambda: False,
               request_id: str | None = None) -> tuple[str, asyncio.Queue]:
        """Queue a request (id `request_id`, or a fresh one); its `RequestOutput`s arrive on the returned queue.

        Raises:
            EngineDead: the loop has stopped. Overloaded: over an admission limit.
            ValueError: the engine refused the request (its message says why).
        """
        if not self.is_alive:
            raise EngineDead(self.last_error or "the engine loop is not running")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[RequestOutput] = asyncio.Queue()

        holder: list[Request] = []

        def on_token(out: RequestOutput) -> None:
            for obs in self.observers:
                self._guard(obs.on_output, holder[0], out)
            loop.call_soon_threadsafe(queue.put_nowait, out)

        with self._lock:
            self._admit(len(prompt_ids))
            rid = self.engine.add_request(prompt_ids, params, request_id=request_id or f"cmpl-{uuid.uuid4().hex}",
                                          on_token=on_token)
            holder.append(self.engine.requests[rid])
            self._watch[rid] = is_disconnected
            self._observe_step()
        self._wake.set()
        return rid, queue

    def admission_problem(self) -> str | None:
        """Why a new request would get 429 now (None: it would be admitted)."""
        with self._lock:
            try:
                self._admit(0, count=False)
            except Overloaded as exc:
                return str(exc)
        return None

    def _admit(self, num_prompt_tokens: int, count: bool = True) -> None:
        a = self.admission
        if a.max_waiting is None and a.max_waiting_tokens is None:
            return
        waiting = [r for r in self.engine.requests.values() if r.status is RequestStatus.WAITING]
        if a.max_waiting is not None and len(waiting) >= a.max_waiting:
            self.num_rejected += count
            raise Overloaded(f"{len(waiting)} requests are waiting (--max-waiting {a.max_waiting})", a.retry_after_s)
        queued = sum(r.num_prompt_tokens for r in waiting)
        if a.max_waiting_tokens is not None and queued + num_prompt_tokens > a.max_waiting_tokens:
            self.num_rejected += count
            raise Overloaded(f"{queued} prompt tokens are waiting; {num_prompt_tokens} more would exceed "
                             f"--max-waiting-tokens {a.max_waiting_tokens}", a.retry_after_s)

    def abort(self, request_id: str, disconnected: bool = False) -> None:
        """Abort a request if still unfinished (counted as a disconnect abort when `disconnected`)."""
        with self._lock:
            self._watch.pop(request_id, None)
            if request_id in self.engine.requests:
                self.engine.abort(request_id)
                self.num_disconnect_aborts += disconnected
