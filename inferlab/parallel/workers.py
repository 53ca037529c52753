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

from inferlab.model import KVCache, ensure_checkpoint, generate_greedy, load_checkpoint
from inferlab.parallel.comm import CommRecorder
from inferlab.parallel.launch import rank_device
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
