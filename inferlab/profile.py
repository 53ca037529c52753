"""`inferlab profile`: measure the real engine's step times into a profile for the simulator.

Floor 3 of inferlab: runs `inferlab.engine.LLMEngine` (the tiny model by default) on
batches of Azure-conversation-shaped requests of several sizes, so its per-step records
(`StepRecord`: prefill tokens, decode sequences, KV tokens, step time) cover light and
heavy steps, and writes them as JSON. `inferlab.sim.steptime.load_profile` fits the
simulator's linear step-time model to that file.

Profile format: {"model", "device", "num_threads", "max_kv_tokens", "max_num_seqs",
"max_num_batched_tokens", "block_size", "decode_group_size", "fit": {coefficients},
"steps": [{num_prefill_tokens, num_decode_seqs, num_kv_tokens, num_decode_kv_slots,
step_time_s}, ...]}, where step_time_s is the step's period (`profile_steps`).

Also home of `replay`, which feeds a trace to the engine honouring arrival times (used
by `inferlab bench sim-fidelity`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from inferlab.engine import EngineConfig, LLMEngine, SamplingParams
from inferlab.metrics import RequestRecord
from inferlab.paths import build_dir
from inferlab.engine.runner import attention_backend_name
from inferlab.model.attention import BACKENDS
from inferlab.sim.steptime import DecodePadding, StepTimeModel, fit_linear
from inferlab.traces import TraceRequest, poisson_arrivals

DEFAULT_BATCH_SIZES = (1, 4, 16, 48, 96)


def engine_config(max_num_seqs: int = 128, max_num_batched_tokens: int = 1024, num_kv_blocks: int = 8192,
                  block_size: int = 8) -> EngineConfig:
    """The engine settings profiled and replayed (prefix caching off: random prompts share nothing)."""
    return EngineConfig(max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens,
                        num_kv_blocks=num_kv_blocks, block_size=block_size, enable_prefix_caching=False)


def engine_padding(config: EngineConfig, model) -> DecodePadding:
    """How the decode attention of an engine running `model` with `config` pads (the calibrated step-time
    model prices it): the gather path in groups of `DECODE_GROUP_SIZE`, the paged kernels row by row."""
    return DecodePadding(BACKENDS[attention_backend_name(model, config)].decode_group_size, config.block_size)


def load_engine_model(preset: str = "tiny", device: str | None = None):
    """The checkpoint on `device` (None: CUDA if present, else CPU)."""
    from inferlab.model import ensure_checkpoint, load_checkpoint

    return load_checkpoint(ensure_checkpoint(preset), device=device)


def _prompts(trace: Sequence[TraceRequest], rng: np.random.Generator) -> list[list[int]]:
    return [rng.integers(0, 256, r.num_prompt_tokens).tolist() for r in trace]


def replay(engine: LLMEngine, trace: Sequence[TraceRequest], seed: int = 0) -> list[RequestRecord]:
    """Run `trace` through `engine`, adding each request at its arrival time (s from now).

    Output lengths are fixed with `ignore_eos`. Returns the engine's records (times on
    the engine's clock, arrivals included), in completion order.
    """
    prompts = _prompts(trace, np.random.default_rng(seed))
    t0 = engine.clock()
    index = 0
    while index < len(trace) or engine.has_unfinished():
        now = engine.clock()
        while index < len(trace) and t0 + trace[index].arrival_time_s <= now:
            req = trace[index]
            engine.add_request(prompts[index], SamplingParams(max_tokens=req.num_output_tokens, ignore_eos=True),
                               arrival_time_s=t0 + req.arrival_time_s)
            index += 1
        if engine.has_unfinished():
            engine.step()
        elif index < len(trace):
            time.sleep(max(0.0, t0 + trace[index].arrival_time_s - engine.clock()))
    return [RequestRecord(r.arrival_time_s - t0, r.first_token_time_s - t0, r.finish_time_s - t0,
                          r.num_prompt_tokens, r.num_output_tokens) for r in engine.records()]


def warm_up(model, config: EngineConfig) -> None:
    """A few tiny requests, so that first-call overheads (allocator, kernels) stay out of what is measured next."""
    LLMEngine(model, config).generate([[1, 2, 3, 4]] * 4, [SamplingParams(max_tokens=4, ignore_eos=True)] * 4)


def profile_engine(model, config: EngineConfig, batch_sizes: Sequence[int], max_prompt_tokens: int,
                   max_output_tokens: int, seed: int = 0, online_rates_rps: Sequence[float] = (5.0, 15.0, 25.0),
                   online_num_requests: int = 60) -> list[dict[str, float]]:
    """Per-step records of the engine over offline batches of `batch_sizes` requests and online runs."""
    from inferlab.serving.loadgen import azure_like_workload

    rng = np.random.default_rng(seed)
    warm_up(model, config)
    steps: list[dict[str, float]] = []
    runs = [azure_like_workload(size, rng, max_prompt_tokens, max_output_tokens) for size in batch_sizes]
    # online runs too (Poisson arrivals at a few rates) so that light, mixed steps are covered
    for rate in online_rates_rps:
        runs.append(azure_like_workload(online_num_requests, rng, max_prompt_tokens, max_output_tokens,
                                        arrivals_s=poisson_arrivals(rate, online_num_requests, rng)))
    for trace in runs:
        engine = LLMEngine(model, config)
        replay(engine, trace, seed)
        steps += profile_steps(engine)
    return steps


def profile_steps(engine: LLMEngine) -> list[dict[str, float]]:
    """The engine's non-empty steps as profile records (the `steps` of a profile JSON).

    A record's `step_time_s` is the step's period: from its start to the next step's start
    while requests are still running after it, so the loop's own work between steps
    (bookkeeping, streaming, admitting arrivals: ~2% of the step time on the tiny model) is
    priced too, as the simulator has no other place for it. Without a next step, or when the
    engine emptied (the gap is then waiting for an arrival), it is the step's own time.
    """
    records = engine.step_records
    steps = []
    for i, s in enumerate(records):
        if s.num_prefill_tokens + s.num_decode_seqs == 0:
            continue
        period = s.step_time_s
        if i + 1 < len(records) and s.num_running_seqs > 0:
            period = max(period, records[i + 1].start_time_s - s.start_time_s)
        steps.append({"num_prefill_tokens": s.num_prefill_tokens, "num_decode_seqs": s.num_decode_seqs,
                      "num_kv_tokens": s.num_kv_tokens, "num_decode_kv_slots": s.num_decode_kv_slots,
                      "step_time_s": period})
    return steps


def predicted_step_s(model: StepTimeModel, steps: Sequence[dict[str, float]]) -> np.ndarray:
    """The model's step time for each profile record (K/V input as the model prices it)."""
    return np.array([model.step_s(s["num_prefill_tokens"], s["num_decode_seqs"], s[model.kv_field]) for s in steps])


