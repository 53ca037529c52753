"""Metric snapshots of incidents, for diagnosis drills: what each fault does to a fleet's metrics.

A `MetricSnapshot` is what an on-call engineer exports from Prometheus: per-replica series sampled
every second (server side: `up`, request rate, p99 TTFT, KV usage, waiting requests, preemptions;
client side, from the load balancer's logs: error ratio and p99 TTFT per replica). A missing
scrape is NaN, as in a Prometheus range query.

`synthesize(fault, replica, start_s, seed)` draws one incident. Each fault's signature follows what
`inferlab chaos run` measured on the real stack (README, "Lab 6"): a killed replica is down and its
clients fail at once; a paused (SIGSTOP) one is down too but its clients wait into timeouts, then
its TTFT spikes on resume; proxy latency shows on the client only; proxy drops show as client
errors on one replica with its server rate halved; KV exhaustion fills one replica's cache with
preemptions and queueing; a burst raises every replica's rate and queue. `reference_diagnose` is
the package's answer to lab 6's diagnosis exercise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FAULTS = ("replica_down", "paused", "network_latency", "network_drop", "kv_exhaustion", "burst")
SERIES = ("up", "requests_per_s", "ttft_p99_s", "kv_cache_usage_perc", "num_requests_waiting", "preemptions_per_s",
          "client_error_ratio", "client_ttft_p99_s")


@dataclass(frozen=True)
class MetricSnapshot:
    """Per-replica series over time.

    Args:
        time_s: [T] seconds since the snapshot began, one sample a second.
        series: name (one of SERIES) -> [num_replicas, T] values; NaN where a scrape is missing.
    """

    time_s: np.ndarray
    series: dict[str, np.ndarray]

    @property
    def num_replicas(self) -> int:
        return next(iter(self.series.values())).shape[0]


@dataclass(frozen=True)
class Diagnosis:
    """Which fault, on which replica (None: all of them, a fleet-wide fault), beginning when (s)."""

    fault: str
    replica: int | None
    start_s: float


def synthesize(fault: str, replica: int | None, start_s: float, seed: int = 0, num_replicas: int = 3,
               duration_s: int = 240, fault_s: float = 45.0) -> MetricSnapshot:
    """One incident's snapshot: `fault` on `replica` (None for "burst") from `start_s` for `fault_s` seconds."""
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
    if (fault == "burst") != (replica is None):
        raise ValueError("a burst hits every replica (replica=None); every other fault needs a replica index")
    if replica is not None and not 0 <= replica < num_replicas:
        raise ValueError(f"replica must be in [0, {num_replicas}), got {replica!r}")
    if not 0 <= start_s <= duration_s - fault_s:
        raise ValueError(f"start_s must be in [0, {duration_s - fault_s}], got {start_s!r}")
    rng = np.random.default_rng(seed)
    t = np.arange(duration_s, dtype=float)
    shape = (num_replicas, duration_s)

    def noise(level: float, rel: float = 0.15) -> np.ndarray:
        return level * (1 + rel * rng.standard_normal(shape)).clip(0.3)

    s = {"up": np.ones(shape), "requests_per_s": noise(2.0), "ttft_p99_s": noise(0.06, 0.3),
         "kv_cache_usage_perc": noise(0.12, 0.3).clip(0, 1), "num_requests_waiting": rng.poisson(0.3, shape) * 1.0,
         "preemptions_per_s": np.zeros(shape), "client_error_ratio": (rng.random(shape) < 0.01) * 0.05,
         "client_ttft_p99_s": noise(0.08, 0.3)}
    during = (t >= start_s) & (t < start_s + fault_s)
    r = replica
    if fault in ("replica_down", "paused"):
        s["up"][r, during] = 0.0
        for name in ("requests_per_s", "ttft_p99_s", "kv_cache_usage_perc", "num_requests_waiting",
                     "preemptions_per_s"):
            s[name][r, during] = np.nan
        if fault == "replica_down":
            s["client_error_ratio"][r, during] = 1.0
            s["client_ttft_p99_s"][r, during] = np.nan  # connection refused: no first token to time
        else:
            s["client_error_ratio"][r, during] = (t[during] - start_s > 5) * rng.uniform(0.4, 0.8, during.sum())
            s["client_ttft_p99_s"][r, during] = np.minimum(5.0, 0.1 + (t[during] - start_s))
            after = (t >= start_s + fault_s) & (t < start_s + fault_s + 6)
            s["ttft_p99_s"][r, after] = rng.uniform(3, 6, after.sum())  # the backlog drains on resume
    elif fault == "network_latency":
        s["client_ttft_p99_s"][r, during] += rng.uniform(1.2, 1.8)
    elif fault == "network_drop":
        ratio = rng.uniform(0.3, 0.6)
        s["client_error_ratio"][r, during] = ratio * (1 + 0.2 * rng.standard_normal(during.sum())).clip(0.2)
        s["requests_per_s"][r, during] *= 1 - ratio
    elif fault == "kv_exhaustion":
        ramp = np.clip((t[during] - start_s) / 5, 0, 1)
        s["kv_cache_usage_perc"][r, during] = 0.12 + ramp * rng.uniform(0.85, 0.88)
        s["preemptions_per_s"][r, during] = ramp * rng.uniform(0.5, 2.0, during.sum())
        s["num_requests_waiting"][r, during] += ramp * rng.uniform(6, 12, during.sum())
        s["ttft_p99_s"][r, during] += ramp * rng.uniform(1.0, 3.0, during.sum())
        s["client_ttft_p99_s"][r, during] += ramp * rng.uniform(1.0, 3.0, during.sum())
    elif fault == "burst":
        factor = rng.uniform(4, 6)
        s["requests_per_s"][:, during] *= factor
        s["num_requests_waiting"][:, during] += rng.uniform(3, 8, (num_replicas, during.sum()))
        s["ttft_p99_s"][:, during] += rng.uniform(0.3, 1.0, (num_replicas, during.sum()))
        s["client_ttft_p99_s"][:, during] += rng.uniform(0.3, 1.0, (num_replicas, during.sum()))
    return MetricSnapshot(t, s)


def reference_diagnose(snap: MetricSnapshot) -> Diagnosis:
    """The package's diagnosis: the first rule that matches, most specific first (see lab 6)."""
    s, t = snap.series, snap.time_s
    down = s["up"] < 0.5
    if down.any():
        r = int(np.argmax(down.sum(axis=1)))
        start = float(t[np.argmax(down[r])])
        refused = np.nanmean(s["client_error_ratio"][r, down[r]]) > 0.95
        return Diagnosis("replica_down" if refused else "paused", r, start)
    errors = s["client_error_ratio"]
    if np.nanmax(errors) > 0.2:
        r = int(np.argmax(np.nanmean(errors, axis=1)))
        return Diagnosis("network_drop", r, float(t[np.argmax(errors[r] > 0.2)]))
    kv = s["kv_cache_usage_perc"]
    if np.nanmax(kv) > 0.8:
        r = int(np.argmax(np.nanmax(kv, axis=1)))
        return Diagnosis("kv_exhaustion", r, float(t[np.argmax(kv[r] > 0.8)]))
    rate = np.nansum(s["requests_per_s"], axis=0)
    baseline = np.median(rate)
    if rate.max() > 2 * baseline:
        return Diagnosis("burst", None, float(t[np.argmax(rate > 2 * baseline)]))
    gap = s["client_ttft_p99_s"] - s["ttft_p99_s"]
    r = int(np.argmax(np.nanmax(gap, axis=1)))
    return Diagnosis("network_latency", r, float(t[np.argmax(gap[r] > 0.5)]))
