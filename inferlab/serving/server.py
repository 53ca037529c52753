"""`inferlab serve`: an OpenAI-compatible HTTP server in front of the engine.

Flow: HTTP request -> `read_json` (size, Content-Type, charset, JSON) -> `openai_api`
validates it into a `GenerationRequest` (a 4xx naming the bad field otherwise) ->
`AsyncEngine.submit` (admission: 429 + Retry-After when the queue is full) queues it on the
`LLMEngine`, which steps in a background thread -> tokens come back on an asyncio queue ->
`Detokenizer` turns them into text -> a JSON response, or Server-Sent Events
(`data: {...}` chunks, then `data: [DONE]`). Every error, whatever its status, is an OpenAI
error object (`openai_api.error_body`).

Routes: POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health
(liveness of the engine loop), GET /ready (readiness: alive and admitting), GET /stats
(counters), GET /metrics (Prometheus, vLLM's names: `inferlab.observe.exposition`),
GET /openapi.json. With a tracer (`--otel-traces-file`, or an OTLP endpoint), every request is
a span, child of the client's W3C `traceparent` (`inferlab.observe.tracing`).
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import faulthandler
import json
import os
import signal
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

from aiohttp import web

from inferlab.engine import EngineConfig, FinishReason, LLMEngine
from inferlab.model.attention import BACKENDS
from inferlab.observe.exposition import CONTENT_TYPE, EngineMetrics
from inferlab.observe.tracing import RequestTracer, meter_provider, parent_context, tracer_provider
from inferlab.serving.async_engine import AdmissionConfig, AsyncEngine, EngineDead, Overloaded
from inferlab.serving.detokenize import Detokenizer
from inferlab.serving.openai_api import ApiError, GenerationRequest, Limits, error_body, parse_chat, parse_completion
from inferlab.serving.openapi import openapi_document
from inferlab.serving.responses import SSE_DONE, ResponseBuilder, sse

MAX_BODY_BYTES = 1 << 20  # 1 MiB: far above any prompt this kit's context holds
SERVER_MAX_FINISHED = 256  # finished requests a server keeps for inspection (memory stays flat)
SERVER_MAX_STEP_RECORDS = 4096
ASYNC_ENGINE = web.AppKey("async_engine", AsyncEngine)  # the app's engine loop (tests inspect it)
METRICS = web.AppKey("metrics", EngineMetrics)


def _error(status: int, message: str, param: str | None = None, headers: dict | None = None) -> web.Response:
    return web.json_response(error_body(status, message, param), status=status, headers=headers)


@web.middleware
async def openai_errors(request: web.Request, handler) -> web.StreamResponse:
    """Every error answered in OpenAI's shape: aiohttp's own (404, 405, 413), ours, and crashes (500)."""
    try:
        return await handler(request)
    except ApiError as exc:
        return _error(exc.status, exc.message, exc.param, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        param = "body" if exc.status == 413 else None
        return _error(exc.status, exc.reason if exc.status != 413 else
                      f"the request body is larger than {MAX_BODY_BYTES} bytes", param, _keep_headers(exc))
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as exc:  # a bug: the client gets an error object, the server goes on
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")


def _keep_headers(exc: web.HTTPException) -> dict:
    return {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}


async def read_json(request: web.Request) -> Any:
    """The body as JSON, or ApiError: 415 (Content-Type, charset), 413 (size), 400 (not JSON)."""
    ctype = request.content_type
    if request.headers.get("Content-Type") and not (ctype == "application/json" or ctype.endswith("+json")):
        raise ApiError(415, f"Content-Type must be application/json, got {ctype!r}", "Content-Type")
    charset = request.charset or "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        raise ApiError(415, f"unknown charset {charset!r} in Content-Type", "Content-Type") from None
    raw = await request.read()  # aiohttp raises 413 past client_max_size
    try:
        return json.loads(raw.decode(charset))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ApiError(400, f"the request body is not valid JSON ({type(exc).__name__})", "body") from None


def build_app(engine: LLMEngine, model_name: str = "inferlab-tiny",
              admission: AdmissionConfig | None = None, tracer: RequestTracer | None = None,
              metrics: EngineMetrics | None = None, observers: tuple = (),
              ignore_unknown_fields: bool = False) -> web.Application:
    """The aiohttp application serving `engine` (its loop started and stopped with the app).

    Its Prometheus metrics are always on (`app[METRICS]`, or `metrics` given: /metrics renders its
    registry, so an extra observer registering there is exported too); spans only with a `tracer`;
    `observers` are more `EngineObserver`s.
    """
    app = web.Application(middlewares=[openai_errors], client_max_size=MAX_BODY_BYTES)
    metrics = metrics or EngineMetrics(model_name)
    all_observers = (metrics, *observers) + (() if tracer is None else (tracer,))
    runner = AsyncEngine(engine, admission, observers=all_observers)
    app[ASYNC_ENGINE] = runner
    app[METRICS] = metrics
    limits = Limits(model_name, engine.model.config.vocab_size, engine.config.max_model_len,
                    engine.config.max_kv_tokens, ignore_unknown_fields)

    async def on_startup(_app: web.Application) -> None:
        runner.start()

    async def on_cleanup(_app: web.Application) -> None:
        runner.stop()
        if tracer is not None:
            tracer.shutdown()

    async def prometheus_metrics(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def health(_request: web.Request) -> web.Response:
        if not runner.is_alive:
            return _error(503, f"the engine loop is not running: {runner.last_error}")
        return web.json_response({"status": "ok"})

    async def ready(_request: web.Request) -> web.Response:
        if not runner.is_alive:
            return _error(503, f"the engine loop is not running: {runner.last_error}")
        problem = runner.admission_problem()
        if problem is not None:
            return _error(503, f"not admitting requests: {problem}")
        return web.json_response({"status": "ready"})

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response(runner.stats())

    async def openapi(_request: web.Request) -> web.Response:
        return web.json_response(openapi_document(model_name))

    async def models(_request: web.Request) -> web.Response:
        card = {"id": model_name, "object": "model", "created": 0, "owned_by": "inferlab",
                "max_model_len": engine.config.max_model_len}
        return web.json_response({"object": "list", "data": [card]})

    async def completions(request: web.Request) -> web.StreamResponse:
        return await _generate(request, parse_completion(await read_json(request), limits))

    async def chat_completions(request: web.Request) -> web.StreamResponse:
        return await _generate(request, parse_chat(await read_json(request), limits))

    async def _generate(request: web.Request, gen: GenerationRequest) -> web.StreamResponse:
        def is_disconnected() -> bool:  # read by the engine thread before every step
            transport = request.transport
            return transport is None or transport.is_closing()

        rid = f"{'chatcmpl' if gen.is_chat else 'cmpl'}-{uuid.uuid4().hex}"
        if tracer is not None:
            tracer.expect(rid, parent_context(request.headers), "chat" if gen.is_chat else "text_completion")
        try:
            rid, queue = runner.submit(gen.prompt_token_ids, gen.params, is_disconnected, request_id=rid)
        except Overloaded as exc:
            raise ApiError(429, str(exc), None, {"Retry-After": str(exc.retry_after_s)}) from None
        except EngineDead as exc:
            raise ApiError(503, f"the engine loop is not running: {exc}") from None
        except ValueError as exc:  # the engine's own checks
            raise ApiError(400, str(exc), "messages" if gen.is_chat else "prompt") from None
        build = ResponseBuilder(rid, model_name, int(time.time()), gen.is_chat, len(gen.prompt_token_ids))
        detok = Detokenizer(gen.params.stop)
        try:
            if gen.stream:
                return await _stream(request, queue, build, detok, gen.include_usage)
            tokens: list[int] = []
            while True:
                out = await queue.get()
                tokens.extend(out.new_token_ids)
                detok.add(out.new_token_ids)
                if out.is_finished:
                    break
        finally:
            # no-op when finished; frees the request when the handler ends early (its client left)
            runner.abort(rid, disconnected=is_disconnected())
        if out.finish_reason is FinishReason.ERROR:
            raise ApiError(500, f"generation failed: {out.error}")
        if out.finish_reason is FinishReason.ABORT:
            raise ApiError(503, "the request was aborted")
        detok.finish(out.stop_reason if isinstance(out.stop_reason, str) else None)
        return web.json_response(build.whole(detok.text, tokens, out.finish_reason, out.stop_reason))

    async def _stream(request: web.Request, queue: asyncio.Queue, build: ResponseBuilder, detok: Detokenizer,
                      include_usage: bool) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        try:
            await resp.prepare(request)
            await _events(resp, queue, build, detok, include_usage)
        except ConnectionResetError:  # the client left; the engine thread aborts the request
            pass
        return resp

    async def _events(resp: web.StreamResponse, queue: asyncio.Queue, build: ResponseBuilder, detok: Detokenizer,
                      include_usage: bool) -> None:
        num_tokens, first = 0, True
        while True:
            out = await queue.get()
            ids = list(out.new_token_ids)
            num_tokens += len(ids)
            if out.finish_reason in (FinishReason.ERROR, FinishReason.ABORT):
                await resp.write(sse(error_body(500, f"generation failed: {out.error or 'aborted'}")))
                break
            text = detok.add(ids)
            if out.is_finished:
                text += detok.finish(out.stop_reason if isinstance(out.stop_reason, str) else None)
            await resp.write(build.chunk(text, ids, out.finish_reason, out.stop_reason if out.is_finished else None,
                                         first))
            first = False
            if out.is_finished:
                break
        if include_usage:
            await resp.write(build.usage_chunk(num_tokens))
        await resp.write(SSE_DONE)

    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/stats", stats)
    app.router.add_get("/metrics", prometheus_metrics)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


@contextlib.contextmanager
def serve_in_thread(app: web.Application, host: str = "127.0.0.1") -> Iterator[str]:
    """Run `app` on a free loopback port in a background thread (notebooks, tests); yields its base URL."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port = sock.getsockname()[1]
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, host, port).start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="inferlab-serve", daemon=True)
    thread.start()
    if not ready.wait(60):
        raise RuntimeError("the server did not start within 60 s")
    try:
        yield f"http://{host}:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


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
    parser.add_argument("--ignore-unknown-fields", action="store_true",
                        help="drop request fields the server does not know instead of answering 400 (vLLM's "
                             "behaviour; routers such as vllm-router add fields of their own, e.g. no_stop_trim)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=d.dtype)
    parser.add_argument("--attention-backend", choices=sorted(BACKENDS), default=None,
                        help="attention over the paged KV pool (default: flex on CUDA, native on a CPU "
                             "when the C kernel builds, else gather)")
    parser.add_argument("--no-cuda-graphs", action="store_true", help="run decode steps eagerly on CUDA")


def engine_config_from_args(args: argparse.Namespace, **bounds: int | None) -> EngineConfig:
    return EngineConfig(
        max_num_seqs=args.max_num_seqs, max_num_batched_tokens=args.max_num_batched_tokens,
        block_size=args.block_size, num_kv_blocks=args.num_kv_blocks, max_model_len=args.max_model_len,
        enable_chunked_prefill=not args.no_chunked_prefill, enable_prefix_caching=not args.no_prefix_caching,
        device=args.device, dtype=args.dtype, attention_backend=args.attention_backend,
        enable_cuda_graphs=not args.no_cuda_graphs, **bounds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inferlab serve", description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=None, help="HF checkpoint dir (default: the tiny checkpoint)")
    parser.add_argument("--served-model-name", default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-waiting", type=int, default=None,
                        help="most requests waiting for a slot before new ones get 429 (default: no limit)")
    parser.add_argument("--max-waiting-tokens", type=int, default=None,
                        help="most prompt tokens waiting before new requests get 429 (default: no limit)")
    parser.add_argument("--max-finished-requests", type=int, default=SERVER_MAX_FINISHED,
                        help="finished requests kept in memory (-1: all, the unbounded pre-fix behaviour)")
    parser.add_argument("--max-step-records", type=int, default=SERVER_MAX_STEP_RECORDS,
                        help="step records kept in memory (-1: all)")
    parser.add_argument("--otel-traces-file", default=None,
                        help="write one OpenTelemetry span per request here (JSON lines)")
    parser.add_argument("--otel-metrics-file", default=None,
                        help="write the gen_ai.server.* histograms (TTFT, TPOT, duration) here every 10 s (JSON lines)")
    parser.add_argument("--otlp-endpoint", default=None,
                        help="also export spans over OTLP/HTTP to this collector (default: $OTEL_EXPORTER_OTLP_ENDPOINT)")
    add_engine_args(parser)
    args = parser.parse_args(argv)
    from inferlab.model import ensure_checkpoint

    model_dir = args.model_dir or str(ensure_checkpoint("tiny"))
    if not (Path(model_dir) / "config.json").is_file():
        parser.error(f"--model-dir {model_dir}: no checkpoint there (a folder with config.json and the weights; "
                     "`inferlab model tiny` makes one)")
    try:
        admission = AdmissionConfig(max_waiting=args.max_waiting, max_waiting_tokens=args.max_waiting_tokens)
        config = engine_config_from_args(
            args, max_finished_requests=None if args.max_finished_requests == -1 else args.max_finished_requests,
            max_step_records=None if args.max_step_records == -1 else args.max_step_records)
        engine = LLMEngine.from_checkpoint(model_dir, config)
    except ValueError as exc:
        parser.error(str(exc))
    name = args.served_model_name or model_dir
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID` prints every thread's stack (a stuck server)
    print(f"serving {name} on http://{args.host}:{args.port}", flush=True)
    tracer = None
    otlp = args.otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if args.otel_traces_file or args.otel_metrics_file or otlp:
        provider = tracer_provider(f"inferlab-serve:{args.port}", args.otel_traces_file, args.otlp_endpoint)
        meters = meter_provider(args.otel_metrics_file, args.otlp_endpoint) if args.otel_metrics_file or otlp else None
        tracer = RequestTracer(name, provider, engine.clock, meter_provider=meters)
    web.run_app(build_app(engine, name, admission, tracer, ignore_unknown_fields=args.ignore_unknown_fields),
                host=args.host, port=args.port, print=None)
    return 0
