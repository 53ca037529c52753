"""A Ray cluster across the nodes of `inferlab cluster`: head in node 0, one worker in each other node.

`ray_up(num_cpus_per_worker=1)` runs, inside node 0's namespace, `ray start --head --node-ip-address
10.213.7.1` and, inside every other node, `ray start --address 10.213.7.1:6379 --node-ip-address
10.213.7.{i+1}`: every message between the head and a worker crosses the bridge. The head has no CPUs
(`--num-cpus 0`): work that needs a CPU (the Serve replicas) lands on the workers, the head keeps the
GCS and the Serve controller. Each node has its own temp dir under build/ray-nodes/ (sockets, logs),
the dashboard is off and auth is off (`RAY_AUTH_MODE=disabled`: nothing leaves the private link).
Node health is checked every second (three misses: dead), so a lost node is noticed in seconds.

`ray_down()` ends every process of every node by its pid (`ip netns pids`), not with `ray stop`:
`ray stop` finds Ray's processes by name across the whole machine (namespaces share the pid space),
so it would also stop any other Ray on this machine.

`driver_argv(module, *args)`: the command line that runs a Ray driver (`ray.init(address="auto")`
finds the head through RAY_ADDRESS) inside node 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from inferlab.cluster.netns import ClusterError, node_exec_argv, status
from inferlab.paths import REPO_ROOT, build_dir

RAY_PORT = 6379
# fixed agent ports (each node has its own network stack, so the same numbers on every node), announced
# to the raylet before the agents have imported Ray (inferlab.cluster.ray_start says why)
AGENT_PORTS = ["--dashboard-agent-grpc-port", "52365", "--dashboard-agent-listen-port", "52366",
               "--runtime-env-agent-port", "52367", "--metrics-export-port", "52368"]
# how fast the GCS declares a node dead: probe every second, dead after three misses
HEALTH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
          "RAY_health_check_failure_threshold": "3", "RAY_health_check_initial_delay_ms": "1000",
          "RAY_agent_register_timeout_ms": "180000"}


def ray_env() -> dict:
    """The environment of every Ray process and driver on the cluster."""
    return dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", OMP_NUM_THREADS="1",
                TOKENIZERS_PARALLELISM="false", RAY_ADDRESS=f"{head_address()}:{RAY_PORT}",
                PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])), **HEALTH)


def head_address() -> str:
    nodes = status()["nodes"]
    if not nodes:
        raise ClusterError("no cluster: run `inferlab cluster up --nodes N` first")
    return nodes[0]["address"]


def _ray_start() -> list[str]:
    # `ray start` whose agents announce their fixed ports at once (see inferlab.cluster.ray_start)
    return [sys.executable, "-m", "inferlab.cluster.ray_start", "start"]


def node_pids(node: int) -> list[int]:
    """Every process running in node `node`'s namespace."""
    namespace = status()["nodes"][node]["namespace"]
    out = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def kill_node(node: int, sig: int = signal.SIGKILL) -> int:
    """Send `sig` to every process of a node (SIGKILL: the machine lost power); returns how many."""
    pids = [p for p in node_pids(node) if p != os.getpid()]
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    return len(pids)


def ray_up(num_cpus_per_worker: float = 1, timeout_s: float = 120.0) -> list[dict]:
    """Start the head in node 0 and a worker in every other node; wait until all have joined.

    Returns the node table of Ray (`ray.nodes()` as seen from node 0: NodeManagerAddress, Alive, Resources)."""
    nodes = status()["nodes"]
    if len(nodes) < 2:
        raise ClusterError("a Ray cluster across nodes needs 2 nodes or more: `inferlab cluster up --nodes 3`")
    env = ray_env()
    root = build_dir() / "ray-nodes"
    failures: list[str] = []
    for node in nodes:
        temp_dir = root / f"n{node['index']}"
        temp_dir.mkdir(parents=True, exist_ok=True)
        common = ["--node-ip-address", node["address"], "--temp-dir", str(temp_dir), "--disable-usage-stats",
                  "--object-store-memory", str(128 * 1024 ** 2), *AGENT_PORTS]
        if node["index"] == 0:
            argv = [*_ray_start(), "--head", "--port", str(RAY_PORT), "--num-cpus", "0",
                    "--include-dashboard", "false", *common]
        else:
            argv = [*_ray_start(), "--address", f"{nodes[0]['address']}:{RAY_PORT}", "--num-cpus",
                    str(num_cpus_per_worker), *common]
        done = subprocess.run(node_exec_argv(node["index"], argv), env=env, capture_output=True, text=True,
                              timeout=timeout_s)
        # `ray start` gives up after a fixed 30 s if the raylet has not registered yet (ray/_private/node.py,
        # "The current node timed out during startup"), while the raylet keeps starting: the join below
        # decides, and shows this text if the node never joins
        if done.returncode != 0:
            failures.append(f"`ray start` in node {node['index']}: {(done.stderr or done.stdout)[-600:]}")
    probe = ("import json,sys,time,ray\nray.init(address='auto',log_to_driver=False,configure_logging=False)\n"
             "end=time.time()+float(sys.argv[2])\n"
             "while sum(n['Alive'] for n in ray.nodes())<int(sys.argv[1]) and time.time()<end: time.sleep(0.3)\n"
             "print(json.dumps([{k:n[k] for k in ('NodeManagerAddress','Alive','Resources')} for n in ray.nodes()]))")
    done = subprocess.run(node_exec_argv(0, [sys.executable, "-c", probe, str(len(nodes)), str(timeout_s)]), env=env,
                          capture_output=True, text=True, timeout=timeout_s + 60)
    table = last_json(done.stdout)
    if done.returncode != 0 or table is None or sum(n["Alive"] for n in table) < len(nodes):
        ray_down()
        raise ClusterError(f"the Ray nodes did not all join the head within {timeout_s:.0f} s: "
                           f"{table or done.stderr[-1500:]}\n" + "\n".join(failures))
    return table


def ray_down(grace_s: float = 3.0) -> int:
    """End every process in every node of the cluster (SIGTERM, then SIGKILL); returns how many were ended."""
    nodes = status()["nodes"]
    pids = {p for node in nodes if node.get("present", True) for p in node_pids(node["index"])}
    pids.discard(os.getpid())
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    end = time.monotonic() + grace_s
    while time.monotonic() < end and any(_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return len(pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def last_json(text: str) -> "list | dict | None":
    import json

    for line in reversed(text.strip().splitlines()):
        if line.startswith(("{", "[")):
            return json.loads(line)
    return None


def driver_argv(module: str, *args: str) -> list[str]:
    """Run `python -m module args` as a Ray driver inside node 0 (use with `ray_env()`)."""
    return node_exec_argv(0, [sys.executable, "-m", module, *args])
