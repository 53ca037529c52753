"""Nodes as Linux network namespaces on one machine, joined by a private bridge.

Floor 3 of inferlab (infrastructure beside `serving/` and `deploy/`). `cluster_up(ClusterConfig(num_nodes=N))`
makes N namespaces `il-node0` .. `il-node{N-1}`, each with its own loopback and one interface `eth0`
at 10.213.7.{i+1}/24, the other end of each veth pair plugged into the bridge `il-br0` in the root
namespace. The bridge has no address and the namespaces have no default route, so their traffic
reaches only each other: nothing is routed off the machine. Inside a node, processes talk over its
loopback (the fast "intra-node" link); between nodes they cross the bridge (the "inter-node" link).

Shaping: `link_gbit` caps each node's link both ways with a token bucket filter (`tc qdisc ... tbf`),
so inter-node traffic is slower than intra-node traffic. Added latency is not shaped: this kernel has
no `netem`; `link_latency_ms` is refused with that reason rather than silently ignored.

Every object the kit creates carries the `il-` prefix: `cluster_down()` removes all of them, so it is
idempotent and cleans up after a crash, and `cluster_up` starts by calling it. Needs root and
iproute2; `ClusterError` names what is missing otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from inferlab.paths import REPO_ROOT

PREFIX = "il-"
BRIDGE = "il-br0"
SUBNET = "10.213.7"
STATE = REPO_ROOT / "build" / "cluster" / "state.json"


class ClusterError(RuntimeError):
    """The cluster cannot be built or used here; the message says why."""


@dataclass(frozen=True)
class ClusterConfig:
    """Args: num_nodes (1-32); link_gbit: each node's link rate, both ways (None: unshaped);
    link_latency_ms: refused (no netem in this kernel), kept so that the refusal names it."""

    num_nodes: int = 2
    link_gbit: float | None = None
    link_latency_ms: float | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.num_nodes <= 32:
            raise ClusterError(f"num_nodes must be in 1..32, got {self.num_nodes}")
        if self.link_gbit is not None and not 0 < self.link_gbit <= 400:
            raise ClusterError(f"link_gbit must be in (0, 400], got {self.link_gbit}")
        if self.link_latency_ms:
            raise ClusterError("link_latency_ms: this kernel has no netem (tc qdisc ... netem), so link latency "
                               "cannot be added; shape bandwidth with link_gbit instead")


@dataclass(frozen=True)
class Node:
    index: int
    namespace: str
    address: str
    host_link: str  # the veth end on the bridge, in the root namespace


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise ClusterError(f"`{' '.join(argv)}` failed: {done.stderr.strip() or done.stdout.strip()}")
    return done


def preflight() -> None:
    """Raise ClusterError unless namespaces can be made here (root, iproute2, tc, a probe namespace)."""
    if os.geteuid() != 0:
        raise ClusterError("needs root: network namespaces and veth pairs are created with `ip` as root")
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            raise ClusterError(f"`{tool}` not found: install iproute2")
    probe = f"{PREFIX}probe"
    _run("ip", "netns", "del", probe, check=False)
    made = _run("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        raise ClusterError(f"the kernel refused a network namespace: {made.stderr.strip()}")
    _run("ip", "netns", "del", probe, check=False)


def _nodes(num_nodes: int) -> list[Node]:
    return [Node(i, f"{PREFIX}node{i}", f"{SUBNET}.{i + 1}", f"{PREFIX}n{i}h") for i in range(num_nodes)]


def _shape(namespace: str | None, device: str, gbit: float) -> None:
    rate = f"{gbit * 1000:.0f}mbit"
    burst = max(32, int(gbit * 1e9 / 8 / 250 / 1024))  # about 4 ms of traffic, in KiB
    cmd = ["tc", "qdisc", "replace", "dev", device, "root", "tbf", "rate", rate, "burst", f"{burst}kb",
           "latency", "50ms"]
    _run(*(["ip", "netns", "exec", namespace] if namespace else []), *cmd)


def cluster_up(config: ClusterConfig) -> list[Node]:
    """Build the cluster (removing any earlier one first); returns its nodes."""
    preflight()
    cluster_down()
    nodes = _nodes(config.num_nodes)
    try:
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "link", "set", BRIDGE, "up")
        for node in nodes:
            inner = f"{PREFIX}n{node.index}c"
            _run("ip", "netns", "add", node.namespace)
            _run("ip", "link", "add", node.host_link, "type", "veth", "peer", "name", inner)
            _run("ip", "link", "set", inner, "netns", node.namespace)
            ns = ("ip", "netns", "exec", node.namespace)
            _run(*ns, "ip", "link", "set", inner, "name", "eth0")
            _run(*ns, "ip", "addr", "add", f"{node.address}/24", "dev", "eth0")
            _run(*ns, "ip", "link", "set", "eth0", "up")
            _run(*ns, "ip", "link", "set", "lo", "up")
            _run("ip", "link", "set", node.host_link, "master", BRIDGE)
            _run("ip", "link", "set", node.host_link, "up")
            if config.link_gbit:
                _shape(None, node.host_link, config.link_gbit)  # towards the node
                _shape(node.namespace, "eth0", config.link_gbit)  # from the node
    except Exception:
        cluster_down()
        raise
    STATE.parent.mkdir(parents=True, exist_ok=True)
    STATE.write_text(json.dumps({"config": asdict(config), "nodes": [asdict(n) for n in nodes]}, indent=1))
    return nodes


def cluster_down() -> list[str]:
    """Remove every namespace and link with the kit's prefix; returns what was removed."""
    removed = []
    listing = _run("ip", "netns", "list", check=False).stdout.split()
    for name in listing:
        if name.startswith(PREFIX):
            _run("ip", "netns", "del", name, check=False)
            removed.append(name)
    links = _run("ip", "-o", "link", "show", check=False).stdout.splitlines()
    for line in links:
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith(PREFIX):
            _run("ip", "link", "del", name, check=False)
            removed.append(name)
    STATE.unlink(missing_ok=True)
    return removed


def status() -> dict:
    """The cluster the state file records, checked against the namespaces that exist."""
    if not STATE.exists():
        return {"nodes": [], "config": None}
    state = json.loads(STATE.read_text())
    present = set(_run("ip", "netns", "list", check=False).stdout.split())
    for node in state["nodes"]:
        node["present"] = node["namespace"] in present
    return state


def node_exec_argv(node: int, argv: list[str]) -> list[str]:
    """The command line that runs `argv` inside node `node`."""
    nodes = status()["nodes"]
    if not nodes:
        raise ClusterError("no cluster: run `inferlab cluster up --nodes N` first")
    if not 0 <= node < len(nodes):
        raise ClusterError(f"node {node} does not exist: the cluster has nodes 0..{len(nodes) - 1}")
    return ["ip", "netns", "exec", nodes[node]["namespace"], *argv]
