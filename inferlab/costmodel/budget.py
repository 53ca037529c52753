"""The cheapest layout that meets a latency target: the capstone's layout choice for a GPU budget.

Floor 1 of inferlab, on `plan.py`. `choose_layout` picks the fastest layout of a cluster; a team with a
GPU budget asks another question: which layout serves a request within the latency target for the fewest
GPU-seconds (GPUs x request latency / batch size)? Ties: lower latency, then fewer GPUs, then smaller TP.
"""

from __future__ import annotations

from inferlab.costmodel.plan import DEFAULT_MAX_MEMORY_FRACTION, LayoutResult, candidate_layouts, evaluate_layout
from inferlab.costmodel.roofline import Workload
from inferlab.costmodel.specs import GpuSpec, ModelSpec


def gpu_seconds_per_request(result: LayoutResult, workload: Workload) -> float:
    """GPUs held x request latency, shared by the batch's requests."""
    assert result.latency is not None
    return result.layout.num_gpus * result.latency.request_latency_s / workload.batch_size


def cheapest_layout(model: ModelSpec, gpu: GpuSpec, max_gpus: int, workload: Workload, max_latency_s: float, *,
                    efficiency: float, max_memory_fraction: float = DEFAULT_MAX_MEMORY_FRACTION) -> LayoutResult | None:
    """The feasible layout of at most `max_gpus` GPUs meeting `max_latency_s` with the fewest GPU-seconds
    per request (None if none does)."""
    if max_latency_s <= 0:
        raise ValueError(f"max_latency_s must be > 0, got {max_latency_s}")
    results = [evaluate_layout(model, gpu, layout, workload, efficiency=efficiency,
                               max_memory_fraction=max_memory_fraction) for layout in candidate_layouts(max_gpus)]
    ok = [r for r in results if r.fits and r.latency is not None and r.latency.request_latency_s <= max_latency_s]
    if not ok:
        return None
    return min(ok, key=lambda r: (round(gpu_seconds_per_request(r, workload), 12), round(r.latency.request_latency_s, 12),
                                  r.layout.num_gpus, r.layout.tp))
