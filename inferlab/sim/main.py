"""`inferlab simulate`: a fleet of replicas on a trace, with an autoscaler and a router.

Floor 2 of inferlab, the command-line face of `sim/cluster.py`: it loads an Azure-format
trace, builds the step-time model (roofline from `inferlab.costmodel` specs, or a
profile of the real engine with `--profile`), computes the 5-minute oracle and the
static-peak references (`sim/oracle.py`), runs the chosen policy, and prints a table
and, as its last line, one JSON object.

    inferlab simulate --trace datasets/azure_conv_synth.csv --model llama-2-7b --gpu h100 \\
        --autoscaler slo --router least-outstanding --slo-ttft-s 2 --slo-tpot-s 0.2 --cold-start-s 90

`--autoscaler` / `--router` take a shipped name or `module:function`.
`--rate-scale X` multiplies the request rate while keeping the trace's duration and
shape: each request is kept (X < 1) or copied floor(X) or ceil(X) times (X > 1), each
copy moved by up to +-30 s (see `scale_load`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

from inferlab.metrics import SLO, summarize
from inferlab.policies import autoscale, autoscale_forecast, route, slo_aware
from inferlab.sim.cluster import ClusterConfig, simulate
from inferlab.sim.oracle import OraclePlan, oracle_plan
from inferlab.sim.replica import ReplicaConfig
from inferlab.sim.steptime import StepTimeModel, load_profile, roofline_model
from inferlab.traces import TraceRequest, load_azure_csv

AUTOSCALERS: dict[str, Callable[..., Any]] = {
    "hpa": autoscale.hpa_policy,
    "ray": autoscale.ray_default_policy,
    "kpa": autoscale.kpa_policy,
    "slo": slo_aware.slo_aware_policy,
    "forecast": autoscale_forecast.forecast_policy,
}
PLANNED = ("static", "oracle")  # built from the oracle plan
# causal frontiers, also from the plan: "oracle-late" knows each window's need at its start (ready one cold
# start late); "oracle-lagK" provisions each window for the largest need of the K windows before it
FRONTIERS = ("oracle-late", "oracle-lag1", "oracle-lag2", "oracle-lag3")
ROUTERS: dict[str, Callable[..., Any]] = dict(route.ROUTERS)
SPOT_PRICE_RATIO = 0.35  # assumed: spot GPUs list at roughly 60-70% below on-demand


def resolve(name: str, table: dict[str, Callable[..., Any]], kind: str) -> Callable[..., Any]:
    """A shipped policy by name, or `module:function`."""
    if name in table:
        return table[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"--{kind}: cannot import {name!r} ({err})") from None
    raise ValueError(f"--{kind}: unknown {name!r}; shipped: {', '.join(list(table) + ([*PLANNED, *FRONTIERS] if kind == 'autoscaler' else []))} "
                     "or module:function")


def scale_load(trace: Sequence[TraceRequest], rate_scale: float, seed: int = 0,
               jitter_s: float = 30.0) -> list[TraceRequest]:
    """Multiply the request rate by `rate_scale`, keeping duration and shape (see module docstring)."""
    if not rate_scale > 0:
        raise ValueError(f"--rate-scale must be > 0, got {rate_scale}")
    if rate_scale == 1:
        return list(trace)
    rng = np.random.default_rng(seed)
    whole, frac = int(rate_scale), rate_scale - int(rate_scale)
    out = []
    for r in trace:
        for copy in range(whole + int(rng.random() < frac)):
            shift = rng.uniform(-jitter_s, jitter_s) if rate_scale > 1 else 0.0
            out.append(TraceRequest(abs(r.arrival_time_s + shift), r.num_prompt_tokens, r.num_output_tokens))
    out.sort(key=lambda r: r.arrival_time_s)
    if not out:
        raise ValueError(f"--rate-scale {rate_scale} left no requests")
    start = out[0].arrival_time_s
    return [TraceRequest(r.arrival_time_s - start, r.num_prompt_tokens, r.num_output_tokens) for r in out]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="inferlab simulate", description=__doc__.split("\n\n")[0])
    p.add_argument("--trace", required=True, help="Azure LLM inference trace CSV")
    p.add_argument("--model", default="llama-2-7b")
    p.add_argument("--gpu", default="h100")
    p.add_argument("--profile", help="engine profile JSON (inferlab profile): calibrated step times")
    p.add_argument("--autoscaler", default="slo")
    p.add_argument("--router", default="least-outstanding")
    p.add_argument("--slo-ttft-s", type=float, default=2.0)
    p.add_argument("--slo-tpot-s", type=float, default=0.2)
    p.add_argument("--cold-start-s", type=float, default=90.0)
    p.add_argument("--spot-fraction", type=float, default=0.0)
    p.add_argument("--spot-notice-s", type=float, default=30.0)
    p.add_argument("--spot-mean-lifetime-s", type=float, default=3600.0)
    p.add_argument("--rate-scale", type=float, default=1.0)
    p.add_argument("--min-replicas", type=int, default=1)
    p.add_argument("--max-replicas", type=int, default=64)
    p.add_argument("--target-ongoing-requests", type=float, default=32.0)
    p.add_argument("--window-s", type=float, default=300.0, help="oracle window")
    p.add_argument("--max-num-seqs", type=int, default=256)
    p.add_argument("--max-num-batched-tokens", type=int, default=8192)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeline-json", help="write the replica timeline here")
    return p


def _step_model(args: argparse.Namespace) -> StepTimeModel:
    return load_profile(args.profile) if args.profile else roofline_model(args.model, args.gpu)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Everything `main` does except printing; returns the JSON summary."""
    started = time.perf_counter()
    ClusterConfig(cold_start_s=args.cold_start_s, spot_fraction=args.spot_fraction,  # fail fast on bad fleet input
                  spot_notice_s=args.spot_notice_s, spot_mean_lifetime_s=args.spot_mean_lifetime_s)
    trace = scale_load(load_azure_csv(args.trace), args.rate_scale, args.seed)
    return run_on_trace(trace, args, started)


