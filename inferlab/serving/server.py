"""`inferlab serve`: an OpenAI-compatible HTTP server in front of the engine.

Flow: HTTP request -> `completions` validates the body (HTTP 400 naming the bad field) ->
`AsyncEngine.submit` queues it on the `LLMEngine`, which steps in a background thread ->
each new token comes back through the request's `on_token` callback onto its asyncio queue
-> JSON response, or Server-Sent Events (`data: {...}` chunks, then `data: [DONE]`).
Routes: POST /v1/completions, GET /v1/models, GET /health.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
import uuid
from typing import Any

from aiohttp import web

from inferlab.engine import EngineConfig, FinishReason, LLMEngine, RequestOutput, SamplingParams
from inferlab.model import tokenizer


class AsyncEngine:
    """Runs `LLMEngine.step()` in a background thread; hands tokens to asyncio queues."""

    def __init__(self, engine: LLMEngine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="inferlab-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop:
            with self._lock:
                busy = self.engine.has_unfinished()
                if busy:
                    self.engine.step()
            if not busy:
                self._wake.wait(0.1)
                self._wake.clear()

    def submit(self, prompt_ids: list[int], params: SamplingParams) -> tuple[str, asyncio.Queue]:
        """Queue a request; its `RequestOutput`s arrive on the returned queue. Raises ValueError on bad input."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[RequestOutput] = asyncio.Queue()

        def on_token(out: RequestOutput) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, out)

        with self._lock:
            rid = self.engine.add_request(prompt_ids, params, request_id=f"cmpl-{uuid.uuid4().hex}", on_token=on_token)
        self._wake.set()
        return rid, queue

    def abort(self, request_id: str) -> None:
        with self._lock:
            if request_id in self.engine.requests:
                self.engine.abort(request_id)


