"""`inferlab bench sim-speed`: how many requests the simulator gets through per wall-clock minute.

Floor 3 of inferlab: times `inferlab.sim.simulate` on a Poisson trace with
conversation-like lengths on a fixed fleet, for a calibrated (one linear roof) and a
roofline (two roofs) step-time model and two routers, on one core. Prints a table and,
as its last line, one JSON object whose `requests_per_wall_minute` is the calibrated
model with least-outstanding routing (the target is >= 1,000,000).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from inferlab.policies.route import least_outstanding, round_robin
from inferlab.sim.cluster import ClusterConfig, simulate
from inferlab.policies.autoscale import AutoscalingConfig
from inferlab.sim.steptime import StepTimeModel, fit_linear, roofline_model
from inferlab.traces import LengthDist, poisson_arrivals, synthesize


def calibrated_like(model: StepTimeModel, seed: int = 0) -> StepTimeModel:
    """A one-roof linear model fitted to steps of `model` (what a profile of a real engine gives)."""
    rng = np.random.default_rng(seed)
    steps = []
    for _ in range(400):
        p, d = int(rng.integers(0, 4096)), int(rng.integers(0, 128))
        kv = int(rng.integers(0, model.max_kv_tokens // 2))
        if p + d == 0:
            d = 1
        steps.append({"num_prefill_tokens": p, "num_decode_seqs": d, "num_kv_tokens": kv,
                      "step_time_s": model.step_s(p, d, kv)})
    return fit_linear(steps, model.max_kv_tokens, name="calibrated(fit to roofline)")


def main(argv: list[str] | None = None) -> int:
    fast = os.environ.get("INFERLAB_FAST") == "1"
    p = argparse.ArgumentParser(prog="inferlab bench sim-speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--num-requests", type=int, default=20_000 if fast else 200_000)
    p.add_argument("--rate-rps", type=float, default=100.0)
    p.add_argument("--num-replicas", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    trace = synthesize(poisson_arrivals(args.rate_rps, args.num_requests, rng),
                       LengthDist(1020, 4000, max_tokens=8000), LengthDist(129, 700, max_tokens=2000), rng)
    roofline = roofline_model("llama-2-7b", "h100")
    models = {"calibrated": calibrated_like(roofline), "roofline": roofline}
    config = ClusterConfig(autoscaling=AutoscalingConfig(min_replicas=args.num_replicas,
                                                         max_replicas=args.num_replicas,
                                                         initial_replicas=args.num_replicas), cold_start_s=0.0)
    rows = []
    for model_name, model in models.items():
        for router_name, router in (("least-outstanding", least_outstanding), ("round-robin", round_robin)):
            started = time.perf_counter()
            result = simulate(trace, model, config, router=router)
            wall = time.perf_counter() - started
            rows.append({"step_model": model_name, "router": router_name, "num_requests": len(result.records),
                         "wall_s": wall, "requests_per_wall_minute": len(result.records) / wall * 60})
    print(f"{'step model':<12} {'router':<18} {'requests':>9} {'wall s':>8} {'req/wall min':>13}")
    for r in rows:
        print(f"{r['step_model']:<12} {r['router']:<18} {r['num_requests']:>9} {r['wall_s']:>8.2f} "
              f"{r['requests_per_wall_minute']:>13,.0f}")
    headline = rows[0]["requests_per_wall_minute"]
    print(json.dumps({"requests_per_wall_minute": headline, "num_replicas": args.num_replicas,
                      "rate_rps": args.rate_rps, "variants": rows}))
    return 0
