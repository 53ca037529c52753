"""`inferlab bench <name>`: benchmark scripts that compare variants in one run.

Each benchmark prints a table and, as its last line, one JSON object. They are
scripts, never timed assertions in the test suite.
"""

from __future__ import annotations

import importlib
import sys

# name -> module exposing `main(argv) -> int`
BENCHMARKS: dict[str, str] = {
    "engine": "inferlab.bench.engine_bench",
    "sim-fidelity": "inferlab.bench.sim_fidelity",
    "sim-speed": "inferlab.bench.sim_speed",
    "soak": "inferlab.bench.soak",
    "fuzz": "inferlab.bench.fuzz",
    "autoscale": "inferlab.bench.autoscale",
    "multinode": "inferlab.bench.multinode",
    "routing": "inferlab.bench.routing",
    "frameworks": "inferlab.bench.frameworks",
    "parallel": "inferlab.bench.parallel",
    "crosscheck": "inferlab.bench.crosscheck",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHMARKS:
        print(f"usage: inferlab bench {{{','.join(BENCHMARKS)}}} [options]", file=sys.stderr)
        return 2
    return int(importlib.import_module(BENCHMARKS[argv[0]]).main(argv[1:]) or 0)
