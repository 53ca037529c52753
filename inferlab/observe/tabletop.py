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

from dataclasses import dataclass, field

import numpy as np

from inferlab.observe.snapshots import MetricSnapshot, synthesize

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


@dataclass
class Tabletop:
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

    @property
    def num_injects(self) -> int:
        return len(self.injects)

    def next_inject(self) -> tuple[int, Inject, MetricSnapshot] | None:
        """The next phase (its index, the inject, the snapshot up to its time), or None when over."""
        if self._next >= self.num_injects:
            return None
        i, inject = self._next, self.injects[self._next]
        self._next += 1
        return i, inject, _truncate(self._snap, inject.at_s)

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
