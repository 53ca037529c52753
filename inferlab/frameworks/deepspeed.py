"""DeepSpeed-Inference (AutoTP, kernel injection off) on the kit's checkpoint, behind the kit's HTTP API.

`serve(tp_size=2)` starts `tp_size` rank processes (`python -m inferlab.frameworks.deepspeed`,
RANK/WORLD_SIZE/MASTER_* in the environment; gloo and one thread per rank on CPU, NCCL on
GPUs). Each loads the checkpoint with `transformers` and shards it with
`deepspeed.init_inference(tensor_parallel={"tp_size": P}, replace_with_kernel_inject=False)`.
Rank 0 serves `inferlab.frameworks.batchfront` (OpenAI /v1/completions, static batches) and
broadcasts each batch to the other ranks; every rank then runs the same greedy decode (KV
cache of `transformers`) so the all-reduces of AutoTP line up. DeepSpeed's shared-memory
all-reduce op is switched off (it crashes on some CPUs).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Callable, Iterator

from inferlab.frameworks.common import (
    LOOPBACK, check_checkpoint, check_port, child_env, free_port, managed_process, module_missing, require_module,
)

NAME = "deepspeed"
INSTALL = "pip install deepspeed==0.19.8 (`make install`)"


def skip_reason() -> str | None:
    return module_missing("deepspeed", NAME, INSTALL) or module_missing("transformers", NAME, "pip install transformers")


@contextlib.contextmanager
def serve(checkpoint: str | Path | None = None, port: int | None = None, tp_size: int = 2,
          max_batch_size: int = 16, startup_timeout_s: float = 300.0) -> Iterator[str]:
    """`tp_size` DeepSpeed AutoTP ranks behind the kit's OpenAI API; yields rank 0's base URL."""
    require_module("deepspeed", NAME, INSTALL)
    if not isinstance(tp_size, int) or tp_size < 1:
        raise ValueError(f"{NAME}: tp_size must be an integer >= 1, got {tp_size!r}")
    path = check_checkpoint(checkpoint, NAME)
    port = check_port(port, NAME)
    master_port = free_port()
    base = f"http://{LOOPBACK}:{port}"
    with contextlib.ExitStack() as stack:
        for rank in reversed(range(tp_size)):  # rank 0 last: it is the one waited on
            env = child_env(RANK=str(rank), WORLD_SIZE=str(tp_size), LOCAL_RANK=str(rank), MASTER_ADDR=LOOPBACK,
                            MASTER_PORT=str(master_port), OMP_NUM_THREADS="1")
            cmd = [sys.executable, "-m", "inferlab.frameworks.deepspeed", str(path), "--port", str(port),
                   "--max-batch-size", str(max_batch_size)]
            ready = base + "/health" if rank == 0 else None
            stack.enter_context(managed_process(f"{NAME}-rank{rank}", cmd, ready, env, startup_timeout_s))
        yield base


def _load(checkpoint: str):
    import deepspeed
    import torch
    from transformers import LlamaForCausalLM

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # its CPU all-reduce segfaults here
    cuda = torch.cuda.is_available()
    deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo")
    world_size = torch.distributed.get_world_size()
    model = LlamaForCausalLM.from_pretrained(checkpoint, torch_dtype=torch.float32)
    engine = deepspeed.init_inference(model, tensor_parallel={"tp_size": world_size}, dtype=torch.float32,
                                      replace_with_kernel_inject=False)
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    engine.module.to(device).eval()
    return engine.module, model.config, device


def greedy_batch(module, device, prompts: list[list[int]], max_new_tokens: int,
                 on_step: Callable[[int, list[int]], bool]) -> None:
    """Left-padded greedy decode with the KV cache; `on_step(step, tokens)` False stops early."""
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        out = module(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        for step in range(max_new_tokens):
            nxt = out.logits[:, -1].argmax(-1)
            go_on = on_step(step, nxt.tolist())
            if step == max_new_tokens - 1 or not go_on:
                return
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            positions = positions[:, -1:] + 1
            out = module(input_ids=nxt[:, None], attention_mask=mask, position_ids=positions,
                         past_key_values=out.past_key_values, use_cache=True)


def _rank_main(checkpoint: str, port: int, max_batch_size: int) -> int:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    module, config, device = _load(checkpoint)
    rank, world_size = dist.get_rank(), dist.get_world_size()

    def generate(prompts: list[list[int]], max_new_tokens: int, on_step: Callable[[int, list[int]], bool]) -> None:
        if world_size > 1:  # every rank runs the same batch, step for step
            dist.broadcast_object_list([(prompts, max_new_tokens)], src=0)
            deliver = on_step
            on_step = lambda step, tokens: deliver(step, tokens) or True  # noqa: E731 (no early stop: ranks in step)
        greedy_batch(module, device, prompts, max_new_tokens, on_step)

    if rank != 0:
        while True:
            box = [None]
            dist.broadcast_object_list(box, src=0)
            if box[0] is None:
                return 0
            greedy_batch(module, device, box[0][0], box[0][1], lambda step, tokens: True)

    from aiohttp import web

    from inferlab.frameworks.batchfront import build_app

    app = build_app(generate, "tiny", config.vocab_size, config.max_position_embeddings, config.eos_token_id,
                    max_batch_size)
    print(f"deepspeed AutoTP tp={world_size} serving on http://{LOOPBACK}:{port}", flush=True)
    web.run_app(app, host=LOOPBACK, port=port, print=None)  # returns on SIGTERM/SIGINT
    if world_size > 1:  # tell the other ranks to leave their loop
        dist.broadcast_object_list([None], src=0)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m inferlab.frameworks.deepspeed")
    parser.add_argument("checkpoint")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-batch-size", type=int, default=16)
    ns = parser.parse_args(argv)
    return _rank_main(ns.checkpoint, ns.port, ns.max_batch_size)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
