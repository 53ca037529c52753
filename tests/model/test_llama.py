"""The tiny model equals transformers' LlamaForCausalLM on the same checkpoint."""

import json

import pytest
import torch
from transformers import LlamaForCausalLM as HFLlama

from inferlab.model import KVCache, build_model, ensure_checkpoint, generate_greedy, load_checkpoint, save_checkpoint
from inferlab.model.llama import PRESETS, LlamaConfig
from inferlab.model.tokenizer import decode, encode


@pytest.fixture(scope="module")
def checkpoint():
    return ensure_checkpoint("tiny")


@pytest.fixture(scope="module")
def ours(checkpoint):
    return load_checkpoint(checkpoint, device="cpu")


@pytest.fixture(scope="module")
def theirs(checkpoint):
    return HFLlama.from_pretrained(checkpoint, torch_dtype=torch.float32).eval()


def test_logits_equal_transformers_fp32(ours, theirs):
    torch.manual_seed(0)
    ids = torch.randint(0, ours.config.vocab_size, (3, 41))
    with torch.no_grad():
        ref = theirs(ids).logits
        got = ours(ids)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)


def test_greedy_tokens_identical_to_transformers(ours, theirs):
    prompt = encode("The quick brown fox")
    mine = generate_greedy(ours, prompt, max_new_tokens=24)
    ref = theirs.generate(torch.tensor([prompt]), max_new_tokens=24, do_sample=False, eos_token_id=None)[0, len(prompt):]
    assert mine == ref.tolist()


def test_kv_cache_decode_equals_full_recompute(ours):
    torch.manual_seed(1)
    ids = torch.randint(0, ours.config.vocab_size, (2, 30))
    with torch.no_grad():
        full = ours(ids)
        cache = KVCache(ours.config.num_hidden_layers)
        steps = [ours(ids[:, :20], cache=cache)] + [ours(ids[:, t : t + 1], cache=cache) for t in range(20, 30)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)


def test_checkpoint_is_deterministic_and_hf_shaped(tmp_path, checkpoint):
    again = save_checkpoint(build_model("tiny"), tmp_path / "again")
    assert (again / "model.safetensors").read_bytes() == (checkpoint / "model.safetensors").read_bytes()
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["num_key_value_heads"] == 4


def test_tokenizer_round_trips_utf8_and_loads_in_transformers(checkpoint):
    from transformers import AutoTokenizer

    text = "naïve café ✓"
    tok = AutoTokenizer.from_pretrained(checkpoint)
    assert tok(text)["input_ids"] == encode(text)
    assert decode(encode(text)) == text


def test_bad_configs_and_requests_are_rejected_clearly(ours):
    with pytest.raises(ValueError, match="num_key_value_heads"):
        LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=64, num_hidden_layers=1,
                    num_attention_heads=4, num_key_value_heads=3, max_position_embeddings=64)
    with pytest.raises(ValueError, match="exceeds the context"):
        generate_greedy(ours, [1] * 1000, max_new_tokens=100)
    with pytest.raises(ValueError, match="empty"):
        generate_greedy(ours, [], 4)


def test_small_preset_is_tens_of_millions():
    cfg = PRESETS["small"]
    per_layer = 2 * cfg.hidden_size**2 + 2 * cfg.hidden_size * cfg.num_key_value_heads * cfg.head_dim + 3 * cfg.hidden_size * cfg.intermediate_size
    total = cfg.num_hidden_layers * per_layer + 2 * cfg.vocab_size * cfg.hidden_size
    assert 10e6 < total < 100e6


def test_fused_projections_share_the_checkpoint_weights(tmp_path, checkpoint):
    """The serving step's fused q/k/v and gate/up weights are views of the HF-named parameters: one copy,
    in step with weights loaded later, rebuilt after `.to()`, and the model still saves and reloads."""
    from safetensors.torch import load_file

    from inferlab.model.llama import fused_weight

    model = load_checkpoint(checkpoint, device="cpu")
    attn = model.model.layers[0].self_attn
    names = [n for n, _ in model.named_parameters()]
    stack = fused_weight(attn, (attn.q_proj, attn.k_proj, attn.v_proj))
    assert [n for n, _ in model.named_parameters()] == names, "checkpoint names must not change"
    assert attn.k_proj.weight.data_ptr() == stack[attn.q_proj.out_features:].data_ptr(), "not a view of the stack"
    assert fused_weight(attn, (attn.q_proj, attn.k_proj, attn.v_proj)) is stack, "rebuilt without a change"
    with torch.no_grad():
        attn.v_proj.weight.mul_(2.0)  # in place (what load_state_dict does): the stack sees it
    assert torch.equal(stack[-attn.v_proj.out_features:], attn.v_proj.weight)
    model.to(torch.float64)  # parameters replaced: a new stack of the new weights
    again = fused_weight(attn, (attn.q_proj, attn.k_proj, attn.v_proj))
    assert again.dtype == torch.float64 and torch.equal(again[:attn.q_proj.out_features], attn.q_proj.weight)
    save_checkpoint(model, tmp_path / "ck")  # shared storage must not break safetensors
    saved = load_file(str(tmp_path / "ck" / "model.safetensors"))
    assert torch.equal(saved["model.layers.0.self_attn.v_proj.weight"], attn.v_proj.weight.float())
