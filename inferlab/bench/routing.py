"""`inferlab bench routing [--quick]`: routing policies and fair sharing, simulated and on real replicas.

Floor 3 of inferlab. One run, side by side:

- sim, load balance: the supermarket model (16 FIFO replicas, exponential service of mean
  1 s, Poisson arrivals at utilisation 0.9): p99 TTFT per policy, and the theory's mean
  time in system (10 for random, 2.61 for two choices, `sim.queueing.supermarket_time_in_system`).
- sim, prefix: the prefix-sharing workload (`inferlab.workloads.SESSION_REUSE`: reuse in
  multi-turn histories, block hit ceiling ~0.38) on 4 replicas with a prefix cache, at 0.9 of
  their steady-state capacity under least-outstanding (measured first, overloaded): mean/p99
  TTFT and prefix hit rate per policy; again with the system prompts Zipf-skewed (`skew` 1.5),
  where prefix-only routing piles the hot prompt onto one replica; and the default workload
  (reuse in 8 long system prompts that every replica soon caches), where there is little to win.
- sim, fairness: a light tenant's p99 TTFT alone, then beside a tenant sending 10x its
  load through the router's queue: FCFS, VTC, and VTC with `max_tenant_share` (no tenant
  holds more than 70% of the slots), with the heavy tenant's throughput each time.
- real: `--num-replicas` (>= 3) `inferlab serve` processes (tiny model) behind `inferlab route`
  (its own process, as vllm-router when found), one client (`serving.loadgen`), the prefix-sharing workload per policy;
  policies alternate over `--rounds`, each run with a fresh workload seed so no policy
  inherits another's warm caches; medians over rounds.

The last line is one JSON object: per-policy `p99_ttft_s` (sim and real),
`p99_ratio_rr_over_p2c`, `mean_ttft_reduction_prefix_vs_least_outstanding`, `prefix_hit_rate`
per policy, `fair_tenant_p99_ratio` (light tenant's p99 beside the heavy one over its p99 alone).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import time
import urllib.request

import numpy as np

from inferlab.metrics import ttft_s
from inferlab.policies import route
from inferlab.policies.autoscale import AutoscalingConfig
from inferlab.policies.shape import fcfs, vtc
from inferlab.sim.cluster import ClusterConfig, simulate
from inferlab.sim.queueing import supermarket_time_in_system
from inferlab.sim.replica import ReplicaConfig
from inferlab.sim.steptime import Roof, StepTimeModel
from inferlab.traces import LengthDist, TraceRequest
from inferlab.workloads import SESSION_REUSE, PrefixWorkloadConfig, block_hit_ceiling, multi_tenant_workload, \
    prefix_sharing_workload

BALANCE_POLICIES = ("random", "round-robin", "power-of-two", "least-outstanding")
PREFIX_POLICIES = ("least-outstanding", "prefix-aware", "prefix-load", "prefix-cost")
REAL_POLICIES = ("round-robin", "power-of-two", "least-outstanding", "prefix-aware", "prefix-load", "prefix-cost")
# a prefill-heavy replica (seconds): prompt tokens dominate, as in a long-context chat fleet
PREFIX_MODEL = StepTimeModel((Roof(const_s=0.004, s_per_prefill_token=1e-4, s_per_decode_seq=2e-4),),
                             max_kv_tokens=10 ** 6, name="prefill-heavy")


def fleet(num_replicas: int, control_period_s: float = 1e4, **kwargs) -> ClusterConfig:
    """A fixed fleet of `num_replicas` (no autoscaling); `kwargs` go to `ReplicaConfig` or `ClusterConfig`."""
    replica = {k: kwargs.pop(k) for k in list(kwargs) if k in ReplicaConfig.__dataclass_fields__}
    return ClusterConfig(autoscaling=AutoscalingConfig(min_replicas=num_replicas, max_replicas=num_replicas,
                                                       initial_replicas=num_replicas),
                         replica=ReplicaConfig(**replica), control_period_s=control_period_s, **kwargs)


def supermarket_trace(num_replicas: int, load: float, num_requests: int, seed: int,
                      mean_service_steps: int = 50) -> list[TraceRequest]:
    """Poisson arrivals at `load` per replica; 1-token prompts and geometric outputs: Exp(1 s) service
    on `supermarket_model(mean_service_steps)` with one request at a time per replica."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / (load * num_replicas), num_requests))
    outputs = rng.geometric(1.0 / mean_service_steps, num_requests)
    return [TraceRequest(float(a), 1, int(o)) for a, o in zip(arrivals, outputs)]


