"""Routers as processes for `inferlab bench routing`: `vllm-router` (PyPI: the vLLM project's Rust
router) and `inferlab route`, so both stand apart from the load generator's process.

Floor 3 of inferlab. Installed apart from the kit's venv (`python3 -m venv build/vr &&
build/vr/bin/pip install vllm-router`); it re-serialises completion bodies with SGLang's
`no_stop_trim`, so its replicas run `inferlab serve --ignore-unknown-fields`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from typing import Callable, Iterator

from inferlab.bench.serverproc import http_process
from inferlab.paths import REPO_ROOT


def vllm_router_process(binary: str, urls: list[str], policy: str) -> contextlib.AbstractContextManager[str]:
    """`vllm-router` in front of `urls` with `--policy policy`; yields its base URL once /health answers."""
    return router_process(lambda port: [binary, "--host", "127.0.0.1", "--port", str(port), "--policy", policy,
                                        "--worker-urls", *urls, "--log-level", "warning"], "vllm-router")


def inferlab_route_process(urls: list[str], policy: str, seed: int = 0,
                           max_pending_prefill_tokens: int | None = None) -> contextlib.AbstractContextManager[str]:
    """`inferlab route` as its own process (as vllm-router runs), not a thread of the client's process."""
    extra = [] if max_pending_prefill_tokens is None else ["--max-pending-prefill-tokens",
                                                           str(max_pending_prefill_tokens)]
    replicas = [arg for url in urls for arg in ("--replica", url)]
    return router_process(lambda port: [sys.executable, "-m", "inferlab", "route", *replicas, "--policy", policy,
                                        "--seed", str(seed), "--port", str(port), *extra], "inferlab route")


@contextlib.contextmanager
def router_process(argv: Callable[[int], list[str]], name: str, startup_timeout_s: float = 60.0) -> Iterator[str]:
    """The router `argv(port)` starts; yields its base URL once its /health answers 200."""
    with http_process(argv, name, startup_timeout_s) as (base, _):
        yield base


def find_vllm_router(path: str | None) -> str | None:
    """The `vllm-router` binary: `path`, else on PATH, else build/vr (a venv `pip install vllm-router` made)."""
    for candidate in (path, shutil.which("vllm-router"), str(REPO_ROOT / "build" / "vr" / "bin" / "vllm-router")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None
