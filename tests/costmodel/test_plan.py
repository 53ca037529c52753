"""Layout chooser and the `inferlab plan` CLI, plus a mutant showing the KV cache matters."""

from __future__ import annotations

import dataclasses
import json

import pytest

from inferlab.costmodel import roofline
from inferlab.costmodel.plan import candidate_layouts, choose_layout, main
from inferlab.costmodel.roofline import LatencyEstimate, Layout, Workload
from inferlab.costmodel.specs import get_gpu, get_model

H100 = get_gpu("h100")
SHORT = Workload(num_input_tokens=128, num_output_tokens=20, batch_size=1, dtype="bf16")
# Llama-2-70B at its full 4096 context with 32 requests: 43 GB of KV cache in bf16.
LONG_BIG_BATCH = Workload(num_input_tokens=3072, num_output_tokens=1024, batch_size=32, dtype="bf16")


def _chosen(model: str, num_gpus: int, workload: Workload = SHORT) -> tuple[int, int] | None:
    plan = choose_layout(get_model(model), H100, num_gpus, workload)
    return None if plan.chosen is None else (plan.chosen.layout.tp, plan.chosen.layout.pp)


def test_70b_on_8_h100_chooses_tp8() -> None:
    assert _chosen("llama-2-70b", 8) == (8, 1)


def test_405b_on_two_h100_nodes_chooses_tp8_pp2() -> None:
    assert _chosen("llama-3-405b", 16) == (8, 2)


def test_mixtral_fits_on_two_h100_with_tp2() -> None:
    plan = choose_layout(get_model("mixtral-8x7b"), H100, 2, SHORT)
    assert plan.chosen is not None and plan.chosen.layout == Layout(2, 1)
    only_one = next(c for c in plan.candidates if c.layout == Layout(1, 1))
    assert not only_one.fits  # all 8 experts (93 GB) must be resident


def test_infeasible_layouts_carry_reasons() -> None:
    plan = choose_layout(get_model("llama-3-405b"), H100, 16, SHORT)
    reasons = {str(c.layout): c.reasons for c in plan.candidates}
    assert any("crosses a node" in r for r in reasons["TP16 x PP1"])
    assert any(r.startswith("needs") and "GB/GPU" in r for r in reasons["TP8 x PP1"])
    assert all(c.latency is None for c in plan.candidates if not c.fits)


def test_tp_must_divide_heads() -> None:
    odd = dataclasses.replace(get_model("llama-2-7b"), num_heads=12, num_kv_heads=12)
    plan = choose_layout(odd, H100, 8, SHORT)
    tp8 = next(c for c in plan.candidates if c.layout == Layout(8, 1))
    assert any("does not divide 12 attention heads" in r for r in tp8.reasons)
    assert plan.chosen is not None and plan.chosen.layout.tp == 4


def test_405b_on_one_gpu_is_impossible() -> None:
    plan = choose_layout(get_model("llama-3-405b"), H100, 1, SHORT)
    assert plan.chosen is None and plan.candidates[0].reasons


def test_context_beyond_model_maximum_is_rejected() -> None:
    plan = choose_layout(get_model("llama-2-7b"), H100, 1, Workload(4000, 200))
    assert plan.chosen is None and "exceeds" in plan.request_reasons[0]


def test_candidate_layouts() -> None:
    assert [(l.tp, l.pp) for l in candidate_layouts(4)] == [(1, 1), (1, 2), (1, 4), (2, 1), (2, 2), (4, 1)]
    assert Layout(2, 3) in candidate_layouts(6)


def test_ties_go_to_fewer_gpus_then_smaller_tp(monkeypatch: pytest.MonkeyPatch) -> None:
    flat = LatencyEstimate(prefill_s=0.01, decode_s_per_token=0.01, request_latency_s=0.2)
    monkeypatch.setattr(roofline, "estimate_latency", lambda *a, **k: flat)
    assert _chosen("llama-2-7b", 8) == (1, 1)


def test_kv_cache_decides_feasibility_mutant(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cost model that forgets the KV cache would put this batch on 2 GPUs; it doesn't fit."""
    assert _chosen("llama-2-70b", 2, LONG_BIG_BATCH) is None
    monkeypatch.setattr(roofline, "kv_cache_bytes_per_gpu", lambda *a, **k: 0.0)
    assert _chosen("llama-2-70b", 2, LONG_BIG_BATCH) is not None  # the mutant's wrong answer


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, dict, str]:
    code = main(argv)
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    return code, (json.loads(lines[-1]) if lines else {}), out.out + out.err


def test_cli_70b_on_8_h100(capsys: pytest.CaptureFixture[str]) -> None:
    code, summary, text = _run(capsys, ["--model", "llama-2-70b", "--gpu", "h100", "--num-gpus", "8",
                                        "--input-tokens", "128", "--output-tokens", "20",
                                        "--batch-size", "1", "--dtype", "bf16"])
    assert code == 0 and "TP8 x PP1" in text and "chosen" in text
    assert summary["fits"] is True and (summary["tp"], summary["pp"]) == (8, 1)
    assert 10 < summary["memory_per_gpu_gb"] < 72
    assert summary["request_latency_ms"] == pytest.approx(
        summary["prefill_ms"] + 19 * summary["decode_ms_per_token"], rel=1e-3)


def test_cli_impossible_request_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, summary, text = _run(capsys, ["--model", "llama-3-405b", "--gpu", "h100", "--num-gpus", "1"])
    assert code == 1 and summary["fits"] is False and summary["tp"] is None
    assert "needs" in text and summary["reasons"]


def test_cli_unknown_names_and_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, text = _run(capsys, ["--model", "gpt-5", "--gpu", "h100", "--num-gpus", "8"])
    assert code == 2 and "valid names" in text
    assert main(["--model", "llama-2-7b", "--gpu", "tpu", "--num-gpus", "8"]) == 2
    assert main(["--model", "llama-2-7b", "--gpu", "a100", "--num-gpus", "1", "--dtype", "fp8"]) == 2
    assert main(["--gpu", "h100"]) == 2
