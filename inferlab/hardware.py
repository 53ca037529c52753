"""What hardware is here: device choice, CPU cores, GPUs, distributed backends.

One place decides "CUDA if present, else CPU" and "NCCL on GPUs, else gloo", so
notebooks and workers run unchanged on a laptop and on a GPU box.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


def default_device() -> torch.device:
    """CUDA if a GPU is visible (and INFERLAB_DEVICE does not say otherwise), else CPU."""
    forced = os.environ.get("INFERLAB_DEVICE")
    if forced:
        return torch.device(forced)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def num_gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def num_cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def dist_backend(world_size: int) -> str:
    """NCCL when there is one GPU per rank, else gloo."""
    return "nccl" if torch.distributed.is_nccl_available() and num_gpus() >= world_size else "gloo"


@dataclass(frozen=True)
class HardwareInfo:
    cpu_cores: int
    gpus: tuple[str, ...]
    device: str

    @property
    def tier(self) -> str:
        return "multi-gpu" if len(self.gpus) > 1 else ("gpu" if self.gpus else "cpu")


def describe() -> HardwareInfo:
    names = tuple(torch.cuda.get_device_name(i) for i in range(num_gpus()))
    return HardwareInfo(cpu_cores=num_cpu_cores(), gpus=names, device=str(default_device()))
