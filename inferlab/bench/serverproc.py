"""A real `inferlab serve` process on a free port, for benchmarks that watch the server from outside."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server_process(args: list[str], startup_timeout_s: float = 180.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start `python -m inferlab serve --port P *args`; yields (base URL, process) once /health answers 200."""
    port = free_port()
    log = tempfile.TemporaryFile("w+")  # a file, not a pipe: an unread pipe would fill and stall the server
    proc = subprocess.Popen([sys.executable, "-m", "inferlab", "serve", "--port", str(port), *args],
                            stdout=subprocess.DEVNULL, stderr=log, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + startup_timeout_s
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"inferlab serve exited with {proc.returncode}: {log.read()[-2000:]}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > end:
                raise RuntimeError(f"inferlab serve did not answer /health within {startup_timeout_s:.0f} s")
            time.sleep(0.2)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
