"""Step-time models: how long one engine iteration takes, for the simulator's replicas.

Floor 2 of inferlab, between `inferlab.costmodel` (GPU and model specs) or a profile
of the real engine (`inferlab profile`) and `sim/replica.py`, which asks it for the
duration of every iteration it simulates.

One iteration (one "step" of continuous batching) is described by three numbers, the
same three the real engine logs per step:

- `num_prefill_tokens`  prompt tokens processed this step (chunked prefill),
- `num_decode_seqs`     sequences generating one token each this step,
- `num_kv_tokens`       tokens held in the KV cache by the running sequences.

A `StepTimeModel` is `overhead_s + max(roof_1, roof_2, ...)`, each roof linear in
those three numbers. One roof is the least-squares fit to a profile (calibrated
model); two roofs, memory and compute, are the roofline of a model on a GPU.

Decode-only stretches between events are fast-forwarded: during K decode steps of D
sequences the KV cache grows by D tokens per step, so every roof is linear in the
step index and the total of K steps has a closed form (`decode_run_s`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np


@dataclass(frozen=True)
class Roof:
    """One linear term: const_s + s_per_prefill_token*P + s_per_decode_seq*D + s_per_kv_token*KV."""

    const_s: float = 0.0
    s_per_prefill_token: float = 0.0
    s_per_decode_seq: float = 0.0
    s_per_kv_token: float = 0.0

    def __call__(self, num_prefill_tokens: float, num_decode_seqs: float, num_kv_tokens: float) -> float:
        return (self.const_s + self.s_per_prefill_token * num_prefill_tokens
                + self.s_per_decode_seq * num_decode_seqs + self.s_per_kv_token * num_kv_tokens)


def _sum_line(a: float, b: float, i0: int, i1: int) -> float:
    """sum_{i=i0}^{i1-1} (a + b*i)."""
    n = i1 - i0
    return n * a + b * (i0 + i1 - 1) * n / 2.0 if n > 0 else 0.0


def _sum_max2(a1: float, b1: float, a2: float, b2: float, n: int) -> float:
    """sum_{i=0}^{n-1} max(a1 + b1*i, a2 + b2*i): the two lines cross at most once."""
    if n <= 0:
        return 0.0
    first, last = a1 - a2, (a1 + b1 * (n - 1)) - (a2 + b2 * (n - 1))
    if first >= 0 and last >= 0:
        return _sum_line(a1, b1, 0, n)
    if first <= 0 and last <= 0:
        return _sum_line(a2, b2, 0, n)
    cut = min(n, max(0, math.ceil(-first / (b1 - b2))))  # [0, cut) keeps the sign of `first`
    top, bottom = ((a1, b1), (a2, b2)) if first > 0 else ((a2, b2), (a1, b1))
    return _sum_line(*top, 0, cut) + _sum_line(*bottom, cut, n)


def _first_reaching(a: float, b: float, budget: float) -> int:
    """Smallest K >= 1 with sum_{i<K} (a + b*i) >= budget, in closed form (a guess: callers check it)."""
    if b <= 1e-18:
        return max(1, math.ceil(budget / a - 1e-12)) if a > 0 else 1
    q = a - b / 2
    return max(1, math.ceil((-q + math.sqrt(q * q + 2 * b * budget)) / b - 1e-9))


@dataclass(frozen=True)
class DecodePadding:
    """How an engine's decode attention pads: rows sorted by context, `group_size` per call,
    each read up to its group's longest context rounded up to `block_size` (inferlab's CPU
    runner: `inferlab.engine.runner.decode_kv_slots`). A model carrying one prices the K/V
    term on those slots instead of on the tokens held."""

    group_size: int
    block_size: int

    def __post_init__(self) -> None:
        if self.group_size < 1 or self.block_size < 1:
            raise ValueError(f"DecodePadding needs group_size and block_size >= 1, got {self}")


@dataclass(frozen=True)
class StepTimeModel:
    """Step time = overhead_s + max over roofs; see the module docstring.

    Args:
        roofs: one or two `Roof`s (one: calibrated linear model; two: memory and compute).
        overhead_s: fixed per-step cost (scheduling, sampling, launches), seconds.
        max_kv_tokens: KV cache capacity of one replica in tokens (`num_kv_tokens`, a step input, is what is held).
        name: where the model comes from (for tables).
        decode_padding: when set, the K/V input of every roof is the K/V slots the decode
            attention reads with this padding (the replica computes it); when None, the
            tokens held in the cache (a paged-attention kernel that reads no padding).
    """

    roofs: tuple[Roof, ...]
    overhead_s: float = 0.0
    max_kv_tokens: int = 100_000
    name: str = "linear"
    decode_padding: DecodePadding | None = None

    def __post_init__(self) -> None:
        if not self.roofs or len(self.roofs) > 2:
            raise ValueError(f"StepTimeModel needs 1 or 2 roofs, got {len(self.roofs)}")
        if self.overhead_s < 0:
            raise ValueError(f"StepTimeModel.overhead_s must be >= 0, got {self.overhead_s}")
        if self.max_kv_tokens < 1:
            raise ValueError(f"StepTimeModel.max_kv_tokens must be >= 1, got {self.max_kv_tokens}")
        if self.step_s(0, 1, 0) <= 0:
            raise ValueError("StepTimeModel: a one-sequence decode step must take > 0 s")

    def step_s(self, num_prefill_tokens: float, num_decode_seqs: float, num_kv_tokens: float) -> float:
        """Seconds for one iteration."""
        return self.overhead_s + max(r(num_prefill_tokens, num_decode_seqs, num_kv_tokens) for r in self.roofs)

    def _lines(self, num_decode_seqs: int, num_kv_tokens: float) -> list[tuple[float, float]]:
        # Step i of a decode run: each roof is a + b*i with the KV cache at kv0 + D*i.
        # (Roof(0, D, kv) written out: the simulator asks this millions of times per run.)
        return [(r.const_s + r.s_per_decode_seq * num_decode_seqs + r.s_per_kv_token * num_kv_tokens,
                 r.s_per_kv_token * num_decode_seqs) for r in self.roofs]

    def decode_run_s(self, num_decode_seqs: int, num_kv_tokens: float, num_steps: int) -> float:
        """Total seconds of `num_steps` decode steps of `num_decode_seqs` starting at `num_kv_tokens`."""
        lines = self._lines(num_decode_seqs, num_kv_tokens)
        total = self.overhead_s * num_steps
        if len(lines) == 1:
            return total + _sum_line(*lines[0], 0, num_steps)
        return total + _sum_max2(*lines[0], *lines[1], num_steps)

    def decode_steps_until(self, num_decode_seqs: int, num_kv_tokens: float, budget_s: float, max_steps: int) -> int:
        """Fewest decode steps (<= max_steps) whose total time reaches `budget_s` (max_steps if never)."""
        return self.decode_run_until(num_decode_seqs, num_kv_tokens, budget_s, max_steps)[0]

    def decode_run_until(self, num_decode_seqs: int, num_kv_tokens: float, budget_s: float,
                         max_steps: int) -> tuple[int, float]:
        """`decode_steps_until` and the `decode_run_s` of that many steps, in one call (the replica's
        fast-forward asks for both).

        Two roofs: a closed-form first guess (the per-step time is the larger of two lines that cross
        at most once), then stepped to the exact answer with `decode_run_s` itself, so the count is the
        same integer a search over `decode_run_s` would give (the run's time is increasing in steps).
        """
        if budget_s <= 0:
            num_steps = min(1, max_steps)
            return num_steps, self.decode_run_s(num_decode_seqs, num_kv_tokens, num_steps)
        if len(self.roofs) == 1:
            a, b = self._lines(num_decode_seqs, num_kv_tokens)[0]
            a += self.overhead_s
            # smallest K with K*a + b*K(K-1)/2 >= budget
            k = _first_reaching(a, b, budget_s)
            while k > 1 and _sum_line(a, b, 0, k - 1) >= budget_s:
                k -= 1
            while k < max_steps and _sum_line(a, b, 0, k) < budget_s:
                k += 1
            num_steps = min(k, max_steps)
            return num_steps, self.decode_run_s(num_decode_seqs, num_kv_tokens, num_steps)
        if max_steps <= 1:
            return max_steps, self.decode_run_s(num_decode_seqs, num_kv_tokens, max_steps)
        (a1, b1), (a2, b2) = self._lines(num_decode_seqs, num_kv_tokens)
        overhead = self.overhead_s
        first, last = a1 - a2, (a1 + b1 * (max_steps - 1)) - (a2 + b2 * (max_steps - 1))
        top, bottom = ((a1, b1), (a2, b2)) if first >= 0 else ((a2, b2), (a1, b1))
        if (first >= 0) == (last >= 0):  # one line on top all the way
            k = _first_reaching(top[0] + overhead, top[1], budget_s)
        else:  # [0, cut) on `top`, [cut, max_steps) on `bottom`
            cut = min(max_steps, max(0, math.ceil(-first / (b1 - b2))))
            before = overhead * cut + _sum_line(*top, 0, cut)
            if before >= budget_s:
                k = _first_reaching(top[0] + overhead, top[1], budget_s)
            else:
                k = cut + _first_reaching(bottom[0] + bottom[1] * cut + overhead, bottom[1], budget_s - before)
        k = min(max(k, 1), max_steps)
        run_k = None  # decode_run_s(k), once computed
        while k > 1:
            shorter = self.decode_run_s(num_decode_seqs, num_kv_tokens, k - 1)
            if shorter < budget_s:
                break
            k, run_k = k - 1, shorter
        while k < max_steps:
            if run_k is None:
                run_k = self.decode_run_s(num_decode_seqs, num_kv_tokens, k)
            if run_k >= budget_s:
                break
            k, run_k = k + 1, None
        if run_k is None:
            run_k = self.decode_run_s(num_decode_seqs, num_kv_tokens, k)
        return k, run_k

    @property
    def kv_field(self) -> str:
        """The profile/step-record field this model's K/V input comes from."""
        return kv_field(self.decode_padding)

    def scaled(self, factor: float) -> "StepTimeModel":
        """The same model on a host `factor` times slower (every step takes `factor` x as long)."""
        if not factor > 0:
            raise ValueError(f"StepTimeModel.scaled: factor must be > 0, got {factor}")
        roofs = tuple(Roof(r.const_s * factor, r.s_per_prefill_token * factor, r.s_per_decode_seq * factor,
                           r.s_per_kv_token * factor) for r in self.roofs)
        return replace(self, roofs=roofs, overhead_s=self.overhead_s * factor)

    def to_dict(self) -> dict[str, Any]:
        padding = None if self.decode_padding is None else vars(self.decode_padding)
        return {"name": self.name, "overhead_s": self.overhead_s, "max_kv_tokens": self.max_kv_tokens,
                "roofs": [vars(r) for r in self.roofs], "decode_padding": padding}


# ---------------------------------------------------------------- (a) calibrated on a profile

PROFILE_STEP_FIELDS = ("num_prefill_tokens", "num_decode_seqs", "num_kv_tokens", "step_time_s")


def kv_field(decode_padding: DecodePadding | None) -> str:
    """Which profile field is the K/V input: slots read when the engine pads, else tokens held."""
    return "num_kv_tokens" if decode_padding is None else "num_decode_kv_slots"


def fit_linear(steps: Sequence[dict[str, float]], max_kv_tokens: int, name: str = "calibrated",
               decode_padding: DecodePadding | None = None) -> StepTimeModel:
    """Least-squares fit of step_time_s = c + p*P + d*D + k*KV to per-step records.

    Args:
        steps: dicts with the `PROFILE_STEP_FIELDS` (one per engine iteration).
        max_kv_tokens: KV capacity of the profiled engine in tokens.
        decode_padding: the engine's decode padding; when given, KV is each record's
            `num_decode_kv_slots` (slots read, padding included) instead of `num_kv_tokens`.
            On inferlab's CPU engine this halves the error on online steps (tokens held
            under-predicted them by ~13% while over-predicting offline batches by ~4%).
    Coefficients that come out negative (noise) are clamped to 0 and the rest refit.
    """
    kv = kv_field(decode_padding)
    if len(steps) < 4:
        raise ValueError(f"profile needs >= 4 step records to fit 4 coefficients, got {len(steps)}")
    for i, row in enumerate(steps):
        for key in PROFILE_STEP_FIELDS + (kv,):
            if key not in row:
                raise ValueError(f"profile step {i}: missing field {key!r}")
        if not row["step_time_s"] > 0:
            raise ValueError(f"profile step {i}: field 'step_time_s' must be > 0, got {row['step_time_s']}")
    x = np.array([[1.0, r["num_prefill_tokens"], r["num_decode_seqs"], r[kv]] for r in steps])
    y = np.array([r["step_time_s"] for r in steps])
    active = [0, 1, 2, 3]
    coef = np.zeros(4)
    for _ in range(4):
        sol, *_ = np.linalg.lstsq(x[:, active], y, rcond=None)
        coef[:] = 0.0
        coef[active] = sol
        negative = [j for j in active if coef[j] < 0 and j != 0]
        if not negative:
            break
        active = [j for j in active if j not in negative]
    const = max(float(coef[0]), 1e-6)
    return StepTimeModel((Roof(const, float(coef[1]), float(coef[2]), float(coef[3])),),
                         max_kv_tokens=max_kv_tokens, name=name, decode_padding=decode_padding)


def load_profile(path: str | Path) -> StepTimeModel:
    """Read a JSON profile written by `inferlab profile` and fit the linear model.

    Format: {"max_kv_tokens": int, "steps": [{num_prefill_tokens, num_decode_seqs,
    num_kv_tokens, step_time_s[, num_decode_kv_slots]}, ...][, "decode_group_size": int,
    "block_size": int], ...}. With `decode_group_size` the fit prices decode padding
    (`DecodePadding`); older profiles without it fit on tokens held. Profiles written before the
    capacity was renamed carry it as a top-level "num_kv_tokens" (the name steps use for tokens
    held); they load as they are.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg})") from None
    if "max_kv_tokens" not in data and "num_kv_tokens" in data:  # the capacity's name before the rename
        data["max_kv_tokens"] = data.pop("num_kv_tokens")
    for key in ("max_kv_tokens", "steps"):
        if key not in data:
            raise ValueError(f"{path}: missing field {key!r} (the KV capacity in tokens)" if key == "max_kv_tokens"
                             else f"{path}: missing field {key!r}")
    padding = None
    if data.get("decode_group_size"):
        padding = DecodePadding(int(data["decode_group_size"]), int(data.get("block_size", 1)))
    return fit_linear(data["steps"], int(data["max_kv_tokens"]), name=f"calibrated:{path.name}",
                      decode_padding=padding)


# ---------------------------------------------------------------- (b) roofline from specs

def roofline_model(model_name: str, gpu_name: str, *, dtype: str = "bf16", efficiency: float | None = None,
                   overhead_s: float = 0.0, gpu_memory_utilization: float = 0.9) -> StepTimeModel:
    """Roofline step-time model of `model_name` on one `gpu_name` (TP1), from `inferlab.costmodel`.

    memory roof  = (weight bytes + KV bytes/token * KV) / (HBM bandwidth * eff)
    compute roof = (2 * matmul params * (P + D) + 4 * layers * heads * head_dim * KV) / (peak * eff)
    KV capacity  = (memory * gpu_memory_utilization - weight bytes) / KV bytes per token.
    `efficiency` defaults to the cost model's calibrated value (`default_efficiency()`).
    """
    from inferlab.costmodel.calibrate import default_efficiency
    from inferlab.costmodel.roofline import Layout, kv_bytes_per_token, weight_bytes_per_gpu
    from inferlab.costmodel.specs import get_gpu, get_model

    model, gpu = get_model(model_name), get_gpu(gpu_name)
    eff = default_efficiency() if efficiency is None else efficiency
    if not 0 < eff <= 1:
        raise ValueError(f"efficiency must be in (0, 1], got {eff}")
    if not 0 < gpu_memory_utilization <= 1:
        raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
    weight_bytes = weight_bytes_per_gpu(model, Layout(), dtype)
    kv_token_bytes = kv_bytes_per_token(model, dtype)
    bandwidth = gpu.hbm_bandwidth_bytes_per_s * eff
    peak = gpu.peak_flops(dtype) * eff
    matmul_params = model.num_layers * model.num_layer_params(model.num_experts_per_token) \
        + model.vocab_size * model.hidden_size
    attention_flops_per_kv = 4 * model.num_layers * model.num_heads * model.head_dim
    memory = Roof(const_s=weight_bytes / bandwidth, s_per_kv_token=kv_token_bytes / bandwidth)
    compute = Roof(s_per_prefill_token=2 * matmul_params / peak, s_per_decode_seq=2 * matmul_params / peak,
                   s_per_kv_token=attention_flops_per_kv / peak)
    num_kv = int((gpu.memory_bytes * gpu_memory_utilization - weight_bytes) // kv_token_bytes)
    if num_kv < 1:
        raise ValueError(f"{model.name} does not fit on one {gpu.name} (weights {weight_bytes / 1e9:.1f} GB)")
    return StepTimeModel((memory, compute), overhead_s=overhead_s, max_kv_tokens=num_kv,
                         name=f"roofline:{model.name}@{gpu.name}")
