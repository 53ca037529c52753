"""`inferlab bench sim-fidelity`: does the calibrated simulator predict the real engine?

Floor 3 of inferlab. The same Poisson trace (Azure-conversation-shaped lengths scaled
into the tiny model's context) is rate-scaled to 50% and 85% of the engine's measured
capacity and run (a) through the real `LLMEngine`, arrivals honoured
(`inferlab.profile.replay`), and (b) through the simulator (`inferlab.sim`) with the
step-time model fitted to the engine's profile (`inferlab profile`; made first if
missing). Prints a table and, as its last line, one JSON object with the relative
errors of mean/p95 TTFT, mean/p95 TPOT and output throughput at each load, and
`max_rel_error` (target <= 0.10).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from inferlab.engine import LLMEngine
from inferlab.metrics import MetricsSummary, summarize
from inferlab.paths import build_dir
from inferlab.policies.autoscale import AutoscalingConfig
from inferlab.profile import engine_config, fit_report, load_engine_model, profile_engine, replay
from inferlab.sim.cluster import ClusterConfig, simulate
from inferlab.sim.replica import ReplicaConfig
from inferlab.sim.steptime import fit_linear, load_profile
from inferlab.traces import TraceRequest, poisson_arrivals, scale_rate

LOADS = (0.5, 0.85)


def _metrics(summary: MetricsSummary) -> dict[str, float]:
    return {"ttft_mean_s": summary.ttft_s["mean"], "ttft_p95_s": summary.ttft_s["p95"],
            "tpot_mean_s": summary.tpot_s["mean"], "tpot_p95_s": summary.tpot_s["p95"],
            "output_tok_s": summary.output_throughput_tok_s}


def main(argv: list[str] | None = None) -> int:
    fast = os.environ.get("INFERLAB_FAST") == "1"
    p = argparse.ArgumentParser(prog="inferlab bench sim-fidelity", description=__doc__.split("\n\n")[0])
    p.add_argument("--num-requests", type=int, default=120 if fast else 400)
    p.add_argument("--max-prompt-tokens", type=int, default=384)
    p.add_argument("--max-output-tokens", type=int, default=128)
    p.add_argument("--profile", default=None, help="profile JSON (default build/profiles/tiny.json; made if missing)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from inferlab.serving.loadgen import azure_like_workload

    config = engine_config()
    model = load_engine_model()
    path = Path(args.profile) if args.profile else build_dir() / "profiles" / "tiny.json"
    if path.exists():
        step_model = load_profile(path)
    else:
        steps = profile_engine(model, config, (1, 4, 16, 48, 96), args.max_prompt_tokens, args.max_output_tokens)
        step_model = fit_linear(steps, config.num_kv_slots, name="calibrated:tiny")
        print(f"profiled {len(steps)} steps (fit {fit_report(step_model, steps)})", flush=True)
    rng = np.random.default_rng(args.seed)
    base = azure_like_workload(args.num_requests, rng, args.max_prompt_tokens, args.max_output_tokens,
                               arrivals_s=poisson_arrivals(1.0, args.num_requests, rng))
    # capacity: the same requests all at once, offline
    offline = [TraceRequest(0.0, r.num_prompt_tokens, r.num_output_tokens) for r in base]
    started = time.perf_counter()
    records = replay(LLMEngine(model, config), offline, args.seed)
    capacity_rps = len(records) / max(r.finish_time_s for r in records)
    print(f"engine capacity: {capacity_rps:.2f} req/s ({time.perf_counter() - started:.1f} s offline run)", flush=True)
    replica = ReplicaConfig(max_num_seqs=config.max_num_seqs, max_num_batched_tokens=config.max_num_batched_tokens)
    fleet = ClusterConfig(autoscaling=AutoscalingConfig(min_replicas=1, max_replicas=1, initial_replicas=1),
                          replica=replica, cold_start_s=0.0)
    out: dict[str, object] = {"capacity_rps": capacity_rps, "step_model": step_model.name}
    errors: list[float] = []
    print(f"{'load':>5} {'metric':<13} {'engine':>10} {'simulator':>10} {'rel err':>8}")
    for load in LOADS:
        trace = scale_rate(base, load * capacity_rps)  # base is at 1 req/s
        real = _metrics(summarize(replay(LLMEngine(model, config), trace, args.seed)))
        sim = _metrics(summarize(simulate(trace, step_model, fleet).records))
        for key in real:
            err = abs(sim[key] - real[key]) / real[key]
            errors.append(err)
            out[f"rel_error_{key}_at_{load:g}"] = err
            out[f"engine_{key}_at_{load:g}"], out[f"sim_{key}_at_{load:g}"] = real[key], sim[key]
            print(f"{load:>5.2f} {key:<13} {real[key]:>10.4g} {sim[key]:>10.4g} {err:>8.1%}", flush=True)
    out["max_rel_error"] = max(errors)
    print(json.dumps(out))
    return 0
