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


def measure_memory_bandwidth_bytes_s(num_bytes: int = 256 << 20, repeats: int = 5) -> float:
    """Best-of-`repeats` copy bandwidth on the default device, counting read + write bytes."""
    import time

    device = default_device()
    src = torch.ones(num_bytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        dst.copy_(src)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * src.numel() * 4 / best


def measure_matmul_flops(size: int = 1024, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """Best-of-`repeats` dense matmul rate (FLOP/s) for a size x size x size product."""
    import time

    device = default_device()
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