def supermarket_model(mean_service_steps: int = 50) -> StepTimeModel:
    """Every step takes 1/mean_service_steps s, so a request's service time is its token count / that."""
    return StepTimeModel((Roof(const_s=1.0 / mean_service_steps),), max_kv_tokens=10 ** 7, name="supermarket")


def _p(values, q) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def sim_balance(num_requests: int, seed: int, num_replicas: int = 16, load: float = 0.9) -> dict:
    trace = supermarket_trace(num_replicas, load, num_requests, seed)
    cfg, model, warm = fleet(num_replicas, max_num_seqs=1), supermarket_model(), num_requests // 10
    out = {}
    for name in BALANCE_POLICIES:
        recs = simulate(trace, model, cfg, router=route.ROUTERS[name]).records[warm:]
        ttft = [ttft_s(r) for r in recs]
        out[name] = {"p99_ttft_s": _p(ttft, 99), "mean_ttft_s": float(np.mean(ttft)),
                     "mean_sojourn_s": float(np.mean([r.finish_time_s - r.arrival_time_s for r in recs]))}
    out["theory_mean_sojourn_s"] = {"random": supermarket_time_in_system(load, 1), "power-of-two": supermarket_time_in_system(load, 2)}
    return out


PREFIX_FLEET_SETTINGS = {"max_num_seqs": 16, "max_num_batched_tokens": 512, "num_prefix_cache_blocks": 8192}


def prefix_capacity_rps(seed: int, config: PrefixWorkloadConfig, num_requests: int = 6000,
                        overload_rps: float = 600.0) -> float:
    """Requests/s the 4-replica prefix fleet completes under least-outstanding in steady state.

    Offered `overload_rps` (above capacity, so the queues only grow), the completions between
    the 20th and 80th percentile of finish times over that span: a burst's makespan would mix
    in the think times of the sessions' last turns.
    """
    trace, _ = prefix_sharing_workload(num_requests, overload_rps, np.random.default_rng(seed), config)
    res = simulate(trace, PREFIX_MODEL, fleet(4, **PREFIX_FLEET_SETTINGS), router=route.least_outstanding)
    finish = np.sort([r.finish_time_s for r in res.records])
    lo, hi = num_requests // 5, 4 * num_requests // 5
    return (hi - lo) / (finish[hi] - finish[lo])


def sim_prefix(num_requests: int, seed: int, rate_rps: float, config: PrefixWorkloadConfig,
               skew: float = 0.0) -> dict:
    trace, _ = prefix_sharing_workload(num_requests, rate_rps, np.random.default_rng(seed),
                                       dataclasses.replace(config, skew=skew))
    cfg = fleet(4, **PREFIX_FLEET_SETTINGS)
    out = {"block_hit_ceiling": block_hit_ceiling(trace)}
    for name in PREFIX_POLICIES:
        res = simulate(trace, PREFIX_MODEL, cfg, router=route.ROUTERS[name])
        ttft = [ttft_s(r) for r in res.records]
        share = np.bincount(res.routed_to, minlength=4) / len(trace)
        out[name] = {"mean_ttft_s": float(np.mean(ttft)), "p99_ttft_s": _p(ttft, 99),
                     "prefix_hit_rate": res.prefix_hit_rate, "max_replica_share": float(share.max())}
    return out


FAIR_TENANT_SHARE = 0.7  # of the fleet's 16 slots, one tenant may hold 11