def run_on_trace(trace: Sequence[TraceRequest], args: argparse.Namespace, started: float | None = None) -> dict[str, Any]:
    """`run` on a trace already in memory (`args` as `build_parser` makes them; `--trace` unused)."""
    started = time.perf_counter() if started is None else started
    slo = SLO(ttft_s=args.slo_ttft_s, tpot_s=args.slo_tpot_s)
    model = _step_model(args)
    replica = ReplicaConfig(max_num_seqs=args.max_num_seqs, max_num_batched_tokens=args.max_num_batched_tokens)
    router = resolve(args.router, ROUTERS, "router")
    plan: OraclePlan = oracle_plan(trace, model, slo, window_s=args.window_s, replica=replica)
    if args.autoscaler == "static":
        policy, initial = autoscale.make_static_policy(plan.peak_replicas), plan.peak_replicas
    elif args.autoscaler == "oracle":
        policy, initial = autoscale.make_oracle_policy(plan.schedule, args.window_s), plan.schedule[0]
    elif args.autoscaler == "oracle-late":
        policy, initial = autoscale.make_oracle_policy(plan.schedule, args.window_s, lead_s=0.0), plan.schedule[0]
    elif args.autoscaler.startswith("oracle-lag") and args.autoscaler[len("oracle-lag"):].isdigit():
        lagged = autoscale.lagged_schedule(plan.schedule, int(args.autoscaler[len("oracle-lag"):]))
        policy, initial = autoscale.make_oracle_policy(lagged, args.window_s, lead_s=0.0), plan.schedule[0]
    else:
        policy, initial = resolve(args.autoscaler, AUTOSCALERS, "autoscaler"), plan.schedule[0]
    max_replicas = max(args.max_replicas, plan.peak_replicas)
    scaling = autoscale.AutoscalingConfig(min_replicas=args.min_replicas, max_replicas=max_replicas,
                                          initial_replicas=min(max(initial, args.min_replicas), max_replicas),
                                          target_ongoing_requests=args.target_ongoing_requests)
    price = _on_demand_price(args.gpu)
    config = ClusterConfig(autoscaling=scaling, replica=replica, cold_start_s=args.cold_start_s,
                           on_demand_usd_per_gpu_hour=price, spot_usd_per_gpu_hour=price * SPOT_PRICE_RATIO,
                           spot_fraction=args.spot_fraction, spot_notice_s=args.spot_notice_s,
                           spot_mean_lifetime_s=args.spot_mean_lifetime_s, seed=args.seed)
    result = simulate(trace, model, config, policy, router)
    summary = summarize(result.records, slo)
    if args.timeline_json:
        with open(args.timeline_json, "w") as handle:
            json.dump(result.timeline, handle)
    return {
        "num_requests": summary.num_requests,
        "slo_attainment": summary.slo_attainment,
        "gpu_hours": result.total_gpu_hours,
        "gpu_hours_on_demand": result.gpu_hours["on_demand"],
        "gpu_hours_spot": result.gpu_hours["spot"],
        "oracle_gpu_hours": plan.oracle_gpu_hours,
        "static_peak_gpu_hours": plan.static_peak_gpu_hours,
        "cost_usd": result.cost_usd,
        "scale_actions_per_hour": result.scale_actions_per_hour,
        "num_spot_interruptions": result.num_spot_interruptions,
        "num_requeued": result.num_requeued,
        "ttft_p99_s": summary.ttft_s["p99"],
        "tpot_p99_s": summary.tpot_s["p99"],
        "ttft_mean_s": summary.ttft_s["mean"],
        "tpot_mean_s": summary.tpot_s["mean"],
        "oracle_schedule": list(plan.schedule),
        "step_model": model.name,
        "autoscaler": args.autoscaler,
        "router": args.router,
        "wall_s": time.perf_counter() - started,
    }


def _on_demand_price(gpu: str) -> float:
    from inferlab.costmodel.specs import get_gpu

    return get_gpu(gpu).usd_per_gpu_hour


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        out = run(args)
    except (ValueError, OSError) as err:  # TraceError is a ValueError
        print(f"inferlab simulate: error: {err}", file=sys.stderr)
        return 2
    rows = [(k, v) for k, v in out.items() if k != "oracle_schedule"]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {shown}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
