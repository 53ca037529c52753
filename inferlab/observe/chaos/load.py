"""Steady client load against replicas, recording every request's outcome: the client's view of the SLIs.

Flow: `LoadDriver(urls, rate_per_s)` runs an asyncio loop in a thread; a request leaves every
1/rate seconds (times `rate_factor`, for bursts) to the replicas in turn, streamed, with a
per-request timeout; each becomes an `Attempt` (when, which replica, ok or the error, TTFT, E2E).
`window(start_s, end_s)` turns the attempts that started in a time span into SLIs: the share that
succeeded (availability), the share within the TTFT objective, p99 TTFT. `fire(...)` sends
extra requests now (long prompts to exhaust the KV cache). The server-side metrics cannot see
a request that never reached a replica; these can.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from dataclasses import dataclass

import aiohttp
import numpy as np


@dataclass(frozen=True)
class Attempt:
    """One request as the client saw it (wall-clock seconds)."""

    start_s: float
    replica: int
    is_ok: bool
    ttft_s: float = float("nan")
    e2e_s: float = float("nan")
    error: str | None = None


class LoadDriver:
    """Open-loop load: `rate_per_s` requests a second, round-robin over `urls`.

    Args:
        urls: replica (or proxy) base URLs.
        rate_per_s: requests per second (> 0).
        prompt_len, max_tokens: each request's prompt length (token ids) and output length.
        timeout_s: a request slower than this counts as failed.
        model: the served model name.
    """

    def __init__(self, urls: list[str], rate_per_s: float = 4.0, prompt_len: int = 16, max_tokens: int = 8,
                 timeout_s: float = 5.0, model: str = "tiny") -> None:
        if not rate_per_s > 0:
            raise ValueError(f"rate_per_s must be > 0, got {rate_per_s!r}")
        self.urls, self.rate_per_s, self.model = list(urls), rate_per_s, model
        self.prompt_len, self.max_tokens, self.timeout_s = prompt_len, max_tokens, timeout_s
        self.rate_factor = 1.0
        self.attempts: list[Attempt] = []
        self._in_flight: dict[int, list] = {}  # request number -> [start_s, first token seen]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="chaos-load", daemon=True)
        self._n = 0  # requests sent (round-robin position)
        self._ids = itertools.count()

    def start(self) -> LoadDriver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.timeout_s + 10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, force_close=True)  # a new connection each: proxies see each
        async with aiohttp.ClientSession(connector=connector) as self._session:
            tasks: set[asyncio.Task] = set()
            next_s = time.monotonic()
            while not self._stop.is_set():
                task = asyncio.ensure_future(self._one(self._n % len(self.urls), self.prompt_len, self.max_tokens))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                self._n += 1
                next_s += 1.0 / (self.rate_per_s * self.rate_factor)
                await asyncio.sleep(max(0.0, next_s - time.monotonic()))
            if tasks:
                await asyncio.wait(tasks, timeout=self.timeout_s + 5)

    async def _one(self, replica: int, prompt_len: int, max_tokens: int) -> Attempt:
        number = next(self._ids)
        prompt = [1 + (number * 7 + i) % 400 for i in range(prompt_len)]
        body = {"model": self.model, "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True, "stream": True}
        start, t0 = time.time(), time.perf_counter()
        first = None
        with self._lock:
            flight = self._in_flight[number] = [start, False]
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self._session.post(self.urls[replica] + "/v1/completions", json=body) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"HTTP {resp.status}")
                    async for raw in resp.content:
                        line = raw.decode().strip()
                        if line.startswith("data:") and line != "data: [DONE]":
                            if "error" in json.loads(line[5:]):
                                raise RuntimeError("error event")
                            first = first or time.perf_counter()
                            flight[1] = True
            if first is None:
                raise RuntimeError("no tokens")
            attempt = Attempt(start, replica, True, first - t0, time.perf_counter() - t0)
        except (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, RuntimeError, OSError) as exc:
            attempt = Attempt(start, replica, False, error=f"{type(exc).__name__}: {exc}"[:200])
        with self._lock:
            self.attempts.append(attempt)
            self._in_flight.pop(number, None)
        return attempt

    def fire(self, num_requests: int, prompt_len: int, max_tokens: int) -> None:
        """Send `num_requests` extra requests now (round-robin), without waiting for them."""
        for _ in range(num_requests):
            self._n += 1
            asyncio.run_coroutine_threadsafe(self._one(self._n % len(self.urls), prompt_len, max_tokens), self._loop)

    def window(self, start_s: float, end_s: float, ttft_slo_s: float = 1.0) -> dict:
        """SLIs of the attempts that started in [start_s, end_s) (wall clock).

        A request still in flight counts against the TTFT ratio once it has waited past `ttft_slo_s`
        without a token (it has missed the objective already); availability counts finished ones only.
        """
        now = time.time()
        with self._lock:
            got = [a for a in self.attempts if start_s <= a.start_s < end_s]
            late = sum(1 for t, has_token in self._in_flight.values()
                       if start_s <= t < end_s and not has_token and now - t > ttft_slo_s)
        ok = [a for a in got if a.is_ok]
        ttfts = np.array([a.ttft_s for a in ok])
        judged = len(got) + late
        return {"num_requests": len(got), "num_failed": len(got) - len(ok), "num_late_in_flight": late,
                "availability": len(ok) / len(got) if got else float("nan"),
                "ttft_slo_ratio": sum(a.ttft_s <= ttft_slo_s for a in ok) / judged if judged else float("nan"),
                "ttft_p99_s": float(np.percentile(ttfts, 99)) if len(ttfts) else float("nan")}
