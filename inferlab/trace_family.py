"""A family of unseen Azure-2023-shaped hours: traces a policy was not tuned on.

Floor 1 of inferlab (imports `traces` only). The two shipped traces (`datasets/azure_*_synth.csv`)
are one draw each of the published statistics (Azure LLM inference trace 2023, code and
conversation: requests per minute, per-minute peak/mean, in-minute burstiness, context and
generated-token percentiles; see `datasets/make_synthetic.py`). A policy tuned on those two draws
can be tuned to them. This module draws as many other hours as wanted from the same statistics:

- a per-minute profile: smooth log-normal noise (the shipped traces' recipe), then a random
  **rotation** (the peak lands anywhere in the hour), per-minute **jitter**, a **diurnal ramp**
  (the hour rises or falls by up to `max_ramp`x from start to end) and a few secondary bursts;
  the busiest minute is set to the kind's published peak/mean;
- arrivals inside each minute by normalised gamma gaps with a **burstiness** drawn from the
  kind's range (1 = Poisson-like, smaller = clustered);
- lengths from the kind's fitted log-normals (`LengthDist` through the published p50/p99);
- a **rate scale** multiplies the per-minute counts (1-20 in the benchmark).

Every trace is named by a `TraceSpec` (kind, seed, rate scale, minutes, split) and is a pure
function of it. Seeds of the two splits never meet: `split="tune"` draws from seeds
0..9_999, `split="eval"` from 1_000_000 + seed, so a policy tuned on the tune split has never
seen an evaluation hour. `evaluation_specs` lists the benchmark's grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from inferlab.traces import LengthDist, TraceError, TraceRequest, minute_count_arrivals, synthesize

Split = Literal["tune", "eval"]
EVAL_SEED_OFFSET = 1_000_000
MAX_TUNE_SEED = 9_999


@dataclass(frozen=True)
class TraceKind:
    """Published statistics of one Azure 2023 trace, and the ranges the family draws around them.

    Args:
        name: "bursty" (the code trace) or "smooth" (the conversation trace).
        requests_per_minute: mean arrival rate at rate scale 1.
        peak_to_mean: the busiest minute's count over the mean count.
        context, generated: fitted prompt and output length distributions (tokens).
        burstiness: (low, high) gamma shape of gaps inside a minute; 1 is Poisson-like.
        num_bursts: (low, high) secondary burst minutes per hour.
        jitter: standard deviation of the per-minute log-normal jitter.
        max_ramp: largest diurnal ramp: the end of the hour runs at up to this factor of its start
            (or its inverse).
    """

    name: str
    requests_per_minute: float
    peak_to_mean: float
    context: LengthDist
    generated: LengthDist
    burstiness: tuple[float, float]
    num_bursts: tuple[int, int]
    jitter: float = 0.15
    max_ramp: float = 2.0


KINDS: dict[str, TraceKind] = {
    # AzureLLMInferenceTrace_code: 8,819 requests in 57 min, peak/mean 4.2, context p50 1,469 / p99 7,436,
    # generated p50 13 / p99 251 (Patel et al., Splitwise, ISCA 2024; Azure Public Dataset).
    "bursty": TraceKind("bursty", 8819 / 57, 4.2, LengthDist(1469, 7436, 1, 8192), LengthDist(13, 251, 1, 2048),
                        burstiness=(0.15, 0.5), num_bursts=(2, 6)),
    # AzureLLMInferenceTrace_conv: 19,366 requests in 58 min, peak/mean 1.5, context p50 1,020 / p99 4,142,
    # generated p50 129 / p99 601.
    "smooth": TraceKind("smooth", 19366 / 58, 1.5, LengthDist(1020, 4142, 1, 8192), LengthDist(129, 601, 1, 2048),
                        burstiness=(0.7, 1.5), num_bursts=(0, 2)),
}


@dataclass(frozen=True)
class TraceSpec:
    """One member of the family. `seed` is the split's own index (0, 1, 2, ...)."""

    kind: str
    seed: int
    rate_scale: float = 1.0
    num_minutes: int = 60
    split: Split = "eval"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TraceError(f"TraceSpec.kind: unknown {self.kind!r}; known: {', '.join(KINDS)}")
        if self.split not in ("tune", "eval"):
            raise TraceError(f"TraceSpec.split must be 'tune' or 'eval', got {self.split!r}")
        if not 0 <= self.seed <= MAX_TUNE_SEED:
            raise TraceError(f"TraceSpec.seed must be in 0..{MAX_TUNE_SEED}, got {self.seed}")
        if not 0 < self.rate_scale <= 100:
            raise TraceError(f"TraceSpec.rate_scale must be in (0, 100], got {self.rate_scale}")
        if not 5 <= self.num_minutes <= 24 * 60:
            raise TraceError(f"TraceSpec.num_minutes must be in 5..1440, got {self.num_minutes}")

    @property
    def rng_seed(self) -> int:
        return self.seed + (EVAL_SEED_OFFSET if self.split == "eval" else 0)

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.split}{self.seed}-x{self.rate_scale:g}-{self.num_minutes}min"