def sim_fairness(seed: int, num_light: int = 60) -> dict:
    rng = np.random.default_rng(seed)
    prompt, output = LengthDist(100, 400, max_tokens=1000), LengthDist(20, 80, max_tokens=200)
    trace = multi_tenant_workload({"light": 4.0, "heavy": 40.0}, {"light": num_light, "heavy": 10 * num_light},
                                  prompt, output, rng)
    model = StepTimeModel((Roof(const_s=0.01, s_per_prefill_token=1e-4),), max_kv_tokens=10 ** 6)
    cfg = fleet(2, max_num_seqs=8, max_ongoing_requests=8)
    light = [r for r in trace if r.tenant == "light"]
    solo = _p([ttft_s(r) for r in simulate(light, model, cfg).records], 99)
    shared = dataclasses.replace(cfg, max_tenant_share=FAIR_TENANT_SHARE)
    heavy = [r for r in trace if r.tenant == "heavy"]
    out = {"light_solo_p99_ttft_s": solo,
           "heavy_solo_rps": len(heavy) / max(r.finish_time_s for r in simulate(heavy, model, cfg).records)}
    for name, shaper, config in (("fcfs", fcfs, cfg), ("vtc", vtc, cfg), ("vtc_share", vtc, shared)):
        res = simulate(trace, model, config, shaper=shaper)
        p99 = _p([ttft_s(r) for r, t in zip(res.records, trace) if t.tenant == "light"], 99)
        heavy_rps = len(heavy) / max(r.finish_time_s for r, t in zip(res.records, trace) if t.tenant == "heavy")
        out[name] = {"light_p99_ttft_s": p99, "fair_tenant_p99_ratio": p99 / solo, "heavy_rps": heavy_rps}
    return out


# ---------------------------------------------------------------- real replicas
def _hits(urls: list[str]) -> int:
    total = 0
    for url in urls:
        with urllib.request.urlopen(url + "/stats", timeout=10) as resp:
            total += json.load(resp).get("num_prefix_hit_blocks", 0)
    return total


ECOSYSTEM_POLICIES = {"vllm-router power_of_two": "power_of_two", "vllm-router cache_aware": "cache_aware"}


