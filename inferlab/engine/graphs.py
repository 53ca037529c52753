"""CUDA graphs for decode steps: captured once per padded batch size, replayed every step.

A decode step of a small model on a GPU is launch-bound: hundreds of small kernels whose
launch costs more than their work. A CUDA graph records the launches of one step once and
replays them with one call. Replay needs fixed shapes and fixed addresses, so `DecodeGraphs`
owns static input buffers, pads each decode-only batch up to the next bucket (1, 2, 4, 8, ...,
max_num_seqs), and attends with `StaticDecodeAttention` (every row reads its whole table
width; nothing depends on host values). Padded rows write their K/V to the runner's scratch
block, which the allocator never hands out.

`capture=False` runs the very same padded, static-buffer step eagerly: the path the tests
exercise on a CPU (the graphs themselves need CUDA). `EngineConfig.enable_cuda_graphs`
turns the whole thing off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from inferlab.engine.scheduler import ScheduledChunk
from inferlab.model.attention import StaticDecodeAttention, StepInputs

if TYPE_CHECKING:
    from inferlab.engine.runner import ModelRunner


def batch_buckets(max_num_seqs: int) -> list[int]:
    """Padded batch sizes a graph is captured for: powers of two below max_num_seqs, then max_num_seqs."""
    buckets, b = [], 1
    while b < max_num_seqs:
        buckets.append(b)
        b *= 2
    return buckets + [max_num_seqs]


class DecodeGraphs:
    """Decode-only steps through static buffers, replayed from CUDA graphs.

    Args:
        runner: the model runner whose model, pool and block tables are used.
        capture: record and replay CUDA graphs (default: on a CUDA device); False runs the same
            static-buffer step eagerly.
    """

    def __init__(self, runner: ModelRunner, capture: bool | None = None) -> None:
        self.runner = runner
        self.capture = runner.device.type == "cuda" if capture is None else capture
        if self.capture and runner.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, not {runner.device}")
        self.buckets = batch_buckets(runner.config.max_num_seqs)
        n, dev, bs = self.buckets[-1], runner.device, runner.config.block_size
        self.backend = StaticDecodeAttention()
        scratch_slot = runner.scratch_block * bs
        self.token_ids = torch.zeros(n, dtype=torch.long, device=dev)
        self.positions = torch.zeros(n, dtype=torch.long, device=dev)
        self.slot_mapping = torch.full((n,), scratch_slot, dtype=torch.long, device=dev)
        self.seq_lens = torch.ones(n, dtype=torch.long, device=dev)
        self.block_tables = torch.full((n, runner.max_blocks_per_seq), runner.scratch_block, dtype=torch.long,
                                       device=dev)
        self.arange = torch.arange(n + 1, device=dev)
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.num_replays = 0  # decode steps served by this path

    def can_run(self, chunks: list[ScheduledChunk]) -> bool:
        """A decode-only step no larger than the largest bucket."""
        return 0 < len(chunks) <= self.buckets[-1] and all(c.is_decode for c in chunks)

    def _inputs(self, b: int) -> StepInputs:
        return StepInputs(
            token_ids=self.token_ids[:b], positions=self.positions[:b], slot_mapping=self.slot_mapping[:b],
            block_tables=self.block_tables[:b], seq_lens=self.seq_lens[:b], query_start_loc=self.arange[:b + 1],
            logits_indices=self.arange[:b], seq_lens_host=[], query_lens_host=[], num_decodes=b,
            block_size=self.runner.config.block_size)

    def _forward(self, b: int) -> torch.Tensor:
        r = self.runner
        return r.model.forward_step(self._inputs(b), r.pool.keys, r.pool.values, self.backend)

    def _graph(self, b: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        if b not in self._graphs:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):  # warm up (allocator, kernels) outside the capture
                for _ in range(2):
                    self._forward(b)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = self._forward(b)
            self._graphs[b] = (graph, out)
        return self._graphs[b]

    def run(self, chunks: list[ScheduledChunk]) -> tuple[torch.Tensor, int]:
        """(logits [len(chunks), vocab], K/V slots read) of a decode-only step."""
        r, bs = self.runner, self.runner.config.block_size
        b = len(chunks)
        bucket = next(x for x in self.buckets if x >= b)
        ids, positions, rows, new_rows, new_cols, new_blocks = [], [], [], [], [], []
        for ch in chunks:
            req = ch.request
            ids.extend(req.token_ids(req.num_computed_tokens, req.num_computed_tokens + 1))
            positions.append(req.num_computed_tokens)
            rows.append(r._table_row(req, new_rows, new_cols, new_blocks))
        if new_blocks:
            upd = torch.tensor([new_rows, new_cols, new_blocks]).to(r.device, non_blocking=True)
            r.block_tables[upd[0], upd[1]] = upd[2]
        host = torch.tensor([ids, positions, rows]).to(r.device, non_blocking=True)
        ids_t, pos_t, rows_t = host
        self.token_ids[:b] = ids_t
        self.positions[:b] = pos_t
        self.seq_lens[:b] = pos_t + 1
        self.block_tables[:b] = r.block_tables[rows_t]
        self.slot_mapping[:b] = self.block_tables[torch.arange(b, device=r.device), pos_t // bs] * bs + pos_t % bs
        if bucket > b:  # padded rows: token 0 at position 0, reading and writing the scratch block only
            self.token_ids[b:bucket] = 0
            self.positions[b:bucket] = 0
            self.seq_lens[b:bucket] = 1
            self.block_tables[b:bucket] = r.scratch_block
            self.slot_mapping[b:bucket] = r.scratch_block * bs
        if self.capture:
            graph, out = self._graph(bucket)
            graph.replay()
            logits = out[:b].clone()
        else:
            logits = self._forward(bucket)[:b]
        self.num_replays += 1
        return logits, bucket * self.block_tables.shape[1] * bs