def minute_profile(kind: TraceKind, num_minutes: int, rng: np.random.Generator) -> np.ndarray:
    """Relative per-minute load (mean 1): noise, rotation, jitter, ramp, bursts, the published peak/mean."""
    m = num_minutes
    shape = np.exp(np.convolve(rng.normal(0, 0.35, m + 4), np.ones(5) / 5, mode="valid"))[:m]
    shape = np.roll(shape, int(rng.integers(m)))  # rotation: the hour's shape starts anywhere
    shape *= np.exp(rng.normal(0, kind.jitter, m))  # per-minute jitter
    ramp = math.exp(rng.uniform(-1, 1) * math.log(kind.max_ramp))  # end/start ratio in [1/max, max]
    shape *= np.geomspace(1.0, ramp, m)  # diurnal ramp across the hour
    num_bursts = min(m, int(rng.integers(kind.num_bursts[0], kind.num_bursts[1] + 1)))  # short traces: fewer
    for minute in rng.choice(m, num_bursts, replace=False):
        shape[minute] *= rng.uniform(1.5, 2.5)
    shape /= shape.mean()
    peak_minute = int(np.argmax(shape))
    # the busiest minute at the published peak/mean, the rest renormalised to keep mean 1
    rest = np.delete(shape, peak_minute)
    rest *= (m - kind.peak_to_mean) / rest.sum()
    return np.insert(np.clip(rest, 0.05, None), peak_minute, kind.peak_to_mean)


def generate(spec: TraceSpec) -> list[TraceRequest]:
    """The trace `spec` names (arrival times from 0 s); deterministic in the spec."""
    kind = KINDS[spec.kind]
    rng = np.random.default_rng(spec.rng_seed)
    profile = minute_profile(kind, spec.num_minutes, rng)
    counts = rng.poisson(profile * kind.requests_per_minute * spec.rate_scale)
    burstiness = float(rng.uniform(*kind.burstiness))
    arrivals = minute_count_arrivals(counts, rng, burstiness)
    if len(arrivals) == 0:
        raise TraceError(f"{spec.name}: no requests drawn")
    trace = synthesize(arrivals, kind.context, kind.generated, rng)
    return trace


def evaluation_specs(quick: bool = False) -> list[TraceSpec]:
    """The benchmark's evaluation grid: kinds x rate scales 5/10/20 x 4 seeds (24 hours); quick: one
    10-minute trace per kind at rate scale 5 (a smoke test of the pipeline, not a verdict)."""
    if quick:
        return [TraceSpec(kind, 0, 5, num_minutes=10) for kind in KINDS]
    return [TraceSpec(kind, seed, scale) for kind in KINDS for scale in (5, 10, 20) for seed in range(4)]


def tuning_specs(num_seeds: int = 4) -> list[TraceSpec]:
    """Traces a policy may be tuned on (never in the evaluation grid)."""
    return [TraceSpec(kind, seed, scale, split="tune") for kind in KINDS for scale in (5, 10, 20) for seed in range(num_seeds)]
