"""Run a worker function on N ranks and bring each rank's result back.

Floor 2 of the parallel flow: `launch(fn, world_size, *args)` starts N spawned
processes (gloo over CPU by default, NCCL with one GPU per rank where there are
enough GPUs: `inferlab.hardware.dist_backend`), initialises `torch.distributed`
in each, calls `fn(rank, world_size, *args)` and returns the list of per-rank
return values. A worker exception is re-raised in the caller as `WorkerError`
with the rank and the worker's traceback; a hang ends in `TimeoutError`.

Workers must live in importable modules (spawn pickles them by name; a function
defined in a notebook cell cannot be pickled). The same worker code runs under
`torchrun` on one or several nodes:

    torchrun --nproc-per-node 2 -m inferlab.parallel.launch inferlab.parallel.workers:tp_demo

(`main` sees RANK/WORLD_SIZE in the environment, joins the group that torchrun
describes, and prints each rank's result as a JSON line.)
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import pickle
import socket
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from inferlab.hardware import dist_backend, num_cpu_cores


class WorkerError(RuntimeError):
    """A worker raised: carries the failing rank and its formatted traceback."""

    def __init__(self, rank: int, worker_traceback: str) -> None:
        super().__init__(f"rank {rank} failed:\n{worker_traceback}")
        self.rank = rank
        self.worker_traceback = worker_traceback


@dataclass(frozen=True)
class LaunchConfig:
    """How to start the ranks. `backend=None` picks NCCL with one GPU per rank, else gloo."""

    world_size: int
    backend: str | None = None
    timeout_s: float = 120.0
    master_addr: str = "127.0.0.1"
    master_port: int | None = None
    num_threads_per_rank: int | None = None

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {self.world_size}")
        if self.backend not in (None, "gloo", "nccl"):
            raise ValueError(f"backend must be None, 'gloo' or 'nccl', got {self.backend!r}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")


def free_port() -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_device() -> torch.device:
    """The device this rank computes on: its GPU under NCCL, else the CPU."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def init_rank(rank: int, world_size: int, backend: str, timeout_s: float, local_rank: int | None = None) -> None:
    """Join the default process group (MASTER_ADDR/PORT already in the environment)."""
    if backend == "nccl":
        torch.cuda.set_device(rank if local_rank is None else local_rank)
    dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout_s))


@dataclass(frozen=True)
class MeshGroups:
    """This rank's place in a TP x PP layout: its TP group, its PP group and its index in each."""

    tp_group: dist.ProcessGroup
    pp_group: dist.ProcessGroup
    tp_rank: int
    pp_rank: int
    tp_ranks: tuple[int, ...]  # global ranks of this rank's TP group
    pp_ranks: tuple[int, ...]  # global ranks of this rank's PP group


def mesh_ranks(tp_size: int, pp_size: int, is_tp_inner: bool = True) -> tuple[list[list[int]], list[list[int]]]:
    """Global ranks of every TP group and every PP group of a `tp_size` x `pp_size` layout.

    `is_tp_inner=True` numbers TP fastest (rank = stage * tp_size + tp index), so with torchrun's
    consecutive ranks on a node and tp_size ranks per node, TP stays inside a node and PP crosses
    nodes. `is_tp_inner=False` numbers PP fastest: TP groups then cross nodes, PP stays inside.
    """
    if tp_size < 1 or pp_size < 1:
        raise ValueError(f"tp_size and pp_size must be >= 1, got {tp_size} and {pp_size}")
    rank = (lambda p, t: p * tp_size + t) if is_tp_inner else (lambda p, t: t * pp_size + p)
    tp_groups = [[rank(p, t) for t in range(tp_size)] for p in range(pp_size)]
    pp_groups = [[rank(p, t) for p in range(pp_size)] for t in range(tp_size)]
    return tp_groups, pp_groups


def mesh_groups(tp_size: int, pp_size: int, is_tp_inner: bool = True) -> MeshGroups:
    """Create every TP and PP group (a collective call: every rank, same order) and return this rank's."""
    world_size, me = dist.get_world_size(), dist.get_rank()
    if tp_size * pp_size != world_size:
        raise ValueError(f"tp_size {tp_size} x pp_size {pp_size} != world size {world_size}")
    tp_groups, pp_groups = mesh_ranks(tp_size, pp_size, is_tp_inner)
    made = {(kind, tuple(ranks)): dist.new_group(ranks)
            for kind, groups in (("tp", tp_groups), ("pp", pp_groups)) for ranks in groups}
    tp = next(tuple(r) for r in tp_groups if me in r)
    pp = next(tuple(r) for r in pp_groups if me in r)
    return MeshGroups(made[("tp", tp)], made[("pp", pp)], tp.index(me), pp.index(me), tp, pp)


