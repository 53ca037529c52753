"""What hardware is here: device choice, CPU cores, GPUs, distributed backends.

One place decides "CUDA if present, else CPU" and "NCCL on GPUs, else gloo", so
notebooks and workers run unchanged on a laptop and on a GPU box.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# Device nodes a CUDA or ROCm runtime opens (NVIDIA, AMD, WSL2's GPU paravirtualisation). With none of
# them there is no GPU for torch to find, so the count is 0 without importing torch (~2 s): the labs that
# only simulate (4, 5) otherwise pay that in every kernel for their banner.
GPU_DEVICE_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


def _surely_no_gpu() -> bool:
    return "torch" not in sys.modules and not any(os.path.exists(path) for path in GPU_DEVICE_NODES)


def default_device() -> "torch.device":
    """CUDA if a GPU is visible (and INFERLAB_DEVICE does not say otherwise), else CPU."""
    import torch

    forced = os.environ.get("INFERLAB_DEVICE")
    if forced:
        return torch.device(forced)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def num_gpus() -> int:
    if _surely_no_gpu():
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def num_cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def dist_backend(world_size: int) -> str:
    """NCCL when there is one GPU per rank, else gloo."""
    import torch

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
    if _surely_no_gpu() and not os.environ.get("INFERLAB_DEVICE"):
        return HardwareInfo(cpu_cores=num_cpu_cores(), gpus=(), device="cpu")
    import torch

    num = num_gpus()
    names = tuple(torch.cuda.get_device_name(i) for i in range(num))
    return HardwareInfo(cpu_cores=num_cpu_cores(), gpus=names, device=str(default_device()))


def measure_memory_bandwidth_bytes_s(num_bytes: int = 256 << 20, repeats: int = 5) -> float:
    """Best-of-`repeats` copy bandwidth on the default device, counting read + write bytes."""
    import time

    import torch

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


def measure_matmul_flops(size: int = 1024, repeats: int = 5, dtype: "torch.dtype | None" = None) -> float:
    """Best-of-`repeats` dense matmul rate (FLOP/s) for a size x size x size product (float32 by default)."""
    import time

    import torch

    dtype = torch.float32 if dtype is None else dtype

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


def _sync(device: "torch.device") -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)
