"""Rank workers for measurements across nodes (run by `inferlab.cluster.torchrun.run_across_nodes`).

`decode_step_ms(rank, world_size, mode, ...)` times greedy decode steps of the tiny model split over
the ranks, TP (`mode="tp"`: two all-reduces per layer) or PP (`mode="pp"`: one send per stage
boundary, one micro-batch) over all ranks, or both (`mode="tp_pp"`: TP over the ranks of a node,
PP across nodes, 2-D groups from `mesh_groups`), after a warm-up, and reports the bytes each rank put
on the wire, the bytes that crossed the inter-node link, and the measured one-message latencies (a
4-byte all-reduce across nodes, and inside a node for "tp_pp": the alphas of the alpha-beta model).
A pipeline step is timed as (prefill + n steps) - (prefill alone), so the prefill is not counted.
"""

from __future__ import annotations

import os
import time

import torch
import torch.distributed as dist

from inferlab.model import KVCache, ensure_checkpoint, load_checkpoint
from inferlab.parallel.comm import CommRecorder
from inferlab.parallel.launch import mesh_groups, rank_device
from inferlab.parallel.pipeline import pipeline_generate
from inferlab.parallel.tensor import tensor_parallel


def _alpha_ms(num_rounds: int = 50, group: dist.ProcessGroup | None = None) -> float:
    """Median time of a 4-byte all-reduce between the ranks (of `group`): the per-message latency."""
    x, times = torch.zeros(1), []
    for _ in range(num_rounds):
        dist.barrier(group=group)
        start = time.perf_counter()
        dist.all_reduce(x, group=group)
        times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[len(times) // 2]


SENDS = ("all_reduce", "send", "isend", "broadcast")


def _traffic(comms: list[CommRecorder]) -> tuple[float, float, float]:
    """(bytes sent, bytes sent across nodes, messages) of every record of `comms`."""
    sends = [r for c in comms for r in c.records if r.op in SENDS]
    return (sum(r.num_bytes for r in sends), sum(r.num_bytes for r in sends if r.is_inter_node), len(sends))


def _pipeline_step(model, comms: list[CommRecorder], prompts: list[list[int]], num_steps: int
                   ) -> tuple[float, tuple[float, ...]]:
    """Seconds and (bytes, inter-node bytes, messages) per decode step of `pipeline_generate` (PP over
    comms[0]): the run of prefill + num_steps minus the run of the prefill alone."""
    times, traffic = {}, {}
    for n in (1, num_steps + 1):
        for c in comms:
            c.records.clear()
        dist.barrier()
        start = time.perf_counter()
        pipeline_generate(model, comms[0], prompts, n, 1)
        times[n], traffic[n] = time.perf_counter() - start, _traffic(comms)
    per_step = tuple((long - short) / num_steps for long, short in zip(traffic[num_steps + 1], traffic[1]))
    return (times[num_steps + 1] - times[1]) / num_steps, per_step


@torch.no_grad()
def decode_step_ms(rank: int, world_size: int, mode: str, batch_size: int = 8, prompt_len: int = 16,
                   num_steps: int = 16) -> dict:
    torch.manual_seed(0)
    model = load_checkpoint(ensure_checkpoint("tiny"), device=rank_device())
    prompts = torch.randint(1, 255, (batch_size, prompt_len)).tolist()
    comms = [CommRecorder()]
    alpha, alpha_intra = _alpha_ms(), None
    if mode == "tp":
        model = tensor_parallel(model, comms[0])
        for warm in (True, False):
            cache = KVCache(model.config.num_hidden_layers)
            logits = model(torch.tensor(prompts, device=rank_device()), cache=cache)
            comms[0].records.clear()
            dist.barrier()
            start = time.perf_counter()
            for _ in range(num_steps):
                logits = model(logits[:, -1:].argmax(-1), cache=cache)
            step_s = (time.perf_counter() - start) / num_steps
    elif mode in ("pp", "tp_pp"):
        if mode == "tp_pp":
            tp_size = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
            mesh = mesh_groups(tp_size, world_size // tp_size, is_tp_inner=True)
            comms = [CommRecorder(group=mesh.pp_group), CommRecorder(group=mesh.tp_group)]
            model = tensor_parallel(model, comms[1])
            alpha, alpha_intra = _alpha_ms(group=mesh.pp_group), _alpha_ms(group=mesh.tp_group)
        _pipeline_step(model, comms, prompts, 2)  # warm-up
        step_s, per_step = _pipeline_step(model, comms, prompts, num_steps)
    else:
        raise ValueError(f"mode must be 'tp', 'pp' or 'tp_pp', got {mode!r}")
    if mode == "tp":
        per_step = tuple(x / num_steps for x in _traffic(comms))
    return {"mode": mode, "step_ms": step_s * 1e3, "bytes_per_step": per_step[0],
            "inter_node_bytes_per_step": per_step[1], "num_messages_per_step": per_step[2],
            "alpha_ms": alpha, "alpha_intra_ms": alpha_intra,
            "hidden_size": model.config.hidden_size, "num_layers": model.config.num_hidden_layers, "rank": rank}


@torch.no_grad()
def one_device_step_ms(batch_size: int = 8, prompt_len: int = 16, num_steps: int = 16) -> float:
    """The same decode on one process (no communication), one thread as each rank has."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = load_checkpoint(ensure_checkpoint("tiny"), device="cpu")
    prompts = torch.randint(1, 255, (batch_size, prompt_len))
    for _ in range(2):
        cache = KVCache(model.config.num_hidden_layers)
        logits = model(prompts, cache=cache)
        start = time.perf_counter()
        for _ in range(num_steps):
            logits = model(logits[:, -1:].argmax(-1), cache=cache)
        elapsed = time.perf_counter() - start
    return elapsed * 1e3 / num_steps
