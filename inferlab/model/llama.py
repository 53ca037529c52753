"""A Llama-architecture decoder in plain PyTorch, written to be read.

RMSNorm, rotary position embeddings (RoPE), grouped-query attention (GQA) and a
SwiGLU MLP, with a contiguous KV cache for incremental decoding. Parameter names
match Hugging Face's `LlamaForCausalLM`, so the checkpoint written by
`inferlab.model.checkpoint` loads unchanged in `transformers`, vLLM and DeepSpeed.

Shapes: B batch, T new tokens, S cached + new tokens, H hidden size,
nh query heads, nkv key/value heads, d head dim.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from inferlab.model.attention import AttentionBackend, StepInputs
from inferlab.model.step_ops import TorchStepOps, apply_rope


@dataclass(frozen=True)
class LlamaConfig:
    """Architecture of the decoder (field names as in Hugging Face's LlamaConfig)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    bos_token_id: int = 256
    eos_token_id: int = 257

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads {self.num_attention_heads} is not divisible by "
                f"num_key_value_heads {self.num_key_value_heads} (GQA groups must be equal)"
            )
        if max(self.bos_token_id, self.eos_token_id) >= self.vocab_size:
            raise ValueError(f"special token ids must be < vocab_size {self.vocab_size}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def to_dict(self) -> dict:
        return asdict(self)


# `tiny`: CI-fast on 2 cores, heads and KV heads divisible by 2 and 4 (tensor/sequence parallel),
# 4 layers (4 pipeline stages), head_dim 32 (a size vLLM's CPU attention supports).
# `small`: ~30M parameters, for benchmarks and GPUs.
# `medium`: ~187M parameters, the GPU benchmark's (large enough that a GPU step is not launch-bound);
# built on demand only (`inferlab model medium`, ~0.75 GB in fp32), never by `make install` or the tests.
PRESETS: dict[str, LlamaConfig] = {
    "tiny": LlamaConfig(
        vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=1024,
    ),
    "small": LlamaConfig(
        vocab_size=4096, hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
        num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048,
    ),
    "medium": LlamaConfig(
        vocab_size=4096, hidden_size=1024, intermediate_size=2816, num_hidden_layers=16,
        num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=2048,
    ),
}


class RMSNorm(nn.Module):
    """x / rms(x) * weight, computed in fp32."""

    def __init__(self, hidden_size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary tables for integer `positions` [...]; returns cos, sin of shape [..., d] (fp32)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=positions.device).float() / head_dim))
    freqs = positions.float()[..., None] * inv_freq
    angles = torch.cat((freqs, freqs), dim=-1)
    return angles.cos(), angles.sin()


