"""Request traces: load public trace formats and generate synthetic ones.

A trace is a time-ordered list of `TraceRequest`s (arrival time, prompt and output
lengths). It feeds the engine, the load generator and the simulator alike.

Formats read:
- Azure LLM inference trace 2023 CSV: `TIMESTAMP,ContextTokens,GeneratedTokens`
- BurstGPT CSV: `Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type`
- Mooncake JSONL: one object per line with `timestamp` (ms), `input_length`, `output_length`

Generators: Poisson arrivals, gamma arrivals with a burstiness factor, replay of a
per-minute rate profile; lengths drawn from a log-normal fitted to a median and p99.
A malformed row raises `TraceError` naming the file, the line and the field.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np


class TraceError(ValueError):
    """A trace file or trace parameter is invalid; the message names file, line and field."""


@dataclass(frozen=True)
class TraceRequest:
    """One request of a trace: arrival time (s from trace start) and token counts.

    Optional, for routing and shaping: `block_hashes` (chained hashes of the prompt's full
    blocks, `inferlab.policies.route.prompt_block_hashes`), `session_key`, `tenant`.
    """

    arrival_time_s: float
    num_prompt_tokens: int
    num_output_tokens: int
    block_hashes: tuple[int, ...] = ()
    session_key: str | None = None
    tenant: str = "default"


def _fail(path: Path | str, line: int, field: str, detail: str) -> TraceError:
    return TraceError(f"{path}, line {line}: field {field!r}: {detail}")


def _parse_int(path: Path, line: int, field: str, text: str | None, minimum: int) -> int:
    try:
        value = int(str(text).strip())
    except (TypeError, ValueError):
        raise _fail(path, line, field, f"expected an integer, got {text!r}") from None
    if value < minimum:
        raise _fail(path, line, field, f"must be >= {minimum}, got {value}")
    return value


def _parse_timestamp(path: Path, line: int, field: str, text: str | None) -> float:
    """Seconds since the epoch from a number or an ISO-like date (7-digit fractions allowed)."""
    raw = str(text).strip() if text is not None else ""
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        head, _, frac = raw.partition(".")
        moment = datetime.fromisoformat(head)
        return moment.timestamp() + (float("0." + frac) if frac else 0.0)
    except ValueError:
        raise _fail(path, line, field, f"expected a timestamp, got {raw!r}") from None


def _finish(path: Path, rows: list[tuple[int, float, int, int]], sort: bool, time_field: str) -> list[TraceRequest]:
    if not rows:
        raise TraceError(f"{path}: no requests in trace")
    if sort:
        rows.sort(key=lambda row: row[1])
    else:
        for (_, prev, _, _), (line, now, _, _) in zip(rows, rows[1:]):
            if now < prev:
                raise _fail(path, line, time_field, f"timestamps go backwards ({now} < {prev}); pass sort=True to sort")
    start = rows[0][1]
    return [TraceRequest(t - start, p, o) for _, t, p, o in rows]


def _read_csv(path: Path, columns: Sequence[str]) -> Iterable[tuple[int, dict[str, str]]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise _fail(path, 1, missing[0], f"missing column; header is {reader.fieldnames}")
        for row in reader:
            yield reader.line_num, row


def load_azure_csv(path: str | Path, sort: bool = False) -> list[TraceRequest]:
    """Load an Azure LLM inference trace CSV (`TIMESTAMP,ContextTokens,GeneratedTokens`)."""
    path = Path(path)
    rows = [
        (
            line,
            _parse_timestamp(path, line, "TIMESTAMP", row["TIMESTAMP"]),
            _parse_int(path, line, "ContextTokens", row["ContextTokens"], 1),
            _parse_int(path, line, "GeneratedTokens", row["GeneratedTokens"], 1),
        )
        for line, row in _read_csv(path, ("TIMESTAMP", "ContextTokens", "GeneratedTokens"))
    ]
    return _finish(path, rows, sort, "TIMESTAMP")


def load_burstgpt_csv(path: str | Path, sort: bool = False) -> list[TraceRequest]:
    """Load a BurstGPT CSV; failed requests (0 response tokens) are skipped."""
    path = Path(path)
    rows = []
    for line, row in _read_csv(path, ("Timestamp", "Request tokens", "Response tokens")):
        output = _parse_int(path, line, "Response tokens", row["Response tokens"], 0)
        if output == 0:
            continue
        rows.append(
            (
                line,
                _parse_timestamp(path, line, "Timestamp", row["Timestamp"]),
                _parse_int(path, line, "Request tokens", row["Request tokens"], 1),
                output,
            )
        )
    return _finish(path, rows, sort, "Timestamp")


def load_mooncake_jsonl(path: str | Path, sort: bool = False) -> list[TraceRequest]:
    """Load a Mooncake JSONL trace (`timestamp` in ms, `input_length`, `output_length`)."""
    path = Path(path)
    rows = []
    with open(path) as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as err:
                raise _fail(path, line, "<json>", f"not valid JSON ({err.msg})") from None
            for key in ("timestamp", "input_length", "output_length"):
                if key not in obj:
                    raise _fail(path, line, key, "missing")
            ms = _parse_timestamp(path, line, "timestamp", obj["timestamp"])
            rows.append(
                (
                    line,
                    ms / 1000.0,
                    _parse_int(path, line, "input_length", obj["input_length"], 1),
                    _parse_int(path, line, "output_length", obj["output_length"], 1),
                )
            )
    return _finish(path, rows, sort, "timestamp")


def load_trace(path: str | Path, sort: bool = False) -> list[TraceRequest]:
    """Load a trace, picking the format from the extension and the CSV header."""
    path = Path(path)
    if path.suffix in (".jsonl", ".json"):
        return load_mooncake_jsonl(path, sort)
    with open(path, newline="") as handle:
        header = handle.readline()
    if "TIMESTAMP" in header:
        return load_azure_csv(path, sort)
    if "Request tokens" in header:
        return load_burstgpt_csv(path, sort)
    raise TraceError(f"{path}, line 1: unknown trace format; header is {header.strip()!r}")


def save_azure_csv(trace: Sequence[TraceRequest], path: str | Path, start: str = "2023-11-16 18:00:00") -> None:
    """Write a trace in the Azure 2023 CSV format (timestamps from `start`)."""
    origin = datetime.fromisoformat(start)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["TIMESTAMP", "ContextTokens", "GeneratedTokens"])
        for req in trace:
            moment = datetime.fromtimestamp(origin.timestamp() + req.arrival_time_s)
            writer.writerow([moment.strftime("%Y-%m-%d %H:%M:%S.%f") + "0", req.num_prompt_tokens, req.num_output_tokens])


# ---------------------------------------------------------------- synthetic traces


@dataclass(frozen=True)
class LengthDist:
    """Log-normal token-length distribution given by its median and 99th percentile, clipped."""

    p50: float
    p99: float
    min_tokens: int = 1
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.p50 < self.p99:
            raise TraceError(f"LengthDist needs 0 < p50 < p99, got p50={self.p50}, p99={self.p99}")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        sigma = math.log(self.p99 / self.p50) / 2.3263478740408408  # z(0.99)
        values = np.rint(rng.lognormal(math.log(self.p50), sigma, n)).astype(int)
        return np.clip(values, self.min_tokens, self.max_tokens or np.iinfo(np.int64).max)


def poisson_arrivals(rate_rps: float, num_requests: int, rng: np.random.Generator) -> np.ndarray:
    """Arrival times (s) of a Poisson process: exponential gaps of mean 1/rate."""
    if rate_rps <= 0:
        raise TraceError(f"rate_rps must be > 0, got {rate_rps}")
    return np.cumsum(rng.exponential(1.0 / rate_rps, num_requests))


def gamma_arrivals(rate_rps: float, num_requests: int, burstiness: float, rng: np.random.Generator) -> np.ndarray:
    """Arrival times with gamma gaps: burstiness 1 is Poisson, < 1 is burstier (CV = 1/sqrt(b))."""
    if rate_rps <= 0 or burstiness <= 0:
        raise TraceError(f"rate_rps and burstiness must be > 0, got {rate_rps}, {burstiness}")
    return np.cumsum(rng.gamma(burstiness, 1.0 / (rate_rps * burstiness), num_requests))


def profile_arrivals(rates_per_minute: Sequence[float], rng: np.random.Generator, burstiness: float = 1.0) -> np.ndarray:
    """Replay a per-minute rate profile: a Poisson count per minute at its rate (requests/min)."""
    for minute, per_min in enumerate(rates_per_minute):
        if per_min < 0:
            raise TraceError(f"rates_per_minute[{minute}] must be >= 0, got {per_min}")
    return minute_count_arrivals(rng.poisson(np.asarray(rates_per_minute, dtype=float)), rng, burstiness)


def minute_count_arrivals(counts_per_minute: Sequence[int], rng: np.random.Generator, burstiness: float = 1.0) -> np.ndarray:
    """Exactly `counts_per_minute[m]` arrivals in minute m, spaced by normalised gamma gaps.

    burstiness 1 spreads them like a Poisson process conditioned on its count; < 1 clusters them.
    """
    times: list[np.ndarray] = []
    for minute, count in enumerate(counts_per_minute):
        if count < 0:
            raise TraceError(f"counts_per_minute[{minute}] must be >= 0, got {count}")
        if count:
            gaps = rng.gamma(burstiness, 1.0 / burstiness, int(count) + 1)
            cuts = np.cumsum(gaps)[:-1] / gaps.sum()  # `count` points spread over the minute
            times.append(60.0 * (minute + cuts))
    return np.sort(np.concatenate(times)) if times else np.empty(0)


def synthesize(
    arrivals_s: np.ndarray, prompt: LengthDist, output: LengthDist, rng: np.random.Generator
) -> list[TraceRequest]:
    """Attach sampled prompt/output lengths to arrival times."""
    n = len(arrivals_s)
    prompts, outputs = prompt.sample(rng, n), output.sample(rng, n)
    start = float(arrivals_s[0]) if n else 0.0
    return [TraceRequest(float(t) - start, int(p), int(o)) for t, p, o in zip(arrivals_s, prompts, outputs)]


def scale_rate(trace: Sequence[TraceRequest], rate_scale: float) -> list[TraceRequest]:
    """Compress (>1) or stretch (<1) arrival times to scale the request rate."""
    if rate_scale <= 0:
        raise TraceError(f"rate_scale must be > 0, got {rate_scale}")
    return [TraceRequest(r.arrival_time_s / rate_scale, r.num_prompt_tokens, r.num_output_tokens) for r in trace]


def fit_lengths(trace: Sequence[TraceRequest], max_prompt_tokens: int, max_output_tokens: int) -> list[TraceRequest]:
    """Scale token lengths so they fit a small model's context, keeping their shape."""
    top_p = max(r.num_prompt_tokens for r in trace)
    top_o = max(r.num_output_tokens for r in trace)
    sp, so = min(1.0, max_prompt_tokens / top_p), min(1.0, max_output_tokens / top_o)
    return [
        TraceRequest(r.arrival_time_s, max(1, round(r.num_prompt_tokens * sp)), max(1, round(r.num_output_tokens * so)))
        for r in trace
    ]


def per_minute_counts(trace: Sequence[TraceRequest]) -> np.ndarray:
    """Requests per minute (used for peak/mean burstiness)."""
    minutes = np.floor(np.array([r.arrival_time_s for r in trace]) / 60.0).astype(int)
    return np.bincount(minutes)


def describe(trace: Sequence[TraceRequest]) -> dict[str, float]:
    """Summary statistics a trace is calibrated against."""
    prompts = np.array([r.num_prompt_tokens for r in trace])
    outputs = np.array([r.num_output_tokens for r in trace])
    counts = per_minute_counts(trace)
    return {
        "num_requests": len(trace),
        "duration_min": trace[-1].arrival_time_s / 60.0,
        "context_p50": float(np.percentile(prompts, 50)),
        "context_p99": float(np.percentile(prompts, 99)),
        "generated_p50": float(np.percentile(outputs, 50)),
        "generated_p99": float(np.percentile(outputs, 99)),
        "peak_to_mean_per_minute": float(counts.max() / counts.mean()),
    }


TraceLoader = Callable[[str | Path], list[TraceRequest]]
