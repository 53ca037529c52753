"""Stopping a child process: one definition of "terminate, wait, kill, wait".

    stop_process(proc, grace_s=10.0)

SIGTERM first (the process's own clean shutdown), then SIGKILL once `grace_s` has passed. A process
that has already exited (or is reaped meanwhile) is fine: nothing is sent and its exit status is
returned.
"""

from __future__ import annotations

import contextlib
import subprocess


def stop_process(proc: subprocess.Popen, grace_s: float = 10.0, kill_wait_s: float = 10.0) -> int | None:
    """Terminate `proc`, wait up to `grace_s`, then kill it and wait up to `kill_wait_s`.

    Returns the exit status (None only if the process outlived SIGKILL's wait, e.g. stuck in the kernel).
    """
    if grace_s < 0 or kill_wait_s < 0:
        raise ValueError(f"grace_s and kill_wait_s must be >= 0, got {grace_s} and {kill_wait_s}")
    if proc.poll() is not None:
        return proc.returncode
    with contextlib.suppress(ProcessLookupError):  # exited between poll() and the signal
        proc.terminate()
    try:
        return proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        return proc.wait(kill_wait_s)
    return proc.poll()
