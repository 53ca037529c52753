"""An incident tabletop: a scripted fault revealed in phases, one inject at a time.

Floor 3 of inferlab (observe/), on `snapshots.py` (the metric snapshots of lab 6's faults). A
`Tabletop` holds one incident (fault, replica, start, seed: hidden from the player) and a list of
injects, each a time and a line of text. `next_inject()` reveals the next one with the metric
snapshot **up to that time only** (what the dashboards show then), so a decision can use only the past.
`page_time_s` is the package's page alert on a snapshot: the first second at which, for
`ALERT_FOR_S` consecutive seconds, the fleet's client error ratio exceeds `ALERT_ERROR_RATIO` or a
replica's client p99 TTFT exceeds `ALERT_TTFT_S` (the TTFT SLO). The capstone grades a player's
decision log against it.

The live version of the same exercise runs `inferlab chaos` experiments (observe/chaos/) against a
running stack; this module is its deterministic, gradable twin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from inferlab.observe.snapshots import SERIES, MetricSnapshot, synthesize

ALERT_ERROR_RATIO = 0.05  # share of the fleet's client requests failing
ALERT_TTFT_S = 1.0  # a replica's client-side p99 TTFT
ALERT_FOR_S = 3  # consecutive seconds (Prometheus's `for:`)
TABLETOP_FAULTS = ("replica_down", "paused", "network_drop", "kv_exhaustion", "network_latency")
ACTIONS = ("observe", "detect", "diagnose", "mitigate", "resolve", "escalate", "communicate")


@dataclass(frozen=True)
class Inject:
    """One phase: revealed at `at_s` (seconds since the snapshot began), with a line of scenario text."""

    at_s: float
    text: str


def page_time_s(snap: MetricSnapshot) -> float | None:
    """When the package's page alert fires on `snap` (seconds), or None if it never does."""
    s = snap.series
    with np.errstate(invalid="ignore"):
        errors = np.nan_to_num(np.nanmean(s["client_error_ratio"], axis=0), nan=1.0)
        ttft = np.nan_to_num(np.nanmax(np.where(np.isnan(s["client_ttft_p99_s"]), -np.inf, s["client_ttft_p99_s"]),
                                       axis=0), neginf=0.0)
    bad = (errors > ALERT_ERROR_RATIO) | (ttft > ALERT_TTFT_S)
    run = 0
    for i, b in enumerate(bad):
        run = run + 1 if b else 0
        if run >= ALERT_FOR_S:
            return float(snap.time_s[i])
    return None


def _truncate(snap: MetricSnapshot, at_s: float) -> MetricSnapshot:
    keep = snap.time_s <= at_s
    return MetricSnapshot(snap.time_s[keep].copy(), {k: v[:, keep].copy() for k, v in snap.series.items()})


class _Phases:
    """What both tabletops share: `injects` revealed one at a time by `next_inject()`, each with the
    metrics up to its time. A subclass has `injects`, `_next` and `_whole()` (the exercise's snapshot)."""

    def _whole(self) -> MetricSnapshot:
        raise NotImplementedError

    @property
    def num_injects(self) -> int:
        return len(self.injects)

    def next_inject(self) -> tuple[int, Inject, MetricSnapshot] | None:
        """The next phase (its index, the inject, the snapshot up to its time), or None when over."""
        if self._next >= self.num_injects:
            return None
        i, inject = self._next, self.injects[self._next]
        self._next += 1
        return i, inject, _truncate(self._whole(), inject.at_s)


@dataclass
class Tabletop(_Phases):
    """One scripted incident; `next_inject()` reveals its phases in order.

    Args:
        fault, replica, start_s, seed: the incident (`snapshots.synthesize`); the player does not read them.
        inject_every_s: seconds between injects; the first comes 20 s before the fault.
        duration_s: length of the snapshot.
    """

    fault: str
    replica: int
    start_s: float
    seed: int = 0
    inject_every_s: float = 10.0
    duration_s: int = 240
    _next: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.fault not in TABLETOP_FAULTS:
            raise ValueError(f"fault must be one of {TABLETOP_FAULTS}, got {self.fault!r}")
        if not 20 <= self.start_s <= self.duration_s - 100:
            raise ValueError(f"start_s must be in [20, {self.duration_s - 100}], got {self.start_s}")
        self._snap = synthesize(self.fault, self.replica, self.start_s, seed=self.seed, duration_s=self.duration_s)

    @property
    def injects(self) -> list[Inject]:
        times = np.arange(self.start_s - 20, self.start_s + 90, self.inject_every_s)
        texts = {0: "Quiet shift. Dashboards green; a deploy went out an hour ago.",
                 2: "Support: a customer says some completions are slow or failing.",
                 4: "The on-call's phone rings (if the page fired). Leadership asks for an update.",
                 8: "The fault source stops on its own or was mitigated; watch the recovery."}
        return [Inject(float(t), texts.get(i, "Time passes; new metrics are on the dashboard."))
                for i, t in enumerate(times)]

    def _whole(self) -> MetricSnapshot:
        return self._snap

    def alert_s(self) -> float | None:
        """When the page fired over the whole exercise (grading; read it after play)."""
        return page_time_s(self._snap)


