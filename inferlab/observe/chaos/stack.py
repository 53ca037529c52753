"""A live local stack to break: `inferlab serve` replicas, each behind a fault proxy, scraped by a managed
Prometheus with time-compressed SLO rules, under steady client load.

Flow: `Stack(StackConfig)` starts the replicas (processes on free loopback ports), a `FaultProxy`
per replica (clients go through it; Prometheus scrapes the replica itself), Prometheus with
`slo.rules_yaml(SLOConfig(time_scale=...))`, and a `LoadDriver` over the proxies. Faults act on
it (`kill`, `restart`, `pause`, `resume`, `proxy(i).set(...)`, `burst`, `long_prompts`); `events`
records what was done when. `close()` undoes everything: resumes paused replicas, stops load,
proxies, Prometheus and replicas.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field

from inferlab.observe import slo
from inferlab.observe.chaos.faults import FaultProxy, pause, resume
from inferlab.observe.chaos.load import LoadDriver
from inferlab.observe.prometheus import PrometheusServer
from inferlab.procs import stop_process


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class StackConfig:
    """The stack's shape.

    Args:
        num_replicas: `inferlab serve` processes (>= 1).
        rate_per_s: steady client load, requests a second.
        max_tokens, prompt_len: each steady request's output and prompt lengths.
        time_scale: SLO windows divided by this (120: the 1 h window is 30 s).
        scrape_interval_s: Prometheus scrape and rule interval.
        serve_args: extra `inferlab serve` flags (e.g. a small KV pool for exhaustion).
        timeout_s: a client request slower than this fails.
    """

    num_replicas: int = 2
    rate_per_s: float = 4.0
    max_tokens: int = 8
    prompt_len: int = 16
    time_scale: int = 120
    scrape_interval_s: float = 0.5
    serve_args: tuple[str, ...] = ("--num-kv-blocks", "64", "--max-num-seqs", "8")
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if not isinstance(self.num_replicas, int) or not 1 <= self.num_replicas <= 4:
            raise ValueError(f"num_replicas must be an integer in [1, 4] (a 2-core machine), got {self.num_replicas!r}")
        if not 0 < self.rate_per_s <= 50:
            raise ValueError(f"rate_per_s must be in (0, 50], got {self.rate_per_s!r}")


@dataclass
class Replica:
    port: int
    proc: subprocess.Popen
    log: object
    proxy: FaultProxy
    is_paused: bool = False

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class Stack:
    config: StackConfig = field(default_factory=StackConfig)
    replicas: list[Replica] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)  # (wall clock s, what was done)
    prometheus: PrometheusServer | None = None
    load: LoadDriver | None = None

    def start(self, startup_timeout_s: float = 180.0) -> Stack:
        try:
            for _ in range(self.config.num_replicas):
                self.replicas.append(self._spawn(_free_port()))
            for i in range(len(self.replicas)):
                self._wait_healthy(i, startup_timeout_s)
            rules = slo.rules_yaml(slo.SLOConfig(time_scale=self.config.time_scale))
            self.prometheus = PrometheusServer([r.target for r in self.replicas], rules,
                                               self.config.scrape_interval_s).start()
            c = self.config
            self.load = LoadDriver([f"http://127.0.0.1:{r.proxy.port}" for r in self.replicas], c.rate_per_s,
                                   c.prompt_len, c.max_tokens, c.timeout_s).start()
            self.note("stack started")
        except BaseException:
            self.close()
            raise
        return self

    def _spawn(self, port: int, proxy: FaultProxy | None = None) -> Replica:
        log = tempfile.TemporaryFile("w+")
        proc = subprocess.Popen([sys.executable, "-m", "inferlab", "serve", "--port", str(port),
                                 "--served-model-name", "tiny", *self.config.serve_args],
                                stdout=subprocess.DEVNULL, stderr=log, text=True)
        return Replica(port, proc, log, proxy or FaultProxy(port, seed=port).start())

    def _wait_healthy(self, i: int, timeout_s: float) -> None:
        r = self.replicas[i]
        end = time.monotonic() + timeout_s
        while True:
            if r.proc.poll() is not None:
                r.log.seek(0)
                raise RuntimeError(f"replica {i} exited with {r.proc.returncode}: {r.log.read()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://{r.target}/health", timeout=2):
                    return
            except OSError:
                if time.monotonic() > end:
                    raise RuntimeError(f"replica {i} did not answer /health within {timeout_s:.0f} s") from None
                time.sleep(0.2)

    def note(self, what: str) -> None:
        self.events.append((time.time(), what))

    # ---- faults -------------------------------------------------------------------------------
    def _check(self, i: int) -> Replica:
        if not isinstance(i, int) or not 0 <= i < len(self.replicas):
            raise ValueError(f"replica must be in [0, {len(self.replicas)}), got {i!r}")
        return self.replicas[i]

    def kill(self, i: int) -> None:
        """SIGKILL replica i (no graceful shutdown: in-flight requests are lost)."""
        r = self._check(i)
        r.proc.send_signal(signal.SIGKILL)
        r.proc.wait(10)
        self.note(f"killed replica {i}")

    def restart(self, i: int, timeout_s: float = 120.0) -> None:
        """Start replica i again on its port (a no-op if it is running)."""
        r = self._check(i)
        if r.proc.poll() is None:
            return
        self.replicas[i] = self._spawn(r.port, r.proxy)
        self._wait_healthy(i, timeout_s)
        self.note(f"restarted replica {i}")

    def pause(self, i: int) -> None:
        r = self._check(i)
        pause(r.proc.pid)
        r.is_paused = True
        self.note(f"paused replica {i} (SIGSTOP)")

    def resume(self, i: int) -> None:
        r = self._check(i)
        if r.is_paused:
            resume(r.proc.pid)
            r.is_paused = False
            self.note(f"resumed replica {i} (SIGCONT)")

    def proxy(self, i: int) -> FaultProxy:
        return self._check(i).proxy

    def set_proxy(self, i: int, latency_s: float = 0.0, drop_ratio: float = 0.0) -> None:
        self.proxy(i).set(latency_s, drop_ratio)
        self.note(f"proxy {i}: latency {latency_s} s, drop {drop_ratio}")

    def burst(self, factor: float) -> None:
        """Multiply the client rate by `factor` (1 ends the burst)."""
        if not 0 < factor <= 20:
            raise ValueError(f"burst factor must be in (0, 20], got {factor!r}")
        self.load.rate_factor = factor
        self.note(f"client rate x{factor}")

    def long_prompts(self, num_requests: int, prompt_len: int, max_tokens: int) -> None:
        self.load.fire(num_requests, prompt_len, max_tokens)
        self.note(f"fired {num_requests} requests of {prompt_len} prompt tokens")

    # ---- teardown -----------------------------------------------------------------------------
    def close(self) -> None:
        for r in self.replicas:
            if r.is_paused and r.proc.poll() is None:
                resume(r.proc.pid)
        if self.load is not None:
            self.load.stop()
        if self.prometheus is not None:
            self.prometheus.stop()
        for r in self.replicas:
            r.proxy.stop()
            stop_process(r.proc, grace_s=10.0)
            r.log.close()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
