"""Megatron tensor parallelism on 2 and 4 gloo ranks: equal logits, same tokens, 2 all-reduces per layer."""

import pytest
import torch

from inferlab.model import PRESETS
from inferlab.model.llama import LlamaConfig
from inferlab.parallel.shard import check_tp_degree, tp_shard
from inferlab.parallel.tensor import decode_all_reduce_bytes

import parallel_checks as pc

pytestmark = pytest.mark.timeout(200)
TINY = PRESETS["tiny"]


@pytest.mark.parametrize("world", [2, 4])
def test_tp_equals_one_device(world, reference, ranks2, ranks4):
    ranks = ranks2 if world == 2 else ranks4
    for out in ranks:
        r = out["tp"]
        torch.testing.assert_close(r["prefill_logits"], reference["prefill"], rtol=1.3e-6, atol=1e-5)
        torch.testing.assert_close(r["decode_logits"], reference["decode"], rtol=1.3e-6, atol=1e-5)
        assert r["tokens"] == reference["tokens"]
        torch.testing.assert_close(out["tp_head"]["prefill_logits"], reference["prefill"], rtol=1.3e-6, atol=1e-5)


@pytest.mark.parametrize("world", [2, 4])
def test_tp_decode_traffic_matches_formula(world, ranks2, ranks4):
    ranks = ranks2 if world == 2 else ranks4
    batch = len(pc.TP_IDS)
    expected = decode_all_reduce_bytes(TINY.num_hidden_layers, batch, TINY.hidden_size, 4)
    for out in ranks:
        recs = out["tp"]["records"]
        for step in range(3):
            step_recs = [r for r in recs if r.tag == f"decode-{step}"]
            assert [r.op for r in step_recs] == ["all_reduce"] * 2 * TINY.num_hidden_layers
            assert sum(r.num_bytes for r in step_recs) == expected == 2 * 4 * 2 * 256 * 4
        # the vocabulary-parallel LM head adds one all_gather of B × T × V/P per forward
        head = [r for r in out["tp_head"]["records"] if r.tag == "decode-0"]
        gathers = [r for r in head if r.op == "all_gather_into_tensor"]
        assert len(gathers) == 1 and gathers[0].num_bytes == batch * TINY.vocab_size // world * 4


@pytest.mark.parametrize("world", [2, 4])
def test_row_parallel_without_all_reduce_is_caught(world, reference, ranks2, ranks4):
    for out in ranks2 if world == 2 else ranks4:
        assert not torch.allclose(out["tp_mutant"], reference["prefill"], rtol=1.3e-6, atol=1e-5)


def test_degree_must_divide_heads_and_kv_heads():
    with pytest.raises(ValueError, match="num_attention_heads=8"):
        check_tp_degree(TINY, 3)
    with pytest.raises(ValueError, match="num_key_value_heads=4"):
        check_tp_degree(TINY, 8)
    gqa = LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16)
    with pytest.raises(ValueError, match="num_key_value_heads=2"):
        check_tp_degree(gqa, 4)


def test_tp_shard_shapes_keep_gqa_groups():
    sd = {"model.layers.0.self_attn.q_proj.weight": torch.arange(256 * 256.0).view(256, 256),
          "model.layers.0.self_attn.k_proj.weight": torch.zeros(128, 256),
          "model.layers.0.self_attn.o_proj.weight": torch.zeros(256, 256),
          "model.layers.0.mlp.down_proj.weight": torch.zeros(256, 512),
          "lm_head.weight": torch.zeros(512, 256)}
    part = tp_shard(sd, TINY, 1, 2)
    assert part["model.layers.0.self_attn.q_proj.weight"].shape == (128, 256)  # heads 4..7
    assert part["model.layers.0.self_attn.q_proj.weight"][0, 0] == 128 * 256
    assert part["model.layers.0.self_attn.k_proj.weight"].shape == (64, 256)  # kv heads 2..3
    assert part["model.layers.0.self_attn.o_proj.weight"].shape == (256, 128)
    assert part["model.layers.0.mlp.down_proj.weight"].shape == (256, 256)
    assert part["lm_head.weight"].shape == (512, 256)
