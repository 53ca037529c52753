"""`inferlab profile` and `inferlab bench sim-fidelity` run end to end on the real engine (small sizes)."""

from __future__ import annotations

import json

import pytest

from inferlab import profile
from inferlab.bench import sim_fidelity
from inferlab.sim.steptime import DecodePadding, load_profile


def test_profile_writes_a_padded_profile(tmp_path, capsys) -> None:
    out = tmp_path / "tiny.json"
    assert profile.main(["--out", str(out), "--batch-sizes", "1,8", "--online-rates", "100",
                         "--max-prompt-tokens", "64", "--max-output-tokens", "16"]) == 0
    assert profile.main(["--out", str(out), "--online-rates", "0"]) == 2
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["num_steps"] > 20 and summary["r2"] > 0.5
    data = json.loads(out.read_text())
    assert all("num_decode_kv_slots" in s for s in data["steps"])
    model = load_profile(out)
    assert model.decode_padding == DecodePadding(data["decode_group_size"], data["block_size"])
    assert model.step_s(0, 1, 64) > 0


def test_sim_fidelity_prints_its_json_line(capsys) -> None:
    assert sim_fidelity.main(["--num-requests", "40", "--repeats", "2", "--batch-sizes", "1,8",
                              "--max-prompt-tokens", "64", "--max-output-tokens", "16"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for load in sim_fidelity.LOADS:
        for key in ("ttft_mean_s", "ttft_p95_s", "tpot_mean_s", "tpot_p95_s", "output_tok_s"):
            assert result[f"rel_error_{key}_at_{load:g}"] >= 0
            assert result[f"rel_error_drift_corrected_{key}_at_{load:g}"] >= 0
        assert len(result[f"speed_drift_at_{load:g}"]) == 2
    assert result["max_rel_error"] >= max(v for k, v in result.items() if k.startswith("rel_error_")
                                          and "drift" not in k)
    assert result["capacity_rps"] > 0 and result["sim_capacity_rps"] > 0
    # both see the same arrivals, so throughput is close whatever the latency errors
    assert result["rel_error_output_tok_s_at_0.5"] < 0.25


def test_profile_steps_price_the_loop_between_steps() -> None:
    # the period from a step's start to the next one's is what the simulator must reproduce; the gap
    # after the engine emptied is waiting for an arrival, not work
    from types import SimpleNamespace

    from inferlab.engine.engine import StepRecord

    def record(start_s: float, step_s: float, num_decode: int, num_running: int) -> StepRecord:
        return StepRecord(start_s, step_s, 0, num_decode, 10, 2, num_running, 0, 16)

    engine = SimpleNamespace(step_records=[
        record(0.000, 0.010, 2, 2),  # busy after it: period 0.012
        record(0.012, 0.010, 2, 0),  # emptied: its own 0.010, not the 0.488 idle gap
        record(0.500, 0.010, 0, 0),  # empty step: not a profile record
        record(0.600, 0.010, 1, 1),  # last: its own time
    ])
    times = [s["step_time_s"] for s in profile.profile_steps(engine)]
    assert times == pytest.approx([0.012, 0.010, 0.010])
