"""What every framework wrapper shares: checks that name the cause, and a managed server process.

Floor 3. Each framework module exposes `serve(checkpoint=None, port=None, ...)`, a context
manager that starts the framework on the kit's checkpoint on a loopback port, waits until it
answers, yields its base URL and stops it (the whole process group) on exit, and
`skip_reason() -> str | None`: why it cannot start on this machine (None: it can).

Errors:
- `FrameworkUnavailable`: the framework is not installed or cannot run here (callers skip
  with its message, e.g. TensorRT-LLM without a GPU);
- `PortInUse`, `CheckpointMissing`: bad input, named in the message;
- `FrameworkFailed`: it started but died or never answered (the message carries its log's tail).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from inferlab.paths import build_dir

LOOPBACK = "127.0.0.1"


class FrameworkError(RuntimeError):
    """Base of the wrappers' errors."""


class FrameworkUnavailable(FrameworkError):
    """Not installed, or cannot run on this machine: skip with this message."""


class PortInUse(FrameworkError):
    pass


class CheckpointMissing(FrameworkError, FileNotFoundError):
    pass


class FrameworkFailed(FrameworkError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def check_port(port: int | None, framework: str) -> int:
    """`port`, checked free on the loopback (None: a free one)."""
    if port is None:
        return free_port()
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"{framework}: port must be an integer in 1..65535, got {port!r}")
    with socket.socket() as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError as exc:
            raise PortInUse(f"{framework}: port {port} on {LOOPBACK} is in use ({exc.strerror}); "
                            "pass another port or port=None for a free one") from None
    return port


def check_checkpoint(checkpoint: str | Path | None, framework: str) -> Path:
    """The checkpoint directory (None: the kit's tiny one), checked to hold config.json and weights."""
    if checkpoint is None:
        from inferlab.model import ensure_checkpoint

        return ensure_checkpoint("tiny")
    path = Path(checkpoint)
    if not path.is_dir():
        raise CheckpointMissing(f"{framework}: checkpoint directory {path} does not exist "
                                "(build the kit's with `python -m inferlab.cli model tiny`)")
    missing = [name for name in ("config.json", "model.safetensors") if not (path / name).exists()]
    if missing:
        raise CheckpointMissing(f"{framework}: checkpoint {path} has no {', '.join(missing)}")
    return path


def require_module(module: str, framework: str, install: str) -> None:
    """FrameworkUnavailable naming the missing module and how to install it."""
    if importlib.util.find_spec(module) is None:
        raise FrameworkUnavailable(f"{framework} is not installed (no python module {module!r}); {install}")


def module_missing(module: str, framework: str, install: str) -> str | None:
    try:
        require_module(module, framework, install)
    except FrameworkUnavailable as exc:
        return str(exc)
    return None


def log_path(name: str) -> Path:
    folder = build_dir() / "frameworks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.log"


def _tail(path: Path, num_chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-num_chars:]
    except OSError:
        return ""


def answers(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return r.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def managed_process(name: str, cmd: list[str], ready_url: str | None, env: dict[str, str] | None = None,
                    startup_timeout_s: float = 300.0, stop_timeout_s: float = 20.0) -> Iterator[subprocess.Popen]:
    """Start `cmd` in its own process group, log to build/frameworks/<name>.log, wait until `ready_url`
    answers 200 (None: do not wait); on exit SIGTERM the group, then SIGKILL what is left."""
    log = log_path(name)
    with open(log, "w") as handle:
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        end = time.monotonic() + startup_timeout_s
        while ready_url is not None and not answers(ready_url):
            if proc.poll() is not None:
                raise FrameworkFailed(f"{name} exited with code {proc.returncode} before answering {ready_url}; "
                                      f"log {log}:\n{_tail(log)}")
            if time.monotonic() > end:
                raise FrameworkFailed(f"{name} did not answer {ready_url} within {startup_timeout_s:.0f} s; "
                                      f"log {log}:\n{_tail(log)}")
            time.sleep(0.5)
        yield proc
    finally:
        _stop_group(proc, stop_timeout_s)


def _stop_group(proc: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM the leader (its own clean shutdown), then the group, then SIGKILL what is left."""
    for send in (proc.terminate, lambda: os.killpg(proc.pid, signal.SIGTERM)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            send()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):  # workers the leader left behind
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def child_env(**extra: str) -> dict[str, str]:
    """This environment with the repo on PYTHONPATH (so `python -m inferlab...` works from any cwd)."""
    from inferlab.paths import REPO_ROOT

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("RAY_AUTH_MODE", "disabled")
    env.update(extra)
    return env
