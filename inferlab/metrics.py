"""Serving metrics: the one definition of TTFT, TPOT, ITL, E2E, throughput and goodput.

Every lab, benchmark, simulator and plot computes these through this module.
Definitions follow `vllm bench serve`:

- TTFT  time to first token = first_token_time_s - arrival_time_s
- E2E   end-to-end latency  = finish_time_s - arrival_time_s
- TPOT  time per output token, per request = (E2E - TTFT) / (num_output_tokens - 1);
        undefined (NaN) for a request with a single output token
- ITL   inter-token latency: every gap between consecutive tokens, pooled over requests
- goodput: completed requests per second that meet *every* SLO given
- SLO attainment: the fraction of requests that meet every SLO given

Data flows in as `RequestRecord`s (engine, simulator or load generator) and out as a
`MetricsSummary` (tables, plots, JSON).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import numpy as np


@dataclass(frozen=True)
class RequestRecord:
    """What happened to one request, in seconds on one clock.

    Args:
        arrival_time_s: when the request arrived.
        first_token_time_s: when its first output token was produced.
        finish_time_s: when its last output token was produced.
        num_prompt_tokens: prompt length in tokens.
        num_output_tokens: number of generated tokens (>= 1 for a completed request).
        token_times_s: optional times of every output token (first included), for ITL.
    """

    arrival_time_s: float
    first_token_time_s: float
    finish_time_s: float
    num_prompt_tokens: int
    num_output_tokens: int
    token_times_s: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.num_output_tokens < 1:
            raise ValueError(f"num_output_tokens must be >= 1, got {self.num_output_tokens}")
        if not self.arrival_time_s <= self.first_token_time_s <= self.finish_time_s:
            raise ValueError(
                "times must satisfy arrival_time_s <= first_token_time_s <= finish_time_s, got "
                f"{self.arrival_time_s}, {self.first_token_time_s}, {self.finish_time_s}"
            )


@dataclass(frozen=True)
class SLO:
    """Per-request service-level objectives in seconds; None means not constrained."""

    ttft_s: float | None = None
    tpot_s: float | None = None
    e2e_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("ttft_s", "tpot_s", "e2e_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"SLO {name} must be > 0 seconds, got {value}")


def ttft_s(record: RequestRecord) -> float:
    """Time to first token of one request, in seconds."""
    return record.first_token_time_s - record.arrival_time_s


def e2e_s(record: RequestRecord) -> float:
    """End-to-end latency of one request, in seconds."""
    return record.finish_time_s - record.arrival_time_s


def tpot_s(record: RequestRecord) -> float:
    """Time per output token after the first: (E2E - TTFT) / (num_output_tokens - 1).

    Returns NaN for a request with one output token (no decode step to time).
    """
    if record.num_output_tokens <= 1:
        return math.nan
    return (e2e_s(record) - ttft_s(record)) / (record.num_output_tokens - 1)


def itl_s(records: Iterable[RequestRecord]) -> np.ndarray:
    """All inter-token gaps pooled over requests (seconds); needs `token_times_s`."""
    gaps = [np.diff(np.asarray(r.token_times_s, dtype=float)) for r in records if len(r.token_times_s) > 1]
    return np.concatenate(gaps) if gaps else np.empty(0)


def meets_slo(record: RequestRecord, slo: SLO) -> bool:
    """True when the request meets every SLO set (a NaN TPOT meets any TPOT SLO)."""
    if slo.ttft_s is not None and ttft_s(record) > slo.ttft_s:
        return False
    if slo.tpot_s is not None:
        tpot = tpot_s(record)
        if not math.isnan(tpot) and tpot > slo.tpot_s:
            return False
    if slo.e2e_s is not None and e2e_s(record) > slo.e2e_s:
        return False
    return True


def slo_attainment(records: Sequence[RequestRecord], slo: SLO) -> float:
    """Fraction of requests meeting every SLO (0.0 for no requests)."""
    if not records:
        return 0.0
    return sum(meets_slo(r, slo) for r in records) / len(records)


def duration_s(records: Sequence[RequestRecord]) -> float:
    """Benchmark duration: first arrival to last finish."""
    if not records:
        return 0.0
    return max(r.finish_time_s for r in records) - min(r.arrival_time_s for r in records)


def goodput_rps(records: Sequence[RequestRecord], slo: SLO, duration: float | None = None) -> float:
    """Requests per second that meet every SLO, over `duration` (default: `duration_s`)."""
    span = duration_s(records) if duration is None else duration
    if span <= 0:
        return 0.0
    return sum(meets_slo(r, slo) for r in records) / span


def _percentiles(values: np.ndarray, qs: Sequence[float]) -> dict[str, float]:
    values = values[~np.isnan(values)] if values.size else values
    out: dict[str, float] = {"mean": float(values.mean()) if values.size else math.nan}
    for q in qs:
        out[f"p{q:g}"] = float(np.percentile(values, q)) if values.size else math.nan
    return out


@dataclass(frozen=True)
class MetricsSummary:
    """Aggregate metrics of a run; latency dicts hold mean and percentiles (p50, p90, p95, p99)."""

    num_requests: int
    duration_s: float
    request_throughput_rps: float
    output_throughput_tok_s: float
    total_throughput_tok_s: float
    ttft_s: dict[str, float]
    tpot_s: dict[str, float]
    itl_s: dict[str, float]
    e2e_s: dict[str, float]
    goodput_rps: float | None = None
    slo_attainment: float | None = None
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(
    records: Sequence[RequestRecord],
    slo: SLO | None = None,
    duration: float | None = None,
    percentiles: Sequence[float] = (50, 90, 95, 99),
) -> MetricsSummary:
    """Aggregate per-request records into throughput, latency percentiles and goodput.

    Args:
        records: completed requests.
        slo: if given, goodput and SLO attainment are computed against it.
        duration: benchmark duration in seconds (default: first arrival to last finish).
        percentiles: which percentiles to report for each latency.
    """
    span = duration_s(records) if duration is None else duration
    num_out = sum(r.num_output_tokens for r in records)
    num_in = sum(r.num_prompt_tokens for r in records)
    per_s = (lambda x: x / span) if span > 0 else (lambda x: 0.0)
    return MetricsSummary(
        num_requests=len(records),
        duration_s=span,
        request_throughput_rps=per_s(len(records)),
        output_throughput_tok_s=per_s(num_out),
        total_throughput_tok_s=per_s(num_out + num_in),
        ttft_s=_percentiles(np.array([ttft_s(r) for r in records], dtype=float), percentiles),
        tpot_s=_percentiles(np.array([tpot_s(r) for r in records], dtype=float), percentiles),
        itl_s=_percentiles(itl_s(records), percentiles),
        e2e_s=_percentiles(np.array([e2e_s(r) for r in records], dtype=float), percentiles),
        goodput_rps=goodput_rps(records, slo, span) if slo is not None else None,
        slo_attainment=slo_attainment(records, slo) if slo is not None else None,
    )


# ---- rate sweeps: one row per offered request rate -------------------------------------------

def max_rate_meeting_slo(rates_rps: Sequence[float], attainments: Sequence[float],
                         min_attainment: float = 0.9) -> float:
    """The highest swept rate up to which every rate meets the SLO for >= `min_attainment` of requests.

    Rates are taken in increasing order; the first rate below `min_attainment` ends the search
    (a lucky point past the collapse does not count). 0.0 when even the lowest rate misses.
    """
    if len(rates_rps) != len(attainments):
        raise ValueError(f"{len(rates_rps)} rates but {len(attainments)} attainments")
    if not 0 <= min_attainment <= 1:
        raise ValueError(f"min_attainment must be in [0, 1], got {min_attainment}")
    best = 0.0
    for rate, attained in sorted(zip(rates_rps, attainments)):
        if not attained >= min_attainment:
            break
        best = float(rate)
    return best


def knee_index(throughputs: Sequence[float], latencies_s: Sequence[float]) -> int:
    """Index of the knee of a latency/throughput curve (points in increasing load order).

    Kneedle (Satopaa et al., 2011) for a rising, convex curve: scale throughput and latency each
    to [0, 1] by their min and max over the sweep, and take the point furthest below the diagonal,
    argmax(x_scaled - y_scaled) (first one on ties): past it, latency grows faster than
    throughput. Needs >= 3 points with some spread in both.
    """
    x = np.asarray(throughputs, dtype=float)
    y = np.asarray(latencies_s, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or x.size < 3:
        raise ValueError("need two equal-length sequences of >= 3 points")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("throughputs and latencies must be finite")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        raise ValueError("throughput and latency must each vary over the sweep")
    xs = (x - x.min()) / np.ptp(x)
    ys = (y - y.min()) / np.ptp(y)
    return int(np.argmax(xs - ys))
