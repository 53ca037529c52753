"""One submission, one sandbox: prepare its private course folder, run it under limits, judge the end.

A sandbox is a folder holding only what grading that student needs: the course config (and
its helper modules, never `grading/sources/` or `grading/mutants/`), the released files of the
lab, the submission, a gradebook copied from the batch's template (in a root-only folder), a
private HOME owned by the kernel's uid, and a kernelspec that starts `kernel.py`. `run_sandbox`
starts `jail.py` under `unshare` (new mount, pid, network, ipc and uts namespaces) inside fresh
cgroups (memory cap, process count, CPU time), polls wall and CPU time against the caps, and kills
the whole process group when one is passed. Every way it can end becomes a `SandboxResult`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from inferlab.grade.host import Cgroups, Host

JAIL = Path(__file__).with_name("jail.py")


@dataclass(frozen=True)
class SandboxLimits:
    """Caps for one submission (whole notebook, every process it starts)."""

    max_wall_s: float = 900.0       # per-notebook cap, wall clock
    max_cpu_s: float = 1800.0       # CPU time summed over the sandbox's processes
    max_memory_bytes: int = 4 << 30
    max_procs: int = 256            # processes and threads of the kernel's uid
    max_file_bytes: int = 256 << 20
    tmp_size: str = "512m"          # /tmp and /dev/shm (tmpfs)

    def __post_init__(self) -> None:
        for name in ("max_wall_s", "max_cpu_s", "max_memory_bytes", "max_procs", "max_file_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SandboxLimits.{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class BatchFiles:
    """What every sandbox of a batch shares (read-only inside it)."""

    lab: str
    site_dir: Path          # the wheel, installed with `pip --target`
    config_dir: Path        # course config and helper modules to copy (grading/*.py)
    released_dir: Path      # labs/<lab>/ as nbgrader released it
    template_db: Path       # gradebook with the lab's assignment and no student
    seeds: tuple[Path, ...] = ()   # build/ folders copied into HOME (models, caches)
    env: dict[str, str] = field(default_factory=dict)  # extra environment (INFERLAB_FAST ...)


@dataclass
class SandboxResult:
    student: str
    status: str            # ok | failed | timeout | cpu-limit | memory | error
    reason: str
    wall_s: float
    cpu_s: float | None
    db_path: Path
    log_path: Path


def _copy_config(config_dir: Path, grading: Path) -> None:
    grading.mkdir(parents=True)
    for path in config_dir.glob("*.py"):  # modules only: sources/, mutants/, attacks/ stay out
        shutil.copy(path, grading / path.name)


def prepare(sandbox: Path, submission: Path, student: str, files: BatchFiles, uid: int,
            limits: SandboxLimits, host: Host, cgroups: Cgroups | None) -> dict:
    """Write the sandbox folder and return the jail's spec."""
    lab = files.lab
    course = sandbox / "course"
    _copy_config(files.config_dir, course / "grading")
    shutil.copytree(submission, course / "grading" / "submitted" / student / lab, symlinks=False)
    released = course / "solutions" / lab  # nbgrader copies non-notebook files from source_directory
    released.mkdir(parents=True)
    for path in files.released_dir.iterdir():
        if path.is_file() and path.suffix != ".ipynb":
            shutil.copy(path, released / path.name)
    private = sandbox / "private"
    private.mkdir(mode=0o700)
    shutil.copy(files.template_db, private / "gradebook.db")
    os.chmod(private / "gradebook.db", 0o600)
    home = sandbox / "home"
    for seed in files.seeds:
        shutil.copytree(seed, home / "build" / seed.name, dirs_exist_ok=True)
    (home / "build").mkdir(parents=True, exist_ok=True)
    for folder, _, names in os.walk(home):
        os.chown(folder, uid, uid)
        for name in names:
            os.chown(os.path.join(folder, name), uid, uid)
    runtime = sandbox / "run"
    runtime.mkdir(mode=0o700)
    kernels = sandbox / "jupyter" / "kernels" / "python3"
    kernels.mkdir(parents=True)
    kernel_py = files.site_dir / "inferlab" / "grade" / "kernel.py"
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [host.python, str(kernel_py), "-f", "{connection_file}"],
        "display_name": "Python 3 (inferlab sandbox)", "language": "python"}))
    # The course config may run the learner's code in a fresh interpreter started by nbgrader
    # (root in here): route that interpreter through the same privilege drop as the kernel.
    student_python = sandbox / "bin" / "student-python"
    student_python.parent.mkdir()
    student_python.write_text(f'#!/bin/sh\nexec {host.python} {kernel_py} --run {host.python} "$@"\n')
    student_python.chmod(0o755)
    (sandbox / "jupyter-config").mkdir()
    (sandbox / "root").mkdir()
    env = {
        "PATH": f"{Path(host.python).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home), "USER": "student", "LANG": "C.UTF-8", "TMPDIR": "/tmp",
        "PYTHONPATH": str(files.site_dir), "PYTHONDONTWRITEBYTECODE": "1",
        "JUPYTER_PATH": str(sandbox / "jupyter"), "JUPYTER_CONFIG_DIR": str(sandbox / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(runtime), "JUPYTER_PLATFORM_DIRS": "1",
        "INFERLAB_BUILD_DIR": str(home / "build"), "MPLBACKEND": "Agg",
        "INFERLAB_AUTOGRADE": "1", "TOKENIZERS_PARALLELISM": "false",
        "INFERLAB_SANDBOX_UID": str(uid), "INFERLAB_SANDBOX_MAX_PROCS": str(limits.max_procs),
        "INFERLAB_SANDBOX_MAX_FILE_BYTES": str(limits.max_file_bytes),
        "INFERLAB_SANDBOX_MAX_CPU_S": str(limits.max_cpu_s),
        **files.env,
    }
    argv = [host.python, "-m", "nbgrader", "autograde", lab, f"--student={student}", "--force",
            f"--CourseDirectory.db_url=sqlite:///{private / 'gradebook.db'}",
            f"--IsolatedExecute.python={student_python}", "--log-level=INFO"]
    spec = {
        "root_dir": str(sandbox / "root"),
        "binds_ro": [*host.system_paths, str(files.site_dir)],
        "binds_rw": [str(sandbox)],
        "tmp_size": limits.tmp_size,
        "cgroup_procs": cgroups.procs_files() if cgroups else [],
        "cwd": str(course / "grading"),
        "argv": argv,
        "env": env,
    }
    spec_path = sandbox / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    os.chmod(spec_path, 0o600)
    return spec


def _tail(path: Path, num_lines: int = 40) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-num_lines:]
    except OSError:
        return []


