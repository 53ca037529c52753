"""The kit's engine as Ray Serve replicas spread across nodes, autoscaled by the kit's policy, one node lost.

`run_serve_across_nodes()` builds a 3-node cluster (`inferlab cluster`), a Ray cluster on it
(`ray_cluster.ray_up`: head in node 0 without CPUs, a 1-CPU worker in nodes 1 and 2) and runs a driver
in node 0. The driver deploys `inferlab.deploy.ray_serve.engine_deployment` (the tiny engine, half a
CPU per replica, autoscaled by `demo_policy`, the simulator's `slo_aware_policy`) and sends a Poisson
stream of requests through a deployment handle (40/s until the policy has scaled out, 12/s after the
kill: what the surviving node serves). Once the policy has scaled out and replicas run on two
nodes, every process of node 2 is killed (SIGKILL: the machine lost power), traffic goes on, and the
driver records:

- where replicas run over time (Ray's actor table: node address of each live replica);
- `eject_s`: kill -> the GCS marks node 2 dead (health checks every second, 3 misses);
- `replace_s`: kill -> the fleet whole again on surviving nodes: no live replica on node 2 and Serve's
  controller reports the deployment HEALTHY with as many running replicas as the actor table shows alive
  (the controller has seen the loss and restarted what its target asks for: the policy's target after
  the kill, which may be smaller than before when the survivors serve the lower rate);
  traffic then goes on for `settle_s` more (requests answered after `replace_s` are counted) and the
  run ends: `after_kill_s` only caps the wait for a node that is never ejected or replaced;
- per request: answered, failed visibly (the handle raised or the engine returned an error, after up to
  two retries of requests whose replica was gone: `ActorUnavailableError`/`ActorDiedError`; generation
  has no side effect), lost silently (no answer and no error within `deadline_s`: must be 0).

    python -m inferlab.cluster.ray_serve_nodes [--rate-rps 40 --after-kill-s 45 --settle-s 8] [--no-kill]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

from inferlab.cluster.netns import ClusterConfig, ClusterError, cluster_down, cluster_up
from inferlab.cluster.ray_cluster import last_json, driver_argv, kill_node, ray_down, ray_env, ray_up

KILLED_NODE = 2


def run_serve_across_nodes(rate_rps: float = 40.0, after_kill_s: float = 45.0, kill: bool = True,
                           max_spread_wait_s: float = 90.0, timeout_s: float = 600.0, settle_s: float = 8.0) -> dict:
    """Cluster, Ray, the driver in node 0; returns the driver's result (see the module doc)."""
    started = time.monotonic()
    cluster_up(ClusterConfig(num_nodes=3))
    try:
        table = ray_up(num_cpus_per_worker=1)
        up_s = time.monotonic() - started
        args = ["--driver", "--rate-rps", str(rate_rps), "--after-kill-s", str(after_kill_s),
                "--max-spread-wait-s", str(max_spread_wait_s), "--settle-s", str(settle_s)] + \
            ([] if kill else ["--no-kill"])
        env = dict(ray_env(), RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S="1",
                   RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S="1")
        done = subprocess.run(driver_argv("inferlab.cluster.ray_serve_nodes", *args), env=env, capture_output=True,
                              text=True, timeout=timeout_s)
        result = last_json(done.stdout)
        if done.returncode != 0 or not isinstance(result, dict):
            raise ClusterError(f"the Ray Serve driver in node 0 failed (exit {done.returncode}):\n"
                               f"{done.stderr[-3000:]}")
        result["ray_nodes"] = [n["NodeManagerAddress"] for n in table]
        result["cluster_up_s"] = round(up_s, 1)
        return result
    finally:
        ray_down()
        cluster_down()


def _replicas_by_node() -> dict[str, int]:
    """Live replicas of the engine deployment, by node address (from the GCS actor table)."""
    import ray._private.state as state

    out: dict[str, int] = {}
    for actor in state.actors().values():
        name = str(actor.get("ActorClassName") or "")
        if "engine" in name and "Replica" in name and actor.get("State") == "ALIVE":
            ip = (actor.get("Address") or {}).get("IPAddress", "?")
            out[ip] = out.get(ip, 0) + 1
    return out


