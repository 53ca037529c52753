"""A node lost under load: replicas on two nodes behind `inferlab route` on a third, one node killed.

`run_node_loss()` builds a 3-node cluster (`inferlab cluster`): `inferlab route` in node 0 in front of
one `inferlab serve` replica in each of nodes 1 and 2 (reached over the bridge). A client in node 0
sends a Poisson stream of streamed completions through the router; `kill_after_s` into it every
process of node 2 is killed (SIGKILL: the node is gone, as a machine that lost power). Meanwhile
the client polls the router's /router/stats to see when it ejects the dead replica.

Counted: requests answered, requests that failed **with an error the client saw** (those in flight
on node 2 when it died: their stream breaks), and requests lost silently (neither: must be 0).
Requests that had not started on node 2 are retried on node 1 by the router (`num_retries`).

    python -m inferlab.cluster.node_loss [--num-requests 120 --rate-rps 8 --kill-after-s 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

from inferlab.cluster.netns import ClusterConfig, ClusterError, cluster_down, cluster_up, node_exec_argv
from inferlab.paths import REPO_ROOT

PORT_SERVE, PORT_ROUTE = 8000, 8080


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
                OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")


def _start(node: int, argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(node_exec_argv(node, argv), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _node_pids(namespace: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _wait_ready(node: int, url: str, timeout_s: float = 180.0) -> None:
    probe = ("import sys,time,urllib.request\nend=time.time()+float(sys.argv[2])\nwhile time.time()<end:\n"
             "    try:\n        urllib.request.urlopen(sys.argv[1],timeout=2); sys.exit(0)\n"
             "    except Exception: time.sleep(0.3)\nsys.exit(1)")
    done = subprocess.run(node_exec_argv(node, [sys.executable, "-c", probe, url, str(timeout_s)]), env=_env())
    if done.returncode != 0:
        raise ClusterError(f"{url} did not answer within {timeout_s:.0f} s (from node {node})")


PORT_PROMETHEUS = 9090
PROMETHEUS_TIME_SCALE = 30  # the lab 6 rules with every window / 30: the 30 s ejection `for` is 1 s, 5 m is 10 s


def _start_prometheus(node: int) -> subprocess.Popen:
    """Prometheus in node 0 scraping the router every 0.5 s, with the lab 6 rules (time-compressed)."""
    import yaml

    from inferlab.observe.prometheus import require
    from inferlab.observe.slo import SLOConfig, rules_yaml
    from inferlab.paths import build_dir

    work = build_dir() / "node_loss_prometheus"
    subprocess.run(["rm", "-rf", str(work)], check=False)
    work.mkdir(parents=True)
    (work / "rules.yml").write_text(rules_yaml(SLOConfig(time_scale=PROMETHEUS_TIME_SCALE)))
    (work / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "500ms", "evaluation_interval": "500ms", "scrape_timeout": "400ms"},
        "rule_files": ["rules.yml"],
        "scrape_configs": [{"job_name": "inferlab-router",
                            "static_configs": [{"targets": [f"127.0.0.1:{PORT_ROUTE}"]}]}]}))
    argv = [require("prometheus"), f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{PORT_PROMETHEUS}", "--log.level=warn"]
    return subprocess.Popen(node_exec_argv(node, argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, cwd=work)


def _alerts_fired(node: int, start_s: float, end_s: float, killed_at: float) -> dict:
    """Each alert that fired during the run: seconds from the kill to its first firing sample."""
    import urllib.parse

    query = urllib.parse.urlencode({"query": 'ALERTS{alertstate="firing"}', "start": start_s, "end": end_s,
                                    "step": "0.5"})
    url = f"http://127.0.0.1:{PORT_PROMETHEUS}/api/v1/query_range?{query}"
    fetch = "import sys,urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())"
    done = subprocess.run(node_exec_argv(node, [sys.executable, "-c", fetch, url]), capture_output=True, text=True)
    if done.returncode != 0:
        raise ClusterError(f"could not query Prometheus in node {node}: {done.stderr[-1000:]}")
    fired: dict = {}
    for series in json.loads(done.stdout)["data"]["result"]:
        name, first = series["metric"]["alertname"], float(series["values"][0][0])
        fired[name] = round(min(first - killed_at, fired.get(name, first - killed_at)), 2)
    return fired


def run_node_loss(num_requests: int = 120, rate_rps: float = 8.0, kill_after_s: float = 5.0,
                  max_tokens: int = 24, prometheus: bool = False) -> dict:
    """Args: prometheus: also run Prometheus in node 0 on the router's /metrics with the lab 6 rules
    (windows / PROMETHEUS_TIME_SCALE) and report which alerts fired, seconds after the kill."""
    nodes = cluster_up(ClusterConfig(num_nodes=3))
    procs: list[subprocess.Popen] = []
    try:
        for node in nodes[1:]:
            procs.append(_start(node.index, [sys.executable, "-m", "inferlab", "serve", "--host", node.address,
                                             "--port", str(PORT_SERVE)]))
        for node in nodes[1:]:
            _wait_ready(0, f"http://{node.address}:{PORT_SERVE}/health")
        replicas = [arg for node in nodes[1:] for arg in ("--replica", f"http://{node.address}:{PORT_SERVE}")]
        procs.append(_start(0, [sys.executable, "-m", "inferlab", "route", "--host", "127.0.0.1", "--port",
                                str(PORT_ROUTE), "--health-interval-s", "0.5", *replicas]))
        _wait_ready(0, f"http://127.0.0.1:{PORT_ROUTE}/health")
        if prometheus:
            procs.append(_start_prometheus(0))
            _wait_ready(0, f"http://127.0.0.1:{PORT_PROMETHEUS}/-/ready")
        started_at = time.time()
        client = subprocess.Popen(node_exec_argv(0, [sys.executable, "-m", "inferlab.cluster.node_loss", "--client",
                                                     "--num-requests", str(num_requests), "--rate-rps", str(rate_rps),
                                                     "--max-tokens", str(max_tokens),
                                                     "--watch", f"http://{nodes[2].address}:{PORT_SERVE}"]),
                                  env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(kill_after_s)
        killed_at = time.time()
        for pid in _node_pids(nodes[2].namespace):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        out, err = client.communicate(timeout=600)
        if client.returncode != 0:
            raise ClusterError(f"the client in node 0 failed: {err[-2000:]}")
        result = json.loads(out.strip().splitlines()[-1])
        ejected = result.pop("ejected_at")
        result["ejected_after_s"] = None if ejected is None else round(ejected - killed_at, 2)
        result["kill_after_s"] = kill_after_s
        if prometheus:
            time.sleep(2.0)  # a few more scrapes and evaluations with the dead replica ejected
            result["alerts_fired_after_kill_s"] = _alerts_fired(0, started_at, time.time(), killed_at)
        return result
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        cluster_down()


async def _client(num_requests: int, rate_rps: float, max_tokens: int, watch: str) -> dict:
    import aiohttp
    import numpy as np

    base = f"http://127.0.0.1:{PORT_ROUTE}"
    rng = np.random.default_rng(0)
    arrivals = np.cumsum(rng.exponential(1 / rate_rps, num_requests))
    outcomes: list[str] = []
    ejected_at: list[float] = []
    model = ""

    async def one(session: aiohttp.ClientSession, i: int, at: float, t0: float) -> None:
        nonlocal model
        await asyncio.sleep(max(0.0, t0 + at - time.perf_counter()))
        body = {"model": model, "prompt": [1 + (i * 7 + k) % 250 for k in range(12)], "max_tokens": max_tokens,
                "temperature": 0.0, "stream": True, "ignore_eos": True}
        try:
            async with session.post(base + "/v1/completions", json=body) as resp:
                if resp.status != 200:
                    outcomes.append(f"error: HTTP {resp.status}")
                    return
                got_done = False
                async for raw in resp.content:
                    if raw.decode().strip() == "data: [DONE]":
                        got_done = True
                outcomes.append("ok" if got_done else "error: stream ended without [DONE]")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            outcomes.append(f"error: {type(exc).__name__}")

    async def watch_router(session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with session.get(base + "/router/stats") as resp:
                    stats = await resp.json()
                for replica in stats.get("replicas", []):
                    if replica["url"].startswith(watch) and not replica["is_healthy"] and not ejected_at:
                        ejected_at.append(time.time())
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)

    timeout = aiohttp.ClientTimeout(total=120, sock_read=30)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        async with session.get(base + "/v1/models") as resp:
            model = (await resp.json())["data"][0]["id"]
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch_router(session, stop))
        t0 = time.perf_counter()
        await asyncio.gather(*(one(session, i, at, t0) for i, at in enumerate(arrivals)))
        stop.set()
        await watcher
        async with session.get(base + "/router/stats") as resp:
            stats = await resp.json()
    errors = [o for o in outcomes if o != "ok"]
    return {"num_requests": num_requests, "num_ok": outcomes.count("ok"), "num_errors": len(errors),
            "num_lost_silently": num_requests - len(outcomes), "error_kinds": sorted(set(errors)),
            "num_retries": stats.get("num_retries"), "ejected_at": ejected_at[0] if ejected_at else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m inferlab.cluster.node_loss", description=__doc__.split("\n\n")[0])
    p.add_argument("--num-requests", type=int, default=120)
    p.add_argument("--rate-rps", type=float, default=8.0)
    p.add_argument("--kill-after-s", type=float, default=5.0)
    p.add_argument("--max-tokens", type=int, default=24)
    p.add_argument("--prometheus", action="store_true", help="also scrape the router with the lab 6 rules")
    p.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--watch", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.client:
        print(json.dumps(asyncio.run(_client(args.num_requests, args.rate_rps, args.max_tokens, args.watch))))
        return 0
    try:
        print(json.dumps(run_node_loss(args.num_requests, args.rate_rps, args.kill_after_s, args.max_tokens,
                                       args.prometheus)))
    except ClusterError as err:
        print(f"node loss: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
