"""NVIDIA Triton Inference Server through PyTriton, serving the tiny model with Triton's DynamicBatcher.

PyTriton 0.7.0 needs numpy<2, so it lives in its own venv (`make install` builds
build/venvs/pytriton: numpy<2, nvidia-pytriton==0.7.0, torch, tokenizers). `serve()` runs
`inferlab.frameworks.triton_server` with that venv's interpreter, the interpreter's libpython
directory on LD_LIBRARY_PATH (tritonserver's Python backend links against it), and yields
Triton's HTTP base URL (KServe v2 protocol: /v2/health/ready, /v2/models/tiny/infer), which
`inferlab.serving.loadgen` measures with the same request set and the same metrics.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
from pathlib import Path
from typing import Iterator

from inferlab.frameworks.common import (
    LOOPBACK, FrameworkUnavailable, check_checkpoint, check_port, child_env, free_port, managed_process,
)
from inferlab.paths import REPO_ROOT

NAME = "triton"
MODEL = "tiny"
INSTALL = "build it with `make install` (build/venvs/pytriton: numpy<2, nvidia-pytriton==0.7.0, torch, tokenizers)"


def venv_python() -> Path:
    return Path(os.environ.get("INFERLAB_PYTRITON_VENV", REPO_ROOT / "build" / "venvs" / "pytriton")) / "bin" / "python"


def skip_reason() -> str | None:
    return _skip_reason(venv_python())


@functools.lru_cache(maxsize=8)
def _skip_reason(python: Path) -> str | None:  # the probe imports torch: seconds, so once per venv
    if not python.exists():
        return f"PyTriton's venv is missing ({python}); {INSTALL}"
    probe = subprocess.run([str(python), "-c", "import pytriton, torch, tokenizers"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"PyTriton's venv {python.parent.parent} cannot import pytriton/torch/tokenizers: " \
               f"{probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else probe.returncode}; {INSTALL}"
    return None


def _libpython_dir(python: Path) -> str:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


@contextlib.contextmanager
def serve(checkpoint: str | Path | None = None, port: int | None = None, max_batch_size: int = 16,
          max_queue_delay_us: int = 2000, preferred_batch_sizes: tuple[int, ...] = (4, 8, 16),
          max_queue_size: int = 256, startup_timeout_s: float = 180.0) -> Iterator[str]:
    """Triton (PyTriton) with model "tiny"; yields the HTTP base URL."""
    reason = skip_reason()
    if reason:
        raise FrameworkUnavailable(reason)
    path = check_checkpoint(checkpoint, NAME)
    port = check_port(port, NAME)
    python = venv_python()
    env = child_env()
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (_libpython_dir(python), env.get("LD_LIBRARY_PATH")) if p)
    env.pop("VIRTUAL_ENV", None)
    base = f"http://{LOOPBACK}:{port}"
    cmd = [str(python), "-m", "inferlab.frameworks.triton_server", str(path), "--http-port", str(port),
           "--grpc-port", str(free_port()), "--metrics-port", str(free_port()),
           "--max-batch-size", str(max_batch_size), "--max-queue-delay-us", str(max_queue_delay_us),
           "--preferred-batch-sizes", ",".join(map(str, preferred_batch_sizes)),
           "--max-queue-size", str(max_queue_size)]
    with managed_process(NAME, cmd, f"{base}/v2/models/{MODEL}/ready", env, startup_timeout_s):
        yield base