class BadRequest(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def _error(status: int, message: str, param: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": status}}
    return web.json_response(body, status=status)


def _get(body: dict, name: str, kind: type | tuple, default: Any) -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise BadRequest(name, f"'{name}' must be {getattr(kind, '__name__', kind)}, got a boolean")
    if not isinstance(value, kind):
        raise BadRequest(name, f"'{name}' has the wrong type {type(value).__name__}")
    return value


def parse_completion_request(body: Any, vocab_size: int) -> tuple[list[int], SamplingParams, bool, bool]:
    """Body of POST /v1/completions -> (prompt ids, sampling params, stream, include_usage). Raises BadRequest."""
    if not isinstance(body, dict):
        raise BadRequest("body", "the request body must be a JSON object")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        ids = tokenizer.encode(prompt)
    elif isinstance(prompt, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        ids = list(prompt)
        if any(not 0 <= t < vocab_size for t in ids):
            raise BadRequest("prompt", f"prompt token ids must be in [0, {vocab_size})")
    else:
        raise BadRequest("prompt", "'prompt' must be a string or a list of token ids (one prompt per request)")
    if not ids:
        raise BadRequest("prompt", "'prompt' is empty")
    max_tokens = _get(body, "max_tokens", int, 16)
    if max_tokens < 1:
        raise BadRequest("max_tokens", f"'max_tokens' must be >= 1, got {max_tokens}")
    temperature = _get(body, "temperature", (int, float), 1.0)
    if temperature < 0:
        raise BadRequest("temperature", f"'temperature' must be >= 0, got {temperature}")
    stop_ids = _get(body, "stop_token_ids", list, [])
    if not all(isinstance(t, int) for t in stop_ids):
        raise BadRequest("stop_token_ids", "'stop_token_ids' must be a list of integers")
    params = SamplingParams(max_tokens=max_tokens, temperature=float(temperature),
                            ignore_eos=_get(body, "ignore_eos", bool, False), stop_token_ids=tuple(stop_ids),
                            seed=_get(body, "seed", int, None))
    stream = _get(body, "stream", bool, False)
    include_usage = bool(_get(body, "stream_options", dict, {}).get("include_usage", False))
    return ids, params, stream, include_usage


def build_app(engine: LLMEngine, model_name: str = "inferlab-tiny") -> web.Application:
    """The aiohttp application serving `engine` (started and stopped with the app)."""
    app = web.Application()
    runner = AsyncEngine(engine)
    vocab = engine.model.config.vocab_size

    async def on_startup(_app: web.Application) -> None:
        runner.start()

    async def on_cleanup(_app: web.Application) -> None:
        runner.stop()

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def models(_request: web.Request) -> web.Response:
        card = {"id": model_name, "object": "model", "created": 0, "owned_by": "inferlab",
                "max_model_len": engine.config.max_model_len}
        return web.json_response({"object": "list", "data": [card]})

    async def completions(request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "the request body is not valid JSON", "body")
        try:
            if isinstance(body, dict) and body.get("model") not in (None, model_name):
                return _error(404, f"model {body.get('model')!r} does not exist; this server serves {model_name!r}",
                              "model")
            ids, params, stream, include_usage = parse_completion_request(body, vocab)
            rid, queue = runner.submit(ids, params)
        except BadRequest as exc:
            return _error(400, str(exc), exc.param)
        except ValueError as exc:  # the engine's own checks (context length, pool size)
            return _error(400, str(exc), "prompt")
        created = int(time.time())
        base = {"id": rid, "object": "text_completion", "created": created, "model": model_name}
        usage = {"prompt_tokens": len(ids), "completion_tokens": 0}

        def chunk(text: str, token_ids: list[int], reason: FinishReason | None) -> dict:
            choice = {"index": 0, "text": text, "token_ids": token_ids, "logprobs": None,
                      "finish_reason": None if reason is None else reason.value}
            return {**base, "choices": [choice]}

        if not stream:
            tokens: list[int] = []
            try:
                while True:
                    out = await queue.get()
                    tokens.extend(out.new_token_ids)
                    if out.is_finished:
                        break
            except asyncio.CancelledError:
                runner.abort(rid)
                raise
            if out.finish_reason is FinishReason.ERROR:
                return _error(500, f"generation failed: {out.error}")
            usage.update(completion_tokens=len(tokens), total_tokens=len(ids) + len(tokens))
            return web.json_response({**chunk(tokenizer.decode(tokens), tokens, out.finish_reason), "usage": usage})

        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        try:
            while True:
                out = await queue.get()
                usage["completion_tokens"] += len(out.new_token_ids)
                if out.finish_reason is FinishReason.ERROR:
                    await resp.write(f"data: {json.dumps({'error': {'message': out.error}})}\n\n".encode())
                    break
                payload = chunk(tokenizer.decode(list(out.new_token_ids)), list(out.new_token_ids), out.finish_reason)
                await resp.write(f"data: {json.dumps(payload)}\n\n".encode())
                if out.is_finished:
                    break
            if include_usage:
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
                await resp.write(f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode())
            await resp.write(b"data: [DONE]\n\n")
        except (asyncio.CancelledError, ConnectionResetError):
            runner.abort(rid)
            raise
        return resp

    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/completions", completions)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def add_engine_args(parser: argparse.ArgumentParser) -> None:
    """Engine flags shared by `serve` and the benchmark."""
    d = EngineConfig()
    parser.add_argument("--max-num-seqs", type=int, default=d.max_num_seqs)
    parser.add_argument("--max-num-batched-tokens", type=int, default=d.max_num_batched_tokens)
    parser.add_argument("--block-size", type=int, default=d.block_size)
    parser.add_argument("--num-kv-blocks", type=int, default=d.num_kv_blocks)
    parser.add_argument("--max-model-len", type=int, default=d.max_model_len)
    parser.add_argument("--no-chunked-prefill", action="store_true")
    parser.add_argument("--no-prefix-caching", action="store_true")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=d.dtype)


def engine_config_from_args(args: argparse.Namespace) -> EngineConfig:
    return EngineConfig(
        max_num_seqs=args.max_num_seqs, max_num_batched_tokens=args.max_num_batched_tokens,
        block_size=args.block_size, num_kv_blocks=args.num_kv_blocks, max_model_len=args.max_model_len,
        enable_chunked_prefill=not args.no_chunked_prefill, enable_prefix_caching=not args.no_prefix_caching,
        device=args.device, dtype=args.dtype)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inferlab serve", description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=None, help="HF checkpoint dir (default: the tiny checkpoint)")
    parser.add_argument("--served-model-name", default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    add_engine_args(parser)
    args = parser.parse_args(argv)
    from inferlab.model import ensure_checkpoint

    model_dir = args.model_dir or str(ensure_checkpoint("tiny"))
    try:
        config = engine_config_from_args(args)
        engine = LLMEngine.from_checkpoint(model_dir, config)
    except ValueError as exc:
        parser.error(str(exc))
    name = args.served_model_name or model_dir
    print(f"serving {name} on http://{args.host}:{args.port}", flush=True)
    web.run_app(build_app(engine, name), host=args.host, port=args.port, print=None)
    return 0
