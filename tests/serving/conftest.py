"""Fixtures: one torch thread, and servers on free ports (`serve(engine, ...)` for a test's own)."""

import asyncio
import contextlib
import json
import socket
import threading

import aiohttp
import pytest
import torch
from aiohttp import web

from inferlab.engine import EngineConfig, LLMEngine
from inferlab.model import build_model
from inferlab.serving.server import ASYNC_ENGINE, build_app

CONFIG = EngineConfig(max_num_seqs=8, max_num_batched_tokens=256, num_kv_blocks=256, max_model_len=512,
                      max_finished_requests=64, max_step_records=256)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny():
    torch.manual_seed(0)
    return build_model("tiny")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """A running server: `base` URL, its `app`, `engine` and `loop` thread wrapper (`async_engine`)."""

    def __init__(self, base: str, app: web.Application, engine: LLMEngine) -> None:
        self.base, self.app, self.engine = base, app, engine
        self.async_engine = app[ASYNC_ENGINE]

    def call(self, method: str, path: str, body=None, data: bytes | None = None, headers: dict | None = None,
             timeout_s: float = 60):
        """(status, parsed JSON or text, headers) of one request."""
        async def go():
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as s:
                kw = {"json": body} if data is None else {"data": data}
                async with s.request(method, self.base + path, headers=headers, **kw) as r:
                    text = await r.text()
                    try:
                        return r.status, json.loads(text), r.headers
                    except ValueError:
                        return r.status, text, r.headers
        return asyncio.run(go())

    def stream(self, path: str, body: dict) -> list:
        """The parsed SSE events of a streamed request (the last is the string '[DONE]')."""
        async def go():
            async with aiohttp.ClientSession() as s:
                async with s.post(self.base + path, json=body) as r:
                    assert r.status == 200, await r.text()
                    lines = [line.decode().strip() async for line in r.content]
            return [line[6:] if line == "data: [DONE]" else json.loads(line[5:]) for line in lines if line]
        return asyncio.run(go())


@contextlib.contextmanager
def serve(engine: LLMEngine, **app_kwargs):
    """Run `build_app(engine, "tiny", ...)` on a free port in a thread; yields a `Served`."""
    port = _free_port()
    loop = asyncio.new_event_loop()
    app = build_app(engine, "tiny", **app_kwargs)
    # aiohttp lingers up to 10 s reading the unread rest of a refused (413) body before closing; at
    # shutdown it waits for that. 1 s keeps the test's teardown short; the behaviour is the same.
    runner = web.AppRunner(app, lingering_time=1.0)
    ready = threading.Event()

    def run():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(30)
    try:
        yield Served(f"http://127.0.0.1:{port}", app, engine)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.fixture(scope="module")
def served(tiny):
    """A shared server (module scope) on the tiny model."""
    with serve(LLMEngine(tiny, CONFIG)) as s:
        yield s
