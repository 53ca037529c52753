"""`inferlab loadgen`: open-loop load against any OpenAI-compatible completions endpoint.

Flow: a workload (`inferlab.traces`: Poisson or gamma arrivals with Azure-conversation-like
lengths fitted to the model's context, or a replayed trace file) -> one streaming
POST /v1/completions per request at its arrival time, token-id prompts, `ignore_eos` so
output lengths follow the workload -> a `RequestRecord` per request (arrival, each streamed
chunk's time) -> `inferlab.metrics.summarize` -> a table and, as the last line, one JSON object.

`--protocol triton` sends the same request set to a Triton Inference Server model (KServe v2
HTTP, POST /v2/models/<model>/infer; `inferlab.frameworks.triton`'s request/response JSON in
one BYTES element). A Triton model that is not decoupled answers once, so there TTFT is the
whole latency and TPOT is not measured (records carry no per-token times).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from dataclasses import dataclass

import aiohttp
import numpy as np

from inferlab.metrics import RequestRecord, summarize
from inferlab.traces import (
    LengthDist, TraceRequest, fit_lengths, gamma_arrivals, load_trace, poisson_arrivals, scale_rate, synthesize,
)

# Azure LLM inference trace 2023, conversation: context p50 1,020 / p99 4,142; generated p50 129 / p99 601.
AZURE_CONV_PROMPT = LengthDist(1020, 4142, min_tokens=1, max_tokens=16_384)
AZURE_CONV_OUTPUT = LengthDist(129, 601, min_tokens=1, max_tokens=4_096)


def azure_like_workload(num_requests: int, rng: np.random.Generator, max_prompt_tokens: int,
                        max_output_tokens: int, arrivals_s: np.ndarray | None = None) -> list[TraceRequest]:
    """Azure-conversation-shaped lengths, scaled (by `fit_lengths`) into a small model's context.

    Args:
        num_requests: how many requests.
        rng: random source.
        max_prompt_tokens, max_output_tokens: the longest prompt/output after scaling.
        arrivals_s: arrival times (default: all at t=0, the offline setting).
    """
    arrivals = np.zeros(num_requests) if arrivals_s is None else arrivals_s
    trace = synthesize(arrivals, AZURE_CONV_PROMPT, AZURE_CONV_OUTPUT, rng)
    return fit_lengths(trace, max_prompt_tokens, max_output_tokens)


@dataclass
class Outcome:
    record: RequestRecord | None
    error: str | None = None


async def _one(session: aiohttp.ClientSession, url: str, model: str, req: TraceRequest, prompt: list[int],
               t0: float, ignore_eos: bool, headers: dict[str, str] | None = None) -> Outcome:
    await asyncio.sleep(max(0.0, t0 + req.arrival_time_s - time.perf_counter()))
    body = {"model": model, "prompt": prompt, "max_tokens": req.num_output_tokens, "temperature": 0.0,
            "stream": True, "stream_options": {"include_usage": True}}
    if ignore_eos:
        body["ignore_eos"] = True
    arrival = time.perf_counter()
    times: list[float] = []
    num_tokens = None
    try:
        async with session.post(url, json=body, headers=headers) as resp:
            if resp.status != 200:
                return Outcome(None, f"HTTP {resp.status}: {(await resp.text())[:200]}")
            async for raw in resp.content:
                line = raw.decode().strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                event = json.loads(data)
                if "error" in event:
                    return Outcome(None, str(event["error"]))
                if event.get("choices"):
                    times.append(time.perf_counter())
                if event.get("usage"):
                    num_tokens = event["usage"].get("completion_tokens")
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        return Outcome(None, f"{type(exc).__name__}: {exc}")
    if not times:
        return Outcome(None, "no tokens received")
    record = RequestRecord(arrival, times[0], times[-1], len(prompt), num_tokens or len(times), tuple(times))
    return Outcome(record)


async def _one_triton(session: aiohttp.ClientSession, url: str, req: TraceRequest, prompt: list[int],
                      t0: float) -> Outcome:
    """One KServe v2 inference: the whole answer at once (first token time = finish time)."""
    await asyncio.sleep(max(0.0, t0 + req.arrival_time_s - time.perf_counter()))
    request = json.dumps({"prompt_token_ids": prompt, "max_tokens": req.num_output_tokens})
    body = {"inputs": [{"name": "request", "shape": [1, 1], "datatype": "BYTES", "data": [request]}]}
    arrival = time.perf_counter()
    try:
        async with session.post(url, json=body) as resp:
            text = await resp.text()
            finish = time.perf_counter()
            if resp.status != 200:
                return Outcome(None, f"HTTP {resp.status}: {text[:200]}")
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        return Outcome(None, f"{type(exc).__name__}: {exc}")
    try:
        answer = json.loads(json.loads(text)["outputs"][0]["data"][0])
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return Outcome(None, f"unreadable Triton answer ({exc}): {text[:200]}")
    if answer.get("error") or not answer.get("token_ids"):
        return Outcome(None, str(answer.get("error") or "no tokens received"))
    return Outcome(RequestRecord(arrival, finish, finish, len(prompt), len(answer["token_ids"])))


async def run_load(base_url: str, model: str, workload: list[TraceRequest], prompts: list[list[int]],
                   ignore_eos: bool = True, timeout_s: float = 600.0, *,
                   headers: list[dict[str, str]] | None = None,
                   protocol: str = "openai") -> tuple[list[RequestRecord], list[str]]:
    """Send every request at its arrival time; returns (records of successes, error messages).

    protocol: "openai" (streamed /v1/completions) or "triton" (KServe v2 /v2/models/<model>/infer).
    `headers`: per request, extra HTTP headers (e.g. a router's `X-Tenant`, `X-Session-Id`; OpenAI only).
    """
    if protocol not in ("openai", "triton"):
        raise ValueError(f"protocol must be 'openai' or 'triton', got {protocol!r}")
    if protocol == "triton":
        url = f"{base_url.rstrip('/')}/v2/models/{model}/infer"
    else:
        url = base_url.rstrip("/") + "/v1/completions"
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        t0 = time.perf_counter()
        if protocol == "triton":
            outcomes = await asyncio.gather(*(_one_triton(session, url, r, p, t0) for r, p in zip(workload, prompts)))
        else:
            outcomes = await asyncio.gather(*(_one(session, url, model, r, p, t0, ignore_eos,
                                                   headers[i] if headers else None)
                                              for i, (r, p) in enumerate(zip(workload, prompts))))
    return [o.record for o in outcomes if o.record], [o.error for o in outcomes if o.error]


async def _first_model(base_url: str) -> str:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        async with session.get(base_url.rstrip("/") + "/v1/models") as resp:
            return (await resp.json())["data"][0]["id"]


def build_workload(args: argparse.Namespace, rng: np.random.Generator) -> list[TraceRequest]:
    if args.trace:
        trace = load_trace(args.trace, sort=True)[: args.num_requests or None]
        trace = scale_rate(trace, args.rate_scale)
        return fit_lengths(trace, args.max_prompt_tokens, args.max_output_tokens)
    n = args.num_requests or 32
    if math.isinf(args.rate):
        arrivals = np.zeros(n)
    elif args.burstiness == 1.0:
        arrivals = poisson_arrivals(args.rate, n, rng)
    else:
        arrivals = gamma_arrivals(args.rate, n, args.burstiness, rng)
    return azure_like_workload(n, rng, args.max_prompt_tokens, args.max_output_tokens, arrivals)


def format_table(summary: dict) -> str:
    rows = [f"{'metric':<8} {'mean':>9} {'p50':>9} {'p90':>9} {'p99':>9}   (seconds)"]
    for name in ("ttft_s", "tpot_s", "itl_s", "e2e_s"):
        d = summary[name]
        rows.append(f"{name[:-2].upper():<8} " + " ".join(f"{d[k]:>9.4f}" for k in ("mean", "p50", "p90", "p99")))
    rows.append(f"requests {summary['num_requests']} in {summary['duration_s']:.2f} s: "
                f"{summary['request_throughput_rps']:.2f} req/s, {summary['output_throughput_tok_s']:.1f} output tok/s")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inferlab loadgen", description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--model", default=None, help="model name (default: the first of /v1/models)")
    parser.add_argument("--num-requests", type=int, default=None, help="default 32 (trace: all)")
    parser.add_argument("--rate", type=float, default=float("inf"), help="requests/s (inf: all at once)")
    parser.add_argument("--burstiness", type=float, default=1.0, help="gamma shape; 1 = Poisson, < 1 burstier")
    parser.add_argument("--trace", default=None, help="replay a trace file (Azure/BurstGPT CSV, Mooncake JSONL)")
    parser.add_argument("--rate-scale", type=float, default=1.0, help="trace replay: compress time by this factor")
    parser.add_argument("--max-prompt-tokens", type=int, default=768)
    parser.add_argument("--max-output-tokens", type=int, default=255)
    parser.add_argument("--no-ignore-eos", action="store_true", help="do not send ignore_eos")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout-s", type=float, default=600.0)
    parser.add_argument("--protocol", choices=["openai", "triton"], default="openai",
                        help="triton: KServe v2 /v2/models/<model>/infer (inferlab.frameworks.triton; --model default tiny)")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.burstiness <= 0:
        parser.error("--rate and --burstiness must be > 0")
    rng = np.random.default_rng(args.seed)
    workload = build_workload(args, rng)
    prompts = [rng.integers(0, 256, r.num_prompt_tokens).tolist() for r in workload]
    if args.protocol == "triton":
        model = args.model or "tiny"
    else:
        model = args.model or asyncio.run(_first_model(args.base_url))
    records, errors = asyncio.run(run_load(args.base_url, model, workload, prompts, not args.no_ignore_eos,
                                           args.timeout_s, protocol=args.protocol))
    summary = summarize(records).to_dict() if records else None
    if summary:
        print(format_table(summary))
    for e in errors[:5]:
        print(f"error: {e}")
    print(json.dumps({"num_ok": len(records), "num_failed": len(errors), "model": model, "summary": summary}))
    return 0 if not errors else 1
