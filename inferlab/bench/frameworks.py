"""`inferlab bench frameworks [--quick]`: every serving framework that starts here, one workload, one client.

Each framework of `inferlab.frameworks` (inferlab, vLLM, DeepSpeed-Inference AutoTP 2 ranks,
Ray Serve, Triton via PyTriton) is started on the tiny checkpoint, warmed up with two requests,
then driven by `inferlab.serving.loadgen.run_load` at a sweep of Poisson request rates with
the same seeded request set at every framework (Azure-conversation-shaped lengths fitted to
the model). Metrics come from `inferlab.metrics` only. One framework runs at a time (they
would share the same 2 cores); start-ups are not alternated (each costs 10-50 s), the rates
inside one framework are.

Per framework: `output_tok_s` (the highest output throughput of the sweep), `ttft_p50_s`,
`ttft_p99_s`, `tpot_p50_s` (at the lowest rate: the unloaded latency), `max_rate_meeting_slo_rps`
(`inferlab.metrics.max_rate_meeting_slo`, >= 90 % of requests within the SLO), `knee_rate_rps`
(`inferlab.metrics.knee_index` of output tok/s against E2E p50), `startup_s` and the sweep rows; or
{"skipped": reason} when it cannot start here. Triton's model answers once (not streamed): its
TTFT is the whole latency and `tpot_p50_s` is null.
Last line: {"frameworks": {...}, "device": ..., "workload": ..., "slo": ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import platform
import time

import numpy as np

from inferlab.frameworks import NAMES, FrameworkError, framework
from inferlab.metrics import SLO, RequestRecord, knee_index, max_rate_meeting_slo, summarize
from inferlab.serving.loadgen import azure_like_workload, run_load
from inferlab.traces import TraceRequest, poisson_arrivals

BENCHED = tuple(n for n in ("vllm", "deepspeed", "ray_serve", "triton", "inferlab") if n in NAMES)
MIN_ATTAINMENT = 0.9


def workload(rate: float, num_requests: int, max_prompt_tokens: int, max_output_tokens: int,
             seed: int) -> tuple[list[TraceRequest], list[list[int]]]:
    """The request set at `rate` (same seed: same lengths and prompts at every framework)."""
    rng = np.random.default_rng(seed)
    arrivals = poisson_arrivals(rate, num_requests, rng)
    trace = azure_like_workload(num_requests, rng, max_prompt_tokens, max_output_tokens, arrivals)
    prompts = [rng.integers(0, 256, r.num_prompt_tokens).tolist() for r in trace]
    return trace, prompts


def _row(rate: float, records: list[RequestRecord], errors: list[str], num_requests: int, slo: SLO) -> dict:
    if not records:
        return {"rate_rps": rate, "num_ok": 0, "num_failed": len(errors), "slo_attainment": 0.0,
                "output_tok_s": 0.0, "ttft_p50_s": None, "ttft_p99_s": None, "tpot_p50_s": None,
                "first_error": errors[0] if errors else None}
    s = summarize(records, slo)
    streamed = all(len(r.token_times_s) > 0 for r in records)
    # failed requests miss the SLO: attainment over all sent
    attainment = (s.slo_attainment or 0.0) * len(records) / num_requests
    return {"rate_rps": rate, "num_ok": len(records), "num_failed": len(errors), "slo_attainment": attainment,
            "output_tok_s": s.output_throughput_tok_s, "ttft_p50_s": s.ttft_s["p50"], "ttft_p99_s": s.ttft_s["p99"],
            "tpot_p50_s": s.tpot_s["p50"] if streamed else None, "e2e_p50_s": float(np.median(
                [r.finish_time_s - r.arrival_time_s for r in records])),
            "first_error": errors[0] if errors else None}


def bench_one(name: str, rates: list[float], num_requests: int, max_prompt: int, max_output: int, slo: SLO,
              seed: int) -> dict:
    module = framework(name)
    reason = module.skip_reason()
    if reason:
        return {"skipped": reason}
    protocol = "triton" if name == "triton" else "openai"
    started = time.perf_counter()
    try:
        with module.serve() as base:
            startup_s = time.perf_counter() - started
            warm, warm_prompts = workload(100.0, 2, max_prompt, max_output, seed + 1)
            asyncio.run(run_load(base, "tiny", warm, warm_prompts, protocol=protocol, timeout_s=300))
            rows = []
            for rate in rates:
                trace, prompts = workload(rate, num_requests, max_prompt, max_output, seed)
                records, errors = asyncio.run(run_load(base, "tiny", trace, prompts, protocol=protocol,
                                                       timeout_s=600))
                rows.append(_row(rate, records, errors, num_requests, slo))
                print(f"  {name:<10} {rate:>6.1f} req/s: {rows[-1]['output_tok_s']:>8.1f} tok/s, "
                      f"TTFT p50 {_fmt(rows[-1]['ttft_p50_s'])} s, SLO met {rows[-1]['slo_attainment']:.0%}, "
                      f"{rows[-1]['num_failed']} failed", flush=True)
    except FrameworkError as exc:
        return {"skipped": f"could not start: {str(exc).splitlines()[0]}"}
    light = rows[0]
    return {"output_tok_s": max(r["output_tok_s"] for r in rows), "ttft_p50_s": light["ttft_p50_s"],
            "ttft_p99_s": light["ttft_p99_s"], "tpot_p50_s": light["tpot_p50_s"],
            "max_rate_meeting_slo_rps": max_rate_meeting_slo([r["rate_rps"] for r in rows],
                                                             [r["slo_attainment"] for r in rows], MIN_ATTAINMENT),
            "knee_rate_rps": _knee(rows), "startup_s": round(startup_s, 1),
            "streamed": protocol == "openai", "sweep": rows}


def _knee(rows: list[dict]) -> float | None:
    """The swept rate at the knee of (output tok/s, E2E p50), or None where it is undefined."""
    try:
        return rows[knee_index([r["output_tok_s"] for r in rows], [r.get("e2e_p50_s") or 0.0 for r in rows])]["rate_rps"]
    except ValueError:
        return None


def _fmt(x: float | None) -> str:
    return "   -  " if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:6.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inferlab bench frameworks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rates x 24 requests, short outputs")
    parser.add_argument("--frameworks", default=",".join(BENCHED), help="comma-separated subset")
    parser.add_argument("--rates", default=None, help="comma-separated request rates (req/s)")
    parser.add_argument("--num-requests", type=int, default=None)
    parser.add_argument("--ttft-slo-s", type=float, default=1.0)
    parser.add_argument("--tpot-slo-s", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.frameworks.split(",") if n.strip()]
    for n in names:
        if n not in NAMES:
            parser.error(f"unknown framework {n!r}; known: {', '.join(NAMES)}")
    rates = [float(r) for r in args.rates.split(",")] if args.rates else ([4.0, 16.0, 64.0] if args.quick
                                                                          else [2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0])
    num_requests = args.num_requests or (24 if args.quick else 64)
    max_prompt, max_output = (128, 32) if args.quick else (256, 64)
    slo = SLO(ttft_s=args.ttft_slo_s, tpot_s=args.tpot_slo_s)
    results = {}
    for name in names:
        print(f"{name}:", flush=True)
        results[name] = bench_one(name, rates, num_requests, max_prompt, max_output, slo, args.seed)
        if "skipped" in results[name]:
            print(f"  skipped: {results[name]['skipped']}", flush=True)
    print(f"\n{'framework':<10} {'out tok/s':>10} {'TTFT p50':>9} {'TTFT p99':>9} {'TPOT p50':>9} {'max rps@SLO':>12}"
          f" {'start s':>8}")
    for name, r in results.items():
        if "skipped" in r:
            print(f"{name:<10} skipped: {r['skipped'][:80]}")
            continue
        print(f"{name:<10} {r['output_tok_s']:>10.1f} {_fmt(r['ttft_p50_s']):>9} {_fmt(r['ttft_p99_s']):>9} "
              f"{_fmt(r['tpot_p50_s']):>9} {r['max_rate_meeting_slo_rps']:>12.1f} {r['startup_s']:>8.1f}")
    from inferlab.hardware import describe

    hw = describe()
    device = f"{platform.machine()}, {hw.cpu_cores} CPU cores" + (f", {', '.join(hw.gpus)}" if hw.gpus else ", no GPU")
    print(json.dumps({"frameworks": results, "device": device,
                      "workload": {"rates_rps": rates, "num_requests": num_requests, "max_prompt_tokens": max_prompt,
                                   "max_output_tokens": max_output, "arrivals": "poisson", "seed": args.seed},
                      "slo": {"ttft_s": slo.ttft_s, "tpot_s": slo.tpot_s, "min_attainment": MIN_ATTAINMENT}}))
    return 0
