"""Rank workers for measurements across nodes (run by `inferlab.cluster.torchrun.run_across_nodes`).

`decode_step_ms(rank, world_size, mode, ...)` times greedy decode steps of the tiny model split over
the ranks, TP (`mode="tp"`: two all-reduces per layer) or PP (`mode="pp"`: one send per stage
boundary, one micro-batch), after a warm-up, and reports the bytes each rank put on the wire and the
measured one-message latency (a 4-byte all-reduce, the alpha of the alpha-beta model).
"""

from __future__ import annotations

import time

import torch
import torch.distributed as dist

from inferlab.model import KVCache, ensure_checkpoint, load_checkpoint
from inferlab.parallel.comm import CommRecorder
from inferlab.parallel.launch import rank_device
from inferlab.parallel.pipeline import pipeline_generate
from inferlab.parallel.tensor import tensor_parallel


def _alpha_ms(num_rounds: int = 50) -> float:
    """Median time of a 4-byte all-reduce between the ranks: the per-message latency."""
    x, times = torch.zeros(1), []
    for _ in range(num_rounds):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(x)
        times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[len(times) // 2]


@torch.no_grad()
def decode_step_ms(rank: int, world_size: int, mode: str, batch_size: int = 8, prompt_len: int = 16,
                   num_steps: int = 16) -> dict:
    torch.manual_seed(0)
    model = load_checkpoint(ensure_checkpoint("tiny"), device=rank_device())
    prompts = torch.randint(1, 255, (batch_size, prompt_len)).tolist()
    comm = CommRecorder()
    alpha = _alpha_ms()
    if mode == "tp":
        model = tensor_parallel(model, comm)
        for warm in (True, False):
            cache = KVCache(model.config.num_hidden_layers)
            logits = model(torch.tensor(prompts, device=rank_device()), cache=cache)
            comm.records.clear()
            dist.barrier()
            start = time.perf_counter()
            for _ in range(num_steps):
                logits = model(logits[:, -1:].argmax(-1), cache=cache)
            elapsed = time.perf_counter() - start
    elif mode == "pp":
        for warm in (True, False):
            comm.records.clear()
            dist.barrier()
            start = time.perf_counter()
            pipeline_generate(model, comm, prompts, num_steps + 1, 1)
            elapsed = time.perf_counter() - start
        # the first step is the prefill: take the decode share by the step count (prefill of 16 tokens is
        # ~ as cheap as a decode step on this model; the bench reports the whole as per-step time)
    else:
        raise ValueError(f"mode must be 'tp' or 'pp', got {mode!r}")
    sent = sum(r.num_bytes for r in comm.records if r.op in ("all_reduce", "send", "isend", "broadcast"))
    return {"mode": mode, "step_ms": elapsed * 1e3 / num_steps, "bytes_per_step": sent / num_steps,
            "alpha_ms": alpha, "num_messages_per_step": len(comm.records) / num_steps,
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
