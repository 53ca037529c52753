"""The one command-line entry point: `inferlab <command> [options]`.

Each command lives in the module that owns its job; this file only maps a
command name to that module's `main(argv) -> int`, importing it lazily so that
`inferlab doctor` works even when a heavy optional stack (vLLM, Ray) is broken.
"""

from __future__ import annotations

import importlib
import sys

# command -> (module, one-line help). Each module exposes `main(argv: list[str]) -> int`.
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("inferlab.doctor", "check versions, devices, backends and lab sync"),
    "model": ("inferlab.model.build", "build the tiny/small/medium random-init checkpoints"),
    "plan": ("inferlab.costmodel.plan", "choose a TP/PP layout for a model on a GPU cluster"),
    "serve": ("inferlab.serving.server", "OpenAI-compatible server for the reference engine"),
    "route": ("inferlab.serving.router", "OpenAI-compatible router with traffic shaping in front of N replicas"),
    "loadgen": ("inferlab.serving.loadgen", "load generator for any OpenAI-compatible endpoint"),
    "bench": ("inferlab.bench.main", "benchmarks: engine, sim-fidelity, sim-speed, soak, fuzz, autoscale, multinode, routing, ..."),
    "profile": ("inferlab.profile", "profile the real engine's step times for the simulator"),
    "simulate": ("inferlab.sim.main", "simulate a fleet on a trace with an autoscaler and router"),
    "grade": ("inferlab.grade.batch", "autograde a class in parallel, one sandbox per submission"),
    "cluster": ("inferlab.cluster.main", "nodes as network namespaces on this machine: up, down, status, exec"),
    "chaos": ("inferlab.observe.chaos.toolkit", "run a Chaos Toolkit experiment on a local stack (kill, pause, ...)"),
}


def _usage() -> str:
    lines = ["usage: inferlab <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"inferlab: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
