"""Sequence parallelism, DeepSpeed-Ulysses style: sequence-sharded in, head-sharded attention.

Floor 2. Each of P ranks holds N/P consecutive tokens of every sequence. Per layer:
q, k, v are projected locally for all heads ([B, N/P, heads, d]); one all-to-all
each turns them into [B, N, heads/P, d] (full sequence, a slice of the heads); the
rank runs ordinary causal attention (`inferlab.model.llama.attend`, GQA kept since
query and KV heads are split by the same factor); a fourth all-to-all returns the
output to [B, N/P, heads, d] for the local o_proj. Norms, the MLP and the LM head
are per-token, so they run on the local tokens without communication.

Ring attention (`ring_attention`) is the alternative that keeps all heads on every rank: the
K/V blocks travel around a ring (P-1 steps of send/recv) while each rank folds them into its
queries' attention with an online softmax. It sends (P-1)·2·B·(N/P)·nkv·d elements per rank
per layer, and is not limited by the number of heads.

Ulysses traffic (per rank, per layer, forward): the input buffers of the 4 all-to-alls hold
B·(N/P)·(2·nh + 2·nkv)·d elements; with MHA (nkv = nh, nh·d = h) that is
4·B·N·h/P elements × dtype bytes, the paper's "4Nh/P" with B = 1 counted in
elements. Of it, (P-1)/P leaves the rank (the own chunk stays local).
"""

from __future__ import annotations

import torch

from inferlab.model.llama import Attention, LlamaConfig, LlamaForCausalLM, attend, rope_cos_sin
from inferlab.parallel.comm import CommRecorder


def check_sp_degree(config: LlamaConfig, sp_size: int, seq_len: int | None = None) -> None:
    """Raise ValueError unless `sp_size` divides the query heads, the KV heads (and the sequence)."""
    for name, value in (("num_attention_heads", config.num_attention_heads),
                        ("num_key_value_heads", config.num_key_value_heads)):
        if value % sp_size:
            raise ValueError(f"Ulysses degree {sp_size} does not divide {name}={value}: the all-to-all "
                             f"hands each rank whole heads")
    if seq_len is not None and seq_len % sp_size:
        raise ValueError(f"sequence length {seq_len} is not divisible by the Ulysses degree {sp_size}")