def check_log(table: Tabletop, log: list[dict], max_detection_delay_s: float = 10.0) -> list[str]:
    """Problems of a decision log against the scenario (empty: every auto-check passes).

    Each entry: `phase` (index of the inject it was written at), `t_s` (the snapshot time the decision
    refers to, never after its phase's inject), `action` (one of ACTIONS), optional `fault`, `replica`,
    `note`. Checks: the first "detect" not before the fault began (a false alarm) and at most
    `max_detection_delay_s` after the page; a "diagnose" naming the right fault and replica; entries in time order.
    """
    problems = []
    injects = table.injects
    for k, e in enumerate(log):
        if not {"phase", "t_s", "action"} <= set(e):
            problems.append(f"entry {k}: needs phase, t_s and action")
            continue
        if e["action"] not in ACTIONS:
            problems.append(f"entry {k}: unknown action {e['action']!r}")
        if not 0 <= e["phase"] < len(injects) or e["t_s"] > injects[e["phase"]].at_s:
            problems.append(f"entry {k}: t_s {e['t_s']} is after its phase's inject (decisions use the past only)")
    if problems:
        return problems
    if [e["t_s"] for e in log] != sorted(e["t_s"] for e in log):
        problems.append("entries are not in time order")
    alert = table.alert_s()
    detects = [e for e in log if e["action"] == "detect"]
    if not detects:
        problems.append("no detect entry")
    elif not table.start_s <= detects[0]["t_s"] <= (table.duration_s if alert is None else alert) + max_detection_delay_s:
        problems.append("detection time is before the fault or later than the bound after the page")
    diagnoses = [e for e in log if e["action"] == "diagnose"]
    if not diagnoses:
        problems.append("no diagnose entry")
    else:
        if diagnoses[-1].get("fault") != table.fault:
            problems.append("wrong fault named")
        if diagnoses[-1].get("replica") != table.replica:
            problems.append("wrong replica named")
    return problems


# ---------------------------------------------------------------- the live tabletop

EXPERIMENT_FAULTS = {"kill-replica": "replica_down", "pause-replica": "paused", "proxy-drop": "network_drop",
                     "proxy-latency": "network_latency", "kv-exhaustion": "kv_exhaustion"}
PAGE_ALERTS = ("TTFTErrorBudgetBurnPage", "TPOTErrorBudgetBurnPage", "AvailabilityErrorBudgetBurnPage", "ReplicaDown")


def live_snapshot(stack, start_s: float, end_s: float, window_s: float = 2.0) -> MetricSnapshot:
    """A `MetricSnapshot` of a running chaos `Stack` (wall clock `start_s`..`end_s`, one sample a second).

    Server series from its Prometheus (`up`, `kv_cache_usage_perc`, `num_requests_waiting`, `ttft_p99_s`,
    `requests_per_s`, `preemptions_per_s`, per replica); client series (`client_error_ratio`,
    `client_ttft_p99_s`) from its load driver's attempts to each replica over the last `window_s`.
    NaN where there is no sample (a failed scrape, no request).
    """
    times = np.arange(math.ceil(start_s), math.floor(end_s) + 1, 1.0)
    n, index = len(stack.replicas), {r.target: i for i, r in enumerate(stack.replicas)}
    rate = f"[{max(2, int(4 * stack.config.scrape_interval_s + 0.999))}s]"
    queries = {"up": 'up{job="inferlab"}', "kv_cache_usage_perc": "vllm:kv_cache_usage_perc",
               "num_requests_waiting": "vllm:num_requests_waiting",
               "ttft_p99_s": f"histogram_quantile(0.99, sum by (instance, le) (rate(vllm:time_to_first_token_seconds_bucket{rate})))",
               "requests_per_s": f"sum by (instance) (rate(vllm:request_success_total{rate}))",
               "preemptions_per_s": f"sum by (instance) (rate(vllm:num_preemptions_total{rate}))"}
    series = {name: np.full((n, len(times)), np.nan) for name in SERIES}
    for name, expr in queries.items():
        for s in stack.prometheus.query_range(expr, float(times[0]), float(times[-1]), 1.0):
            i = index.get(s.labels.get("instance"))
            for t, v in s.points:
                k = int(round(t - times[0]))
                if i is not None and 0 <= k < len(times):
                    series[name][i, k] = v
    attempts = list(stack.load.attempts)
    for k, t in enumerate(times):
        for i in range(n):
            got = [a for a in attempts if a.replica == i and t - window_s < a.start_s <= t]
            if got:
                series["client_error_ratio"][i, k] = sum(not a.is_ok for a in got) / len(got)
                ok = [a.ttft_s for a in got if a.is_ok]
                series["client_ttft_p99_s"][i, k] = float(np.percentile(ok, 99)) if ok else np.nan
    return MetricSnapshot(times - times[0], series)


