"""Pipeline parallelism: layers split into stages, micro-batches passed by send/recv.

Floor 2. `PipelineStage` keeps the layers of one stage (`shard.partition_layers`),
the embedding on the first stage and the final norm + LM head on the last, and
runs a forward-only GPipe schedule: micro-batch j enters stage s when stage s-1
has sent it and stage s has finished micro-batch j-1. `pipeline_generate` decodes
greedily with it (the last stage sends each micro-batch's next tokens back to
stage 0). `simulate_gpipe` is the pure schedule model the measured idle times are
compared with.

Bubble conventions, p stages, m micro-batches, equal stage time t:
- "total" (default): idle share of all stage-time, (p-1)/(m+p-1) = bubble / makespan,
  makespan = (m+p-1)·t (GPipe, Huang et al. 2019);
- "ideal": bubble time relative to the ideal (bubble-free) time m·t, (p-1)/m (Megatron-LM,
  Narayanan et al. 2021, "bubble time fraction").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from inferlab.model.llama import KVCache, LlamaForCausalLM, rope_cos_sin
from inferlab.parallel.comm import CommRecorder
from inferlab.parallel.shard import balanced_ranges, partition_layers


def bubble_fraction(num_stages: int, num_microbatches: int, convention: str = "total") -> float:
    """(p-1)/(m+p-1) for "total" (share of the makespan), (p-1)/m for "ideal" (relative to m·t)."""
    if num_stages < 1 or num_microbatches < 1:
        raise ValueError("num_stages and num_microbatches must be >= 1")
    p, m = num_stages, num_microbatches
    if convention == "total":
        return (p - 1) / (m + p - 1)
    if convention == "ideal":
        return (p - 1) / m
    raise ValueError(f"convention must be 'total' or 'ideal', got {convention!r}")


@dataclass(frozen=True)
class ScheduleEvent:
    stage: int
    microbatch: int
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Schedule:
    """Result of `simulate_gpipe`: the events, the makespan and the idle (bubble) share."""

    events: tuple[ScheduleEvent, ...]
    num_stages: int
    num_microbatches: int

    @property
    def makespan_s(self) -> float:
        return max(e.end_s for e in self.events) - min(e.start_s for e in self.events)

    def busy_s(self, stage: int) -> float:
        return sum(e.end_s - e.start_s for e in self.events if e.stage == stage)

    @property
    def bubble_fraction(self) -> float:
        """Idle stage-time / (num_stages × makespan)."""
        busy = sum(self.busy_s(s) for s in range(self.num_stages))
        return 1.0 - busy / (self.num_stages * self.makespan_s)


def simulate_gpipe(num_stages: int, num_microbatches: int, stage_time_s: float | list[float] = 1.0,
                   comm_time_s: float = 0.0) -> Schedule:
    """Forward-only GPipe timeline: start(s, j) = max(end(s-1, j) + comm, end(s, j-1)).

    Args:
        stage_time_s: one value for every stage, or one per stage (uneven stages).
        comm_time_s: time for an activation to go from stage s to s+1.
    """
    times = [stage_time_s] * num_stages if isinstance(stage_time_s, (int, float)) else list(stage_time_s)
    if len(times) != num_stages or num_microbatches < 1 or min(times) < 0:
        raise ValueError("need num_microbatches >= 1 and one non-negative stage time per stage")
    end = [[0.0] * num_microbatches for _ in range(num_stages)]
    events = []
    for s in range(num_stages):
        for j in range(num_microbatches):
            ready = end[s - 1][j] + comm_time_s if s else 0.0
            start = max(ready, end[s][j - 1] if j else 0.0)
            end[s][j] = start + times[s]
            events.append(ScheduleEvent(s, j, start, end[s][j]))
    return Schedule(tuple(events), num_stages, num_microbatches)


def split_microbatches(batch_size: int, num_microbatches: int) -> list[range]:
    """Contiguous sequence ranges, one per micro-batch (earlier ones take the remainder)."""
    return balanced_ranges(batch_size, num_microbatches, "num_microbatches", "batch_size")


class PipelineStage:
    """One stage's share of a full model (other layers are dropped to free memory)."""

    def __init__(self, model: LlamaForCausalLM, comm: CommRecorder) -> None:
        self.comm, self.config = comm, model.config
        self.stage, self.num_stages = comm.rank, comm.world_size
        self.layer_ids = partition_layers(self.config.num_hidden_layers, self.num_stages)[self.stage]
        self.layers = {i: model.model.layers[i] for i in self.layer_ids}
        self.is_first, self.is_last = self.stage == 0, self.stage == self.num_stages - 1
        self.embed = model.model.embed_tokens if self.is_first else None
        self.norm, self.lm_head = (model.model.norm, model.lm_head) if self.is_last else (None, None)
        self.device = model.device
        self.pending: list = []
        self.timings: list[tuple[int, float, float]] = []  # (microbatch, start, end) of compute

    def _now(self) -> float:
        if self.device.type == "cuda":  # kernels are asynchronous: wait before reading the clock
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    @torch.no_grad()
    def run(self, shapes: list[tuple[int, int]], caches: list[KVCache], start_pos: int,
            input_fn: Callable[[int], torch.Tensor] | None = None,
            output_fn: Callable[[int, torch.Tensor], None] | None = None) -> None:
        """One forward pass of every micro-batch j (shape [b_j, T]) through this stage.

        Stage 0 reads token ids from `input_fn(j)`; the last stage hands logits [b_j, T, V]
        to `output_fn(j, logits)`. Activations [b_j, T, hidden] go to the next stage by isend.
        """
        hidden = self.config.hidden_size
        for j, (b, t) in enumerate(shapes):
            if self.is_first:
                ids = input_fn(j)
            else:
                x = torch.empty(b, t, hidden, device=self.device)
                self.comm.recv(x, self.stage - 1)
            began = time.perf_counter()
            if self.is_first:
                x = self.embed(ids)
            positions = torch.arange(start_pos, start_pos + t, device=self.device)
            cos, sin = rope_cos_sin(positions, self.config.head_dim, self.config.rope_theta)
            for i in self.layer_ids:
                x = self.layers[i](x, cos[None, None], sin[None, None], caches[j], i)
            if self.is_last:
                logits = self.lm_head(self.norm(x))
                self.timings.append((j, began, self._now()))
                output_fn(j, logits)
            else:
                self.timings.append((j, began, self._now()))
                self.pending.append(self.comm.isend(x.contiguous(), self.stage + 1))
        for work in self.pending:
            work.wait()
        self.pending.clear()


