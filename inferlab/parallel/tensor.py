"""Megatron-style tensor parallelism for the Llama model, by swapping its Linear layers.

Floor 2. `tensor_parallel(model, comm)` takes a full `LlamaForCausalLM` (same
weights on every rank) and, in place, replaces q/k/v and gate/up with
`ColumnParallelLinear` (each rank keeps its heads / its slice of the MLP width)
and o/down with `RowParallelLinear` (partial sums added by an all-reduce). The
model's own forward, `attend` (GQA), RoPE, RMSNorm and `generate_greedy` then run
unchanged: `Attention` reshapes with -1 heads, so it sees only the local heads.

Communication: exactly 2 all-reduces per layer per forward (after attention, after
the MLP), each of B × T × hidden × dtype bytes; in a decode step T = 1. The
embeddings and the LM head are replicated (no gather: every rank computes the full
logits), so nothing else is sent. `is_lm_head_parallel=True` splits the LM head by
vocabulary instead and adds one all_gather of B × T × vocab/P × dtype bytes per rank.
"""

from __future__ import annotations

import torch
from torch import nn

from inferlab.model.llama import LlamaForCausalLM
from inferlab.parallel.comm import CommRecorder
from inferlab.parallel.shard import check_tp_degree, shard_cols, shard_rows


class ColumnParallelLinear(nn.Module):
    """y_local = x · W_localᵀ, W_local = rows [r·out/P, (r+1)·out/P) of W. No communication."""

    def __init__(self, full: nn.Linear, rank: int, world_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(shard_rows(full.weight.data, rank, world_size), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.t()


class RowParallelLinear(nn.Module):
    """y = all_reduce(x_local · W_localᵀ), W_local = columns [r·in/P, (r+1)·in/P) of W."""

    def __init__(self, full: nn.Linear, rank: int, world_size: int, comm: CommRecorder) -> None:
        super().__init__()
        self.weight = nn.Parameter(shard_cols(full.weight.data, rank, world_size), requires_grad=False)
        self.comm = comm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        partial = x @ self.weight.t()
        return self.comm.all_reduce(partial.contiguous())


class VocabParallelLMHead(nn.Module):
    """Each rank computes logits for its vocabulary slice; all_gather assembles them."""

    def __init__(self, full: nn.Linear, rank: int, world_size: int, comm: CommRecorder) -> None:
        super().__init__()
        if full.weight.shape[0] % world_size:
            raise ValueError(f"vocab_size {full.weight.shape[0]} is not divisible by tp_size {world_size}")
        self.weight = nn.Parameter(shard_rows(full.weight.data, rank, world_size), requires_grad=False)
        self.comm = comm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = (x @ self.weight.t()).contiguous()
        p = self.comm.world_size
        gathered = torch.empty((p * local.shape[0], *local.shape[1:]), dtype=local.dtype, device=local.device)
        self.comm.all_gather_into_tensor(gathered, local)
        return torch.cat(gathered.chunk(p, dim=0), dim=-1)


def tensor_parallel(model: LlamaForCausalLM, comm: CommRecorder, is_lm_head_parallel: bool = False
                    ) -> LlamaForCausalLM:
    """Shard `model` in place across the ranks of `comm` (Megatron column/row split); returns it.

    Raises:
        ValueError: the degree does not divide num_attention_heads, num_key_value_heads
            or intermediate_size.
    """
    rank, world_size = comm.rank, comm.world_size
    check_tp_degree(model.config, world_size)
    for layer in model.model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        for name in ("q_proj", "k_proj", "v_proj"):
            setattr(attn, name, ColumnParallelLinear(getattr(attn, name), rank, world_size))
        attn.o_proj = RowParallelLinear(attn.o_proj, rank, world_size, comm)
        attn.num_heads //= world_size
        attn.num_kv_heads //= world_size
        for name in ("gate_proj", "up_proj"):
            setattr(mlp, name, ColumnParallelLinear(getattr(mlp, name), rank, world_size))
        mlp.down_proj = RowParallelLinear(mlp.down_proj, rank, world_size, comm)
    if is_lm_head_parallel:
        model.lm_head = VocabParallelLMHead(model.lm_head, rank, world_size, comm)
    return model


def decode_all_reduce_bytes(num_layers: int, batch_size: int, hidden_size: int, dtype_bytes: int) -> int:
    """Formula: all-reduce bytes per decode step = 2 per layer × B × hidden × dtype bytes."""
    return 2 * num_layers * batch_size * hidden_size * dtype_bytes
