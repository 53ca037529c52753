"""Ready-made rank workers for `launch`: each runs one strategy and returns plain results.

Floor 2, above the strategy modules. Notebooks and tests call
`launch(workers.tp_run, 2, ...)`; a worker returns dicts of tensors, token lists and
`CommRecord`s (all picklable) so the caller compares them with a single-device run
and with the traffic formulas. Under torchrun the same functions run via
`python -m inferlab.parallel.launch inferlab.parallel.workers:tp_demo`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from inferlab.model import KVCache, LlamaConfig, LlamaForCausalLM, ensure_checkpoint, generate_greedy, load_checkpoint
from inferlab.model.llama import init_weights
from inferlab.parallel.expert import MoE, MoEConfig, moe_expert_parallel
from inferlab.parallel.comm import CommRecorder
from inferlab.parallel.launch import rank_device
from inferlab.parallel.pipeline import measure_bubble, pipeline_generate
from inferlab.parallel.sequence import ring_attention_layer, ulysses_attention, ulysses_forward
from inferlab.parallel.tensor import tensor_parallel


def _load(checkpoint: str | Path | None) -> torch.nn.Module:
    return load_checkpoint(checkpoint or ensure_checkpoint("tiny"), device=rank_device())


def tp_run(rank: int, world_size: int, checkpoint: str | None, input_ids: list[list[int]],
           num_decode_steps: int, prompts: list[list[int]], max_new_tokens: int,
           is_lm_head_parallel: bool = False) -> dict:
    """Tensor-parallel forward + decode steps on `input_ids` [B, T], and greedy generation.

    Returns: {"prefill_logits" [B, T, V], "decode_logits" [steps, B, V], "tokens" per prompt,
    "records": the CommRecords with tags "prefill", "decode-<i>", "generate"}.
    """
    comm = CommRecorder()
    model = tensor_parallel(_load(checkpoint), comm, is_lm_head_parallel=is_lm_head_parallel)
    ids = torch.tensor(input_ids, device=rank_device())
    cache = KVCache(model.config.num_hidden_layers)
    with torch.no_grad():
        with comm.step("prefill"):
            logits = model(ids, cache=cache)
        prefill = logits.cpu()
        decode = []
        for i in range(num_decode_steps):
            nxt = logits[:, -1:].argmax(-1)
            with comm.step(f"decode-{i}"):
                logits = model(nxt, cache=cache)
            decode.append(logits[:, -1].cpu())
        with comm.step("generate"):
            tokens = [generate_greedy(model, p, max_new_tokens) for p in prompts]
    return {"prefill_logits": prefill,
            "decode_logits": torch.stack(decode) if decode else None, "tokens": tokens,
            "records": list(comm.records), "rank": rank}


def tp_demo(rank: int, world_size: int) -> dict:
    """A short TP run for torchrun smoke tests: greedy tokens and all-reduce count per rank."""
    out = tp_run(rank, world_size, None, [[256, 1, 2, 3]], 1, [[256, 72, 105]], 8)
    return {"tokens": out["tokens"], "num_all_reduce": sum(r.op == "all_reduce" for r in out["records"])}


def pp_run(rank: int, world_size: int, checkpoint: str | None, prompts: list[list[int]], max_new_tokens: int,
           num_microbatches: int) -> dict:
    """Pipeline-parallel greedy generation: {"tokens" per prompt, "records"}."""
    comm = CommRecorder()
    tokens = pipeline_generate(_load(checkpoint), comm, prompts, max_new_tokens, num_microbatches)
    return {"tokens": tokens, "records": list(comm.records), "rank": rank}


def pp_bubble(rank: int, world_size: int, checkpoint: str | None, batch_size: int, num_tokens: int,
              microbatch_counts: list[int]) -> list[dict]:
    """Measured per-stage idle fraction of one prefill pass, for each micro-batch count."""
    comm = CommRecorder()
    model = _load(checkpoint)
    measure_bubble(model, comm, batch_size, num_tokens, 1)  # warm-up
    return [measure_bubble(model, comm, batch_size, num_tokens, m) for m in microbatch_counts]


def sp_run(rank: int, world_size: int, checkpoint: str | None, input_ids: list[list[int]], seed: int = 0,
           mha_config: dict | None = None) -> dict:
    """Ulysses prefill: this rank's logits shard and records; plus one attention layer on random input.

    `mha_config` (LlamaConfig fields) builds a random model instead of loading the checkpoint
    (e.g. num_key_value_heads == num_attention_heads to check the 4·N·h/P formula exactly).
    """
    comm = CommRecorder()
    if mha_config is not None:
        model = LlamaForCausalLM(LlamaConfig(**mha_config))
        init_weights(model, seed)
        model = model.to(rank_device()).eval()
    else:
        model = _load(checkpoint)
    ids = torch.tensor(input_ids, device=rank_device())
    logits = ulysses_forward(model, ids, comm)
    gen = torch.Generator().manual_seed(seed)
    n = ids.shape[1]
    x = torch.randn(ids.shape[0], n, model.config.hidden_size, generator=gen).to(rank_device())
    chunk = n // world_size
    with torch.no_grad(), comm.step("attention-check"):
        attn = ulysses_attention(model.model.layers[0].self_attn, x[:, rank * chunk:(rank + 1) * chunk],
                                 torch.arange(rank * chunk, (rank + 1) * chunk, device=x.device), comm,
                                 model.config.rope_theta)
    with torch.no_grad(), comm.step("ring-attention"):
        ring = ring_attention_layer(model.model.layers[0].self_attn, x[:, rank * chunk:(rank + 1) * chunk],
                                    torch.arange(rank * chunk, (rank + 1) * chunk, device=x.device), comm,
                                    model.config.rope_theta)
    return {"logits": logits.cpu(), "attention": attn.cpu(), "ring_attention": ring.cpu(),
            "records": list(comm.records), "rank": rank}


def moe_tokens(moe_config: MoEConfig, num_tokens: int, seed: int = 0) -> torch.Tensor:
    """The seeded token batch [num_tokens, hidden] the MoE runs use (rank r takes chunk r)."""
    gen = torch.Generator().manual_seed(seed + 1)
    return torch.randn(num_tokens, moe_config.hidden_size, generator=gen)


def ep_run(rank: int, world_size: int, moe_config: MoEConfig, num_tokens_per_rank: int, seed: int = 0) -> dict:
    """Expert-parallel MoE on this rank's slice of `moe_tokens`: {"out", "dropped", "records"}."""
    comm = CommRecorder()
    moe = MoE(moe_config, seed).to(rank_device())
    x_local = moe_tokens(moe_config, world_size * num_tokens_per_rank, seed).chunk(world_size)[rank]
    out, dropped = moe_expert_parallel(moe, x_local.to(rank_device()), comm)
    return {"out": out.cpu(), "dropped": dropped, "records": list(comm.records), "rank": rank}