def fit_report(model: StepTimeModel, steps: Sequence[dict[str, float]]) -> dict[str, float]:
    """How well the linear model predicts the profiled steps: R^2 and mean relative error."""
    y = np.array([s["step_time_s"] for s in steps])
    pred = predicted_step_s(model, steps)
    r2 = 1 - float(np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2))
    return {"r2": r2, "mean_rel_error": float(np.mean(np.abs(pred - y) / y)),
            "total_rel_error": float(abs(pred.sum() - y.sum()) / y.sum())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="inferlab profile", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--out", default=None, help="profile JSON (default build/profiles/<preset>.json)")
    p.add_argument("--batch-sizes", default=",".join(map(str, DEFAULT_BATCH_SIZES)))
    p.add_argument("--online-rates", default="5,15,25", help="request rates (req/s) of the online runs")
    p.add_argument("--max-prompt-tokens", type=int, default=384)
    p.add_argument("--max-output-tokens", type=int, default=128)
    p.add_argument("--threads", type=int, default=1, help="torch threads (fixed: step times depend on it)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA if present, else CPU)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = engine_config()
    sizes = [int(x) for x in args.batch_sizes.split(",") if x]
    if not sizes or min(sizes) < 1:
        print("inferlab profile: error: --batch-sizes must be positive integers", file=sys.stderr)
        return 2
    try:
        rates = tuple(float(x) for x in args.online_rates.split(",") if x)
    except ValueError:
        rates = ()
    if not rates or min(rates) <= 0:
        print("inferlab profile: error: --online-rates must be positive numbers", file=sys.stderr)
        return 2
    model = load_engine_model(args.preset, args.device)
    started = time.perf_counter()
    steps = profile_engine(model, config, sizes, args.max_prompt_tokens, args.max_output_tokens, args.seed,
                           online_rates_rps=rates)
    fitted = fit_linear(steps, config.max_kv_tokens, name=f"calibrated:{args.preset}",
                        decode_padding=engine_padding(config, model))
    report = fit_report(fitted, steps)
    out = Path(args.out) if args.out else build_dir() / "profiles" / f"{args.preset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    roof = fitted.roofs[0]
    data = {"model": args.preset, "device": str(next(model.parameters()).device), "num_threads": args.threads,
            "max_kv_tokens": config.max_kv_tokens, "max_num_seqs": config.max_num_seqs,
            "max_num_batched_tokens": config.max_num_batched_tokens, "block_size": config.block_size,
            "decode_group_size": fitted.decode_padding.group_size,
            "fit": vars(roof) | report, "steps": steps}
    out.write_text(json.dumps(data))
    print(f"{len(steps)} steps in {time.perf_counter() - started:.1f} s -> {out}")
    print(f"step_time_s = {roof.const_s:.3e} + {roof.s_per_prefill_token:.3e} * prefill_tokens + "
          f"{roof.s_per_decode_seq:.3e} * decode_seqs + {roof.s_per_kv_token:.3e} * decode_kv_slots")
    print(json.dumps({"path": str(out), "num_steps": len(steps), **vars(roof), **report}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
