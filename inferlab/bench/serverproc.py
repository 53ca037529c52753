"""A real `inferlab serve` process on a free port, for benchmarks that watch the server from outside."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Callable, Iterator

from inferlab.procs import stop_process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def http_process(argv: Callable[[int], list[str]], name: str,
                 startup_timeout_s: float = 180.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start `argv(port)` on a free loopback port; yields (base URL, process) once its /health answers 200.

    A process that exits or stays silent past `startup_timeout_s` raises, naming `name` with its log's tail."""
    port = free_port()
    log = tempfile.TemporaryFile("w+")  # a file, not a pipe: an unread pipe would fill and stall the server
    proc = subprocess.Popen(argv(port), stdout=log, stderr=log, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + startup_timeout_s
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"{name} exited with {proc.returncode}: {log.read()[-2000:]}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > end:
                log.seek(0)
                raise RuntimeError(f"{name} did not answer /health within {startup_timeout_s:.0f} s: "
                                   f"{log.read()[-2000:]}")
            time.sleep(0.2)
        yield base, proc
    finally:
        stop_process(proc, grace_s=10.0)
        log.close()


def server_process(args: list[str], startup_timeout_s: float = 180.0
                   ) -> contextlib.AbstractContextManager[tuple[str, subprocess.Popen]]:
    """Start `python -m inferlab serve --port P *args`; yields (base URL, process) once /health answers 200."""
    return http_process(lambda port: [sys.executable, "-m", "inferlab", "serve", "--port", str(port), *args],
                        "inferlab serve", startup_timeout_s)