def _entry(rank: int, cfg: LaunchConfig, backend: str, port: int, fn: Callable, args: tuple, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR=cfg.master_addr, MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(cfg.world_size), LOCAL_RANK=str(rank))
    threads = cfg.num_threads_per_rank or max(1, num_cpu_cores() // cfg.world_size)
    torch.set_num_threads(threads)
    path = Path(out_dir) / f"rank{rank}.pkl"
    try:
        init_rank(rank, cfg.world_size, backend, cfg.timeout_s)
        result = fn(rank, cfg.world_size, *args)
        payload = ("ok", result)
    except BaseException:  # noqa: BLE001 - every failure must reach the caller
        payload = ("error", traceback.format_exc())
    with open(path.with_suffix(".tmp"), "wb") as f:
        pickle.dump(payload, f)
    os.replace(path.with_suffix(".tmp"), path)
    if dist.is_initialized():
        try:
            if payload[0] == "ok":
                dist.barrier()
        finally:
            dist.destroy_process_group()


def launch(fn: Callable, world_size: int, *args: Any, backend: str | None = None,
           timeout_s: float = 120.0, num_threads_per_rank: int | None = None) -> list[Any]:
    """Run `fn(rank, world_size, *args)` on `world_size` ranks; return the results by rank.

    Args:
        fn: a module-level function (importable by spawned processes).
        world_size: number of ranks (processes).
        backend: "gloo", "nccl" or None (NCCL if there is one GPU per rank, else gloo).
        timeout_s: wall-clock limit for the whole run and for each collective.
    Returns:
        [result of rank 0, result of rank 1, ...] (results must be picklable).
    Raises:
        WorkerError: the lowest failing rank's exception, with its traceback.
        TimeoutError: a rank did not finish within `timeout_s` (all ranks are killed).
    """
    cfg = LaunchConfig(world_size, backend, timeout_s, num_threads_per_rank=num_threads_per_rank)
    chosen = backend or dist_backend(world_size)
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="inferlab-launch-") as out_dir:
        port = free_port()
        procs = [ctx.Process(target=_entry, args=(r, cfg, chosen, port, fn, args, out_dir), daemon=True)
                 for r in range(world_size)]
        for p in procs:
            p.start()
        deadline = time.monotonic() + timeout_s
        results: dict[int, tuple[str, Any]] = {}
        try:
            while len(results) < world_size:
                for r in range(world_size):
                    path = Path(out_dir) / f"rank{r}.pkl"
                    if r not in results and path.exists():
                        with open(path, "rb") as f:
                            results[r] = pickle.load(f)
                        if results[r][0] == "error":
                            raise WorkerError(r, results[r][1])
                    elif r not in results and not procs[r].is_alive():
                        raise WorkerError(r, f"process exited with code {procs[r].exitcode} without a result")
                if time.monotonic() > deadline:
                    missing = sorted(set(range(world_size)) - set(results))
                    raise TimeoutError(f"ranks {missing} did not finish within {timeout_s} s")
                time.sleep(0.01)
            for p in procs:
                p.join(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            for p in procs:
                if p.is_alive():
                    p.kill()
                    p.join(timeout=5)
    return [results[r][1] for r in range(world_size)]


def run_from_env(fn: Callable, *args: Any, timeout_s: float = 600.0) -> Any:
    """Run `fn(rank, world_size, *args)` in a process started by torchrun (RANK/WORLD_SIZE set)."""
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    backend = "nccl" if torch.cuda.is_available() and torch.cuda.device_count() > local_rank else "gloo"
    init_rank(rank, world_size, backend, timeout_s, local_rank)
    try:
        return fn(rank, world_size, *args)
    finally:
        dist.barrier()
        dist.destroy_process_group()


def resolve(target: str) -> Callable:
    """'package.module:function' -> the function."""
    module, _, name = target.partition(":")
    if not name:
        raise ValueError(f"expected 'module:function', got {target!r}")
    return getattr(importlib.import_module(module), name)


def main(argv: list[str]) -> int:
    """`python -m inferlab.parallel.launch [--nproc N] module:function [json args...]`.

    Under torchrun (RANK in the environment) runs this process's rank only; otherwise
    spawns --nproc ranks locally. Prints one JSON line per rank: {"rank", "result"}.
    """
    parser = argparse.ArgumentParser(prog="inferlab.parallel.launch")
    parser.add_argument("target", help="module:function taking (rank, world_size, *args)")
    parser.add_argument("args", nargs="*", help="JSON-encoded positional arguments")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--timeout-s", type=float, default=600.0)
    ns = parser.parse_args(argv)
    fn, args = resolve(ns.target), [json.loads(a) for a in ns.args]
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        line = json.dumps({"rank": int(os.environ["RANK"]), "result": run_from_env(fn, *args, timeout_s=ns.timeout_s)},
                          default=str)
        # ranks share one stdout pipe: one write() per line, so two ranks' lines cannot interleave
        os.write(sys.stdout.fileno(), (line + "\n").encode())
    else:
        for rank, result in enumerate(launch(fn, ns.nproc, *args, timeout_s=ns.timeout_s)):
            print(json.dumps({"rank": rank, "result": result}, default=str))
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
