"""inferlab.costmodel: GPU/model specs with sources, a roofline + alpha-beta cost model, a layout chooser.

Floor 1 of inferlab (numpy/stdlib only). `specs` holds the figures (read by `plan`
and by the simulator's step-time model), `roofline` the memory, latency and
communication formulas, `calibrate` the one fitted efficiency, `plan` the TP x PP
chooser behind `inferlab plan`.
"""

from inferlab.costmodel.calibrate import calibrate_efficiency, default_efficiency, predict_published
from inferlab.costmodel.plan import LayoutResult, Plan, choose_layout
from inferlab.costmodel.roofline import (
    LatencyEstimate,
    Layout,
    MemoryEstimate,
    Workload,
    decode_step_s,
    estimate_latency,
    kv_bytes_per_token,
    memory_per_gpu,
    prefill_s,
    ring_allreduce_s,
)
from inferlab.costmodel.specs import (
    GpuSpec,
    ModelSpec,
    PublishedLatency,
    dtype_bytes,
    get_gpu,
    get_model,
    list_gpus,
    list_models,
    published_latencies,
    with_interconnect,
)

__all__ = [
    "GpuSpec", "ModelSpec", "PublishedLatency", "dtype_bytes", "get_gpu", "get_model", "list_gpus",
    "list_models", "published_latencies", "with_interconnect",
    "Layout", "Workload", "MemoryEstimate", "LatencyEstimate", "memory_per_gpu", "kv_bytes_per_token",
    "decode_step_s", "prefill_s", "estimate_latency", "ring_allreduce_s",
    "calibrate_efficiency", "default_efficiency", "predict_published",
    "Plan", "LayoutResult", "choose_layout",
]
