"""`inferlab bench parallel [--quick]`: tensor parallelism TP=1 against TP=2 on CPU, measured and predicted.

Both variants run the kit's own Megatron split (`inferlab.parallel.tensor`) of the `small`
preset (~30M parameters) in ranks started by `inferlab.parallel.launch`: gloo on CPU (NCCL on
GPUs), one thread per rank, so TP=2 uses two cores where TP=1 uses one. Each round runs TP=1
then TP=2 (alternated over rounds; medians over rounds). Per variant: prefill (B prompts of T
tokens in one forward) and decode (D greedy steps of B sequences with the KV cache), in tokens/s.

`comm_share`: the part of TP=2's time rank 0 spends inside its all-reduces (timed around
each call by `TimedComm`, a `CommRecorder`; it includes waiting for the other rank).

`predicted_speedup`: the cost model's alpha-beta terms with this machine's numbers: TP=1's
measured time split evenly over 2 ranks (the roofline's 1/TP of FLOPs and weight bytes) plus
2 all-reduces per layer priced by `costmodel.roofline.ring_allreduce_s`, with alpha and
bandwidth fitted from a small and a large gloo all-reduce in the same TP=2 ranks.
JSON keys: tp1_tok_s, tp2_tok_s, speedup, comm_share, predicted_speedup (decode, the
serving-bound phase), and the same per phase under "prefill" and "decode".
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from inferlab.costmodel.roofline import ring_allreduce_s
from inferlab.parallel.comm import CommRecorder


@dataclass
class TimedComm(CommRecorder):
    """A CommRecorder that also adds up the wall time spent in all-reduces."""

    seconds: float = 0.0

    def all_reduce(self, t: torch.Tensor, op: dist.ReduceOp = dist.ReduceOp.SUM) -> torch.Tensor:
        start = time.perf_counter()
        out = super().all_reduce(t, op)
        self.seconds += time.perf_counter() - start
        return out


def fit_alpha_beta(comm: CommRecorder, num_ranks: int, repeats: int = 20) -> tuple[float, float]:
    """(alpha_s, bandwidth_bytes_per_s) of a ring all-reduce, from a 4-byte and a 4 MiB message."""
    def timed(numel: int) -> float:
        t = torch.ones(numel)
        comm.all_reduce(t)  # warm
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            comm.all_reduce(t)
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    steps = 2 * (num_ranks - 1)
    small, big_bytes = timed(1), 4 << 20
    big = timed(big_bytes // 4)
    alpha = small / steps
    bandwidth = steps / num_ranks * big_bytes / max(big - steps * alpha, 1e-9)
    return alpha, bandwidth


def tp_bench_worker(rank: int, world_size: int, checkpoint: str, batch_size: int, prompt_tokens: int,
                    num_decode_steps: int, repeats: int) -> dict:
    """Median prefill and decode seconds (and their all-reduce seconds) of this rank."""
    from inferlab.model import KVCache, load_checkpoint
    from inferlab.parallel.launch import rank_device
    from inferlab.parallel.tensor import tensor_parallel

    torch.set_num_threads(1)
    comm = TimedComm(enabled=False)
    model = load_checkpoint(checkpoint, device=rank_device())
    if world_size > 1:
        tensor_parallel(model, comm)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (batch_size, prompt_tokens), generator=gen).to(rank_device())
    rows = []
    with torch.no_grad():
        for i in range(repeats + 1):  # the first is a warm-up
            cache = KVCache(model.config.num_hidden_layers)
            comm.seconds = 0.0
            start = time.perf_counter()
            logits = model(ids, cache=cache)
            prefill_s, prefill_comm_s = time.perf_counter() - start, comm.seconds
            comm.seconds = 0.0
            start = time.perf_counter()
            for _ in range(num_decode_steps):
                logits = model(logits[:, -1:].argmax(-1), cache=cache)
            decode_s, decode_comm_s = time.perf_counter() - start, comm.seconds
            if i:
                rows.append((prefill_s, prefill_comm_s, decode_s, decode_comm_s))
        alpha, bandwidth = fit_alpha_beta(comm, world_size) if world_size > 1 else (0.0, 0.0)
    med = [statistics.median(col) for col in zip(*rows)]
    return {"prefill_s": med[0], "prefill_comm_s": med[1], "decode_s": med[2], "decode_comm_s": med[3],
            "alpha_s": alpha, "bandwidth_bytes_per_s": bandwidth, "rank": rank}


def predicted_tp2_s(tp1_s: float, num_layers: int, num_tokens: int, hidden_size: int, alpha_s: float,
                    bandwidth_bytes_per_s: float, dtype_bytes: int = 4, tp: int = 2) -> float:
    """TP=1 time / tp + 2 ring all-reduces per layer of num_tokens x hidden x dtype bytes."""
    one = ring_allreduce_s(num_tokens * hidden_size * dtype_bytes, tp, bandwidth_bytes_per_s, alpha_s)
    return tp1_s / tp + 2 * num_layers * one


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inferlab bench parallel", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round, fewer repeats")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--decode-steps", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args(argv)
    from inferlab.model import PRESETS, ensure_checkpoint
    from inferlab.parallel.launch import launch

    if args.preset not in PRESETS:
        parser.error(f"unknown preset {args.preset!r}; choose from {sorted(PRESETS)}")
    rounds = args.rounds or (1 if args.quick else 3)
    repeats = 2 if args.quick else 5
    checkpoint = str(ensure_checkpoint(args.preset))  # built once here, not by two ranks at once
    config = PRESETS[args.preset]
    work = (checkpoint, args.batch_size, args.prompt_tokens, args.decode_steps, repeats)
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for r in range(rounds):
        for tp in (1, 2):
            out = launch(tp_bench_worker, tp, *work, num_threads_per_rank=1, timeout_s=600)[0]
            runs[tp].append(out)
            print(f"round {r + 1} TP={tp}: prefill {out['prefill_s'] * 1e3:8.1f} ms (comm {out['prefill_comm_s'] * 1e3:6.1f}),"
                  f" decode {args.decode_steps} steps {out['decode_s'] * 1e3:8.1f} ms (comm {out['decode_comm_s'] * 1e3:6.1f})",
                  flush=True)

    def med(tp: int, key: str) -> float:
        return statistics.median(run[key] for run in runs[tp])

    alpha, bandwidth = med(2, "alpha_s"), med(2, "bandwidth_bytes_per_s")
    phases = {}
    for phase, num_tokens, tokens_per_token_count in (
            ("prefill", args.batch_size * args.prompt_tokens, args.batch_size * args.prompt_tokens),
            ("decode", args.batch_size, args.batch_size * args.decode_steps)):
        t1, t2 = med(1, f"{phase}_s"), med(2, f"{phase}_s")
        steps = 1 if phase == "prefill" else args.decode_steps
        predicted = predicted_tp2_s(t1 / steps, config.num_hidden_layers, num_tokens, config.hidden_size, alpha,
                                    bandwidth) * steps
        phases[phase] = {"tp1_tok_s": tokens_per_token_count / t1, "tp2_tok_s": tokens_per_token_count / t2,
                         "speedup": t1 / t2, "comm_share": med(2, f"{phase}_comm_s") / t2,
                         "predicted_speedup": t1 / predicted, "tp1_s": t1, "tp2_s": t2}
    print(f"\n{'phase':<8} {'TP=1 tok/s':>11} {'TP=2 tok/s':>11} {'speed-up':>9} {'comm share':>11} {'predicted':>10}")
    for phase, p in phases.items():
        print(f"{phase:<8} {p['tp1_tok_s']:>11.1f} {p['tp2_tok_s']:>11.1f} {p['speedup']:>9.2f} "
              f"{p['comm_share']:>11.1%} {p['predicted_speedup']:>10.2f}")
    print(f"gloo all-reduce fit: alpha {alpha * 1e6:.1f} us, bandwidth {bandwidth / 1e9:.2f} GB/s")
    from inferlab.hardware import describe

    hw = describe()
    d = phases["decode"]
    print(json.dumps({"tp1_tok_s": d["tp1_tok_s"], "tp2_tok_s": d["tp2_tok_s"], "speedup": d["speedup"],
                      "comm_share": d["comm_share"], "predicted_speedup": d["predicted_speedup"], **phases,
                      "alpha_s": alpha, "bandwidth_bytes_per_s": bandwidth, "preset": args.preset,
                      "batch_size": args.batch_size, "prompt_tokens": args.prompt_tokens,
                      "decode_steps": args.decode_steps, "rounds": rounds,
                      "device": f"{hw.cpu_cores} CPU cores, {'gloo' if not hw.gpus else 'nccl'}, one thread per rank"}))
    return 0
