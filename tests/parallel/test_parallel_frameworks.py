"""DeepSpeed-Inference AutoTP and vLLM tensor parallelism on the tiny checkpoint (slow: engine start-up)."""

import pytest
import torch

from inferlab.model import ensure_checkpoint, generate_greedy
from inferlab.parallel.frameworks import deepspeed_tp_run, vllm_generate
from inferlab.parallel.launch import launch

import parallel_checks as pc


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_deepspeed_autotp_equals_one_device_and_our_tp(reference, ranks2):
    pytest.importorskip("deepspeed")
    ranks = launch(deepspeed_tp_run, 2, str(ensure_checkpoint("tiny")), pc.TP_IDS, pc.PROMPTS[:1], 8, timeout_s=180)
    for out, ours in zip(ranks, ranks2):
        torch.testing.assert_close(out["logits"], reference["prefill"], rtol=1.3e-6, atol=1e-5)
        torch.testing.assert_close(out["logits"], ours["tp"]["prefill_logits"], rtol=1.3e-6, atol=1e-5)
        assert out["tokens"] == reference["tokens"][:1]
        # AutoTP: the same 2 all-reduces per layer as ours (B × hidden × 4 bytes each), plus one for
        # its row-parallel LM head (B × vocab × 4 bytes) where ours keeps the LM head replicated
        batch, cfg = len(pc.TP_IDS), reference["model"].config
        layer_calls = [batch * cfg.hidden_size * 4] * 2 * cfg.num_hidden_layers
        assert out["one_token_all_reduce_bytes"] == layer_calls + [batch * cfg.vocab_size * 4]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_vllm_tensor_parallel_2_equals_one_device(reference):
    pytest.importorskip("vllm")
    prompts = pc.PROMPTS
    result = vllm_generate(ensure_checkpoint("tiny"), prompts, 8, tp_size=2, timeout_s=280)
    assert result["tp_size"] == 2
    assert result["tokens"] == [generate_greedy(reference["model"], p, 8) for p in prompts]
