"""Real serving frameworks started and stopped by the kit on its own checkpoint, one API.

Floor 3. `FRAMEWORKS[name]` is a module with `serve(checkpoint=None, port=None, ...)` (a
context manager yielding a loopback base URL) and `skip_reason()`. Every one but Triton speaks
the OpenAI completions API; Triton speaks KServe v2 (`inferlab.serving.loadgen` measures both).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from inferlab.frameworks.common import (
    CheckpointMissing, FrameworkError, FrameworkFailed, FrameworkUnavailable, PortInUse,
)

NAMES = ("inferlab", "vllm", "deepspeed", "ray_serve", "triton", "tensorrt_llm")
_MODULES = {"inferlab": "inferlab_serve"}
OPENAI_API = {"inferlab", "vllm", "deepspeed", "ray_serve", "tensorrt_llm"}


def framework(name: str) -> ModuleType:
    """The wrapper module of `name` (one of NAMES)."""
    if name not in NAMES:
        raise ValueError(f"unknown framework {name!r}; known: {', '.join(NAMES)}")
    return importlib.import_module(f"inferlab.frameworks.{_MODULES.get(name, name)}")


__all__ = ["NAMES", "OPENAI_API", "framework", "CheckpointMissing", "FrameworkError", "FrameworkFailed",
           "FrameworkUnavailable", "PortInUse"]
