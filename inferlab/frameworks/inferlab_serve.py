"""`inferlab serve` (the kit's own engine) as a managed process: the baseline the frameworks are compared with."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Iterator

from inferlab.frameworks.common import LOOPBACK, check_checkpoint, check_port, child_env, managed_process

NAME = "inferlab"


def skip_reason() -> str | None:
    return None


@contextlib.contextmanager
def serve(checkpoint: str | Path | None = None, port: int | None = None, max_num_seqs: int = 32,
          startup_timeout_s: float = 120.0) -> Iterator[str]:
    """`python -m inferlab serve` on the checkpoint; yields its base URL (OpenAI API)."""
    path = check_checkpoint(checkpoint, NAME)
    port = check_port(port, NAME)
    base = f"http://{LOOPBACK}:{port}"
    cmd = [sys.executable, "-m", "inferlab", "serve", "--model-dir", str(path), "--host", LOOPBACK,
           "--port", str(port), "--served-model-name", "tiny", "--max-num-seqs", str(max_num_seqs)]
    with managed_process(NAME, cmd, base + "/health", child_env(), startup_timeout_s):
        yield base
