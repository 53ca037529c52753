"""The same checkpoint under the frameworks' tensor parallelism: DeepSpeed-Inference AutoTP and vLLM.

Floor 2, beside `tensor.py`: the hand-written Megatron split is checked against
what production frameworks do with the same files (`ensure_checkpoint("tiny")`).

- `deepspeed_tp_run` is a rank worker for `launch`: it loads the checkpoint with
  `transformers`, shards it with `deepspeed.init_inference(tensor_parallel={"tp_size": P})`
  (AutoTP: column/row split found from the module names, no kernel injection) on the
  process group `launch` created (gloo on CPU, NCCL on GPUs), and returns logits and
  greedy tokens. DeepSpeed's shared-memory all-reduce op crashes on some CPUs, so it is
  switched off before `init_distributed`.
- `vllm_generate` runs vLLM in a subprocess (`python -m inferlab.parallel.frameworks vllm`)
  because the engine spawns workers and must start under `if __name__ == "__main__"`.
  On CPU it uses the "mp" executor, `VLLM_CPU_OMP_THREADS_BIND` with one core per rank
  and a 1 GiB KV cache; prompts are token ids (no tokenizer).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from inferlab.hardware import num_cpu_cores, num_gpus
from inferlab.parallel.launch import rank_device


def deepspeed_tp_run(rank: int, world_size: int, checkpoint: str, input_ids: list[list[int]],
                     prompts: list[list[int]], max_new_tokens: int) -> dict:
    """AutoTP forward of `input_ids` [B, T].

    Returns {"logits" [B, T, V], "tokens" per prompt (greedy, no EOS stop),
    "one_token_all_reduce_bytes": bytes of each all-reduce in a forward of one token per sequence}.
    """
    import deepspeed
    from transformers import LlamaForCausalLM as HFLlama

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # its CPU all-reduce segfaults here
    deepspeed.init_distributed(dist_backend=torch.distributed.get_backend())
    model = HFLlama.from_pretrained(checkpoint, torch_dtype=torch.float32)
    engine = deepspeed.init_inference(model, tensor_parallel={"tp_size": world_size}, dtype=torch.float32,
                                      replace_with_kernel_inject=False)
    device = rank_device()
    engine.module.to(device)
    with torch.no_grad():
        logits = engine(torch.tensor(input_ids, device=device)).logits.cpu()
        with _count_all_reduce() as calls:  # one forward of one token per sequence, as in a decode step
            engine(torch.tensor(input_ids, device=device)[:, :1])
        tokens = []
        for prompt in prompts:
            ids = torch.tensor([prompt], device=device)
            out = []
            for _ in range(max_new_tokens):  # full recompute: short sequences, no cache subtleties
                nxt = engine(ids).logits[:, -1].argmax(-1, keepdim=True)
                out.append(int(nxt))
                ids = torch.cat([ids, nxt], dim=1)
            tokens.append(out)
    return {"logits": logits, "tokens": tokens, "rank": rank, "one_token_all_reduce_bytes": calls}


@contextlib.contextmanager
def _count_all_reduce() -> Iterator[list[int]]:
    """Record the bytes of every torch.distributed.all_reduce made inside the block (DeepSpeed's path
    once its shared-memory op is off)."""
    calls: list[int] = []
    original = torch.distributed.all_reduce

    def counting(tensor, *args, **kwargs):
        calls.append(tensor.numel() * tensor.element_size())
        return original(tensor, *args, **kwargs)

    torch.distributed.all_reduce = counting
    try:
        yield calls
    finally:
        torch.distributed.all_reduce = original


def vllm_env(tp_size: int) -> dict[str, str]:
    """Environment for a vLLM run on this machine (CPU: one OpenMP core set per rank)."""
    env = dict(os.environ)
    if num_gpus() == 0:
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        cores = num_cpu_cores()
        per = max(1, cores // tp_size)
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND",
                       "|".join(f"{r * per}-{r * per + per - 1}" if per > 1 else str(r) for r in range(tp_size)))
    return env


def vllm_generate(checkpoint: str | Path, prompts: list[list[int]], max_new_tokens: int, tp_size: int = 1,
                  timeout_s: float = 300.0) -> dict:
    """Greedy tokens from vLLM with `tensor_parallel_size=tp_size`, run in a subprocess.

    Returns {"tokens": [[...] per prompt], "startup_s", "generate_s", "tp_size"}.
    Raises RuntimeError with the tail of vLLM's log if the run fails.
    """
    cmd = [sys.executable, "-m", "inferlab.parallel.frameworks", "vllm", str(checkpoint),
           json.dumps(prompts), str(max_new_tokens), "--tp", str(tp_size)]
    proc = subprocess.run(cmd, env=vllm_env(tp_size), capture_output=True, text=True, timeout=timeout_s)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"vLLM tp={tp_size} failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1])


def _vllm_main(checkpoint: str, prompts: list[list[int]], max_new_tokens: int, tp_size: int) -> dict:
    import time

    from vllm import LLM, SamplingParams

    started = time.perf_counter()
    kwargs = dict(model=checkpoint, skip_tokenizer_init=True, tensor_parallel_size=tp_size, dtype="float32",
                  gpu_memory_utilization=0.1 if num_gpus() == 0 else 0.3, max_model_len=256, enforce_eager=True,
                  seed=0)
    if tp_size > 1:
        kwargs["distributed_executor_backend"] = "mp"
    llm = LLM(**kwargs)
    ready = time.perf_counter()
    params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, ignore_eos=True, detokenize=False)
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    done = time.perf_counter()
    return {"tp_size": tp_size, "tokens": [list(o.outputs[0].token_ids) for o in outs],
            "startup_s": ready - started, "generate_s": done - ready}


def main(argv: list[str]) -> int:
    """`python -m inferlab.parallel.frameworks vllm CHECKPOINT PROMPTS_JSON MAX_NEW [--tp N]`: one JSON line."""
    parser = argparse.ArgumentParser(prog="inferlab.parallel.frameworks")
    parser.add_argument("framework", choices=["vllm"])
    parser.add_argument("checkpoint")
    parser.add_argument("prompts", help="JSON list of token-id lists")
    parser.add_argument("max_new_tokens", type=int)
    parser.add_argument("--tp", type=int, default=1)
    ns = parser.parse_args(argv)
    print(json.dumps(_vllm_main(ns.checkpoint, json.loads(ns.prompts), ns.max_new_tokens, ns.tp)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
