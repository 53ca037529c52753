"""A live fleet: `inferlab serve` replica processes behind the router, scaled by an autoscaling policy.

Floor 3 of inferlab (serving/), on `router.py` (the router runs in a thread of this process,
`router_thread`) and `policies/autoscale.py` (the policy function, the SAME shape as in the
simulator and in Ray Serve: `policy(ctx) -> (num_replicas, policy_state)`).

Every `period_s` the controller
- promotes each starting replica whose GET /health answers 200 into the router's pool (its cold
  start is the real process start: Python, torch, the checkpoint, the first /health);
- stops each draining replica once the router has nothing in flight there (drain: the router no
  longer routes to it, its requests finish, then SIGTERM: nothing is cut);
- scrapes each running replica's /metrics (vLLM's names) and the router's own counters into an
  `AutoscalingContext`: `aggregated_metrics` "kv_utilization" (`vllm:kv_cache_usage_perc`),
  "compute_utilization" (running requests / `max_num_seqs`, the batch's occupancy) and
  "num_waiting_requests" (`vllm:num_requests_waiting`) per replica; `total_num_requests` from the
  router's in-flight count; `num_starting_replicas`; `cold_start_s` (mean measured so far);
- calls the policy and reconciles: up launches processes, down first cancels starting ones
  (newest first), then drains the running replica with the fewest requests in flight; a replica
  whose process died is dropped from the pool and replaced (the target stands).
Each period appends a timeline row in the simulator's format (`time_s`, `target`,
`num_starting_on_demand`, `num_running_on_demand`, `num_draining_on_demand`), so
`observe.review.fleet_review` bills it the same way (one "GPU" per replica: replica-hours).
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from inferlab.policies.autoscale import AutoscalingConfig, AutoscalingContext
from inferlab.procs import stop_process
from inferlab.serving.replicas import Replica
from inferlab.serving.router import HttpRouter, RouterConfig, router_thread

STARTING, RUNNING, DRAINING, STOPPED = "starting", "running", "draining", "stopped"


@dataclass(frozen=True)
class FleetConfig:
    """A live fleet's knobs.

    Args:
        server_args: arguments of every `inferlab serve` replica (its port is added).
        max_num_seqs: the replicas' batch limit (added to `server_args`); compute utilisation = running / this.
        autoscaling: bounds (`min_replicas`, `max_replicas`, `initial_replicas`) for the policy's context.
        period_s: seconds between control steps.
        startup_timeout_s: a replica not healthy by then is stopped and counted as a failed start.
        drain_timeout_s: a draining replica still busy after this is stopped anyway (counted).
        cold_start_guess_s: `cold_start_s` before the first start has been measured.
    """

    server_args: tuple[str, ...] = ("--max-model-len", "256", "--served-model-name", "tiny")
    max_num_seqs: int = 8
    autoscaling: AutoscalingConfig = AutoscalingConfig(min_replicas=1, max_replicas=3, initial_replicas=1)
    period_s: float = 0.5
    startup_timeout_s: float = 120.0
    drain_timeout_s: float = 60.0
    cold_start_guess_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_num_seqs < 1:
            raise ValueError(f"FleetConfig.max_num_seqs must be >= 1, got {self.max_num_seqs}")
        if not self.period_s > 0:
            raise ValueError(f"FleetConfig.period_s must be > 0, got {self.period_s}")
        if self.autoscaling.min_replicas < 1:
            raise ValueError("FleetConfig.autoscaling.min_replicas must be >= 1: the router needs a replica")
        if not (self.startup_timeout_s > 0 and self.drain_timeout_s > 0 and self.cold_start_guess_s >= 0):
            raise ValueError("FleetConfig timeouts must be > 0 and cold_start_guess_s >= 0")
        if "--port" in self.server_args or "--max-num-seqs" in self.server_args:
            raise ValueError("FleetConfig.server_args must not set --port or --max-num-seqs (the fleet sets them)")


@dataclass
class LiveReplica:
    """One `inferlab serve` process and its life (seconds on the fleet's clock)."""

    url: str
    proc: subprocess.Popen
    log: Any
    launch_s: float
    state: str = STARTING
    ready_s: float | None = None
    drain_s: float | None = None
    stop_s: float | None = None
    pool_entry: Replica | None = None
    error: str = ""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(url: str, timeout_s: float = 1.0) -> dict[str, float]:
    """A replica's /metrics: {metric name: value summed over label sets} (samples without a suffix filter)."""
    with urllib.request.urlopen(url + "/metrics", timeout=timeout_s) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        try:
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
        except (IndexError, ValueError):
            continue
    return out


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=0.5) as r:
            return r.status == 200
    except OSError:
        return False