def lab1_tour(rank: int, world_size: int, num_tokens: int = 64) -> dict:
    """Lab 1's multi-process part in one launch: TP, PP (tokens + idle times), Ulysses, MoE."""
    prompts = [[256, i, i + 1, i + 2] for i in range(1, 5)]
    seq = [[(7 * i + 3 * j) % 512 for j in range(16)] for i in range(2)]
    return {
        "tp": tp_run(rank, world_size, None, [[256, 1, 2, 3], [256, 4, 5, 6]], 2, prompts[:2], 8),
        "pp": pp_run(rank, world_size, None, prompts, 8, 2),
        "pp_bubble": pp_bubble(rank, world_size, None, 8, num_tokens, [1, 2, 4, 8]),
        "sp": sp_run(rank, world_size, None, seq),
        "ep": ep_run(rank, world_size, MoEConfig(capacity_factor=1.0), 32),
    }


def hybrid_run(rank: int, world_size: int, tp_size: int, prompts: list[list[int]], max_new_tokens: int,
               layouts: tuple[str, ...] = ("tp_inside", "tp_across")) -> dict:
    """TP x PP greedy generation (TP groups of `tp_size`, PP over the rest), once per layout.

    "tp_inside": TP over consecutive ranks (one node under torchrun), PP across nodes;
    "tp_across": TP over ranks on different nodes, PP inside. Returns per layout the tokens and
    this rank's records as (group "tp"/"pp", op, bytes, crossed the inter-node link).
    """
    from inferlab.parallel.launch import mesh_groups

    out: dict = {"rank": rank}
    for layout in layouts:
        if layout not in ("tp_inside", "tp_across"):
            raise ValueError(f"layout must be 'tp_inside' or 'tp_across', got {layout!r}")
        mesh = mesh_groups(tp_size, world_size // tp_size, is_tp_inner=layout == "tp_inside")
        tp_comm, pp_comm = CommRecorder(group=mesh.tp_group), CommRecorder(group=mesh.pp_group)
        model = tensor_parallel(_load(None), tp_comm)
        tokens = pipeline_generate(model, pp_comm, prompts, max_new_tokens, 1)
        out[layout] = {"tokens": tokens, "tp_ranks": mesh.tp_ranks, "pp_ranks": mesh.pp_ranks,
                       "records": [(kind, r.op, r.num_bytes, r.is_inter_node)
                                   for kind, comm in (("tp", tp_comm), ("pp", pp_comm)) for r in comm.records]}
    return out


def mesh_probe(rank: int, world_size: int, tp_size: int, ranks_per_node: int) -> dict:
    """Per layout ("tp_inside", "tp_across"): one all-reduce in this rank's TP group and one PP
    send/recv pair; the records say which crossed nodes (`ranks_per_node` places the ranks)."""
    from inferlab.parallel.launch import mesh_groups

    out: dict = {}
    for layout in ("tp_inside", "tp_across"):
        mesh = mesh_groups(tp_size, world_size // tp_size, is_tp_inner=layout == "tp_inside")
        tp = CommRecorder(group=mesh.tp_group, ranks_per_node=ranks_per_node)
        pp = CommRecorder(group=mesh.pp_group, ranks_per_node=ranks_per_node)
        total = tp.all_reduce(torch.tensor([float(rank)]))
        x = torch.tensor([-1.0])
        if mesh.pp_rank == 0:
            pp.send(torch.tensor([float(rank)]), 1)
        elif mesh.pp_rank == 1:
            pp.recv(x, 0)
        out[layout] = {"tp_sum": total.item(), "received": x.item(), "tp_ranks": mesh.tp_ranks,
                       "records": [(r.op, r.peer, r.is_inter_node) for r in tp.records + pp.records]}
    return out
