"""TensorRT-LLM: needs an NVIDIA GPU; here the commands for a GPU box, and a skip with the reason elsewhere.

On a GPU machine with `tensorrt_llm` installed (NVIDIA's container
nvcr.io/nvidia/tensorrt-llm/release, or `pip install tensorrt_llm`), `serve()` runs
`trtllm-serve CHECKPOINT --host 127.0.0.1 --port P` (an OpenAI-compatible server; it builds
the engine from the Hugging Face checkpoint on start) and yields its base URL, which
`inferlab loadgen` measures like the others.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Iterator

from inferlab.frameworks.common import (
    LOOPBACK, FrameworkUnavailable, check_checkpoint, check_port, child_env, managed_process,
)
from inferlab.hardware import num_gpus

NAME = "tensorrt_llm"
GPU_COMMANDS = """\
# on a machine with an NVIDIA GPU (Ampere or newer) and Docker with the NVIDIA runtime:
docker run --rm -it --gpus all --ipc host -p 8000:8000 -v $PWD/build/models/tiny:/model \\
    nvcr.io/nvidia/tensorrt-llm/release trtllm-serve /model --host 0.0.0.0 --port 8000
# then, from the kit:
inferlab loadgen --base-url http://127.0.0.1:8000 --rate 4 --num-requests 64"""


def skip_reason() -> str | None:
    if num_gpus() == 0:
        return "TensorRT-LLM builds CUDA engines and needs an NVIDIA GPU; this machine has none"
    if shutil.which("trtllm-serve") is None:
        return "TensorRT-LLM is not installed (no trtllm-serve on PATH): pip install tensorrt_llm, or use " \
               "NVIDIA's container nvcr.io/nvidia/tensorrt-llm/release"
    return None


@contextlib.contextmanager
def serve(checkpoint: str | Path | None = None, port: int | None = None,
          startup_timeout_s: float = 900.0) -> Iterator[str]:
    """`trtllm-serve` on the checkpoint; FrameworkUnavailable (with the reason) where it cannot run."""
    reason = skip_reason()
    if reason:
        raise FrameworkUnavailable(reason)
    path = check_checkpoint(checkpoint, NAME)
    port = check_port(port, NAME)
    base = f"http://{LOOPBACK}:{port}"
    cmd = ["trtllm-serve", str(path), "--host", LOOPBACK, "--port", str(port)]
    with managed_process(NAME, cmd, base + "/health", child_env(), startup_timeout_s):
        yield base
