"""Expert parallelism: a small top-k MoE layer, experts spread over ranks, all-to-all routing.

Floor 2. `MoE` holds a router (hidden -> num_experts) and SwiGLU experts (the
model's `MLP`). `moe_dense` runs it in one process; `moe_expert_parallel` runs
the same computation with each rank owning `num_experts/P` experts and its own
tokens: route locally, drop over-capacity assignments, all-to-all the kept token
vectors to the experts' ranks (uneven splits), run the local experts, all-to-all
the results back, combine with the router weights.

Capacity (GShard style, per group = one rank's tokens): each expert accepts at most
capacity = ceil(capacity_factor · num_tokens_in_group · top_k / num_experts)
assignments from a group; assignments are admitted in priority order — all first
choices (k = 0) in token order, then the second choices, ... — and the rest are
dropped (they contribute zero; the residual stream carries the token). The number
dropped is therefore Σ_experts max(0, load − capacity), per group
(`count_dropped`). capacity_factor=None means unlimited.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from inferlab.model.llama import MLP, LlamaConfig
from inferlab.parallel.comm import CommRecorder
from inferlab.parallel.shard import expert_ranges


@dataclass(frozen=True)
class MoEConfig:
    hidden_size: int = 64
    intermediate_size: int = 128
    num_experts: int = 8
    top_k: int = 2
    capacity_factor: float | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.top_k <= self.num_experts:
            raise ValueError(f"top_k must be in [1, num_experts={self.num_experts}], got {self.top_k}")
        if self.capacity_factor is not None and self.capacity_factor <= 0:
            raise ValueError(f"capacity_factor must be > 0 or None (unlimited), got {self.capacity_factor}")


class MoE(nn.Module):
    """Router + experts; the weights every rank builds identically from `seed`."""

    def __init__(self, config: MoEConfig, seed: int = 0) -> None:
        super().__init__()
        self.config = config
        mlp_cfg = LlamaConfig(vocab_size=512, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
                              num_hidden_layers=1, num_attention_heads=1, num_key_value_heads=1,
                              max_position_embeddings=1)
        self.router = nn.Linear(config.hidden_size, config.num_experts, bias=False)
        self.experts = nn.ModuleList(MLP(mlp_cfg) for _ in range(config.num_experts))
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) / p.shape[1] ** 0.5)


def route(moe: MoE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [T, hidden] -> (expert ids [T, k], weights [T, k]: softmax over the top-k logits)."""
    logits = moe.router(x)
    top, ids = logits.topk(moe.config.top_k, dim=-1)
    return ids, F.softmax(top, dim=-1)


def capacity(num_tokens: int, num_experts: int, top_k: int, capacity_factor: float | None) -> int:
    """Assignments one expert accepts from a group of `num_tokens` tokens."""
    if capacity_factor is None:
        return num_tokens * top_k
    return math.ceil(capacity_factor * num_tokens * top_k / num_experts)


def keep_mask(expert_ids: torch.Tensor, num_experts: int, max_per_expert: int) -> torch.Tensor:
    """Bool [T, k]: which assignments fit, admitted in priority order (k-major, then token order)."""
    order = expert_ids.t().reshape(-1)  # k = 0 for all tokens first
    onehot = F.one_hot(order, num_experts)
    position = (onehot.cumsum(0) * onehot).sum(-1) - 1  # arrival index at its expert
    return (position < max_per_expert).reshape(expert_ids.shape[1], -1).t()


def count_dropped(expert_ids: torch.Tensor, num_experts: int, max_per_expert: int) -> int:
    """Σ_e max(0, load_e − capacity): the dropped assignments, recomputed from the router's choices."""
    load = torch.bincount(expert_ids.reshape(-1), minlength=num_experts)
    return int((load - max_per_expert).clamp(min=0).sum())


@torch.no_grad()
def moe_dense(moe: MoE, x: torch.Tensor, num_groups: int = 1) -> tuple[torch.Tensor, int]:
    """Single-process MoE over x [T, hidden], capacity applied per group of T/num_groups tokens.

    Returns (output [T, hidden], number of dropped assignments).
    """
    out, dropped = torch.zeros_like(x), 0
    for xg, og in zip(x.chunk(num_groups), out.chunk(num_groups)):
        ids, weights = route(moe, xg)
        cap = capacity(xg.shape[0], moe.config.num_experts, moe.config.top_k, moe.config.capacity_factor)
        keep = keep_mask(ids, moe.config.num_experts, cap)
        dropped += int((~keep).sum())
        for e, expert in enumerate(moe.experts):
            tok, slot = torch.nonzero((ids == e) & keep, as_tuple=True)
            if len(tok):
                og.index_add_(0, tok, weights[tok, slot, None] * expert(xg[tok]))
    return out, dropped


@torch.no_grad()
def moe_expert_parallel(moe: MoE, x_local: torch.Tensor, comm: CommRecorder,
                        keep_fn: Callable[[torch.Tensor, int, int], torch.Tensor] = keep_mask
                        ) -> tuple[torch.Tensor, int]:
    """Expert-parallel MoE over this rank's tokens x_local [T_local, hidden].

    Rank r runs experts `expert_ranges(E, P)[r]`. Messages (all via `comm`):
    1. all_to_all_single of per-destination counts (int64 [P]);
    2. all_to_all_single of the kept token vectors (uneven splits) and of their expert ids;
    3. all_to_all_single of the expert outputs back (the reverse splits).
    Returns (output [T_local, hidden], dropped assignments in this rank's group).
    """
    cfg, p = moe.config, comm.world_size
    owned = expert_ranges(cfg.num_experts, p)
    per_rank = cfg.num_experts // p
    ids, weights = route(moe, x_local)
    cap = capacity(x_local.shape[0], cfg.num_experts, cfg.top_k, cfg.capacity_factor)
    keep = keep_fn(ids, cfg.num_experts, cap)
    tok, slot = torch.nonzero(keep, as_tuple=True)
    expert = ids[tok, slot]
    order = torch.argsort(expert, stable=True)  # group by destination rank (experts are contiguous)
    tok, slot, expert = tok[order], slot[order], expert[order]
    send_counts = torch.bincount(expert // per_rank, minlength=p)
    recv_counts = torch.empty_like(send_counts)
    with comm.step("counts"):
        comm.all_to_all_single(recv_counts, send_counts)
    s_split, r_split = send_counts.tolist(), recv_counts.tolist()
    recv_x = x_local.new_empty(sum(r_split), x_local.shape[1])
    recv_e = expert.new_empty(sum(r_split))
    with comm.step("dispatch"):
        comm.all_to_all_single(recv_x, x_local[tok].contiguous(), r_split, s_split)
        comm.all_to_all_single(recv_e, expert.contiguous(), r_split, s_split)
    y = torch.empty_like(recv_x)
    for e in owned[comm.rank]:
        rows = recv_e == e
        if rows.any():
            y[rows] = moe.experts[e](recv_x[rows])
    back = x_local.new_empty(len(tok), x_local.shape[1])
    with comm.step("combine"):
        comm.all_to_all_single(back, y, s_split, r_split)
    out = torch.zeros_like(x_local)
    out.index_add_(0, tok, weights[tok, slot, None] * back)
    return out, int((~keep).sum())
