"""Roofline + alpha-beta formulas, MoE handling and the A100 -> H100 calibration check."""

from __future__ import annotations

import dataclasses

import pytest

from inferlab.costmodel.calibrate import calibrate_efficiency, default_efficiency, predict_published
from inferlab.costmodel.roofline import (
    Layout,
    Workload,
    decode_step_s,
    estimate_latency,
    expected_experts_per_layer,
    kv_bytes_per_token,
    kv_cache_bytes_per_gpu,
    memory_per_gpu,
    num_ib_hops,
    num_kv_heads_per_gpu,
    prefill_s,
    ring_allreduce_s,
    weight_bytes_per_gpu,
)
from inferlab.costmodel.specs import get_gpu, get_model, published_latencies

H100, A100 = get_gpu("h100"), get_gpu("a100")
LLAMA_7B, LLAMA_70B, MIXTRAL = get_model("llama-2-7b"), get_model("llama-2-70b"), get_model("mixtral")
H100_TOLERANCE = 0.10  # the brief: H100 prediction within 10% after calibrating on the A100


def test_kv_bytes_per_token() -> None:
    assert kv_bytes_per_token(LLAMA_70B, "bf16") == 2 * 80 * 8 * 128 * 2
    assert kv_bytes_per_token(LLAMA_7B, "fp16") == 2 * 32 * 32 * 128 * 2


def test_kv_cache_shards_over_tp_and_replicates_beyond_kv_heads() -> None:
    whole = kv_cache_bytes_per_gpu(LLAMA_70B, Layout(1, 1), "bf16", 1000)
    assert whole == 1000 * kv_bytes_per_token(LLAMA_70B, "bf16")
    assert kv_cache_bytes_per_gpu(LLAMA_70B, Layout(8, 1), "bf16", 1000) == whole / 8
    assert kv_cache_bytes_per_gpu(LLAMA_70B, Layout(1, 2), "bf16", 1000) == whole / 2
    four_kv = dataclasses.replace(LLAMA_70B, num_kv_heads=4)
    assert num_kv_heads_per_gpu(four_kv, 8) == 1  # replicated, not 0.5


def test_weights_split_over_tp_and_pp() -> None:
    total = 2 * LLAMA_70B.num_params
    assert weight_bytes_per_gpu(LLAMA_70B, Layout(1, 1), "bf16") == pytest.approx(total, rel=1e-6)
    assert weight_bytes_per_gpu(LLAMA_70B, Layout(8, 1), "bf16") == pytest.approx(total / 8, rel=1e-6)
    assert weight_bytes_per_gpu(LLAMA_70B, Layout(4, 2), "bf16") == pytest.approx(total / 8, rel=0.01)


def test_mixtral_memory_holds_every_expert() -> None:
    memory = memory_per_gpu(MIXTRAL, Layout(1, 1), Workload(128, 20))
    assert memory.weight_bytes == pytest.approx(2 * MIXTRAL.num_params, rel=1e-6)


def test_ring_allreduce_alpha_beta() -> None:
    assert ring_allreduce_s(1e6, 1, 1e9, 1e-6) == 0.0
    assert ring_allreduce_s(1e6, 4, 1e9, 1e-6) == pytest.approx(6 / 4 * 1e6 / 1e9 + 6e-6)


@pytest.mark.parametrize("tp, pp, hops", [(8, 1, 0), (8, 2, 1), (4, 2, 0), (4, 4, 1), (1, 16, 1), (2, 8, 1)])
def test_ib_hops_count_node_crossings(tp: int, pp: int, hops: int) -> None:
    assert num_ib_hops(H100, Layout(tp, pp)) == hops


def test_batch1_decode_is_memory_bound_on_weights() -> None:
    eff = 0.5
    step_s = decode_step_s(LLAMA_7B, H100, Layout(1, 1), batch_size=1, num_context_tokens=1,
                           dtype="bf16", efficiency=eff)
    # a decode step reads every weight except the embedding table (it looks up one row)
    read_params = LLAMA_7B.num_params - LLAMA_7B.vocab_size * LLAMA_7B.hidden_size
    weights_s = 2 * read_params / (H100.hbm_bandwidth_bytes_per_s * eff)
    assert step_s == pytest.approx(weights_s, rel=0.002)


