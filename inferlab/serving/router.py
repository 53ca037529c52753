"""`inferlab route`: an OpenAI-compatible router with traffic shaping in front of N replicas.

Flow: POST /v1/completions or /v1/chat/completions -> the body is read as JSON (400 when it
is not a JSON object) -> the tenant (header `X-Tenant`; 403 naming it when `--tenants` does
not list it) -> its token buckets (`policies.shape.admit`: 429 + Retry-After) -> the gate:
with `--max-outstanding-per-replica`, requests beyond the fleet's slots wait in a bounded
queue (429 + Retry-After when full) and a shaper (`fcfs`, `priority`, `vtc`) picks who goes
next -> a routing policy (`policies.route`, the same functions the simulator runs) picks a
healthy replica, seeing the router's own counts (outstanding, pending prefill) and what the
health loop last read from each replica's /metrics (queued requests, KV cache usage) -> the request is forwarded and its answer, SSE streams included, passes
through byte for byte.

A request that never started (connection refused or reset before any response, or a
replica's 429/503) is retried on a replica it has not tried; a refused connection ejects
the replica at once, and the health checker (`serving/replicas.py`) ejects one whose
/health fails twice in a row. No healthy replica: 503 naming each replica and why.
Routes besides the two above: GET /v1/models (from a healthy replica), GET /health,
GET /router/stats (replicas, queue, tenants, retries), GET /metrics (Prometheus:
answers by status, retries, refusals, each replica's health and load; `observe/router_exposition.py`).

    inferlab route --replica http://127.0.0.1:8001 --replica http://127.0.0.1:8002 --policy prefix-load
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import aiohttp
from aiohttp import web

from inferlab.observe.router_exposition import CONTENT_TYPE as METRICS_CONTENT_TYPE
from inferlab.observe.router_exposition import RouterMetrics
from inferlab.policies import route as routes
from inferlab.policies.route import RouteContext, Router, prompt_block_hashes
from inferlab.policies.shape import SHAPERS, AdmitContext, Queued, Shaper, TenantLimits, admit, parse_tenants
from inferlab.serving.openai_api import ApiError, error_body
from inferlab.serving.gate import Gate
from inferlab.serving.replicas import Replica, ReplicaPool

DEFAULT_TENANT = "default"
DEFAULT_MAX_TOKENS = 16
CHARS_PER_TOKEN = 4  # text prompts: the router does not tokenize; ~4 characters per token
MAX_BODY_BYTES = 1 << 20
ROUTER = web.AppKey("router", object)  # the app's `HttpRouter` (tests read its state)
HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}


@dataclass
class RouterConfig:
    """What `inferlab route` is given (see `main` for the flags)."""

    policy: Router = routes.least_outstanding
    shaper: Shaper = SHAPERS["fcfs"]
    tenants: dict[str, TenantLimits] | None = None  # None: any tenant, no limits
    max_outstanding_per_replica: int | None = None  # None: no gate, requests go straight to a replica
    max_queue: int = 1024
    max_tenant_share: float | None = None  # with the gate: share of its slots one tenant may hold
    tenant_header: str = "X-Tenant"
    session_header: str = "X-Session-Id"
    block_size: int = routes.DEFAULT_BLOCK_SIZE
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_outstanding_per_replica is not None and self.max_outstanding_per_replica < 1:
            raise ValueError(f"max_outstanding_per_replica must be >= 1, got {self.max_outstanding_per_replica}")
        if self.max_queue < 0 or self.block_size < 1:
            raise ValueError("max_queue must be >= 0 and block_size >= 1")
        if self.max_tenant_share is not None and (self.max_outstanding_per_replica is None
                                                  or not 0 < self.max_tenant_share <= 1):
            raise ValueError(f"max_tenant_share must be in (0, 1] and needs max_outstanding_per_replica, "
                             f"got {self.max_tenant_share}")


def prompt_features(body: dict, block_size: int) -> tuple[int, tuple[int, ...]]:
    """(estimated prompt tokens, block hashes) of a completions or chat body."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return len(prompt), prompt_block_hashes(prompt, block_size)
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if isinstance(prompt, str):
        text = prompt
    elif isinstance(body.get("messages"), list):
        text = "".join(f"<{m.get('role')}>{m.get('content')}" for m in body["messages"] if isinstance(m, dict))
    else:
        return 0, ()  # the replica will say what is wrong with it
    codes = [ord(c) for c in text]  # blocks of block_size tokens ~ block_size * CHARS_PER_TOKEN characters
    return max(1, len(text) // CHARS_PER_TOKEN), prompt_block_hashes(codes, block_size * CHARS_PER_TOKEN)


@dataclass
class Stats:
    num_requests: int = 0
    num_retries: int = 0
    num_refused: dict[str, int] = field(default_factory=dict)  # reason -> count
    per_tenant: dict[str, int] = field(default_factory=dict)

    def refuse(self, reason: str) -> None:
        self.num_refused[reason] = self.num_refused.get(reason, 0) + 1


class HttpRouter:
    """The router's state and request handling; `build_app` wires it into aiohttp."""

    def __init__(self, pool: ReplicaPool, config: RouterConfig) -> None:
        self.pool, self.config = pool, config
        self.policy_state: dict[str, Any] = {}
        self.admit_state: dict[str, Any] = {}
        self.rng = random.Random(config.seed)
        self.gate = Gate(config.shaper, self._capacity, config.max_queue, config.max_tenant_share)
        self.stats = Stats()
        self.session: aiohttp.ClientSession | None = None

    def _capacity(self) -> int | None:
        limit = self.config.max_outstanding_per_replica
        return None if limit is None else limit * max(1, len(self.pool.healthy()))

    def _tenant(self, request: web.Request) -> tuple[str, TenantLimits]:
        tenant = request.headers.get(self.config.tenant_header, DEFAULT_TENANT)
        tenants = self.config.tenants
        if tenants is None:
            return tenant, TenantLimits()
        if tenant not in tenants and self.config.tenant_header not in request.headers:
            raise ApiError(403, f"missing header {self.config.tenant_header}: this router serves only the tenants "
                                f"{', '.join(sorted(tenants))}", self.config.tenant_header)
        if tenant not in tenants:
            raise ApiError(403, f"unknown tenant {tenant!r} (header {self.config.tenant_header}); "
                                f"known: {', '.join(sorted(tenants))}", self.config.tenant_header)
        return tenant, tenants[tenant]

    def _pick(self, candidates: list[Replica], num_tokens: int, hashes: tuple[int, ...],
              session_key: str | None) -> Replica:
        ctx = RouteContext([r.num_outstanding for r in candidates], [r.kv_utilization for r in candidates],
                           num_tokens, self.policy_state, self.rng, hashes, session_key, time.monotonic(),
                           tuple(r.url for r in candidates), tuple(r.num_pending_prefill_tokens for r in candidates),
                           self.config.block_size, tuple(r.num_waiting for r in candidates))
        index, self.policy_state = self.config.policy(ctx)
        if not 0 <= index < len(candidates):
            raise ApiError(500, f"the routing policy returned index {index} for {len(candidates)} replicas")
        return candidates[index]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ApiError(400, f"the request body is not valid JSON ({type(exc).__name__})", "body") from None
        if not isinstance(body, dict):
            raise ApiError(400, f"the request body must be a JSON object, got {type(body).__name__}", "body")
        tenant, limits = self._tenant(request)
        num_tokens, hashes = prompt_features(body, self.config.block_size)
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or DEFAULT_MAX_TOKENS
        max_tokens = max_tokens if isinstance(max_tokens, int) else DEFAULT_MAX_TOKENS
        decision, self.admit_state = admit(AdmitContext(tenant, num_tokens + max_tokens, time.monotonic(), limits,
                                                        self.admit_state))
        if not decision.is_admitted:
            self.stats.refuse("rate_limit")
            retry = "3600" if math.isinf(decision.retry_after_s) else str(max(1, math.ceil(decision.retry_after_s)))
            raise ApiError(429, decision.reason, self.config.tenant_header, {"Retry-After": retry})
        self.stats.num_requests += 1
        self.stats.per_tenant[tenant] = self.stats.per_tenant.get(tenant, 0) + 1
        await self.gate.enter(Queued(tenant, num_tokens, max_tokens, time.monotonic(), limits.priority))
        try:
            return await self._forward(request, raw, num_tokens, hashes, request.headers.get(self.config.session_header))
        finally:
            self.gate.leave(tenant)

    async def _forward(self, request: web.Request, raw: bytes, num_tokens: int, hashes: tuple[int, ...],
                       session_key: str | None) -> web.StreamResponse:
        tried: set[str] = set()
        refused: tuple[int, bytes, dict] | None = None
        limit = self.config.max_outstanding_per_replica
        while True:
            healthy = [r for r in self.pool.healthy() if r.url not in tried]
            roomy = [r for r in healthy if limit is None or r.num_outstanding < limit]
            candidates = roomy or healthy
            if not candidates:
                if refused is not None:  # every replica refused it: pass on the last refusal
                    status, text, headers = refused
                    return web.Response(status=status, body=text, headers=headers)
                self.stats.refuse("no_healthy_replica")
                raise ApiError(503, "no healthy replica: " + (self.pool.describe_unhealthy() or "none configured"))
            if tried:
                self.stats.num_retries += 1
            replica = self._pick(candidates, num_tokens, hashes, session_key)
            tried.add(replica.url)
            replica.num_outstanding += 1
            replica.num_requests += 1
            replica.num_pending_prefill_tokens += num_tokens
            pending = num_tokens
            try:
                try:
                    upstream = await self.session.post(replica.url + request.path, data=raw,
                                                       headers=forward_headers(request.headers))
                except (aiohttp.ClientConnectionError, asyncio.TimeoutError, OSError) as exc:
                    self.pool.eject(replica, f"{type(exc).__name__} on {request.path}")
                    continue  # it never started there
                async with upstream:
                    if upstream.status in (429, 503):
                        headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS}
                        refused = (upstream.status, await upstream.read(), headers)
                        continue
                    resp = web.StreamResponse(status=upstream.status, headers={
                        k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS})
                    resp.headers["X-Inferlab-Replica"] = replica.url
                    await resp.prepare(request)
                    try:
                        async for chunk in upstream.content.iter_any():
                            if pending:
                                replica.num_pending_prefill_tokens -= pending
                                pending = 0
                            try:
                                await resp.write(chunk)
                            except ConnectionResetError:  # our client left: closing upstream aborts it there
                                return resp
                    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                        # it died mid-answer: the request had started, so it is not retried
                        self.pool.eject(replica, f"{type(exc).__name__} while answering")
                        await self._cut(request, resp, replica.url)
                    with contextlib.suppress(ConnectionResetError):  # the client may close right after [DONE]
                        await resp.write_eof()
                    return resp
            finally:
                replica.num_outstanding -= 1
                replica.num_pending_prefill_tokens -= pending

    async def _cut(self, request: web.Request, resp: web.StreamResponse, url: str) -> None:
        """End an answer its replica abandoned: an SSE error event, or a dropped connection."""
        request[CUT] = True  # counted as code="cut" in /metrics, not as the 200 it started as
        if resp.content_type == "text/event-stream":
            message = f"replica {url} failed while answering; the request was cut off"
            await resp.write(f"data: {json.dumps(error_body(502, message))}\n\n".encode())
            return
        resp.force_close()
        if request.transport is not None:
            request.transport.close()

    def stats_json(self) -> dict:
        return {"replicas": [r.to_dict() for r in self.pool.replicas], "num_queued": len(self.gate.queue),
                "num_in_flight": self.gate.num_in_flight, "num_requests": self.stats.num_requests,
                "num_retries": self.stats.num_retries, "num_refused": self.stats.num_refused,
                "requests_per_tenant": self.stats.per_tenant}


