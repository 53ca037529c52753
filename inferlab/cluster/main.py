"""`inferlab cluster up|down|status|exec`: nodes as network namespaces on this machine.

    inferlab cluster up --nodes 2 [--link-gbit 1]   # il-node0, il-node1 at 10.213.7.1, .2
    inferlab cluster exec 1 -- python -c "import socket; print(socket.gethostname())"
    inferlab cluster status
    inferlab cluster down                           # idempotent; also cleans up after a crash
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from inferlab.cluster.netns import ClusterConfig, ClusterError, cluster_down, cluster_up, node_exec_argv, status


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="inferlab cluster", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="create the nodes (removes an earlier cluster first)")
    up.add_argument("--nodes", type=int, default=2)
    up.add_argument("--link-gbit", type=float, help="cap each node's link, both ways (tc tbf)")
    up.add_argument("--link-latency-ms", type=float, help="refused: this kernel has no netem")
    sub.add_parser("down", help="remove every namespace and link the kit made")
    sub.add_parser("status", help="the nodes and whether they exist")
    run = sub.add_parser("exec", help="run a command inside a node")
    run.add_argument("node", type=int)
    run.add_argument("argv", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    try:
        if args.command == "up":
            nodes = cluster_up(ClusterConfig(args.nodes, args.link_gbit, args.link_latency_ms))
            for node in nodes:
                print(f"{node.namespace}  {node.address}")
        elif args.command == "down":
            print(f"removed: {', '.join(cluster_down()) or 'nothing'}")
        elif args.command == "status":
            print(json.dumps(status(), indent=1))
        else:
            command = [a for a in args.argv if a != "--"] if args.argv[:1] == ["--"] else args.argv
            if not command:
                raise ClusterError("exec: no command given")
            os.execvp("ip", node_exec_argv(args.node, command))
    except ClusterError as err:
        print(f"inferlab cluster: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
