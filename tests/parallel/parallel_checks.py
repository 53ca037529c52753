"""Rank workers for tests/parallel: batched checks (one launch runs many) and broken variants.

Imported by name in spawned ranks (pytest puts this folder on sys.path, spawn passes it on).
The "mutants" are deliberately wrong versions of a strategy; the tests show the checks catch them.
"""

from __future__ import annotations

import time

import torch

from inferlab.model import KVCache
from inferlab.parallel import workers
from inferlab.parallel.comm import CommRecorder
from inferlab.parallel.expert import MoE, MoEConfig, moe_expert_parallel
from inferlab.parallel.pipeline import pipeline_generate, split_microbatches
from inferlab.parallel.tensor import RowParallelLinear, tensor_parallel

TP_IDS = [[256, 1, 2, 3, 4, 5, 6, 7], [256, 9, 8, 7, 6, 5, 4, 3]]
PROMPTS = [[256, 72, 101, 108], [256, 1, 2, 3], [256, 200, 100, 50]]
PP_PROMPTS = [[256, i, i + 1, i + 2] for i in range(1, 7)]
SP_IDS = [[(7 * i + 3 * j) % 512 for j in range(16)] for i in range(2)]
MOE_TOKENS_PER_RANK = 32
MHA = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
           num_key_value_heads=4, max_position_embeddings=64)


def sum_ranks(rank: int, world_size: int, scale: float) -> float:
    t = torch.tensor([float(rank)])
    torch.distributed.all_reduce(t)
    return float(t) * scale


def sum_ranks_and_all_comm_ops(rank: int, world_size: int, scale: float) -> tuple[float, list]:
    return sum_ranks(rank, world_size, scale), all_comm_ops(rank, world_size)


def fail_on_rank_1(rank: int, world_size: int) -> int:
    if rank == 1:
        raise ValueError("deliberate failure on rank 1")
    return rank


def sleep_forever(rank: int, world_size: int) -> None:
    time.sleep(600)


def all_comm_ops(rank: int, world_size: int) -> list:
    """Every wrapped operation once, with known sizes (fp32, 4 bytes per element)."""
    comm = CommRecorder()
    p = world_size
    with comm.step("collectives"):
        comm.all_reduce(torch.ones(10))
        comm.broadcast(torch.ones(3), 0)
        comm.all_gather([torch.empty(4) for _ in range(p)], torch.ones(4))
        comm.all_gather_into_tensor(torch.empty(p * 5), torch.ones(5))
        comm.reduce_scatter(torch.empty(6), [torch.ones(6) for _ in range(p)])
        comm.reduce_scatter_tensor(torch.empty(7), torch.ones(7 * p))
        splits = [r + 1 for r in range(p)]  # uneven: rank r receives r+1 rows from everyone
        out = torch.empty(p * (rank + 1), 2)
        comm.all_to_all_single(out, torch.ones(sum(splits), 2), [rank + 1] * p, splits)
    with comm.step("p2p"):
        peer = 1 - rank
        if rank == 0:
            comm.send(torch.ones(8), peer)
            comm.recv(torch.empty(9), peer)
        else:
            comm.recv(torch.empty(8), peer)
            comm.send(torch.ones(9), peer)
        works = [comm.isend(torch.ones(2), peer), comm.irecv(torch.empty(2), peer)]
        for w in works:
            w.wait()
        ops = [torch.distributed.P2POp(torch.distributed.isend, torch.ones(3), peer),
               torch.distributed.P2POp(torch.distributed.irecv, torch.empty(3), peer)]
        for w in comm.batch_isend_irecv(ops):
            w.wait()
    return list(comm.records)


class RowParallelNoReduce(RowParallelLinear):
    """Mutant: forgets the all-reduce, so each rank keeps only its partial sum."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.t()


def tp_without_all_reduce(rank: int, world_size: int) -> torch.Tensor:
    comm = CommRecorder()
    model = tensor_parallel(workers._load(None), comm)
    for layer in model.model.layers:
        for owner, name in ((layer.self_attn, "o_proj"), (layer.mlp, "down_proj")):
            bad = RowParallelNoReduce.__new__(RowParallelNoReduce)
            torch.nn.Module.__init__(bad)
            bad.weight, bad.comm = getattr(owner, name).weight, comm
            setattr(owner, name, bad)
    with torch.no_grad():
        return model(torch.tensor(TP_IDS), cache=KVCache(model.config.num_hidden_layers))


def pp_drop_last_microbatch(rank: int, world_size: int) -> list[list[int]]:
    comm = CommRecorder()
    mbs = split_microbatches(len(PP_PROMPTS), 3)
    return pipeline_generate(workers._load(None), comm, PP_PROMPTS, 6, 3, microbatches=mbs[:-1])


def ep_ignore_capacity(rank: int, world_size: int, cfg: MoEConfig) -> int:
    comm = CommRecorder()
    moe = MoE(cfg, 0)
    x = workers.moe_tokens(cfg, world_size * MOE_TOKENS_PER_RANK).chunk(world_size)[rank]
    keep_all = lambda ids, num_experts, cap: torch.ones_like(ids, dtype=torch.bool)  # noqa: E731
    return moe_expert_parallel(moe, x, comm, keep_fn=keep_all)[1]


def bundle(rank: int, world_size: int) -> dict:
    """Every strategy's check on these ranks, in one launch (start-up costs seconds)."""
    out = {
        "tp": workers.tp_run(rank, world_size, None, TP_IDS, 3, PROMPTS, 8),
        "tp_head": workers.tp_run(rank, world_size, None, TP_IDS, 1, [], 0, is_lm_head_parallel=True),
        "tp_mutant": tp_without_all_reduce(rank, world_size),
        "pp": workers.pp_run(rank, world_size, None, PP_PROMPTS, 6, 3),
        "pp_mutant": pp_drop_last_microbatch(rank, world_size),
        "pp_bubble": workers.pp_bubble(rank, world_size, None, 8, 64, [1, 4]),
    }
    out["sp"] = workers.sp_run(rank, world_size, None, SP_IDS)
    if world_size == 2:
        out["sp_mha"] = workers.sp_run(rank, world_size, None, [[(5 * j) % 64 for j in range(16)]], 0, MHA)
        for cf in (None, 1.0):
            out[f"ep_{cf}"] = workers.ep_run(rank, world_size, MoEConfig(capacity_factor=cf), MOE_TOKENS_PER_RANK)
        out["ep_mutant"] = ep_ignore_capacity(rank, world_size, MoEConfig(capacity_factor=1.0))
    return out