def _serve_fleet() -> tuple[str, int]:
    """Serve controller's view of the engine deployment: its status and its number of RUNNING replicas."""
    from ray import serve

    app = serve.status().applications.get("inferlab")
    dep = app.deployments.get("engine") if app is not None else None
    if dep is None:
        return "MISSING", 0
    running = sum(n for state, n in dep.replica_states.items() if str(getattr(state, "value", state)) == "RUNNING")
    return str(getattr(dep.status, "value", dep.status)), int(running)


async def _drive(handle, rate_rps: float, after_kill_s: float, kill: bool, max_spread_wait_s: float,
                 deadline_s: float, killed_ip: str, max_retries: int = 2, after_kill_rps: float = 12.0,
                 settle_s: float = 8.0) -> dict:
    import numpy as np
    import ray

    rng = np.random.default_rng(0)
    outcomes: dict[int, str] = {}
    answered_at: dict[int, float] = {}  # request -> monotonic time its answer came
    answered_by: dict[str, int] = {}
    tasks: list[asyncio.Task] = []
    timeline: list[tuple[float, dict[str, int]]] = []
    t0 = time.monotonic()

    num_retried = 0

    async def one(i: int) -> None:
        nonlocal num_retried
        body = {"prompt_token_ids": rng.integers(0, 256, int(rng.integers(32, 128))).tolist(),
                "max_tokens": int(rng.integers(16, 48))}
        for attempt in range(1 + max_retries):
            try:
                reply = await asyncio.wait_for(handle.remote(body), timeout=deadline_s)
            except asyncio.TimeoutError:
                outcomes[i] = "lost"  # neither an answer nor an error within the deadline (the load is kept
            # within what the live replicas serve, so a request this late hangs on a dead replica)
                return
            except (ray.exceptions.ActorUnavailableError, ray.exceptions.ActorDiedError) as exc:
                # its replica is gone (the node died): generation has no side effect, so send it again;
                # the handle routes it to a live replica once the controller has dropped the dead one
                if attempt < max_retries:
                    num_retried += 1
                    await asyncio.sleep(0.5 * (attempt + 1))
                    continue
                outcomes[i] = f"error: {type(exc).__name__}"
                return
            except Exception as exc:  # the handle raised: the client sees it
                outcomes[i] = f"error: {type(exc).__name__}"
                return
            break
        if reply.get("error") is not None:
            outcomes[i] = f"error: {reply['error']}"
        else:
            outcomes[i] = "ok"
            answered_at[i] = time.monotonic()
            answered_by[reply.get("node") or "?"] = answered_by.get(reply.get("node") or "?", 0) + 1

    rate = [rate_rps]

    async def traffic(until: asyncio.Event) -> None:
        i = 0
        while not until.is_set():
            tasks.append(asyncio.create_task(one(i)))
            i += 1
            await asyncio.sleep(float(rng.exponential(1 / rate[0])))

    def now() -> float:
        return round(time.monotonic() - t0, 2)

    stop = asyncio.Event()
    sender = asyncio.create_task(traffic(stop))
    # 1. until the policy has scaled out and replicas on two nodes have answered (a replica's actor is
    # alive seconds before it has loaded the model and Serve sends it requests)
    spread_at = None
    while time.monotonic() - t0 < max_spread_wait_s:
        placement = _replicas_by_node()
        timeline.append((now(), placement))
        if len(placement) >= 2 and len(answered_by) >= 2:
            spread_at = now()
            break
        await asyncio.sleep(0.5)
    before = sum(timeline[-1][1].values())
    killed_at = eject_s = replace_s = replaced_to = None
    num_killed = 0
    if kill and spread_at is not None:
        await asyncio.sleep(1.0)  # traffic on both nodes
        before = sum(_replicas_by_node().values())
        killed_at = time.monotonic()
        num_killed = kill_node(KILLED_NODE)
        # what the surviving node can serve: at 40/s one 1-CPU node fell behind and requests waited past
        # the deadline (queued on a live replica, not lost), which would hide a real loss
        rate[0] = after_kill_rps
    # 2. traffic goes on; watch the node die in the GCS and the replicas come back, then `settle_s` more
    # of traffic on the replacements (`after_kill_s` caps the whole wait)
    end = time.monotonic() + (after_kill_s if killed_at else 5.0)
    while time.monotonic() < end:
        if replace_s is not None and time.monotonic() >= killed_at + replace_s + settle_s:
            break
        placement = _replicas_by_node()
        timeline.append((now(), placement))
        if killed_at is not None:
            if eject_s is None and not any(n["Alive"] for n in ray.nodes() if n["NodeManagerAddress"] == killed_ip):
                eject_s = round(time.monotonic() - killed_at, 2)
            survivors = sum(n for ip, n in placement.items() if ip != killed_ip)
            if replace_s is None and eject_s is not None and survivors >= 1 and killed_ip not in placement:
                status, running = _serve_fleet()
                if status == "HEALTHY" and running == survivors:
                    replace_s = round(time.monotonic() - killed_at, 2)
                    replaced_to = survivors
        await asyncio.sleep(0.5)
    stop.set()
    await sender
    await asyncio.gather(*tasks)
    errors = [o for o in outcomes.values() if o.startswith("error")]
    replaced_at = killed_at + replace_s if replace_s is not None else None
    return {"num_requests": len(tasks), "num_ok": sum(o == "ok" for o in outcomes.values()),
            "num_failed_visibly": len(errors), "num_retried": num_retried,
            "num_lost_silently": len(tasks) - len(outcomes) + sum(o == "lost" for o in outcomes.values()),
            "error_kinds": sorted({e[:120] for e in errors}), "answered_by_node": answered_by,
            "spread_at_s": spread_at, "killed_at_s": round(killed_at - t0, 2) if killed_at else None,
            "replicas_before_kill": before, "replicas_after_replace": replaced_to, "num_processes_killed": num_killed,
            "killed_node": killed_ip if killed_at else None, "eject_s": eject_s, "replace_s": replace_s,
            "num_ok_after_replace": (sum(t > replaced_at for t in answered_at.values())
                                     if replaced_at is not None else 0),
            "run_after_kill_s": round(time.monotonic() - killed_at, 1) if killed_at else None,
            "max_nodes_with_replicas": max(len(p) for _, p in timeline),
            "timeline": [(t, p) for t, p in timeline][:: max(1, len(timeline) // 60)]}


def _driver(rate_rps: float, after_kill_s: float, kill: bool, max_spread_wait_s: float, settle_s: float) -> dict:
    import ray
    from ray import serve

    from inferlab.cluster.netns import status
    from inferlab.deploy.ray_serve import engine_deployment

    ray.init(address="auto", log_to_driver=False, configure_logging=False)
    serve.start(proxy_location="Disabled")
    # two replicas fit a 1-CPU worker node: after a node loss the survivor can hold the whole fleet
    handle = serve.run(engine_deployment(max_replicas=2, min_replicas=1, num_cpus=0.5).bind(), name="inferlab",
                       route_prefix=None)
    killed_ip = status()["nodes"][KILLED_NODE]["address"]
    return asyncio.run(_drive(handle, rate_rps, after_kill_s, kill, max_spread_wait_s, 60.0, killed_ip,
                              settle_s=settle_s))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m inferlab.cluster.ray_serve_nodes", description=__doc__.split("\n\n")[0])
    p.add_argument("--rate-rps", type=float, default=40.0)
    p.add_argument("--after-kill-s", type=float, default=45.0)
    p.add_argument("--max-spread-wait-s", type=float, default=90.0)
    p.add_argument("--settle-s", type=float, default=8.0, help="traffic kept on after the replicas are replaced")
    p.add_argument("--no-kill", action="store_true", help="spread and autoscale only; lose no node")
    p.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.driver:
        print(json.dumps(_driver(args.rate_rps, args.after_kill_s, not args.no_kill, args.max_spread_wait_s,
                                 args.settle_s)))
        sys.stdout.flush()
        os._exit(0)  # do not wait for Serve's shutdown on a cluster that just lost a node: ray_down ends it all
    try:
        started = time.monotonic()
        result = run_serve_across_nodes(args.rate_rps, args.after_kill_s, not args.no_kill, args.max_spread_wait_s,
                                        settle_s=args.settle_s)
        result["wall_s"] = round(time.monotonic() - started, 1)
        print(json.dumps(result))
    except ClusterError as err:
        print(f"ray serve across nodes: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
