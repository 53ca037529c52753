"""`inferlab bench soak`: does a long-running server's memory stay flat, and is any request lost?

Runs a real `inferlab serve` process per variant (bounded history, the default; and
unbounded, the behaviour before issue 17) and drives it for `--minutes` with a closed loop of
`--concurrency` clients (random prompts and lengths; a `--disconnect-fraction` of them hang
up mid-request). After `--warmup-requests`, the server's RSS is sampled against the number
of finished requests; the least-squares slope is the growth per 1,000 requests (target:
under 1 MB). A request is lost when it was not hung up on and did not come back complete.
At the end every KV block must be free and nothing left running. Table, then a JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import time

import aiohttp

from inferlab.bench.serverproc import server_process

VARIANTS = {"bounded": [], "unbounded": ["--max-finished-requests", "-1", "--max-step-records", "-1"]}


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _slope(points: list[tuple[int, int]]) -> float:
    """Least-squares slope of y over x (bytes per request)."""
    n = len(points)
    if n < 2:
        return float("nan")
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else float("nan")


async def _drive(base: str, pid: int, args: argparse.Namespace, rng: random.Random) -> dict:
    counts = {"ok": 0, "lost": 0, "disconnected": 0}
    samples: list[tuple[int, int]] = []
    lost: list[str] = []
    end = time.monotonic() + args.minutes * 60

    async def client(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < end:
            num_out = rng.randint(4, 24)
            body = {"prompt": "".join(rng.choice("abcdefgh é") for _ in range(rng.randint(4, 48))),
                    "max_tokens": num_out, "ignore_eos": True, "temperature": rng.choice([0, 0.8]),
                    "stream": rng.random() < 0.5}
            if rng.random() < args.disconnect_fraction:
                try:  # hang up mid-request
                    resp = await asyncio.wait_for(session.post(base + "/v1/completions", json=body), 0.02)
                    resp.close()
                except asyncio.TimeoutError:
                    pass
                counts["disconnected"] += 1
                continue
            try:
                async with session.post(base + "/v1/completions", json=body) as r:
                    text = await r.text()
                ok = r.status == 200 and (body["stream"] and text.rstrip().endswith("data: [DONE]") or
                                          not body["stream"] and json.loads(text)["usage"]["completion_tokens"] == num_out)
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError) as exc:
                ok, text = False, f"{type(exc).__name__}: {exc}"
            counts["ok" if ok else "lost"] += 1
            if not ok and len(lost) < 5:
                lost.append(f"{body} -> {text[:200]}")

    async def sampler() -> None:
        while time.monotonic() < end:
            done = counts["ok"] + counts["lost"] + counts["disconnected"]
            if done >= args.warmup_requests:
                samples.append((done, rss_bytes(pid)))
            await asyncio.sleep(1.0)

    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.gather(sampler(), *[client(session) for _ in range(args.concurrency)])
        await asyncio.sleep(0.5)  # let the hung-up requests be aborted
        async with session.get(base + "/stats") as r:
            stats = await r.json()
    return {"counts": counts, "samples": samples, "stats": stats, "lost": lost}


def run_variant(name: str, args: argparse.Namespace) -> dict:
    flags = ["--num-kv-blocks", str(args.num_kv_blocks), "--max-model-len", "256", *VARIANTS[name]]
    with server_process(flags) as (base, proc):
        out = asyncio.run(_drive(base, proc.pid, args, random.Random(args.seed)))
    samples, c, stats = out["samples"], out["counts"], out["stats"]
    for line in out["lost"]:
        print(f"  lost ({name}): {line}", flush=True)
    growth_mb = _slope(samples) * 1000 / 2**20
    return {"variant": name, "minutes": args.minutes, "num_requests": sum(c.values()), "num_ok": c["ok"],
            "num_disconnected": c["disconnected"], "num_lost": c["lost"],
            "rss_after_warmup_mb": round(samples[0][1] / 2**20, 1) if samples else None,
            "rss_end_mb": round(samples[-1][1] / 2**20, 1) if samples else None,
            "rss_growth_mb_per_1000": round(growth_mb, 3),
            "num_disconnect_aborts": stats["num_disconnect_aborts"], "all_blocks_free":
                stats["num_free_kv_blocks"] == args.num_kv_blocks and stats["num_running"] + stats["num_waiting"] == 0}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="inferlab bench soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="per variant")
    parser.add_argument("--variants", default="bounded,unbounded")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--disconnect-fraction", type=float, default=0.1)
    parser.add_argument("--warmup-requests", type=int, default=1000,
                        help="requests before RSS sampling starts (past the bounded buffers filling up)")
    parser.add_argument("--num-kv-blocks", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    names = args.variants.split(",")
    if unknown := [n for n in names if n not in VARIANTS]:
        parser.error(f"unknown variants {unknown}; choose from {sorted(VARIANTS)}")
    if args.minutes <= 0 or args.concurrency < 1 or not 0 <= args.disconnect_fraction < 1:
        parser.error("--minutes must be > 0, --concurrency >= 1, --disconnect-fraction in [0, 1)")
    rows = [run_variant(n, args) for n in names]
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}"
    print(f"soak on {machine}: {args.concurrency} clients, {args.disconnect_fraction:.0%} hang up")
    print(f"{'variant':<10} {'min':>5} {'requests':>9} {'hung up':>8} {'lost':>5} {'RSS warm MB':>12} "
          f"{'RSS end MB':>11} {'MB/1000 req':>12} {'blocks free':>12}")
    for r in rows:
        print(f"{r['variant']:<10} {r['minutes']:>5.1f} {r['num_requests']:>9} {r['num_disconnected']:>8} "
              f"{r['num_lost']:>5} {r['rss_after_warmup_mb']!s:>12} {r['rss_end_mb']!s:>11} "
              f"{r['rss_growth_mb_per_1000']:>12.3f} {r['all_blocks_free']!s:>12}")
    by = {r["variant"]: r for r in rows}
    ratio = None
    if "bounded" in by and "unbounded" in by and by["bounded"]["rss_growth_mb_per_1000"] > 0:
        ratio = round(by["unbounded"]["rss_growth_mb_per_1000"] / by["bounded"]["rss_growth_mb_per_1000"], 1)
        print(f"unbounded / bounded growth: {ratio}x")
    print(json.dumps({"benchmark": "soak", "machine": machine, "concurrency": args.concurrency,
                      "variants": rows, "growth_ratio_unbounded_over_bounded": ratio}))
    ok = all(r["num_lost"] == 0 and r["all_blocks_free"] for r in rows)
    return 0 if ok else 1