@dataclass
class Fleet:
    """Replicas behind a router, scaled by `policy`; use as a context manager (`with Fleet(...) as fleet`).

    After entering: `fleet.base_url` (the router), `fleet.timeline` (rows as the simulator's),
    `fleet.actions` ((time_s, old target, new target)), `fleet.replicas` (every `LiveReplica` ever).
    """

    policy: Callable[[Any], tuple[int, dict[str, Any]]]
    config: FleetConfig = field(default_factory=FleetConfig)
    router_config: RouterConfig | None = None
    # where the k-th replica started runs: (argv prefix, e.g. `ip netns exec il-n1`, and the address it
    # listens on); default: this machine's loopback. `inferlab.cluster.fleet` places replicas in nodes.
    placement: Callable[[int], tuple[list[str], str]] | None = None
    timeline: list[dict[str, float]] = field(default_factory=list, init=False)
    actions: list[tuple[float, int, int]] = field(default_factory=list, init=False)
    replicas: list[LiveReplica] = field(default_factory=list, init=False)
    policy_errors: list[str] = field(default_factory=list, init=False)
    num_forced_stops: int = field(default=0, init=False)
    num_lost_replicas: int = field(default=0, init=False)  # died on their own; `_reconcile` starts replacements

    def __post_init__(self) -> None:
        self._t0, self._t0_perf = time.monotonic(), time.perf_counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {}
        self._exit = contextlib.ExitStack()
        cfg = self.config.autoscaling
        self.target = cfg.initial_replicas if cfg.initial_replicas is not None else cfg.min_replicas
        self.router: HttpRouter | None = None
        self.base_url = ""
        # ports fixed up front, so a static Prometheus config scrapes every replica the fleet will start (an
        # unused port: up=0); never reused while any is left, so one `instance` is one process (no counter reset)
        self.slot_ports = [_free_port() for _ in range(3 * cfg.max_replicas)]

    def scrape_targets(self) -> list[str]:
        """"host:port" of every replica slot, for a Prometheus scraping the fleet."""
        return [f"127.0.0.1:{p}" for p in self.slot_ports]

    def now(self) -> float:
        return time.monotonic() - self._t0

    def fleet_time(self, perf_counter_s: float) -> float:
        """A `time.perf_counter()` reading (the load generator's records) on the fleet's clock."""
        return perf_counter_s - self._t0_perf

    # ------------------------------------------------------------ processes

    def _launch(self) -> LiveReplica:
        used = [int(r.url.rsplit(":", 1)[1]) for r in self.replicas]
        alive = {int(r.url.rsplit(":", 1)[1]) for r in self.replicas if r.state != STOPPED}
        fresh = [p for p in self.slot_ports if p not in used]
        port = fresh[0] if fresh else next(p for p in self.slot_ports if p not in alive)
        prefix, host = self.placement(len(self.replicas)) if self.placement is not None else ([], "127.0.0.1")
        log = tempfile.TemporaryFile("w+")  # a file: an unread pipe would fill and stall the server
        proc = subprocess.Popen([*prefix, sys.executable, "-m", "inferlab", "serve", "--host", host, "--port", str(port),
                                 "--max-num-seqs", str(self.config.max_num_seqs), *self.config.server_args],
                                stdout=subprocess.DEVNULL, stderr=log, text=True)
        replica = LiveReplica(f"http://{host}:{port}", proc, log, self.now())
        self.replicas.append(replica)
        return replica

    def _terminate(self, replica: LiveReplica) -> None:
        stop_process(replica.proc, grace_s=10.0)
        replica.log.close()
        replica.state, replica.stop_s = STOPPED, self.now()

    def _failed_start(self, replica: LiveReplica, why: str) -> None:
        with contextlib.suppress(ValueError, OSError):
            replica.log.seek(0)
            why += ": " + replica.log.read()[-500:]
        replica.error = why
        self._terminate(replica)

    def in_state(self, state: str) -> list[LiveReplica]:
        return [r for r in self.replicas if r.state == state]

    def measured_cold_starts_s(self) -> list[float]:
        return [r.ready_s - r.launch_s for r in self.replicas if r.ready_s is not None]

    # ------------------------------------------------------------ the control step

    def _promote(self) -> None:
        for r in self.in_state(RUNNING) + self.in_state(DRAINING):  # a replica that died: capacity lost
            if r.proc.poll() is not None:
                if self.router is not None and len(self.router.pool.replicas) > 1 and \
                        any(p.url == r.url for p in self.router.pool.replicas):
                    self.router.pool.remove(r.url)  # the router ejected it already; the pool forgets it
                self._failed_start(r, f"died while {r.state} (exit {r.proc.returncode})")
                self.num_lost_replicas += 1
        for r in self.in_state(STARTING):
            if r.proc.poll() is not None:
                self._failed_start(r, f"exited with {r.proc.returncode}")
            elif _healthy(r.url):
                r.state, r.ready_s = RUNNING, self.now()
                if self.router is not None:
                    r.pool_entry = self.router.pool.add(r.url)
            elif self.now() - r.launch_s > self.config.startup_timeout_s:
                self._failed_start(r, f"not healthy within {self.config.startup_timeout_s:.0f} s")

    def _finish_drains(self) -> None:
        for r in self.in_state(DRAINING):
            busy = r.pool_entry is not None and r.pool_entry.num_outstanding > 0
            if busy and self.now() - r.drain_s < self.config.drain_timeout_s:
                continue
            self.num_forced_stops += busy
            self._terminate(r)

    def context(self) -> AutoscalingContext:
        """The policy's view now (see the module docstring)."""
        running = self.in_state(RUNNING)
        metrics: dict[str, dict[Any, float]] = {"kv_utilization": {}, "compute_utilization": {},
                                                "num_waiting_requests": {}}
        for r in running:
            try:
                m = scrape(r.url)
            except OSError:
                continue  # a missed scrape: no value this period (as Prometheus)
            metrics["kv_utilization"][r.url] = m.get("vllm:kv_cache_usage_perc", 0.0)
            metrics["compute_utilization"][r.url] = min(1.0, m.get("vllm:num_requests_running", 0.0)
                                                        / self.config.max_num_seqs)
            metrics["num_waiting_requests"][r.url] = m.get("vllm:num_requests_waiting", 0.0)
        queued = float(len(self.router.gate.queue)) if self.router is not None else 0.0
        in_flight = sum(r.pool_entry.num_outstanding for r in running if r.pool_entry is not None)
        cold = self.measured_cold_starts_s()
        cfg = self.config.autoscaling
        return AutoscalingContext(
            current_num_replicas=len(running), target_num_replicas=self.target,
            total_num_requests=queued + in_flight, total_queued_requests=queued,
            capacity_adjusted_min_replicas=cfg.min_replicas, capacity_adjusted_max_replicas=cfg.max_replicas,
            current_time=self.now(), policy_state=self._state, aggregated_metrics=metrics,
            running_replicas=[r.url for r in running], config=cfg,
            num_starting_replicas=len(self.in_state(STARTING)),
            cold_start_s=sum(cold) / len(cold) if cold else self.config.cold_start_guess_s)

    def _reconcile(self, desired: int) -> None:
        alive = self.in_state(STARTING) + self.in_state(RUNNING)
        for _ in range(desired - len(alive)):
            self._launch()
        surplus = len(alive) - desired
        for r in sorted(self.in_state(STARTING), key=lambda r: -r.launch_s)[:max(0, surplus)]:
            self._terminate(r)  # never served: nothing to drain
            surplus -= 1
        running = sorted(self.in_state(RUNNING),
                         key=lambda r: r.pool_entry.num_outstanding if r.pool_entry is not None else 0)
        for r in running[:max(0, surplus)]:
            if self.router is not None and r.pool_entry is not None:
                self.router.pool.remove(r.url)  # the router stops routing there; in-flight requests finish
            r.state, r.drain_s = DRAINING, self.now()

    def step(self) -> None:
        """One control period: promote, finish drains, ask the policy, reconcile, record a row."""
        with self._lock:
            self._promote()
            self._finish_drains()
            ctx = self.context()
            try:
                desired, state = self.policy(ctx)
                self._state = dict(state)
            except Exception as exc:  # a broken policy must not take the fleet down: hold the target
                self.policy_errors.append(f"{type(exc).__name__}: {exc}")
                desired = self.target
            cfg = self.config.autoscaling
            desired = int(min(cfg.max_replicas, max(cfg.min_replicas, desired)))
            if desired != self.target:
                self.actions.append((ctx.current_time, self.target, desired))
                self.target = desired
            self._reconcile(self.target)
            self.timeline.append({"time_s": ctx.current_time, "target": self.target,
                                  "num_starting_on_demand": len(self.in_state(STARTING)),
                                  "num_running_on_demand": len(self.in_state(RUNNING)),
                                  "num_draining_on_demand": len(self.in_state(DRAINING))})

    def _loop(self) -> None:
        while not self._stop.wait(self.config.period_s):
            self.step()

    # ------------------------------------------------------------ life

    def __enter__(self) -> Fleet:
        try:
            first = [self._launch() for _ in range(self.target)]
            self.timeline.append({"time_s": 0.0, "target": self.target, "num_starting_on_demand": len(first),
                                  "num_running_on_demand": 0, "num_draining_on_demand": 0})  # billed from launch
            end = time.monotonic() + self.config.startup_timeout_s
            while any(r.state == STARTING for r in first):
                self._promote()
                if time.monotonic() > end:
                    raise RuntimeError("the fleet's first replicas did not start in time")
                time.sleep(0.2)
            bad = [r.error for r in first if r.state != RUNNING]
            if bad:
                raise RuntimeError("a replica failed to start: " + "; ".join(bad))
            self.base_url, self.router = self._exit.enter_context(
                router_thread([r.url for r in first], self.router_config or RouterConfig(), health_interval_s=0.5,
                              # a busy CPU replica may answer /health late: only ~8 s of silence ejects it
                              # (a refused connection still ejects at once; a dead process is replaced)
                              health_timeout_s=2.0, max_failures=4))
            for r in first:
                r.pool_entry = next(p for p in self.router.pool.replicas if p.url == r.url)
            self.timeline.append({"time_s": self.now(), "target": self.target, "num_starting_on_demand": 0,
                                  "num_running_on_demand": len(first), "num_draining_on_demand": 0})
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        except BaseException:
            self._shutdown()
            raise
        return self

    def _shutdown(self) -> None:
        self._stop.set()
        thread = getattr(self, "_thread", None)
        if thread is not None:
            thread.join(30)
        self._exit.close()
        for r in self.replicas:
            if r.state != STOPPED:
                self._terminate(r)

    def __exit__(self, *exc: Any) -> None:
        self._shutdown()

    def wait_until(self, predicate: Callable[[Fleet], bool], timeout_s: float) -> bool:
        """Block until `predicate(self)` holds (checked each period) or `timeout_s` passes."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            with self._lock:
                if predicate(self):
                    return True
            time.sleep(self.config.period_s)
        return False

    @property
    def end_s(self) -> float:
        return self.now()


@contextlib.contextmanager
def live_fleet(policy: Callable[[Any], tuple[int, dict[str, Any]]], config: FleetConfig | None = None,
               router_config: RouterConfig | None = None) -> Iterator[Fleet]:
    """`with live_fleet(policy) as fleet:` a started fleet, stopped (every process) on exit."""
    with Fleet(policy, config or FleetConfig(), router_config) as fleet:
        yield fleet


def oracle_replica_seconds(token_times_s: list[float], end_s: float, replica_tokens_per_s: float,
                           window_s: float = 10.0, min_replicas: int = 1) -> float:
    """Replica-seconds of a fleet that knew the load and had no cold start.

    In each `window_s` window, the fewest replicas (at least `min_replicas`) that, at
    `replica_tokens_per_s` each, produce the output tokens finished in it (`token_times_s`: one
    time per output token, or per request weighted by repeating it).
    """
    if not replica_tokens_per_s > 0 or not window_s > 0 or end_s <= 0:
        raise ValueError("replica_tokens_per_s, window_s and end_s must be > 0")
    num_windows = max(1, math.ceil(end_s / window_s))
    counts = [0] * num_windows
    for t in token_times_s:
        counts[min(num_windows - 1, max(0, int(t // window_s)))] += 1
    total = 0.0
    for i, n in enumerate(counts):
        span = min(window_s, end_s - i * window_s)
        total += max(min_replicas, math.ceil(n / (replica_tokens_per_s * window_s) - 1e-9)) * span
    return total


def best_replica_tokens_per_s(token_times_s: list[float], timeline: list[dict[str, float]], end_s: float,
                              window_s: float = 10.0) -> float:
    """The most output tokens per running-replica-second any `window_s` window of a run achieved."""
    stops = [row["time_s"] for row in timeline[1:]] + [end_s]
    best = 0.0
    for k in range(max(1, math.ceil(end_s / window_s))):
        lo, hi = k * window_s, min(end_s, (k + 1) * window_s)
        replica_s = sum(row["num_running_on_demand"] * max(0.0, min(hi, stop) - max(lo, row["time_s"]))
                        for row, stop in zip(timeline, stops))
        tokens = sum(1 for t in token_times_s if lo <= t < hi)
        if replica_s > 0:
            best = max(best, tokens / replica_s)
    return best
