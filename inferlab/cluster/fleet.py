"""The live fleet on an `inferlab cluster`: router and controller in node 0, replicas in nodes 1..N-1.

Floor 3 of inferlab (cluster/), on `netns.py` and `serving/fleet.py`. `run_cluster_fleet` takes the
shared cluster lock (`LOCK`, the same file every namespace user holds), brings up `num_nodes`
network namespaces (removing any earlier cluster), runs `python -m inferlab.cluster.fleet --inside
SPEC` in node 0 (the policy, the fleet's config, the trace and the prompts travel pickled with
cloudpickle, so a notebook's own function works), and always takes the cluster down. Inside node 0,
a `Fleet` places its k-th replica in node 1 + k mod (N-1) (`ip netns exec`, listening on that
node's address), the router reaches them over the bridge, and the load runs from node 0; the last
stdout line is a JSON summary. Where namespaces are not allowed, `preflight` raises `ClusterError`
with the reason (the caller skips).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from inferlab.cluster.netns import ClusterConfig, ClusterError, cluster_down, cluster_up, node_exec_argv, preflight
from inferlab.paths import REPO_ROOT

LOCK = Path("/tmp/inferlab-cluster.lock")


@contextlib.contextmanager
def cluster_lock(timeout_s: float | None = None):
    """Hold the machine's cluster lock (namespaces and addresses are one shared resource); with
    `timeout_s`, raise `ClusterError` if another user still holds it after that long."""
    import time

    with open(LOCK, "a") as f:
        end = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | (fcntl.LOCK_NB if end is not None else 0))
                break
            except BlockingIOError:
                if time.monotonic() > end:
                    raise ClusterError(f"the cluster lock {LOCK} is held by another user for over "
                                       f"{timeout_s:.0f} s") from None
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_cluster_fleet(policy: Callable[[Any], tuple[int, dict[str, Any]]], trace: list, prompts: list[list[int]],
                      config: Any, num_nodes: int = 3, timeout_s: float = 300.0,
                      lock_timeout_s: float | None = None) -> dict:
    """The fleet on a fresh `num_nodes` cluster (see the module docstring); its JSON summary."""
    import cloudpickle

    if num_nodes < 2:
        raise ValueError(f"num_nodes must be >= 2 (node 0 routes, the others serve), got {num_nodes}")
    preflight()
    module = getattr(policy, "__module__", "__main__") or "__main__"
    if module != "__main__" and not module.startswith("inferlab.") and module in sys.modules:
        cloudpickle.register_pickle_by_value(sys.modules[module])  # a test's or a script's own module
    with cluster_lock(lock_timeout_s), tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.pkl"
        try:
            nodes = cluster_up(ClusterConfig(num_nodes=num_nodes))
            spec.write_bytes(cloudpickle.dumps({"policy": policy, "trace": trace, "prompts": prompts, "config": config,
                                                "nodes": [(n.namespace, n.address) for n in nodes[1:]]}))
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                                             os.environ.get("PYTHONPATH")])))
            done = subprocess.run(node_exec_argv(0, [sys.executable, "-m", "inferlab.cluster.fleet", "--inside",
                                                     str(spec)]),
                                  env=env, capture_output=True, text=True, timeout=timeout_s)
            if done.returncode != 0:
                raise ClusterError(f"the fleet in node 0 failed ({done.returncode}): {done.stderr[-2000:]}")
            return json.loads(done.stdout.strip().splitlines()[-1])
        finally:
            cluster_down()


def _inside(spec_path: str) -> dict:
    import pickle

    from inferlab.serving.fleet import Fleet
    from inferlab.serving.loadgen import run_load

    spec = pickle.loads(Path(spec_path).read_bytes())
    nodes = spec["nodes"]

    def placement(k: int) -> tuple[list[str], str]:
        namespace, address = nodes[k % len(nodes)]
        return ["ip", "netns", "exec", namespace], address

    with Fleet(spec["policy"], spec["config"], placement=placement) as fleet:
        records, errors = asyncio.run(run_load(fleet.base_url, "tiny", spec["trace"], spec["prompts"]))
        fleet.wait_until(lambda f: f.target == spec["config"].autoscaling.min_replicas
                         and not f.in_state("draining"), timeout_s=30.0)
        summary = {"num_requests": len(spec["trace"]), "num_served": len(records), "errors": errors[:5],
                   "num_errors": len(errors), "output_tokens": sum(r.num_output_tokens for r in records),
                   "actions": [[round(t, 2), a, b] for t, a, b in fleet.actions],
                   "replicas": [{"url": r.url, "launch_s": round(r.launch_s, 2),
                                 "ready_s": None if r.ready_s is None else round(r.ready_s, 2), "error": r.error,
                                 "num_requests": r.pool_entry.num_requests if r.pool_entry is not None else 0}
                                for r in fleet.replicas],
                   "timeline": fleet.timeline, "end_s": fleet.end_s, "num_forced_stops": fleet.num_forced_stops,
                   "policy_errors": fleet.policy_errors[:5]}
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inferlab.cluster.fleet")
    parser.add_argument("--inside", required=True, help="the pickled spec (run_cluster_fleet writes it)")
    args = parser.parse_args(argv)
    print(json.dumps(_inside(args.inside)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
