"""Make the kit's synthetic traces, calibrated to the published Azure LLM inference 2023 statistics.

    python datasets/make_synthetic.py      # writes datasets/*.csv and datasets/manifest.json

Deterministic (fixed seeds). Each trace is in the Azure 2023 CSV format
(`TIMESTAMP,ContextTokens,GeneratedTokens`), so everything that reads a real Azure
trace reads these. Targets (Patel et al., "Splitwise", ISCA 2024; Azure Public Dataset,
AzureLLMInferenceTrace_{code,conv}.csv, one hour of 2023-11-16):

- code:         8,819 requests over 57 min, context p50 1,469 / p99 7,436 tokens,
                generated p50 13 / p99 251, per-minute peak/mean 4.2 (bursty)
- conversation: 19,366 requests over 58 min, context p50 1,020 / p99 4,142,
                generated p50 129 / p99 601, per-minute peak/mean 1.5 (smooth)

The per-minute counts are built to hit the request count and peak/mean exactly; lengths
are log-normal through the published p50 and p99.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from inferlab.traces import LengthDist, describe, minute_count_arrivals, save_azure_csv, synthesize

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class TraceTarget:
    name: str
    num_requests: int
    num_minutes: int
    peak_to_mean: float
    context: LengthDist
    generated: LengthDist
    burstiness: float  # gamma shape of gaps within a minute (1 = Poisson-like)
    num_bursts: int  # secondary bursts in the minute profile
    seed: int


TARGETS = [
    TraceTarget("azure_code_synth", 8819, 57, 4.2, LengthDist(1469, 7436, 1, 8192), LengthDist(13, 251, 1, 2048), 0.3, 4, 2023),
    TraceTarget("azure_conv_synth", 19366, 58, 1.5, LengthDist(1020, 4142, 1, 8192), LengthDist(129, 601, 1, 2048), 1.0, 0, 2024),
]


def minute_counts(target: TraceTarget, rng: np.random.Generator) -> np.ndarray:
    """Integer requests per minute summing to num_requests with max/mean = peak_to_mean."""
    m, n = target.num_minutes, target.num_requests
    shape = np.exp(np.convolve(rng.normal(0, 0.35, m + 4), np.ones(5) / 5, mode="valid"))[:m]
    for minute in rng.choice(m, target.num_bursts, replace=False):
        shape[minute] *= rng.uniform(1.5, 2.5)
    peak_minute = int(rng.integers(m // 4, 3 * m // 4))
    peak = round(target.peak_to_mean * n / m)
    rest = np.delete(shape, peak_minute)
    rest = rest / rest.sum() * (n - peak)
    counts = np.floor(rest).astype(int)
    counts[np.argsort(rest - counts)[::-1][: (n - peak) - counts.sum()]] += 1  # largest remainders
    counts = np.insert(counts, peak_minute, peak)
    assert counts.sum() == n and counts.max() == peak, "calibration failed"
    return counts


def make(target: TraceTarget, out_dir: Path = HERE) -> dict:
    rng = np.random.default_rng(target.seed)
    arrivals = minute_count_arrivals(minute_counts(target, rng), rng, target.burstiness)
    trace = synthesize(arrivals + 0.0, target.context, target.generated, rng)
    # keep absolute minute boundaries: synthesize() shifts to the first arrival, so shift back
    offset = float(arrivals[0])
    trace = [type(r)(r.arrival_time_s + offset, r.num_prompt_tokens, r.num_output_tokens) for r in trace]
    path = out_dir / f"{target.name}.csv"
    save_azure_csv(trace, path)
    stats = describe(trace)
    stats["duration_min"] = float(np.ceil(trace[-1].arrival_time_s / 60.0))
    return {
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "seed": target.seed,
        "generator": "datasets/make_synthetic.py",
        "target": {k: (asdict(v) if isinstance(v, LengthDist) else v) for k, v in asdict(target).items()},
        "achieved": {k: round(v, 3) for k, v in stats.items()},
    }


def main() -> int:
    manifest = {"source": __doc__.strip().splitlines()[0], "traces": [make(t) for t in TARGETS]}
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for entry in manifest["traces"]:
        print(entry["file"], entry["achieved"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