def pipeline_generate(model: LlamaForCausalLM, comm: CommRecorder, prompts: list[list[int]],
                      max_new_tokens: int, num_microbatches: int,
                      microbatches: list[range] | None = None) -> list[list[int]]:
    """Greedy decoding of equal-length `prompts` through the pipeline (run on every rank).

    Returns on every rank the new tokens per prompt (received from the last stage);
    a prompt in no micro-batch gets an empty list.
    """
    if len({len(p) for p in prompts}) != 1:
        raise ValueError("pipeline_generate needs equal-length prompts (no padding here)")
    stage = PipelineStage(model, comm)
    mbs = microbatches if microbatches is not None else split_microbatches(len(prompts), num_microbatches)
    caches = [KVCache(model.config.num_hidden_layers) for _ in mbs]
    ids = torch.tensor(prompts, device=stage.device)
    tokens = torch.full((len(prompts), max_new_tokens), -1, dtype=torch.long, device=stage.device)
    last = comm.world_size - 1
    pos = 0
    for k in range(max_new_tokens):
        t = ids.shape[1] if k == 0 else 1

        def input_fn(j: int, k: int = k) -> torch.Tensor:
            if k == 0:
                return ids[mbs[j].start:mbs[j].stop]
            col = tokens[mbs[j].start:mbs[j].stop, k - 1:k].contiguous()
            if last:  # the next tokens come back from the last stage
                comm.recv(col, last)
            return col

        def output_fn(j: int, logits: torch.Tensor, k: int = k) -> None:
            nxt = logits[:, -1].argmax(-1)
            tokens[mbs[j].start:mbs[j].stop, k] = nxt
            if last and k + 1 < max_new_tokens:
                stage.pending.append(comm.isend(nxt[:, None].contiguous(), 0))

        with comm.step(f"step-{k}"):
            stage.run([(len(r), t) for r in mbs], caches, pos, input_fn, output_fn)
        pos += t
    if last:  # everyone returns the same tokens: the last stage broadcasts them
        comm.broadcast(tokens, last)
    return [[int(v) for v in row if v >= 0] for row in tokens.tolist()]


@torch.no_grad()
def measure_bubble(model: LlamaForCausalLM, comm: CommRecorder, batch_size: int, num_tokens: int,
                   num_microbatches: int, seed: int = 0) -> dict:
    """Time one prefill pass of `num_microbatches` micro-batches; return this stage's busy/idle times.

    idle_fraction = 1 - busy / wall, wall from a barrier before the pass to the end of this
    stage's last micro-batch plus the wait for the other stages (a barrier after it).
    """
    stage = PipelineStage(model, comm)
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.config.vocab_size, (batch_size, num_tokens), generator=gen).to(stage.device)
    mbs = split_microbatches(batch_size, num_microbatches)
    caches = [KVCache(model.config.num_hidden_layers) for _ in mbs]
    comm.barrier()
    t0 = time.perf_counter()
    stage.run([(len(r), num_tokens) for r in mbs], caches, 0,
              lambda j: ids[mbs[j].start:mbs[j].stop], lambda j, logits: None)
    comm.barrier()
    wall = time.perf_counter() - t0
    busy = sum(e - s for _, s, e in stage.timings)
    return {"stage": stage.stage, "busy_s": busy, "wall_s": wall, "idle_fraction": 1.0 - busy / wall,
            "microbatch_times_s": [e - s for _, s, e in stage.timings]}