def seq_to_heads(x: torch.Tensor, comm: CommRecorder) -> torch.Tensor:
    """All-to-all [B, N/P, heads, d] (sequence shard) -> [B, N, heads/P, d] (head shard)."""
    p = comm.world_size
    b, n_local, heads, d = x.shape
    send = x.reshape(b, n_local, p, heads // p, d).permute(2, 0, 1, 3, 4).contiguous()  # [P(dst), B, N/P, h/P, d]
    recv = torch.empty_like(send)  # [P(src) = sequence chunk, B, N/P, h/P, d]
    comm.all_to_all_single(recv, send)
    return recv.permute(1, 0, 2, 3, 4).reshape(b, p * n_local, heads // p, d)


def heads_to_seq(x: torch.Tensor, comm: CommRecorder) -> torch.Tensor:
    """All-to-all [B, N, heads/P, d] (head shard) -> [B, N/P, heads, d] (sequence shard)."""
    p = comm.world_size
    b, n, h_local, d = x.shape
    send = x.reshape(b, p, n // p, h_local, d).permute(1, 0, 2, 3, 4).contiguous()  # [P(dst), B, N/P, h/P, d]
    recv = torch.empty_like(send)  # [P(src) = head group, B, N/P, h/P, d]
    comm.all_to_all_single(recv, send)
    return recv.permute(1, 2, 0, 3, 4).reshape(b, n // p, p * h_local, d)


def ulysses_attention(attn: Attention, x_local: torch.Tensor, positions_local: torch.Tensor,
                      comm: CommRecorder, theta: float) -> torch.Tensor:
    """Causal self-attention of the full sequence from a sequence shard.

    Args:
        attn: the layer's `Attention` (full weights, replicated on every rank).
        x_local: [B, N/P, hidden], this rank's tokens (rank r holds tokens [r·N/P, (r+1)·N/P)).
        positions_local: [N/P] absolute positions of those tokens (for RoPE).
    Returns:
        [B, N/P, hidden], equal to rows [r·N/P, (r+1)·N/P) of full attention's output.
    """
    cos, sin = rope_cos_sin(positions_local, attn.head_dim, theta)
    q, k, v = attn.project_qkv(x_local, cos[None, None], sin[None, None])  # [B, heads, N/P, d]
    q, k, v = (seq_to_heads(t.transpose(1, 2), comm).transpose(1, 2) for t in (q, k, v))  # [B, heads/P, N, d]
    out = attend(q, k, v)  # causal over the full N
    out = heads_to_seq(out.transpose(1, 2).contiguous(), comm)  # [B, N/P, heads, d]
    return attn.o_proj(out.reshape(x_local.shape[0], x_local.shape[1], -1))


def ring_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, comm: CommRecorder) -> torch.Tensor:
    """Causal attention of this rank's queries over every rank's keys, K/V passed around a ring.

    Args:
        q: [B, nh, N/P, d] queries of this rank's tokens (rank r holds tokens [r·N/P, (r+1)·N/P)).
        k, v: [B, nkv, N/P, d] keys and values of the same tokens (RoPE already applied).
    Returns:
        [B, nh, N/P, d], equal to those rows of full causal attention.
    """
    p, r = comm.world_size, comm.rank
    groups = q.shape[1] // k.shape[1]
    n = q.shape[2]
    scale = q.shape[-1] ** -0.5
    row_max = q.new_full(q.shape[:-1], float("-inf"))
    row_sum = q.new_zeros(q.shape[:-1])
    acc = torch.zeros_like(q)
    block = torch.cat((k, v), dim=1).contiguous()  # one message per step: [B, 2·nkv, N/P, d]
    causal = torch.ones(n, n, dtype=torch.bool, device=q.device).tril()
    for step in range(p):
        src = (r - step) % p  # the rank whose K/V block we hold now
        if step < p - 1:  # start passing it on while computing with it
            incoming = torch.empty_like(block)
            ops = [torch.distributed.P2POp(torch.distributed.isend, block, (r + 1) % p),
                   torch.distributed.P2POp(torch.distributed.irecv, incoming, (r - 1) % p)]
            works = comm.batch_isend_irecv(ops)
        if src <= r:  # blocks from later tokens are fully masked: skip the math
            kb, vb = block.chunk(2, dim=1)
            kb, vb = kb.repeat_interleave(groups, dim=1), vb.repeat_interleave(groups, dim=1)
            scores = (q @ kb.transpose(-1, -2)) * scale
            if src == r:
                scores = scores.masked_fill(~causal, float("-inf"))
            new_max = torch.maximum(row_max, scores.amax(-1))
            correction = torch.exp(row_max - new_max)
            weights = torch.exp(scores - new_max[..., None])
            row_sum = row_sum * correction + weights.sum(-1)
            acc = acc * correction[..., None] + weights @ vb
            row_max = new_max
        if step < p - 1:
            for work in works:
                work.wait()
            block = incoming
    return acc / row_sum[..., None]


def ring_attention_layer(attn: Attention, x_local: torch.Tensor, positions_local: torch.Tensor,
                         comm: CommRecorder, theta: float) -> torch.Tensor:
    """Like `ulysses_attention`, with `ring_attention` inside: [B, N/P, hidden] -> [B, N/P, hidden]."""
    cos, sin = rope_cos_sin(positions_local, attn.head_dim, theta)
    q, k, v = attn.project_qkv(x_local, cos[None, None], sin[None, None])
    out = ring_attention(q, k, v, comm)
    return attn.o_proj(out.transpose(1, 2).reshape(x_local.shape[0], x_local.shape[1], -1))


@torch.no_grad()
def ulysses_forward(model: LlamaForCausalLM, input_ids: torch.Tensor, comm: CommRecorder) -> torch.Tensor:
    """Full-model prefill with the sequence split over the ranks of `comm`.

    Args:
        input_ids: [B, N], the whole batch (every rank passes the same ids; each keeps its shard).
    Returns:
        logits [B, N/P, vocab] for this rank's tokens.
    """
    p, r = comm.world_size, comm.rank
    n = input_ids.shape[1]
    check_sp_degree(model.config, p, n)
    chunk = n // p
    positions = torch.arange(r * chunk, (r + 1) * chunk, device=input_ids.device)
    x = model.model.embed_tokens(input_ids[:, r * chunk:(r + 1) * chunk])
    for i, layer in enumerate(model.model.layers):
        with comm.step(f"layer-{i}"):
            x = x + ulysses_attention(layer.self_attn, layer.input_layernorm(x), positions, comm,
                                      model.config.rope_theta)
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    return model.lm_head(model.model.norm(x))


def ulysses_bytes_per_layer(batch_size: int, seq_len: int, config: LlamaConfig, sp_size: int,
                            dtype_bytes: int) -> int:
    """Formula: all-to-all input bytes per rank per layer, B·(N/P)·(2·nh + 2·nkv)·d·bytes (= 4·B·N·h/P·bytes for MHA)."""
    d = config.head_dim
    return batch_size * (seq_len // sp_size) * (2 * config.num_attention_heads + 2 * config.num_key_value_heads) * d * dtype_bytes
