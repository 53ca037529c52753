"""stop_process: terminate, wait, kill, wait; an already-dead process is fine."""

import signal
import subprocess
import sys
import time

import pytest

from inferlab.procs import stop_process

IGNORES_SIGTERM = ("import signal, sys, time\n"
                   "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                   "print('ready', flush=True)\n"
                   "time.sleep(60)\n")


def _started(code: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"  # the handler is installed before we signal
    return proc


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace():
    proc = _started(IGNORES_SIGTERM)
    start = time.monotonic()
    code = stop_process(proc, grace_s=0.5)
    waited = time.monotonic() - start
    assert code == -signal.SIGKILL, code  # SIGTERM was ignored: only the kill ended it
    assert 0.5 <= waited < 10, waited


def test_a_process_that_honours_sigterm_ends_by_it():
    proc = _started("import time\nprint('ready', flush=True)\ntime.sleep(60)\n")
    assert stop_process(proc, grace_s=10.0) == -signal.SIGTERM


def test_an_already_dead_process_returns_its_status():
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    assert stop_process(proc, grace_s=0.1) == 3
    assert stop_process(proc, grace_s=0.1) == 3  # twice is fine


def test_an_exited_but_unreaped_process_is_fine():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    time.sleep(0.5)  # exited, not yet waited for: a zombie
    assert stop_process(proc, grace_s=0.1) == 0


def test_a_negative_grace_names_the_argument():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    with pytest.raises(ValueError, match="grace_s"):
        stop_process(proc, grace_s=-1)
    proc.wait()
