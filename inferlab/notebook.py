"""Helpers for lab notebooks: fast mode, hardware tiers, progress bars, skips.

Fast mode (`INFERLAB_FAST=1`, set by the test suite and the kit's autograding)
shrinks workloads without skipping any graded test; full mode is what learners run.
"""

from __future__ import annotations

import os
from typing import Iterable, TypeVar

from inferlab.hardware import describe, num_gpus

T = TypeVar("T")


def is_fast() -> bool:
    """True when INFERLAB_FAST is set to a true value."""
    return os.environ.get("INFERLAB_FAST", "").lower() in ("1", "true", "yes")


def pick(full: T, fast: T) -> T:
    """`fast` in fast mode, else `full` (workload sizes, repetitions)."""
    return fast if is_fast() else full


def progress(items: Iterable[T], desc: str = "", total: int | None = None) -> Iterable[T]:
    """A tqdm progress bar that works in notebooks and terminals (quiet in fast mode)."""
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, total=total, disable=is_fast())


def banner(lab: str, tier: str, fast_min: float, full_min: float) -> str:
    """One line naming the lab, the hardware it needs, what is here and the mode."""
    hw = describe()
    here = f"{hw.cpu_cores} CPU cores" + (f", {len(hw.gpus)} GPU(s): {', '.join(hw.gpus)}" if hw.gpus else ", no GPU")
    mode = "fast" if is_fast() else "full"
    line = f"{lab}: needs {tier}; here: {here}; {mode} mode (~{fast_min:g} min fast, ~{full_min:g} min full)"
    print(line)
    return line


def gpus_or_skip(num_required: int, what: str) -> bool:
    """True if `num_required` GPUs are present; otherwise print why the cell is skipped."""
    if num_gpus() >= num_required:
        return True
    print(f"SKIPPED: {what} needs {num_required} CUDA GPU(s); this machine has {num_gpus()}.")
    return False


def is_autograding() -> bool:
    """True while the kit autogrades: INFERLAB_AUTOGRADE=1, which the course config's executor
    (grading/isolated.py) sets for the process that runs each submission; plain `nbgrader
    autograde` with grading/nbgrader_config.py needs nothing else."""
    return os.environ.get("INFERLAB_AUTOGRADE", "").lower() in ("1", "true", "yes")


def run_demo(what: str) -> bool:
    """Whether to run an ungraded heavy demo cell (real vLLM, DeepSpeed, Ray start-up).

    Demos run for learners and under nbval; while autograding they are skipped with a
    message, since no score depends on them and they would run once per submission.
    """
    if is_autograding():
        print(f"SKIPPED while autograding (ungraded demo): {what}")
        return False
    return True