def real_runs(args: argparse.Namespace) -> dict:
    from inferlab.bench.serverproc import server_process
    from inferlab.bench.vllm_router import inferlab_route_process, vllm_router_process
    from inferlab.serving.loadgen import run_load

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # replicas share the cores
    cfg = dataclasses.replace(SESSION_REUSE, max_prompt_tokens=384, output_tokens=(8, 24))  # --max-model-len 512
    names = list(args.real_policies) + list(args.ecosystem_policies)
    results: dict[str, list[dict]] = {p: [] for p in names}
    with contextlib.ExitStack() as stack:
        extra = ["--ignore-unknown-fields"] if args.ecosystem_policies else []  # vllm-router adds no_stop_trim
        urls = [stack.enter_context(server_process(["--max-num-seqs", "8", "--max-model-len", "512",
                                                          "--served-model-name", "tiny", *extra]))[0]
                for _ in range(args.num_replicas)]
        for rnd in range(args.rounds):
            order = names if rnd % 2 == 0 else list(reversed(names))
            for i, name in enumerate(order):
                trace, prompts = prefix_sharing_workload(args.real_requests, args.real_rate,
                                                         np.random.default_rng(1000 * rnd + i + 7), cfg)
                before = _hits(urls)
                front = vllm_router_process(args.vllm_router, urls, ECOSYSTEM_POLICIES[name]) \
                    if name in ECOSYSTEM_POLICIES else inferlab_route_process(
                        urls, name, rnd, args.real_max_pending_prefill_tokens if name == "prefix-load" else None)
                with front as base:
                    records, errors = asyncio.run(run_load(base, "tiny", trace, prompts, True, 300.0,
                                                           headers=[{"X-Session-Id": r.session_key} for r in trace]))
                if errors:
                    print(f"  {name}: {len(errors)} failed, e.g. {errors[0]}", flush=True)
                num_blocks = sum(len(r.block_hashes) for r in trace)
                ttft = [ttft_s(r) for r in records]
                results[name].append({"p99_ttft_s": _p(ttft, 99), "mean_ttft_s": float(np.mean(ttft)),
                                      "prefix_hit_rate": (_hits(urls) - before) / num_blocks,
                                      "num_failed": len(errors)})
                print(f"  real round {rnd} {name:<18} mean TTFT {results[name][-1]['mean_ttft_s']:.3f} s  "
                      f"p99 {results[name][-1]['p99_ttft_s']:.3f} s  hit {results[name][-1]['prefix_hit_rate']:.2f}",
                      flush=True)
    return {name: {k: float(np.median([r[k] for r in runs])) for k in runs[0]} for name, runs in results.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inferlab bench routing", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and one round")
    parser.add_argument("--num-replicas", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--real-requests", type=int, default=300)
    parser.add_argument("--real-rate", type=float, default=12.0, help="requests/s against the real fleet")
    parser.add_argument("--prefix-rate", type=float, default=None,
                        help="requests/s in the simulated prefix run (default: --prefix-utilisation x capacity)")
    parser.add_argument("--prefix-utilisation", type=float, default=0.9,
                        help="load of the simulated prefix run, as a share of least-outstanding's capacity")
    parser.add_argument("--real-max-pending-prefill-tokens", type=int, default=256,
                        help="prefix-load's threshold on the real (CPU) replicas")
    parser.add_argument("--no-real", action="store_true", help="simulator only")
    parser.add_argument("--vllm-router", default=None,
                        help="path of the vllm-router binary (pip install vllm-router); default: on PATH or "
                             "build/vr/bin; measured beside inferlab route when found")
    parser.add_argument("--real-policies", default=",".join(REAL_POLICIES),
                        help="inferlab route policies run on the real replicas (comma-separated)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.num_replicas < 3 and not args.no_real:
        parser.error("--num-replicas must be >= 3")
    if args.quick:
        args.rounds, args.real_requests = 1, min(args.real_requests, 120)
    args.real_policies = [p for p in args.real_policies.split(",") if p]
    unknown = [p for p in args.real_policies if p not in route.ROUTERS]
    if unknown:
        parser.error(f"unknown --real-policies {unknown}; known: {', '.join(route.ROUTERS)}")
    from inferlab.bench.vllm_router import find_vllm_router

    args.vllm_router = find_vllm_router(args.vllm_router)
    args.ecosystem_policies = list(ECOSYSTEM_POLICIES) if args.vllm_router else []
    started = time.perf_counter()
    n_sim = 8000 if args.quick else 40000
    balance = sim_balance(n_sim, args.seed)
    n_prefix = 3000 if args.quick else 12000
    capacity = prefix_capacity_rps(args.seed, SESSION_REUSE)
    rate = args.prefix_rate or args.prefix_utilisation * capacity
    prefix = sim_prefix(n_prefix, args.seed, rate, SESSION_REUSE)
    skewed = sim_prefix(n_prefix, args.seed, rate, SESSION_REUSE, skew=1.5)
    sys_capacity = prefix_capacity_rps(args.seed, PrefixWorkloadConfig())  # reuse in 8 long system prompts
    sys_rate = args.prefix_utilisation * sys_capacity
    sysprompt = sim_prefix(n_prefix, args.seed, sys_rate, PrefixWorkloadConfig())
    fair = sim_fairness(args.seed, 60 if args.quick else 200)
    real = {} if args.no_real else real_runs(args)

    print(f"{'sim, utilisation 0.9':<28} {'p99 TTFT s':>11} {'mean TTFT s':>12} {'mean sojourn s':>15}")
    for name in BALANCE_POLICIES:
        b = balance[name]
        print(f"  {name:<26} {b['p99_ttft_s']:>11.3f} {b['mean_ttft_s']:>12.3f} {b['mean_sojourn_s']:>15.3f}")
    print(f"  theory (n -> inf): random 10.00, two choices 2.61")
    print(f"sim prefix fleet: capacity {capacity:.0f} req/s under least-outstanding (sessions), "
          f"{sys_capacity:.0f} (system prompts); run at {rate / capacity:.2f} of it")
    for title, table in (("sim, session reuse", prefix), ("sim, session reuse, skew 1.5", skewed),
                         ("sim, system-prompt reuse", sysprompt)):
        print(f"{title:<28} {'mean TTFT s':>11} {'p99 TTFT s':>11} {'hit rate':>9} {'top share':>9}"
              f"   (ceiling {table['block_hit_ceiling']:.3f})")
        for name in PREFIX_POLICIES:
            t = table[name]
            print(f"  {name:<26} {t['mean_ttft_s']:>11.3f} {t['p99_ttft_s']:>11.3f} {t['prefix_hit_rate']:>9.3f} "
                  f"{t['max_replica_share']:>9.2f}")
    print(f"sim, fairness: light tenant p99 TTFT alone {fair['light_solo_p99_ttft_s']:.3f} s; beside 10x "
          f"(heavy alone completes {fair['heavy_solo_rps']:.1f} req/s):")
    for name in ("fcfs", "vtc", "vtc_share"):
        f = fair[name]
        print(f"  {name:<26} light p99 {f['light_p99_ttft_s']:.3f} s ({f['fair_tenant_p99_ratio']:.2f}x solo), "
              f"heavy {f['heavy_rps']:.1f} req/s")
    if real:
        print(f"real, {args.num_replicas} replicas    {'mean TTFT s':>11} {'p99 TTFT s':>11} {'hit rate':>9} {'failed':>7}")
        for name, r in real.items():
            print(f"  {name:<26} {r['mean_ttft_s']:>11.3f} {r['p99_ttft_s']:>11.3f} {r['prefix_hit_rate']:>9.3f} "
                  f"{r['num_failed']:>7.0f}")

    def reduction(table: dict) -> dict:
        if "least-outstanding" not in table:
            return None
        base = table["least-outstanding"]["mean_ttft_s"]
        return {n: 1.0 - table[n]["mean_ttft_s"] / base for n in table
                if n.startswith("prefix") or "cache_aware" in n}

    summary = {
        "p99_ttft_s": {"sim": {n: balance[n]["p99_ttft_s"] for n in BALANCE_POLICIES},
                       "real": {n: r["p99_ttft_s"] for n, r in real.items()}},
        "p99_ratio_rr_over_p2c": {"sim": balance["round-robin"]["p99_ttft_s"] / balance["power-of-two"]["p99_ttft_s"],
                                  "real": real["round-robin"]["p99_ttft_s"] / real["power-of-two"]["p99_ttft_s"]
                                  if {"round-robin", "power-of-two"} <= set(real) else None},
        "mean_ttft_reduction_prefix_vs_least_outstanding": {"sim": reduction(prefix), "sim_skew": reduction(skewed),
                                                             "sim_system_prompts": reduction(sysprompt),
                                                             "real": reduction(real) if real else None},
        "prefix_hit_rate": {"sim": {n: prefix[n]["prefix_hit_rate"] for n in PREFIX_POLICIES},
                            "sim_skew": {n: skewed[n]["prefix_hit_rate"] for n in PREFIX_POLICIES},
                            "real": {n: r["prefix_hit_rate"] for n, r in real.items()}},
        "prefix_load_vs_prefix_p99_skew": skewed["prefix-load"]["p99_ttft_s"] / skewed["prefix-aware"]["p99_ttft_s"],
        "prefix_cost_vs_prefix_p99_skew": skewed["prefix-cost"]["p99_ttft_s"] / skewed["prefix-aware"]["p99_ttft_s"],
        "block_hit_ceiling": {"sessions": prefix["block_hit_ceiling"],
                              "system_prompts": sysprompt["block_hit_ceiling"]},
        "fair_tenant_p99_ratio": {"vtc_share": fair["vtc_share"]["fair_tenant_p99_ratio"],
                                  "vtc": fair["vtc"]["fair_tenant_p99_ratio"],
                                  "fcfs": fair["fcfs"]["fair_tenant_p99_ratio"]},
        "fair_heavy_rps": {n: fair[n]["heavy_rps"] for n in ("fcfs", "vtc", "vtc_share")},
        "fair_tenant_share": FAIR_TENANT_SHARE,
        "prefix_sim_utilisation": rate / capacity,
        "num_replicas_real": 0 if args.no_real else args.num_replicas,
        "wall_s": time.perf_counter() - started,
    }
    print(json.dumps(summary))
    return 0
