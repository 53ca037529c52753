"""What the grading machine offers a sandbox: namespaces, cgroups, the interpreter to bind.

`Host.detect()` checks once per batch that sandboxes can be built (root, `unshare` with mount,
pid and network namespaces) and which cgroup controllers can be used for the memory cap, the
process cap and CPU-time accounting (cgroup v1 hierarchies or a delegated v2 subtree). Without
namespaces there is no safe sandbox: it says so and refuses, naming what is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
CGROUP_ROOT = Path("/sys/fs/cgroup")


class SandboxUnavailable(RuntimeError):
    """The machine cannot build the sandbox (not root, no namespaces)."""


def _own_cgroup_v1(controller: str) -> Path | None:
    mount = CGROUP_ROOT / controller
    if not mount.is_dir():
        return None
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return mount / path.lstrip("/")
    return None


@dataclass
class Cgroups:
    """The cgroups of one sandbox (v1: one folder per controller)."""

    memory: Path | None = None
    pids: Path | None = None
    cpuacct: Path | None = None

    def folders(self) -> list[Path]:
        return [p for p in (self.memory, self.pids, self.cpuacct) if p is not None]

    def procs_files(self) -> list[str]:
        return [str(p / "cgroup.procs") for p in self.folders()]

    def cpu_s(self) -> float | None:
        if self.cpuacct is None:
            return None
        try:
            return int((self.cpuacct / "cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError):
            return None

    def oom_killed(self) -> bool:
        if self.memory is None:
            return False
        try:
            for line in (self.memory / "memory.oom_control").read_text().splitlines():
                if line.startswith("oom_kill ") and int(line.split()[1]) > 0:
                    return True
            return int((self.memory / "memory.failcnt").read_text()) > 0 and \
                int((self.memory / "memory.max_usage_in_bytes").read_text()) >= \
                int((self.memory / "memory.limit_in_bytes").read_text())
        except (OSError, ValueError):
            return False

    def remove(self) -> None:
        for folder in self.folders():
            for _ in range(20):  # the pid namespace is gone; its last tasks may take a moment to leave
                try:
                    folder.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)


@dataclass
class Host:
    python: str                             # the venv's interpreter, by its real venv path
    system_paths: list[str] = field(default_factory=list)
    cgroup_parents: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def detect(cls) -> "Host":
        if os.geteuid() != 0:
            raise SandboxUnavailable("inferlab grade builds its sandboxes with namespaces and needs root "
                                     "(run it as root, or in a container started with --privileged)")
        missing = [tool for tool in ("unshare", "mount", "ip") if shutil.which(tool) is None]
        if missing:
            raise SandboxUnavailable(f"missing tools for the sandbox: {', '.join(missing)} "
                                     "(Debian: apt-get install util-linux mount iproute2)")
        probe = subprocess.run(["unshare", "--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "true"],
                               capture_output=True, text=True)
        if probe.returncode != 0:
            raise SandboxUnavailable("this kernel refuses new mount/pid/network namespaces "
                                     f"(unshare: {probe.stderr.strip()}); no sandbox, no grading")
        venv = Path(sys.prefix).resolve()
        base = Path(sys.base_prefix).resolve()
        python = str(venv / "bin" / "python")
        paths = [p for p in SYSTEM_PATHS if os.path.lexists(p)]
        paths += [str(p) for p in dict.fromkeys((venv, base)) if not any(str(p).startswith(s + "/") for s in paths)]
        host = cls(python=python, system_paths=paths)
        for controller in ("memory", "pids", "cpuacct"):
            parent = _own_cgroup_v1(controller)
            if parent is not None and os.access(parent, os.W_OK):
                host.cgroup_parents[controller] = parent
            else:
                host.notes.append(f"no writable cgroup v1 '{controller}' controller")
        return host

    def describe(self) -> str:
        caps = ", ".join(sorted(self.cgroup_parents)) or "none"
        text = (f"sandbox: namespaces mount+pid+net(loopback only: no network)+ipc+uts, chroot, kernel as an "
                f"unprivileged uid; cgroups: {caps}")
        if self.notes:
            text += "; " + "; ".join(self.notes) + " (that cap falls back to per-process rlimits)"
        return text

    def make_cgroups(self, name: str, limits) -> Cgroups | None:
        if not self.cgroup_parents:
            return None
        groups = Cgroups()
        for controller, parent in self.cgroup_parents.items():
            folder = parent / f"inferlab-{name}-{os.getpid()}"
            folder.mkdir(exist_ok=True)
            setattr(groups, controller, folder)
        if groups.memory:
            (groups.memory / "memory.limit_in_bytes").write_text(str(limits.max_memory_bytes))
            try:  # also cap swap where the kernel accounts it
                (groups.memory / "memory.memsw.limit_in_bytes").write_text(str(limits.max_memory_bytes))
            except OSError:
                pass
        if groups.pids:
            (groups.pids / "pids.max").write_text(str(limits.max_procs * 2))
        return groups
