"""`inferlab bench autoscale [--quick]`: every shipped autoscaler on unseen hours of the trace family.

Each evaluation trace (`inferlab.trace_family.evaluation_specs`: bursty and smooth Azure-2023-shaped
hours at rate scales 5, 10 and 20, four seeds each, none of them ever used for tuning) is simulated
once per policy with the same fleet settings (`inferlab simulate`'s defaults: Llama-2-7B on H100
from the roofline, 90 s cold start, SLO TTFT 2 s / TPOT 0.2 s, least-outstanding routing). Printed
per policy: mean and worst SLO attainment, mean and worst GPU-hours over the 5-minute oracle,
scale actions per hour, and the share of traces on which it beats HPA and Ray Serve's default
on both attainment and GPU-hours (at least as good on both, better on one). The last line is JSON.

`--quick`: one 10-minute trace per kind (the suite runs it); `--jobs N` simulates traces in parallel.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from typing import Any

from tqdm import tqdm

from inferlab.sim.main import FRONTIERS
from inferlab.sim.main import build_parser as simulate_parser
from inferlab.sim.main import run_on_trace
from inferlab.trace_family import TraceSpec, evaluation_specs, generate

POLICIES = ("slo", "forecast", "hpa", "ray", "kpa", "static", "oracle")
BASELINES = ("hpa", "ray")
TARGETS = {"attainment_mean_smooth": 0.99, "attainment_mean_bursty": 0.97, "attainment_min": 0.95,
           "gpu_h_over_oracle_mean": 1.3, "gpu_h_over_oracle_max": 1.5, "actions_per_hour_mean": 6.0,
           "beats_baselines_share": 0.9}


def run_trace(spec: TraceSpec, policies: tuple[str, ...] = POLICIES) -> dict[str, Any]:
    """Every policy on one trace: {policy: {attainment, gpu_h_over_oracle, actions_per_hour}}."""
    trace = generate(spec)
    rows: dict[str, Any] = {}
    for policy in policies:
        args = simulate_parser().parse_args(["--trace", "-", "--autoscaler", policy])
        out = run_on_trace(trace, args)
        rows[policy] = {"attainment": out["slo_attainment"],
                        "gpu_h_over_oracle": out["gpu_hours"] / out["oracle_gpu_hours"],
                        "actions_per_hour": out["scale_actions_per_hour"]}
    return {"trace": spec.name, "kind": spec.kind, "rate_scale": spec.rate_scale,
            "num_requests": len(trace), "policies": rows}


def _beats(mine: dict[str, float], other: dict[str, float]) -> bool:
    at_least = mine["attainment"] >= other["attainment"] and mine["gpu_h_over_oracle"] <= other["gpu_h_over_oracle"]
    better = mine["attainment"] > other["attainment"] or mine["gpu_h_over_oracle"] < other["gpu_h_over_oracle"]
    return at_least and better


def summarize(results: list[dict[str, Any]], policies: tuple[str, ...] = POLICIES) -> dict[str, dict[str, float]]:
    """Per policy: mean/worst attainment (also per kind), mean/worst GPU-h over oracle, actions/h, beat shares."""
    out: dict[str, dict[str, float]] = {}
    for policy in policies:
        have = [r for r in results if policy in r["policies"]]  # a resumed --rows file may lack a policy on some traces
        if not have:
            continue
        rows = [r["policies"][policy] for r in have]
        att = [row["attainment"] for row in rows]
        ratio = [row["gpu_h_over_oracle"] for row in rows]
        summary = {
            "attainment_min": min(att), "attainment_mean": sum(att) / len(att),
            "gpu_h_over_oracle_mean": sum(ratio) / len(ratio), "gpu_h_over_oracle_max": max(ratio),
            "actions_per_hour_mean": sum(row["actions_per_hour"] for row in rows) / len(rows),
            "num_traces": len(have),
        }
        for kind in sorted({r["kind"] for r in have}):
            kind_att = [r["policies"][policy]["attainment"] for r in have if r["kind"] == kind]
            summary[f"attainment_mean_{kind}"] = sum(kind_att) / len(kind_att)
        for base in BASELINES:
            both = [r for r in have if base in r["policies"]]
            if base != policy and both:
                wins = [_beats(r["policies"][policy], r["policies"][base]) for r in both]
                summary[f"beats_{base}_share"] = sum(wins) / len(wins)
        out[policy] = summary
    return out


def format_table(summary: dict[str, dict[str, float]]) -> str:
    head = (f"{'policy':<8}{'att mean':>10}{'att min':>9}{'smooth':>9}{'bursty':>9}{'GPU-h/orc':>11}"
            f"{'worst':>8}{'act/h':>8}{'>hpa':>7}{'>ray':>7}")
    lines = [head]
    for policy, s in summary.items():
        lines.append(f"{policy:<8}{s['attainment_mean']:>10.4f}{s['attainment_min']:>9.4f}"
                     f"{s.get('attainment_mean_smooth', float('nan')):>9.4f}{s.get('attainment_mean_bursty', float('nan')):>9.4f}"
                     f"{s['gpu_h_over_oracle_mean']:>11.2f}{s['gpu_h_over_oracle_max']:>8.2f}{s['actions_per_hour_mean']:>8.1f}"
                     f"{s.get('beats_hpa_share', float('nan')):>7.0%}{s.get('beats_ray_share', float('nan')):>7.0%}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="inferlab bench autoscale", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one 10-minute trace per kind (the suite's form)")
    p.add_argument("--jobs", type=int, default=min(os.cpu_count() or 1, 4), help="traces simulated in parallel")
    p.add_argument("--policies", default=",".join(POLICIES),
                   help=f"comma-separated subset of {','.join(POLICIES)}, "
                        f"or the causal frontiers {','.join(FRONTIERS)}")
    p.add_argument("--json-out", help="also write every trace's rows here")
    p.add_argument("--rows", help="append each trace's rows to this JSON-lines file as it finishes, and skip "
                                  "the traces it already holds (resume a long run)")
    args = p.parse_args(argv)
    policies = tuple(x.strip() for x in args.policies.split(",") if x.strip())
    unknown = [x for x in policies if x not in POLICIES + FRONTIERS]
    if unknown or not policies:
        print(f"inferlab bench autoscale: --policies: unknown {unknown or '(empty)'}; "
              f"known: {', '.join(POLICIES + FRONTIERS)}",
              file=sys.stderr)
        return 2
    if args.jobs < 1:
        print(f"inferlab bench autoscale: --jobs must be >= 1, got {args.jobs}", file=sys.stderr)
        return 2
    specs = evaluation_specs(quick=args.quick)
    started = time.perf_counter()
    print(f"{len(specs)} evaluation traces x {len(policies)} policies, {args.jobs} at a time", flush=True)
    done: dict[str, dict[str, Any]] = {}
    if args.rows and os.path.exists(args.rows):
        with open(args.rows) as handle:
            for line in handle:
                row = json.loads(line)  # a later row of the same trace adds policies to an earlier one
                if row["trace"] in done:
                    row = {**row, "policies": {**done[row["trace"]]["policies"], **row["policies"]}}
                done[row["trace"]] = row
    # each trace runs only the policies its stored rows lack (a new policy does not re-run the others)
    tasks = [(spec, tuple(p for p in policies if p not in done.get(spec.name, {}).get("policies", {})))
             for spec in specs]
    tasks = [task for task in tasks if task[1]]
    if done:
        print(f"{len(specs) - len(tasks)} traces complete in {args.rows}", flush=True)

    def keep(row: dict[str, Any]) -> dict[str, Any]:
        if args.rows:
            with open(args.rows, "a") as handle:
                handle.write(json.dumps(row) + "\n")
        return row

    if args.jobs == 1:
        fresh = [keep(run_trace(*t)) for t in tqdm(tasks, desc="traces", file=sys.stderr)]
    else:
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            fresh = [keep(r) for r in tqdm(pool.imap(_run_task, tasks), total=len(tasks), desc="traces", file=sys.stderr)]
    by_name = dict(done)
    for row in fresh:
        stored = by_name.get(row["trace"], {}).get("policies", {})
        by_name[row["trace"]] = {**row, "policies": {**stored, **row["policies"]}}
    results = [{**by_name[spec.name], "policies": {p: by_name[spec.name]["policies"][p] for p in policies}}
               for spec in specs]
    summary = summarize(results, policies)
    wall_s = time.perf_counter() - started
    for r in results:
        cells = "  ".join(f"{k} {v['attainment']:.3f}/{v['gpu_h_over_oracle']:.2f}x/{v['actions_per_hour']:.0f}"
                          for k, v in r["policies"].items())
        print(f"{r['trace']:<28} {r['num_requests']:>7} req  {cells}")
    print(format_table(summary))
    print(f"targets (issue 15): {TARGETS}; wall {wall_s:.0f} s")
    if args.json_out:
        with open(args.json_out, "w") as handle:
            json.dump({"traces": results, "policies": summary}, handle, indent=1)
    print(json.dumps({"policies": summary, "num_traces": len(specs), "quick": args.quick, "wall_s": round(wall_s, 1)}))
    return 0


def _run_task(task: tuple[TraceSpec, tuple[str, ...]]) -> dict[str, Any]:
    return run_trace(*task)


if __name__ == "__main__":
    sys.exit(main())