def _failure_reason(log_path: Path) -> str:
    lines = _tail(log_path, 200)
    for line in reversed(lines):
        if "[AutogradeApp | ERROR]" in line or "NbGraderException" in line or "Error" in line:
            return line.strip()[-300:]
    return (lines[-1].strip()[-300:] if lines else "no output")


def run_sandbox(sandbox: Path, submission: Path, student: str, files: BatchFiles, uid: int,
                limits: SandboxLimits, host: Host,
                on_tick: Callable[[float], None] | None = None) -> SandboxResult:
    """Grade one submission in its own sandbox; never raises for what the submission does."""
    sandbox.mkdir(parents=True)
    log_path = sandbox / "log.txt"
    db_path = sandbox / "private" / "gradebook.db"
    cgroups = host.make_cgroups(sandbox.name, limits)
    start = time.monotonic()
    status, reason = "ok", ""
    try:
        prepare(sandbox, submission, student, files, uid, limits, host, cgroups)
        cmd = ["unshare", "--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child",
               host.python, "-I", "-S", str(JAIL), str(sandbox / "spec.json")]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        while proc.poll() is None:
            elapsed = time.monotonic() - start
            cpu_s = cgroups.cpu_s() if cgroups else None
            if elapsed > limits.max_wall_s:
                status, reason = "timeout", f"over the per-notebook cap of {limits.max_wall_s:g} s (wall clock)"
            elif cpu_s is not None and cpu_s > limits.max_cpu_s:
                status, reason = "cpu-limit", f"over the CPU-time cap of {limits.max_cpu_s:g} s"
            if status != "ok":
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
            if on_tick:
                on_tick(elapsed)
            time.sleep(0.5)
        rc = proc.returncode
        cpu_s = cgroups.cpu_s() if cgroups else None
        if status == "ok" and cgroups and cgroups.oom_killed():
            status, reason = "memory", f"memory cap of {limits.max_memory_bytes >> 20} MiB reached (OOM kill)"
        elif status == "ok" and rc != 0:
            status, reason = "failed", f"nbgrader exited {rc}: {_failure_reason(log_path)}"
    except Exception as exc:  # the grader's own failure for this student: record it, go on
        status, reason, cpu_s = "error", f"{type(exc).__name__}: {exc}", None
    finally:
        if cgroups:
            cgroups.remove()
    return SandboxResult(student, status, reason, time.monotonic() - start, cpu_s, db_path, log_path)
