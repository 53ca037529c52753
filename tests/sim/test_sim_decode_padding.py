"""Decode padding: the engine reports the K/V slots its decode attention reads, and the simulator's
replica computes the same count from its own bookkeeping; the calibrated fit prices it."""

from __future__ import annotations

import json
import random

import pytest
import torch

from inferlab.engine import EngineConfig, LLMEngine, SamplingParams
from inferlab.engine.runner import DECODE_GROUP_SIZE, decode_kv_slots
from inferlab.model import build_model
from inferlab.sim.replica import Replica, ReplicaConfig, SimRequest
from inferlab.sim.steptime import DecodePadding, Roof, StepTimeModel, fit_linear, load_profile


def test_decode_kv_slots_pads_each_sorted_group_to_its_longest() -> None:
    assert decode_kv_slots([], 8) == 0
    assert decode_kv_slots([5], 8) == 8
    assert decode_kv_slots([3, 17, 9], 8, group_size=2) == 2 * 16 + 1 * 24  # groups (3, 9) and (17)
    lens = list(range(1, 41))
    assert decode_kv_slots(lens, 1, group_size=32) == 32 * 32 + 8 * 40


@pytest.mark.parametrize("backend,group", [("gather", DECODE_GROUP_SIZE), ("native", 1)])
def test_engine_step_records_the_padded_slots(backend: str, group: int) -> None:
    if backend == "native":
        from inferlab.model import native

        if not native.available():
            pytest.skip(f"no native kernels: {native.unavailable_reason()}")
    torch.manual_seed(0)
    model = build_model("tiny")
    engine = LLMEngine(model, EngineConfig(num_kv_blocks=64, block_size=4, max_num_batched_tokens=64,
                                           attention_backend=backend))
    assert engine.runner.backend.decode_group_size == group
    prompts = [[1] * 5, [2] * 11]
    engine.generate(prompts, [SamplingParams(max_tokens=3, ignore_eos=True)] * 2)
    decode_steps = [s for s in engine.step_records if s.num_prefill_tokens == 0 and s.num_decode_seqs]
    # both prompts prefill in the first step; decode steps then read contexts (6, 12) and (7, 13)
    assert [s.num_decode_kv_slots for s in decode_steps] == [decode_kv_slots([6, 12], 4, group),
                                                            decode_kv_slots([7, 13], 4, group)]
    # gather: both rows padded to the longer context (2 x 12); the paged kernel: each its own blocks (8 + 12)
    assert decode_steps[0].num_decode_kv_slots == (2 * 12 if group > 1 else 8 + 12) != decode_steps[0].num_kv_tokens


def _padded_model(group: int, block: int) -> StepTimeModel:
    return StepTimeModel((Roof(1e-3, 1e-5, 1e-4, 1e-6),), max_kv_tokens=100_000,
                         decode_padding=DecodePadding(group, block))


@pytest.mark.parametrize("group,block", [(4, 8), (32, 1), (3, 5)])
def test_replica_kv_input_equals_the_engine_formula(group: int, block: int) -> None:
    rng = random.Random(group * 10 + block)
    replica = Replica(0, _padded_model(group, block), ReplicaConfig(max_num_seqs=64, max_num_batched_tokens=64),
                      0.0, lambda r, t: None)
    requests = [SimRequest(i, 0.0, rng.randint(1, 40), rng.randint(2, 30)) for i in range(20)]
    for request in requests:
        replica.add(request)
    for _ in range(60):
        if not (replica.waiting or replica.prefilling or replica.decoding):
            break
        if replica.waiting:
            replica._admit()
        if replica.prefilling:
            replica._mixed_step()
        # context of each decoding request = prompt + tokens produced so far
        step = replica.num_decode_steps
        lens = [r.num_prompt_tokens + 1 + step - (r.finish_step - r.num_output_tokens + 1)
                for _, _, r in replica.decoding]
        assert replica._kv_input() == decode_kv_slots(lens, block, group)
        if not replica.prefilling and replica.decoding:
            replica.advance(replica.now_s + 1e-9)  # one decode step


def test_scaled_model_is_uniformly_slower() -> None:
    model = _padded_model(32, 8)
    slow = model.scaled(1.25)
    for p, d, kv in [(0, 1, 0), (500, 3, 4000), (0, 64, 20_000)]:
        assert slow.step_s(p, d, kv) == pytest.approx(1.25 * model.step_s(p, d, kv))
    assert slow.decode_padding == model.decode_padding
    with pytest.raises(ValueError, match="factor"):
        model.scaled(0)


def test_fit_with_padding_uses_the_slots_read(tmp_path) -> None:
    truth = Roof(0.002, 1e-4, 5e-5, 2e-6)
    rng = random.Random(3)
    steps = []
    for _ in range(200):
        p, d, kv = rng.randint(0, 500), rng.randint(0, 64), rng.randint(0, 20_000)
        slots = kv + rng.randint(0, 5000)  # padding: more slots read than tokens held
        steps.append({"num_prefill_tokens": p, "num_decode_seqs": d, "num_kv_tokens": kv,
                      "num_decode_kv_slots": slots, "step_time_s": truth(p, d, slots)})
    padded = fit_linear(steps, 60_000, decode_padding=DecodePadding(DECODE_GROUP_SIZE, 8))
    plain = fit_linear(steps, 60_000)
    assert padded.roofs[0].s_per_kv_token == pytest.approx(truth.s_per_kv_token, rel=1e-6)
    # tokens held miss the padding: the plain fit explains the step times far worse
    def error(model: StepTimeModel, field: str) -> float:
        return sum(abs(model.step_s(s["num_prefill_tokens"], s["num_decode_seqs"], s[field]) - s["step_time_s"])
                   for s in steps)
    assert error(padded, "num_decode_kv_slots") < 1e-6 * len(steps)
    assert error(plain, "num_kv_tokens") > 1e-3 * len(steps)
    with pytest.raises(ValueError, match="num_decode_kv_slots"):
        fit_linear([{k: v for k, v in s.items() if k != "num_decode_kv_slots"} for s in steps], 60_000,
                   decode_padding=DecodePadding(32, 8))
    path = tmp_path / "profile.json"
    path.write_text(json.dumps({"max_kv_tokens": 60_000, "block_size": 8, "decode_group_size": 32, "steps": steps}))
    assert load_profile(path).decode_padding == DecodePadding(32, 8)
