"""Layout chooser and the `inferlab plan` command.

Floor 1 of inferlab, on top of `roofline.py` (costs) and `calibrate.py` (the
default efficiency). Given a model, a GPU, a number of GPUs and a workload, it
enumerates TP x PP layouts, rejects the infeasible ones with a reason, and picks
the feasible one with the lowest request latency (ties: fewer GPUs, then smaller TP).

Layouts considered: TP and PP are powers of two with TP * PP <= the GPUs given
(PP also takes num_gpus // TP, so the whole cluster can be used). Rules:

- TP must fit in one node (its all-reduces need NVLink); PP may cross nodes (over InfiniBand).
- TP must divide the attention heads. When TP <= kv_heads it must divide kv_heads;
  when TP > kv_heads, kv_heads must divide TP and each GPU keeps a replicated copy
  of one KV head (vLLM's choice), which the memory estimate counts.
- PP must not exceed the number of layers.
- weights + KV cache + activations must fit in `max_memory_fraction` of each GPU's HBM.

Usage: inferlab plan --model llama-2-70b --gpu h100 --num-gpus 8
       [--input-tokens 128 --output-tokens 20 --batch-size 1 --dtype bf16]
       [--link-gbit G --link-alpha-us A --gpus-per-node N]  (the inter-node link and node size,
       instead of the GPU's datasheet InfiniBand figures; `inferlab bench multinode` uses the same)
The last line printed is one JSON object; exit 0 if a layout fits, 1 if none does,
2 for unknown names or bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

from inferlab.costmodel import roofline
from inferlab.costmodel.calibrate import default_efficiency
from inferlab.costmodel.roofline import LatencyEstimate, Layout, MemoryEstimate, Workload
from inferlab.costmodel.specs import DTYPE_BYTES, GpuSpec, ModelSpec, get_gpu, get_model, with_interconnect

DEFAULT_MAX_MEMORY_FRACTION = 0.9  # of HBM usable for weights, KV cache and activations (vLLM's default)
GB = 1e9


@dataclass(frozen=True)
class LayoutResult:
    """One candidate layout: its memory per GPU and, if feasible, its latencies."""

    layout: Layout
    memory: MemoryEstimate
    reasons: tuple[str, ...]  # why it is infeasible; empty when it fits
    latency: LatencyEstimate | None  # None when infeasible

    @property
    def fits(self) -> bool:
        return not self.reasons


@dataclass(frozen=True)
class Plan:
    """Every layout considered, the chosen one (None if none fits) and request-level problems."""

    model: ModelSpec
    gpu: GpuSpec
    num_gpus: int
    workload: Workload
    efficiency: float
    candidates: tuple[LayoutResult, ...]
    chosen: LayoutResult | None
    request_reasons: tuple[str, ...] = ()


def _powers_of_two(limit: int) -> list[int]:
    return [1 << i for i in range(limit.bit_length()) if 1 << i <= limit]


def candidate_layouts(num_gpus: int) -> list[Layout]:
    """TP x PP layouts with TP a power of two and PP a power of two or num_gpus // TP."""
    if num_gpus < 1:
        raise ValueError(f"num_gpus must be >= 1, got {num_gpus}")
    layouts = []
    for tp in _powers_of_two(num_gpus):
        pps = sorted(set(_powers_of_two(num_gpus // tp)) | {num_gpus // tp})
        layouts += [Layout(tp, pp) for pp in pps]
    return layouts


def structural_reasons(model: ModelSpec, gpu: GpuSpec, layout: Layout) -> list[str]:
    """Why `layout` cannot run `model` on `gpu` regardless of memory (empty if it can)."""
    tp, reasons = layout.tp, []
    if tp > gpu.num_gpus_per_node:
        reasons.append(f"TP{tp} crosses a node boundary ({gpu.num_gpus_per_node} GPUs per node)")
    if model.num_heads % tp:
        reasons.append(f"TP{tp} does not divide {model.num_heads} attention heads")
    if tp <= model.num_kv_heads and model.num_kv_heads % tp:
        reasons.append(f"TP{tp} does not divide {model.num_kv_heads} KV heads")
    if tp > model.num_kv_heads and tp % model.num_kv_heads:
        reasons.append(f"{model.num_kv_heads} KV heads cannot be replicated evenly over TP{tp}")
    if layout.pp > model.num_layers:
        reasons.append(f"PP{layout.pp} exceeds {model.num_layers} layers")
    return reasons


def evaluate_layout(model: ModelSpec, gpu: GpuSpec, layout: Layout, workload: Workload, *,
                    efficiency: float, max_memory_fraction: float) -> LayoutResult:
    """Memory, feasibility and (when feasible) latency of one layout."""
    memory = roofline.memory_per_gpu(model, layout, workload)
    reasons = structural_reasons(model, gpu, layout)
    usable_bytes = max_memory_fraction * gpu.memory_bytes
    if memory.total_bytes > usable_bytes:
        reasons.append(f"needs {memory.total_bytes / GB:.1f} GB/GPU > {usable_bytes / GB:.1f} GB usable "
                       f"(weights {memory.weight_bytes / GB:.1f} + KV {memory.kv_cache_bytes / GB:.1f}"
                       f" + activations {memory.activation_bytes / GB:.1f})")
    latency = None if reasons else roofline.estimate_latency(model, gpu, layout, workload,
                                                             efficiency=efficiency)
    return LayoutResult(layout, memory, tuple(reasons), latency)


def choose_layout(model: ModelSpec, gpu: GpuSpec, num_gpus: int, workload: Workload, *,
                  efficiency: float | None = None,
                  max_memory_fraction: float = DEFAULT_MAX_MEMORY_FRACTION) -> Plan:
    """Evaluate every candidate layout and choose the fastest feasible one."""
    if not 0 < max_memory_fraction <= 1:
        raise ValueError(f"max_memory_fraction must be in (0, 1], got {max_memory_fraction}")
    eff = default_efficiency() if efficiency is None else efficiency
    gpu.peak_flops(workload.dtype)  # ValueError early if the GPU lacks this dtype
    request_reasons = []
    if workload.num_context_tokens > model.max_context_tokens:
        request_reasons.append(f"context {workload.num_context_tokens} tokens exceeds "
                               f"{model.name}'s maximum {model.max_context_tokens}")
    candidates = tuple(evaluate_layout(model, gpu, layout, workload, efficiency=eff,
                                       max_memory_fraction=max_memory_fraction)
                       for layout in candidate_layouts(num_gpus))
    feasible = [c for c in candidates if c.fits and c.latency is not None]
    chosen = None
    if feasible and not request_reasons:
        chosen = min(feasible, key=lambda c: (round(c.latency.request_latency_s, 12),  # type: ignore[union-attr]
                                              c.layout.num_gpus, c.layout.tp))
    return Plan(model, gpu, num_gpus, workload, eff, candidates, chosen, tuple(request_reasons))


def _ms(value_s: float | None) -> str:
    return "-" if value_s is None else f"{value_s * 1e3:.2f}"


def format_table(plan: Plan) -> str:
    """The layouts considered, one row each, feasible or why not."""
    header = f"{'layout':<12}{'GPUs':>5}{'mem/GPU GB':>12}{'prefill ms':>12}{'decode ms/tok':>15}" \
             f"{'request ms':>12}  status"
    rows = [header, "-" * len(header)]
    for c in plan.candidates:
        lat = c.latency
        status = "fits" + (" (chosen)" if c is plan.chosen else "") if c.fits else "; ".join(c.reasons)
        rows.append(f"{str(c.layout):<12}{c.layout.num_gpus:>5}{c.memory.total_bytes / GB:>12.1f}"
                    f"{_ms(lat and lat.prefill_s):>12}{_ms(lat and lat.decode_s_per_token):>15}"
                    f"{_ms(lat and lat.request_latency_s):>12}  {status}")
    return "\n".join(rows)


def plan_summary(plan: Plan) -> dict[str, object]:
    """The JSON-able summary printed as the last line of `inferlab plan`."""
    c = plan.chosen
    summary: dict[str, object] = {
        "model": plan.model.name, "gpu": plan.gpu.name, "num_gpus": plan.num_gpus,
        "num_input_tokens": plan.workload.num_input_tokens,
        "num_output_tokens": plan.workload.num_output_tokens,
        "batch_size": plan.workload.batch_size, "dtype": plan.workload.dtype,
        "efficiency": round(plan.efficiency, 4), "fits": c is not None,
        "tp": None, "pp": None, "num_gpus_used": None, "memory_per_gpu_gb": None,
        "decode_ms_per_token": None, "prefill_ms": None, "request_latency_ms": None,
    }
    if c is not None and c.latency is not None:
        summary.update(
            tp=c.layout.tp, pp=c.layout.pp, num_gpus_used=c.layout.num_gpus,
            memory_per_gpu_gb=round(c.memory.total_bytes / GB, 2),
            decode_ms_per_token=round(c.latency.decode_s_per_token * 1e3, 3),
            prefill_ms=round(c.latency.prefill_s * 1e3, 3),
            request_latency_ms=round(c.latency.request_latency_s * 1e3, 3),
            usd_per_hour=round(c.layout.num_gpus * plan.gpu.usd_per_gpu_hour, 2))
    else:
        summary["reasons"] = list(plan.request_reasons) or [f"{x.layout}: {r}" for x in plan.candidates
                                                            for r in x.reasons]
    return summary


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="inferlab plan", description="choose a TP/PP layout "
                                "for a model on a GPU cluster (roofline + alpha-beta cost model)")
    p.add_argument("--model", required=True, help="e.g. llama-2-7b, llama-2-70b, llama-3-405b, mixtral-8x7b")
    p.add_argument("--gpu", required=True, help="e.g. a100, h100, h200")
    p.add_argument("--num-gpus", type=int, required=True)
    p.add_argument("--input-tokens", type=int, default=128)
    p.add_argument("--output-tokens", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--dtype", choices=sorted(DTYPE_BYTES), default="bf16")
    p.add_argument("--efficiency", type=float, default=None,
                   help="fraction of peak achieved (default: calibrated on NVIDIA's A100 figure)")
    p.add_argument("--max-memory-fraction", type=float, default=DEFAULT_MAX_MEMORY_FRACTION)
    p.add_argument("--link-gbit", type=float, default=None, help="inter-node link rate, Gbit/s one way")
    p.add_argument("--link-alpha-us", type=float, default=None, help="inter-node latency per message, us")
    p.add_argument("--gpus-per-node", type=int, default=None, help="GPUs per node (default: the GPU's)")
    return p


def main(argv: list[str] | None = None) -> int:
    """`inferlab plan`: print the layouts, the choice, and a JSON last line."""
    try:
        args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on bad arguments (2)
        return int(exc.code or 0)
    try:
        model = get_model(args.model)
        gpu = with_interconnect(get_gpu(args.gpu), link_gbit=args.link_gbit, num_gpus_per_node=args.gpus_per_node,
                                link_alpha_s=None if args.link_alpha_us is None else args.link_alpha_us * 1e-6)
        workload = Workload(args.input_tokens, args.output_tokens, args.batch_size, args.dtype)
        plan = choose_layout(model, gpu, args.num_gpus, workload, efficiency=args.efficiency,
                             max_memory_fraction=args.max_memory_fraction)
    except ValueError as exc:
        print(f"inferlab plan: error: {exc}", file=sys.stderr)
        return 2
    print(f"{model.name} on {args.num_gpus} x {gpu.name}, {workload.batch_size} x "
          f"({workload.num_input_tokens} in, {workload.num_output_tokens} out), {workload.dtype}, "
          f"efficiency {plan.efficiency:.3f}")
    print(format_table(plan))
    for reason in plan.request_reasons:
        print(f"request rejected: {reason}")
    if plan.chosen is not None and plan.chosen.latency is not None:
        lat = plan.chosen.latency
        num_used = plan.chosen.layout.num_gpus
        print(f"chosen: {plan.chosen.layout} on {num_used} GPU{'s' * (num_used > 1)}, "
              f"{plan.chosen.memory.total_bytes / GB:.1f} GB/GPU, prefill {_ms(lat.prefill_s)} ms, "
              f"decode {_ms(lat.decode_s_per_token)} ms/token, request {_ms(lat.request_latency_s)} ms")
    else:
        print("no feasible layout")
    print(json.dumps(plan_summary(plan)))
    return 0 if plan.chosen is not None else 1


if __name__ == "__main__":
    sys.exit(main())