CUT = web.RequestKey("cut", bool)  # set on a request whose replica abandoned its answer


def counting(metrics: RouterMetrics):
    """Middleware counting every answer to a client by status (outermost: sees the final status)."""

    @web.middleware
    async def count(request: web.Request, handler) -> web.StreamResponse:
        if request.method != "POST":
            return await handler(request)
        try:
            resp = await handler(request)
        except BaseException:
            metrics.requests.labels(code="cut" if request.get(CUT) else "500").inc()
            raise
        metrics.requests.labels(code="cut" if request.get(CUT) else str(resp.status)).inc()
        return resp

    return count


@web.middleware
async def openai_errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return web.json_response(error_body(exc.status, exc.message, exc.param), status=exc.status,
                                 headers=exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response(error_body(exc.status, exc.reason), status=exc.status)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as exc:  # a bug: this request gets an error object, the router goes on
        return web.json_response(error_body(500, f"router error: {type(exc).__name__}: {exc}"), status=500)


def build_app(pool: ReplicaPool, config: RouterConfig) -> web.Application:
    router = HttpRouter(pool, config)
    metrics = RouterMetrics(router.stats_json)
    app = web.Application(middlewares=[counting(metrics), openai_errors], client_max_size=MAX_BODY_BYTES)
    app[ROUTER] = router

    async def on_startup(_app: web.Application) -> None:
        router.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                               timeout=aiohttp.ClientTimeout(total=None, sock_connect=2.0))
        pool.start(router.session)

    async def on_cleanup(_app: web.Application) -> None:
        await pool.stop()
        await router.session.close()

    async def health(_request: web.Request) -> web.Response:
        if not pool.healthy():
            raise ApiError(503, "no healthy replica: " + pool.describe_unhealthy())
        return web.json_response({"status": "ok", "num_healthy": len(pool.healthy())})

    async def models(_request: web.Request) -> web.Response:
        for replica in pool.healthy():
            try:
                async with router.session.get(replica.url + "/v1/models") as resp:
                    return web.json_response(await resp.json(), status=resp.status)
            except (aiohttp.ClientError, ValueError):
                continue
        raise ApiError(503, "no healthy replica: " + pool.describe_unhealthy())

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response(router.stats_json())

    app.router.add_post("/v1/completions", router.handle)
    app.router.add_post("/v1/chat/completions", router.handle)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    async def prometheus(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    app.router.add_get("/router/stats", stats)
    app.router.add_get("/metrics", prometheus)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


TRACE_HEADERS = ("traceparent", "tracestate")  # W3C trace context: the replica's span joins the client's trace


def forward_headers(client_headers) -> dict[str, str]:
    """The headers a replica gets: JSON, and the client's W3C trace context where it sent one."""
    headers = {"Content-Type": "application/json"}
    headers.update({name: client_headers[name] for name in TRACE_HEADERS if name in client_headers})
    return headers


@contextlib.contextmanager
def router_thread(urls: list[str], config: RouterConfig, health_interval_s: float = 1.0, health_timeout_s: float = 1.0,
                  max_failures: int = 2) -> Iterator[tuple[str, "HttpRouter"]]:
    """A router on a free loopback port in a background thread (benchmarks, tests, notebooks).

    Yields (base URL, the `HttpRouter`, whose state may be read between requests). The health
    arguments are `ReplicaPool`'s.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    loop = asyncio.new_event_loop()
    app = build_app(ReplicaPool(list(urls), health_interval_s=health_interval_s, health_timeout_s=health_timeout_s,
                                max_failures=max_failures), config)
    runner, ready = web.AppRunner(app), threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("the router did not start within 30 s")
    try:
        yield f"http://127.0.0.1:{port}", app[ROUTER]
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def resolve_policy(name: str) -> Router:
    from inferlab.sim.main import resolve  # shipped name or module:function, as `inferlab simulate --router`
    return resolve(name, routes.ROUTERS, "policy")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inferlab route", description=__doc__.splitlines()[0])
    parser.add_argument("--replica", action="append", default=[], help="a replica's base URL (repeat)")
    parser.add_argument("--policy", default="least-outstanding",
                        help=f"{', '.join(routes.ROUTERS)} or module:function")
    parser.add_argument("--max-pending-prefill-tokens", type=int, default=None,
                        help="prefix-load: leave the warm replica past this many pending prefill tokens")
    parser.add_argument("--shaper", default="fcfs", choices=sorted(SHAPERS))
    parser.add_argument("--tenants", default=None,
                        help="known tenants and limits: 'gold:rps=10,priority=0;free:rps=1,tps=500' "
                             "(keys rps, burst, tps, token_burst, priority); default: any tenant, no limits")
    parser.add_argument("--max-outstanding-per-replica", type=int, default=None,
                        help="requests in flight per replica before the router queues (default: no queue)")
    parser.add_argument("--max-queue", type=int, default=1024)
    parser.add_argument("--max-tenant-share", type=float, default=None,
                        help="with --max-outstanding-per-replica: the share (0-1] of the fleet's slots one tenant "
                             "may hold, keeping the rest free for the others")
    parser.add_argument("--health-interval-s", type=float, default=1.0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        policy = resolve_policy(args.policy)
        if args.max_pending_prefill_tokens is not None:
            if args.policy != "prefix-load":
                raise ValueError("--max-pending-prefill-tokens applies to --policy prefix-load only")
            policy = routes.make_prefix_load(args.max_pending_prefill_tokens)
        config = RouterConfig(policy, SHAPERS[args.shaper],
                              parse_tenants(args.tenants) if args.tenants else None,
                              args.max_outstanding_per_replica, args.max_queue, args.max_tenant_share,
                              seed=args.seed)
        pool = ReplicaPool(args.replica, health_interval_s=args.health_interval_s)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"routing on http://{args.host}:{args.port} to {len(pool.replicas)} replicas ({args.policy})", flush=True)
    web.run_app(build_app(pool, config), host=args.host, port=args.port, print=None)
    return 0
