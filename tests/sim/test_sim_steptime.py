"""Step-time models: closed-form decode runs agree with step-by-step sums; fit and roofline sanity."""

from __future__ import annotations

import json
import random

import pytest

from inferlab.sim.steptime import Roof, StepTimeModel, fit_linear, load_profile, roofline_model


@pytest.fixture(scope="module")
def roofline() -> StepTimeModel:
    return roofline_model("llama-2-7b", "h100")


def test_decode_run_matches_step_sum(roofline: StepTimeModel) -> None:
    rng = random.Random(0)
    for model in (roofline, StepTimeModel((Roof(0.01, 1e-5, 2e-4, 3e-7),), overhead_s=0.002)):
        for _ in range(200):
            d, kv, k = rng.randint(1, 400), rng.randint(0, 100_000), rng.randint(1, 300)
            exact = sum(model.step_s(0, d, kv + d * i) for i in range(k))
            assert model.decode_run_s(d, kv, k) == pytest.approx(exact, rel=1e-9)


def test_decode_steps_until_is_the_first_step_reaching_the_budget(roofline: StepTimeModel) -> None:
    rng = random.Random(1)
    for _ in range(200):
        d, kv, k = rng.randint(1, 400), rng.randint(0, 100_000), rng.randint(1, 300)
        budget = rng.random() * roofline.decode_run_s(d, kv, k) * 1.1
        n = roofline.decode_steps_until(d, kv, budget, k)
        assert 1 <= n <= k
        assert n == k or roofline.decode_run_s(d, kv, n) >= budget
        assert n == 1 or roofline.decode_run_s(d, kv, n - 1) < budget


def _search_steps_until(model: StepTimeModel, d: int, kv: float, budget: float, max_steps: int) -> int:
    """The definition, by bisection over decode_run_s: fewest steps reaching the budget, else max_steps."""
    if budget <= 0:
        return min(1, max_steps)
    lo, hi = 1, max_steps
    if model.decode_run_s(d, kv, hi) < budget:
        return max_steps
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if model.decode_run_s(d, kv, mid) >= budget else (mid + 1, hi)
    return lo


def test_decode_run_until_matches_a_search_when_the_roofs_cross(roofline: StepTimeModel) -> None:
    """The closed-form guess plus exact steps gives the bisection's count, also when the two roofs
    swap places inside the run (one roof starts higher, the other grows faster), and the seconds
    returned are decode_run_s of that count."""
    crossing = StepTimeModel((Roof(0.02, 1e-5, 1e-4, 1e-8), Roof(0.001, 1e-5, 1e-5, 2e-6)), overhead_s=0.001)
    rng = random.Random(2)
    num_crossing = 0
    for model in (roofline, crossing):
        for _ in range(400):
            d, kv, k = rng.randint(1, 400), rng.randint(0, 20_000), rng.randint(0, 400)
            budget = rng.choice([0.0, -1.0] + [rng.random() * model.decode_run_s(d, kv, max(k, 1)) * 1.2] * 4)
            n, seconds = model.decode_run_until(d, kv, budget, k)
            assert n == _search_steps_until(model, d, kv, budget, k) == model.decode_steps_until(d, kv, budget, k)
            assert seconds == model.decode_run_s(d, kv, n)
            (a1, b1), (a2, b2) = model._lines(d, kv)
            num_crossing += k > 1 and (a1 > a2) != (a1 + b1 * (k - 1) > a2 + b2 * (k - 1))
    assert num_crossing >= 100, num_crossing  # the case the guess splits in two is exercised


def test_roofline_regimes(roofline: StepTimeModel) -> None:
    # batch-1 decode is memory bound: weights (13.5 GB) over derated HBM bandwidth, a few ms
    assert 0.004 < roofline.step_s(0, 1, 0) < 0.02
    # prefill is compute bound: 4x the tokens costs ~4x
    assert roofline.step_s(8192, 0, 0) == pytest.approx(4 * roofline.step_s(2048, 0, 0), rel=0.01)
    # KV capacity of a 7B model on an 80 GB GPU: ~100k tokens of 0.5 MB
    assert 80_000 < roofline.max_kv_tokens < 140_000


def test_fit_linear_recovers_coefficients(tmp_path) -> None:
    truth = Roof(0.004, 2e-5, 1e-4, 5e-8)
    rng = random.Random(2)
    steps = []
    for _ in range(100):
        p, d, kv = rng.randint(0, 2000), rng.randint(0, 64), rng.randint(0, 50_000)
        steps.append({"num_prefill_tokens": p, "num_decode_seqs": d, "num_kv_tokens": kv,
                      "step_time_s": truth(p, d, kv) * (1 + rng.uniform(-0.01, 0.01))})
    model = fit_linear(steps, max_kv_tokens=60_000)
    assert model.step_s(1000, 32, 20_000) == pytest.approx(truth(1000, 32, 20_000), rel=0.02)
    path = tmp_path / "profile.json"
    path.write_text(json.dumps({"max_kv_tokens": 60_000, "steps": steps}))
    assert load_profile(path).max_kv_tokens == 60_000
    path.write_text(json.dumps({"num_kv_tokens": 50_000, "steps": steps}))  # written before the rename
    assert load_profile(path).max_kv_tokens == 50_000


def test_bad_profile_names_the_field(tmp_path) -> None:
    steps = [{"num_prefill_tokens": 1, "num_decode_seqs": 1, "num_kv_tokens": 1}] * 5
    with pytest.raises(ValueError, match="step_time_s"):
        fit_linear(steps, 100)
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"steps": []}))
    with pytest.raises(ValueError, match="max_kv_tokens"):
        load_profile(path)
    with pytest.raises(ValueError, match="overhead_s"):
        StepTimeModel((Roof(0.01),), overhead_s=-1)