class KVCache:
    """Contiguous per-layer key/value tensors [B, nkv, S, d], grown by concatenation."""

    def __init__(self, num_layers: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers

    @property
    def num_tokens(self) -> int:
        return 0 if self.keys[0] is None else self.keys[0].shape[2]

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys[layer] is not None:
            k = torch.cat((self.keys[layer], k), dim=2)
            v = torch.cat((self.values[layer], v), dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v


def fused_weight(owner: nn.Module, linears: tuple[nn.Linear, ...]) -> torch.Tensor:
    """One weight [sum of out_features, in_features] stacking the `linears`' weights, for one matmul in
    place of several (the serving step's q/k/v and gate/up projections).

    The first call concatenates the weights and re-points each linear's parameter to its rows of
    the stack (a view: no second copy, the checkpoint names unchanged, loading new weights in place
    updates both). Later calls return the stack while the parameters still are those views; after
    anything replaced them (`.to()`, a state dict assigned, sharding) the stack is built anew.
    Parameters stay leaves: only the inference path (`forward_paged`) uses the stack.
    """
    ws = [lin.weight for lin in linears]
    cached = owner.__dict__.get("_fused")
    if cached is not None and cached[1] == tuple(w.data_ptr() for w in ws) and cached[0].device == ws[0].device:
        return cached[0]
    with torch.inference_mode(False), torch.no_grad():
        stack = torch.cat([w.detach() for w in ws])
        row = 0
        for w in ws:
            w.data = stack[row:row + w.shape[0]]
            row += w.shape[0]
    owner.__dict__["_fused"] = (stack, tuple(w.data_ptr() for w in ws))
    return stack


class Attention(nn.Module):
    """Grouped-query self-attention; each KV head serves nh/nkv query heads."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        hd = config.head_dim
        self.num_heads, self.num_kv_heads, self.head_dim = config.num_attention_heads, config.num_key_value_heads, hd
        self.q_proj = nn.Linear(config.hidden_size, self.num_heads * hd, bias=False)
        self.k_proj = nn.Linear(config.hidden_size, self.num_kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, self.num_kv_heads * hd, bias=False)
        self.o_proj = nn.Linear(self.num_heads * hd, config.hidden_size, bias=False)

    def project_qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """x [B, T, H] -> q [B, nh, T, d], k and v [B, nkv, T, d], RoPE applied to q and k."""
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, -1, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, -1, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, -1, self.head_dim).transpose(1, 2)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def forward(self, x, cos, sin, cache: KVCache | None = None, layer: int = 0, mask=None) -> torch.Tensor:
        q, k, v = self.project_qkv(x, cos, sin)
        if cache is not None:
            k, v = cache.append(layer, k, v)
        out = attend(q, k, v, mask)
        return self.o_proj(out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))

    def forward_paged(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, k_pool: torch.Tensor,
                      v_pool: torch.Tensor, inputs: StepInputs, backend: AttentionBackend,
                      ops: TorchStepOps) -> torch.Tensor:
        """One step's flat batch x [N, H] (cos, sin [N, d]) against a paged KV pool: one matmul (`ops.linear`) for
        q, k and v (`fused_weight`), RoPE on q and k and the new K/V written to their slots (`inputs.slot_mapping`) in
        `ops.rope_store_kv`, then `backend` attends each token to its own sequence."""
        n, nh, nkv, d = x.shape[0], self.num_heads, self.num_kv_heads, self.head_dim
        qkv = ops.linear(x, fused_weight(self, (self.q_proj, self.k_proj, self.v_proj))).view(n, nh + 2 * nkv, d)
        q, k, v = ops.rope_store_kv(qkv, cos, sin, k_pool, v_pool, inputs.slot_mapping)
        out = backend.forward(q, k, v, k_pool, v_pool, inputs)  # [N, nh, d]
        return ops.linear(out.reshape(n, nh * d), self.o_proj.weight)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Scaled dot-product attention with GQA: q [B, nh, T, d], k/v [B, nkv, S, d] -> [B, nh, T, d].

    Without `mask`, the T new tokens are the last T of the S keys (causal over them).
    `mask` is a boolean [B or 1, 1, T, S] where True means "may attend".
    """
    groups = q.shape[1] // k.shape[1]
    if groups > 1:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    if mask is None:
        t, s = q.shape[2], k.shape[2]
        mask = torch.ones(t, s, dtype=torch.bool, device=q.device).tril(diagonal=s - t)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))

    def forward_fused(self, x: torch.Tensor, ops: TorchStepOps) -> torch.Tensor:
        """The same with gate and up as one matmul (`fused_weight`) and the activation from `ops` (the serving
        step's path)."""
        gate_up = ops.linear(x, fused_weight(self, (self.gate_proj, self.up_proj)))
        return ops.linear(ops.silu_mul(gate_up), self.down_proj.weight)


class DecoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then + mlp(norm(x))."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, cache=None, layer=0, mask=None) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, layer, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    """Embedding, decoder layers and the final norm (HF's `model.` prefix)."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class LlamaForCausalLM(nn.Module):
    """The decoder with its LM head; `forward` returns logits [B, T, vocab]."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.config = config
        self.model = LlamaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor | None = None,
        cache: KVCache | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits for `input_ids` [B, T].

        Args:
            input_ids: token ids [B, T].
            positions: absolute positions [B, T] or [T]; default continues after the cache.
            cache: a `KVCache` to read and extend (incremental decoding), or None.
            mask: optional boolean attention mask [B or 1, 1, T, S] (True = attend).
        Returns:
            logits [B, T, vocab] in the model's dtype.
        """
        if positions is None:
            start = cache.num_tokens if cache is not None else 0
            positions = torch.arange(start, start + input_ids.shape[1], device=input_ids.device)
        cos, sin = rope_cos_sin(positions, self.config.head_dim, self.config.rope_theta)
        if cos.dim() == 2:  # [T, d] -> broadcast over batch and heads
            cos, sin = cos[None, None], sin[None, None]
        else:  # [B, T, d] -> [B, 1, T, d]
            cos, sin = cos[:, None], sin[:, None]
        x = self.model.embed_tokens(input_ids)
        for i, layer in enumerate(self.model.layers):
            x = layer(x, cos, sin, cache, i, mask)
        return self.lm_head(self.model.norm(x))

    def forward_step(self, inputs: StepInputs, k_pools: list[torch.Tensor], v_pools: list[torch.Tensor],
                     backend: AttentionBackend) -> torch.Tensor:
        """One serving step over a paged KV pool (see `inferlab.model.attention`).

        Args:
            inputs: the step's flat batch (prefill chunks and decodes), device tensors.
            k_pools, v_pools: per layer, the pool's K and V blocks [nkv, num_blocks, B, d]; the new
                tokens' K/V are written into them.
            backend: the attention backend (its `prepare` must have run for `inputs`); its `step_ops` do the
                element-wise work (`inferlab.model.step_ops`).
        Returns:
            logits [len(inputs.logits_indices), vocab] (fp32) of each chunk's last token.
        """
        cos, sin = rope_cos_sin(inputs.positions, self.config.head_dim, self.config.rope_theta)  # [N, d]
        ops = backend.step_ops
        residual, delta = self.model.embed_tokens(inputs.token_ids), None  # [N, H]: the residual stream
        for layer, k_pool, v_pool in zip(self.model.layers, k_pools, v_pools):
            h, residual = ops.add_rms_norm(layer.input_layernorm, delta, residual)
            delta = layer.self_attn.forward_paged(h, cos, sin, k_pool, v_pool, inputs, backend, ops)
            h, residual = ops.add_rms_norm(layer.post_attention_layernorm, delta, residual)
            delta = layer.mlp.forward_fused(h, ops)
        last = inputs.logits_indices  # only each chunk's last token needs the final add, norm and head
        h = self.model.norm(residual[last] + delta[last])
        return self.lm_head(h).float()


def init_weights(model: LlamaForCausalLM, seed: int) -> None:
    """Deterministic random init; the LM head is scaled so logits are well separated (std ~3).

    Well-separated logits keep greedy decoding stable across implementations whose
    float rounding differs by ~1e-6.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                param.fill_(1.0)
            elif name == "lm_head.weight":
                param.copy_(torch.randn(param.shape, generator=gen) * (3.0 / param.shape[1] ** 0.5))
            elif name == "model.embed_tokens.weight":
                param.copy_(torch.randn(param.shape, generator=gen))
            else:
                param.copy_(torch.randn(param.shape, generator=gen) / param.shape[1] ** 0.5)


@torch.no_grad()
def generate_greedy(model: LlamaForCausalLM, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    """Greedy decoding of one prompt with the KV cache; returns the new token ids."""
    if not prompt_ids:
        raise ValueError("prompt_ids is empty")
    if len(prompt_ids) + max_new_tokens > model.config.max_position_embeddings:
        raise ValueError(
            f"prompt ({len(prompt_ids)}) + max_new_tokens ({max_new_tokens}) exceeds the context "
            f"length {model.config.max_position_embeddings}"
        )
    cache = KVCache(model.config.num_hidden_layers)
    ids = torch.tensor([prompt_ids], device=model.device)
    out: list[int] = []
    for _ in range(max_new_tokens):
        logits = model(ids, cache=cache)
        token = int(logits[0, -1].argmax())
        out.append(token)
        ids = torch.tensor([[token]], device=model.device)
    return out
