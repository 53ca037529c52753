"""Calibrate the cost model's one efficiency factor against a published latency.

Floor 1 of inferlab, between `roofline.py` (the model) and `plan.py` (its user).
The roofline model has a single free parameter, `efficiency`: the fraction of
datasheet HBM bandwidth (and tensor-core peak) a real engine achieves. We fit it
so the prediction matches NVIDIA's published TensorRT-LLM latency for Llama-2-7B
on one A100 (128 in / 20 out, batch 1, FP16: 234.0 ms), then check the same
factor against the H100 figure (153.8 ms). Both figures live in
`data/specs.json` with their source. The default efficiency everyone uses is
this calibration, computed once, never typed in by hand.
"""

from __future__ import annotations

import functools

from inferlab.costmodel.roofline import Layout, Workload, estimate_latency
from inferlab.costmodel.specs import (
    GpuSpec,
    ModelSpec,
    PublishedLatency,
    get_gpu,
    get_model,
    published_latencies,
)

MIN_EFFICIENCY = 1e-3
MAX_EFFICIENCY = 1.0


def calibrate_efficiency(model: ModelSpec, gpu: GpuSpec, layout: Layout, workload: Workload,
                         target_latency_s: float, *, tolerance_s: float = 1e-9) -> float:
    """The efficiency at which the predicted request latency equals `target_latency_s`.

    Bisection: predicted latency falls monotonically as efficiency rises.

    Args:
        model, gpu, layout, workload: the published configuration.
        target_latency_s: the published end-to-end request latency in seconds.
    Returns:
        efficiency in (0, 1].
    Raises:
        ValueError: if the target is faster than the model allows even at efficiency 1
            (or slower than at `MIN_EFFICIENCY`).
    """
    def latency_s(efficiency: float) -> float:
        return estimate_latency(model, gpu, layout, workload, efficiency=efficiency).request_latency_s

    low, high = MIN_EFFICIENCY, MAX_EFFICIENCY
    if latency_s(high) > target_latency_s:
        raise ValueError(f"target {target_latency_s * 1e3:.1f} ms is below the roofline bound "
                         f"{latency_s(high) * 1e3:.1f} ms at efficiency 1")
    if latency_s(low) < target_latency_s:
        raise ValueError(f"target {target_latency_s * 1e3:.1f} ms needs efficiency < {low}")
    while high - low > 1e-12:
        mid = (low + high) / 2
        error_s = latency_s(mid) - target_latency_s
        if abs(error_s) <= tolerance_s:
            return mid
        low, high = (mid, high) if error_s > 0 else (low, mid)
    return (low + high) / 2


def _setup(published: PublishedLatency) -> tuple[ModelSpec, GpuSpec, Layout, Workload]:
    workload = Workload(num_input_tokens=published.num_input_tokens,
                        num_output_tokens=published.num_output_tokens,
                        batch_size=published.batch_size, dtype=published.dtype)
    layout = Layout(tp=published.tp, pp=published.num_gpus // published.tp)
    return get_model(published.model), get_gpu(published.gpu), layout, workload


def calibrate_from_published(published: PublishedLatency) -> float:
    """`calibrate_efficiency` on one published figure from the data file."""
    return calibrate_efficiency(*_setup(published), published.request_latency_s)


def predict_published(published: PublishedLatency, efficiency: float | None = None) -> float:
    """Predicted request latency in seconds for a published configuration."""
    eff = default_efficiency() if efficiency is None else efficiency
    return estimate_latency(*_setup(published), efficiency=eff).request_latency_s


@functools.cache
def default_efficiency() -> float:
    """The efficiency calibrated on the data file's one "calibration" figure (A100, Llama-2-7B)."""
    (published,) = published_latencies("calibration")
    return calibrate_from_published(published)