@dataclass
class LiveTabletop(_Phases):
    """A tabletop of a real chaos run: the same interface as `Tabletop` (`next_inject`, `injects`,
    `alert_s`, `fault`, `replica`, `start_s`, `duration_s`), so a player's `play_tabletop` and
    `check_log` run on it unchanged. `alerts`: each Prometheus alert's first firing (s since the
    snapshot began); `alert_s()` is the first page alert's (`PAGE_ALERTS`), else the package's page
    rule on the snapshot."""

    snapshot: MetricSnapshot
    fault: str
    replica: int
    start_s: float
    alerts: dict[str, float] = field(default_factory=dict)
    inject_every_s: float = 5.0
    _next: int = field(default=0, repr=False)

    @property
    def duration_s(self) -> float:
        return float(self.snapshot.time_s[-1])

    @property
    def injects(self) -> list[Inject]:
        times = np.arange(self.inject_every_s, self.duration_s + 1e-9, self.inject_every_s)
        texts = {0: "Live: the stack serves steady client load. Dashboards green.",
                 2: "Live: clients report failures or slow answers (if any).",
                 4: "Live: leadership asks for an update."}
        return [Inject(float(t), texts.get(i, "Live: new metrics are on the dashboard.")) for i, t in enumerate(times)]

    def _whole(self) -> MetricSnapshot:
        return self.snapshot

    def alert_s(self) -> float | None:
        pages = [t for name, t in self.alerts.items() if name in PAGE_ALERTS]
        return min(pages) if pages else page_time_s(self.snapshot)


def run_live_tabletop(name: str, warmup_s: float = 12.0, recovery_s: float = 10.0, fault_s: float | None = None,
                      settle_s: float = 3.0) -> tuple[LiveTabletop, dict]:
    """Run the shipped chaos experiment `name` (one of `EXPERIMENT_FAULTS`) on a fresh stack and return
    (its `LiveTabletop`, the experiment's report). `fault_s`: the fault's pause (the experiment's own
    if None). The snapshot begins `settle_s` after the load (client windows filled)."""
    import time

    from chaoslib.experiment import run_experiment as chaos_run

    from inferlab.observe.chaos import toolkit
    from inferlab.observe.chaos.stack import Stack

    if name not in EXPERIMENT_FAULTS:
        raise ValueError(f"live tabletop experiment must be one of {sorted(EXPERIMENT_FAULTS)}, got {name!r}")
    experiment = toolkit.load(name)
    action = experiment["method"][0]
    if fault_s is not None:
        action.setdefault("pauses", {})["after"] = fault_s
    replica = int(action["provider"].get("arguments", {}).get("replica", 0))
    stack = Stack(toolkit.stack_config(experiment)).start()
    toolkit._STACK = stack  # the experiment's actions act on the module's running stack
    try:
        time.sleep(warmup_s)
        journal = chaos_run(experiment, settings={"runtime": {"rollbacks": {"strategy": "always"}}})
        time.sleep(recovery_s)
        report = toolkit._report(experiment, journal, stack, recovery_s)
        started = next(t for t, what in stack.events if what == "stack started")
        fault_at = next(t for t, _ in stack.events if t > started)
        snap = live_snapshot(stack, started + settle_s, time.time())
    finally:
        toolkit._STACK = None
        stack.close()
    begin = math.ceil(started + settle_s)
    alerts = {k: v + fault_at - begin for k, v in report["alerts"].items()}
    return LiveTabletop(snap, EXPERIMENT_FAULTS[name], replica, fault_at - begin, alerts), report
