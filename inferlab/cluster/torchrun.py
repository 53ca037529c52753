"""Run a kit worker with torchrun across the nodes of `inferlab cluster` (one torchrun per node).

`run_across_nodes("inferlab.parallel.workers:tp_demo", nproc_per_node=1)` starts, inside every node's
namespace, `torchrun --nnodes N --node-rank i --master-addr <node 0> -m inferlab.parallel.launch TARGET
ARGS...`; gloo talks over the nodes' `eth0` (GLOO_SOCKET_IFNAME), so every collective between ranks on
different nodes crosses the bridge. Returns each global rank's result (the JSON line
`inferlab.parallel.launch` prints). A node that fails or hangs stops all of them, and the error names
the node and shows its stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from inferlab.cluster.netns import ClusterError, node_exec_argv, status
from inferlab.parallel.launch import free_port
from inferlab.paths import REPO_ROOT


def run_across_nodes(target: str, *args: Any, nproc_per_node: int = 1, timeout_s: float = 300.0,
                     num_threads: int = 1) -> list[Any]:
    """Results by global rank of `target(rank, world_size, *args)` on every node of the cluster."""
    nodes = status()["nodes"]
    if len(nodes) < 2:
        raise ClusterError("run_across_nodes needs a cluster of 2 nodes or more: `inferlab cluster up --nodes 2`")
    env = dict(os.environ, GLOO_SOCKET_IFNAME="eth0", OMP_NUM_THREADS=str(num_threads),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    port = free_port()
    procs = []
    for node in nodes:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(len(nodes)),
               "--nproc-per-node", str(nproc_per_node), "--node-rank", str(node["index"]),
               "--master-addr", nodes[0]["address"], "--master-port", str(port),
               "-m", "inferlab.parallel.launch", target, *[json.dumps(a) for a in args],
               "--timeout-s", str(timeout_s)]
        procs.append(subprocess.Popen(node_exec_argv(node["index"], cmd), env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + timeout_s
    try:
        while any(p.poll() is None for p in procs):
            failed = [i for i, p in enumerate(procs) if p.poll() not in (None, 0)]
            if failed or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    outputs = [p.communicate() for p in procs]
    for i, (p, (_, err)) in enumerate(zip(procs, outputs)):
        if p.returncode != 0:
            why = "timed out" if p.returncode in (-9, None) else f"exit {p.returncode}"
            raise ClusterError(f"node {i} ({why}):\n{err[-3000:]}")
    results: dict[int, Any] = {}
    for out, _ in outputs:
        for line in out.splitlines():
            if line.startswith("{"):
                row = json.loads(line)
                results[row["rank"]] = row["result"]
    return [results[r] for r in sorted(results)]
