"""The kit's OpenAI HTTP API in front of a model that only runs whole batches (DeepSpeed-Inference).

A framework without a scheduler gets static batching here: requests wait in a queue; when
the model is idle the front takes up to `max_batch_size` of them and runs the batch until its
longest request is done, streaming each step's token to every request still running. Requests
are validated by `inferlab.serving.openai_api` (the same 4xx messages as `inferlab serve`) and
answered with its `ResponseBuilder` shapes, so `inferlab loadgen` measures both the same way.
Greedy decoding only; `ignore_eos` honoured.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from aiohttp import web

from inferlab.engine import FinishReason
from inferlab.serving.detokenize import Detokenizer
from inferlab.serving.openai_api import ApiError, Limits, parse_completion
from inferlab.serving.responses import SSE_DONE, ResponseBuilder
from inferlab.serving.server import openai_errors, read_json

# generate(prompts, max_new_tokens, on_step): calls on_step(step, [token per prompt]) for each step
BatchGenerate = Callable[[list[list[int]], int, Callable[[int, list[int]], bool]], None]


@dataclass
class _Pending:
    prompt: list[int]
    max_tokens: int
    ignore_eos: bool
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    num_sent: int = 0
    done: bool = False


class StaticBatcher:
    """Takes waiting requests in batches of at most `max_batch_size` and runs them on `generate`."""

    def __init__(self, generate: BatchGenerate, max_batch_size: int, eos_token_id: int | None) -> None:
        self.generate = generate
        self.max_batch_size = max_batch_size
        self.eos_token_id = eos_token_id
        self.waiting: list[_Pending] = []
        self.cond = threading.Condition()
        self.is_running = True
        self.last_error: str | None = None
        self.num_batches = 0
        self.thread = threading.Thread(target=self._run, daemon=True, name="static-batcher")

    def submit(self, pending: _Pending) -> None:
        with self.cond:
            self.waiting.append(pending)
            self.cond.notify()

    def stop(self) -> None:
        with self.cond:
            self.is_running = False
            self.cond.notify()

    def _run(self) -> None:
        while True:
            with self.cond:
                while self.is_running and not self.waiting:
                    self.cond.wait()
                if not self.is_running:
                    return
                batch, self.waiting = self.waiting[: self.max_batch_size], self.waiting[self.max_batch_size:]
            self.num_batches += 1
            try:
                self.generate([p.prompt for p in batch], max(p.max_tokens for p in batch),
                              lambda step, tokens: self._on_step(batch, tokens))
            except Exception as exc:  # the batch fails; the server and later batches go on
                self.last_error = f"{type(exc).__name__}: {exc}"
                for p in batch:
                    if not p.done:
                        p.done = True
                        p.loop.call_soon_threadsafe(p.queue.put_nowait, (None, self.last_error))

    def _on_step(self, batch: list[_Pending], tokens: list[int]) -> bool:
        """Deliver one step; False once every request of the batch is done (the model may stop early)."""
        for p, token in zip(batch, tokens):
            if p.done:
                continue
            p.num_sent += 1
            reason = None
            if p.num_sent >= p.max_tokens:
                reason = FinishReason.LENGTH
            elif not p.ignore_eos and token == self.eos_token_id:
                reason = FinishReason.STOP
            p.done = reason is not None
            p.loop.call_soon_threadsafe(p.queue.put_nowait, (token, reason))
        return not all(p.done for p in batch)


def build_app(generate: BatchGenerate, model_name: str, vocab_size: int, max_model_len: int,
              eos_token_id: int | None, max_batch_size: int = 16) -> web.Application:
    """/v1/completions (streamed or whole), /v1/models, /health on top of `generate`."""
    app = web.Application(middlewares=[openai_errors])
    batcher = StaticBatcher(generate, max_batch_size, eos_token_id)
    limits = Limits(model_name, vocab_size, max_model_len, max_model_len * max_batch_size)
    ids = itertools.count()

    async def on_startup(_app: web.Application) -> None:
        batcher.thread.start()

    async def on_cleanup(_app: web.Application) -> None:
        batcher.stop()
        await asyncio.get_running_loop().run_in_executor(None, batcher.thread.join, 30.0)  # the batch in flight ends

    async def health(_request: web.Request) -> web.Response:
        if not batcher.thread.is_alive():
            raise ApiError(503, "the batch loop is not running")
        return web.json_response({"status": "ok", "num_batches": batcher.num_batches,
                                  "last_error": batcher.last_error})

    async def models(_request: web.Request) -> web.Response:
        card = {"id": model_name, "object": "model", "created": 0, "owned_by": "inferlab",
                "max_model_len": max_model_len}
        return web.json_response({"object": "list", "data": [card]})

    async def completions(request: web.Request) -> web.StreamResponse:
        gen = parse_completion(await read_json(request), limits)
        if gen.params.temperature != 0:
            raise ApiError(400, "this server decodes greedily only: temperature must be 0", "temperature")
        pending = _Pending(gen.prompt_token_ids, gen.params.max_tokens, gen.params.ignore_eos,
                           asyncio.get_running_loop())
        batcher.submit(pending)
        build = ResponseBuilder(f"cmpl-{next(ids)}", model_name, int(time.time()), False, len(pending.prompt))
        detok = Detokenizer(())
        tokens: list[int] = []
        resp = None
        if gen.stream:
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
            await resp.prepare(request)
        while True:
            token, reason = await pending.queue.get()
            if token is None:
                if resp is None:
                    raise ApiError(500, f"generation failed: {reason}")
                await resp.write(b'data: {"error": {"message": "generation failed"}}\n\n')
                return resp
            tokens.append(token)
            text = detok.add([token])
            if reason is not None:
                text += detok.finish(None)
            if resp is not None:
                await resp.write(build.chunk(text, [token], reason, None, len(tokens) == 1))
            if reason is not None:
                break
        if resp is None:
            return web.json_response(build.whole(detok.text, tokens, reason, None))
        if gen.include_usage:
            await resp.write(build.usage_chunk(len(tokens)))
        await resp.write(SSE_DONE)
        return resp

    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/completions", completions)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app