def test_decode_reads_the_whole_batch_kv_cache() -> None:
    eff = 0.5
    short, long = (decode_step_s(LLAMA_70B, H100, Layout(8, 1), batch_size=32, num_context_tokens=n,
                                 dtype="bf16", efficiency=eff) for n in (100, 4000))
    extra_kv_bytes = 32 * 3900 * kv_bytes_per_token(LLAMA_70B, "bf16") / 8
    assert long - short == pytest.approx(extra_kv_bytes / (H100.hbm_bandwidth_bytes_per_s * eff), rel=0.01)


def test_pp_never_lowers_latency_tp_does() -> None:
    work = Workload(128, 20)
    one, pp2, tp2 = (estimate_latency(LLAMA_7B, H100, layout, work, efficiency=0.5).request_latency_s
                     for layout in (Layout(1, 1), Layout(1, 2), Layout(2, 1)))
    assert pp2 > one > tp2


def test_moe_batch1_decode_moves_active_params() -> None:
    assert expected_experts_per_layer(MIXTRAL, 1) == pytest.approx(2)
    assert expected_experts_per_layer(MIXTRAL, 10_000) == pytest.approx(8)
    assert expected_experts_per_layer(LLAMA_7B, 5) == 1
    eff = 0.5
    step_s = decode_step_s(MIXTRAL, H100, Layout(1, 1), batch_size=1, num_context_tokens=1,
                           dtype="bf16", efficiency=eff)
    read_params = MIXTRAL.num_active_params - MIXTRAL.vocab_size * MIXTRAL.hidden_size
    active_s = 2 * read_params / (H100.hbm_bandwidth_bytes_per_s * eff)
    assert step_s == pytest.approx(active_s, rel=0.002)
    # a large batch touches every expert, so a step costs about all the weights
    big_s = decode_step_s(MIXTRAL, H100, Layout(1, 1), batch_size=64, num_context_tokens=1,
                          dtype="bf16", efficiency=eff)
    assert big_s > 3 * step_s


def test_prefill_becomes_compute_bound_for_long_prompts() -> None:
    eff = 0.5
    long_s = prefill_s(LLAMA_7B, H100, Layout(1, 1), batch_size=1, num_input_tokens=8192,
                       dtype="bf16", efficiency=eff)
    matmul_s = 2 * LLAMA_7B.num_params * 8192 / (H100.peak_flops("bf16") * eff)
    assert long_s > matmul_s


def test_calibration_reproduces_a100_and_predicts_h100_within_10_percent() -> None:
    eff = default_efficiency()
    assert 0.3 < eff < 0.9
    (a100,) = published_latencies("calibration")
    assert predict_published(a100) == pytest.approx(a100.request_latency_s, rel=1e-4)
    h100 = next(p for p in published_latencies("validation") if p.gpu == "H100-80GB-SXM")
    assert predict_published(h100) == pytest.approx(h100.request_latency_s, rel=H100_TOLERANCE)


def test_calibrate_rejects_targets_beyond_the_roofline() -> None:
    with pytest.raises(ValueError, match="roofline bound"):
        calibrate_efficiency(LLAMA_7B, A100, Layout(1, 1), Workload(128, 20, dtype="fp16"), 0.001)


def test_configs_are_validated() -> None:
    with pytest.raises(ValueError):
        Layout(0, 1)
    with pytest.raises(ValueError):
        Workload(0, 20)
    with pytest.raises(ValueError, match="dtype"):
        Workload(128, 20, dtype="fp4")
    with pytest.raises(ValueError, match="efficiency"):
        decode_step_s(LLAMA_7B, H100, Layout(), batch_size=1, num_context_tokens=1, dtype="bf16",
                      efficiency=1.5)
