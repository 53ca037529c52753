"""One forward step over many requests: the model runner.

Flow: the scheduler's chunks -> `ModelRunner.prepare` builds the step's `StepInputs` (token ids,
positions, slot mapping, block tables, sequence lengths; decodes first, then prefill chunks) as
device tensors -> the model's own `forward_step` runs its layers, each attending through the
runner's `AttentionBackend` (`inferlab.model.attention`: the gather reference or the paged
FlexAttention one) and writing the new K/V into the paged `KVBlockPool` -> the logits of each
chunk's last token; `sample` turns them into token ids.

Step preparation stays on the device: each running request owns a row of a persistent block
table tensor, written only when its table grows (one block every `block_size` decodes) or is
replaced (a preemption); positions and slot mappings are computed from it with tensor ops.
On CUDA, decode-only steps replay CUDA graphs captured per padded batch size
(`inferlab.engine.graphs`; `EngineConfig.enable_cuda_graphs` turns them off).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from inferlab.engine.config import EngineConfig
from inferlab.engine.host_memory import steady_malloc
from inferlab.engine.kv_cache import KVBlockPool
from inferlab.engine.request import Request
from inferlab.engine.scheduler import ScheduledChunk
from inferlab.ints import cdiv
from inferlab.model.attention import DECODE_GROUP_SIZE, StepInputs, decode_kv_slots, default_backend, make_backend
from inferlab.model.llama import LlamaForCausalLM

__all__ = ["DECODE_GROUP_SIZE", "ModelRunner", "attention_backend_name", "decode_kv_slots", "kernel_dtype",
           "top_k_top_p"]

SAMPLING_EPS = 1e-5  # temperatures below this are greedy (vLLM's rule): logits / 1e-300 overflow to inf -> NaN


def top_k_top_p(probs: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """probs [vocab] with every token outside the top_k (k <= 0: all) and outside the smallest set
    reaching top_p zeroed (unnormalized; `torch.multinomial` normalizes). The most likely token always stays."""
    if top_k <= 0 and top_p >= 1.0:
        return probs
    sorted_probs, order = probs.sort(descending=True)
    keep = torch.ones_like(sorted_probs, dtype=torch.bool)
    if top_k > 0:
        keep[top_k:] = False
    if top_p < 1.0:
        before = sorted_probs.cumsum(0) - sorted_probs  # mass of the more likely tokens
        keep &= before < top_p
    keep[0] = True
    return torch.zeros_like(probs).scatter(0, order, sorted_probs * keep)


def kernel_dtype(model: LlamaForCausalLM, config: EngineConfig) -> torch.dtype:
    """The dtype a step's kernels see: the KV pool's when the weights are fp32, else the weights' (the
    attention backend's default depends on it: the native CPU kernels need both in fp32)."""
    weights = model.lm_head.weight.dtype
    return config.torch_dtype if weights == torch.float32 else weights


def attention_backend_name(model: LlamaForCausalLM, config: EngineConfig) -> str:
    """The attention backend an engine with `config` runs `model` with."""
    return config.attention_backend or default_backend(model.device, kernel_dtype(model, config))


@dataclass
class _TableRow:
    """A request's row of the persistent block table and what of its table is written there."""

    row: int
    written: list[int]  # the table's first entries, as on the device


class ModelRunner:
    """Executes steps of the model against a paged KV pool.

    Args:
        model: the `LlamaForCausalLM` whose weights and layers are used as they are.
        config: engine settings (pool size, block size, KV dtype, attention backend, CUDA graphs).
    """

    def __init__(self, model: LlamaForCausalLM, config: EngineConfig) -> None:
        self.model, self.config = model, config
        mc = model.config
        self.device = model.device
        if self.device.type == "cpu":
            steady_malloc()  # step times stable from run to run (see host_memory.py)
        # one block more than the allocator hands out: padded rows of a CUDA-graph decode write there
        self.pool = KVBlockPool(mc.num_hidden_layers, config.num_kv_blocks + 1, config.block_size,
                                mc.num_key_value_heads, mc.head_dim, self.device, config.torch_dtype)
        self.scratch_block = config.num_kv_blocks
        self.backend = make_backend(config.attention_backend, self.device, kernel_dtype(model, config))
        self.max_blocks_per_seq = cdiv(config.max_model_len, config.block_size)
        self.block_tables = torch.zeros(config.max_num_seqs, self.max_blocks_per_seq, dtype=torch.long,
                                        device=self.device)  # persistent: row r belongs to one request
        self._rows: dict[str, _TableRow] = {}
        self._free_rows = list(range(config.max_num_seqs - 1, -1, -1))
        self._generators: dict[str, torch.Generator] = {}
        self.graphs = None
        if config.enable_cuda_graphs and self.device.type == "cuda":
            from inferlab.engine.graphs import DecodeGraphs

            self.graphs = DecodeGraphs(self)
        self.last_decode_kv_slots = 0  # K/V slots the last step's decode attention read (padding included)

    # ---- the persistent block table -------------------------------------------------------
    def _table_row(self, req: Request, new_rows: list[int], new_cols: list[int], new_blocks: list[int]) -> int:
        """The request's row, queuing the entries of its table not yet on the device."""
        entry = self._rows.get(req.request_id)
        if entry is None:
            if not self._free_rows:  # a scheduler running more than max_num_seqs: grow
                old = self.block_tables.shape[0]
                self.block_tables = torch.cat((self.block_tables, torch.zeros_like(self.block_tables)))
                self._free_rows = list(range(2 * old - 1, old - 1, -1))
            entry = self._rows[req.request_id] = _TableRow(self._free_rows.pop(), [])
        table, written = req.block_table, entry.written
        if table[:len(written)] != written:  # a new table (preempted and readmitted): write it all
            written.clear()
        if len(table) > len(written):
            if len(table) > self.max_blocks_per_seq:
                raise ValueError(f"request {req.request_id} has {len(table)} blocks; max_model_len allows "
                                 f"{self.max_blocks_per_seq}")
            num_new = len(table) - len(written)
            new_rows.extend([entry.row] * num_new)
            new_cols.extend(range(len(written), len(table)))
            new_blocks.extend(table[len(written):])
            written.extend(table[len(written):])
        return entry.row

    def prepare(self, chunks: list[ScheduledChunk]) -> StepInputs:
        """The step's inputs as device tensors: decodes first, then prefill chunks."""
        dev, bs = self.device, self.config.block_size
        order = [i for i, c in enumerate(chunks) if c.is_decode]
        num_decodes = len(order)
        order += [i for i, c in enumerate(chunks) if not c.is_decode]
        ids: list[int] = []
        rows, starts, qlens, new_rows, new_cols, new_blocks = [], [], [], [], [], []
        for i in order:
            ch = chunks[i]
            req, start = ch.request, ch.request.num_computed_tokens
            ids.extend(req.token_ids(start, start + ch.num_tokens))
            rows.append(self._table_row(req, new_rows, new_cols, new_blocks))
            starts.append(start)
            qlens.append(ch.num_tokens)
        if new_blocks:
            upd = torch.tensor([new_rows, new_cols, new_blocks]).to(dev, non_blocking=True)
            self.block_tables[upd[0], upd[1]] = upd[2]
        host = torch.tensor([rows, starts, qlens])
        seq_host = torch.tensor(ids)
        rows_t, starts_t, qlens_t = host.to(dev, non_blocking=True)
        n = len(ids)
        qsl = torch.zeros(len(order) + 1, dtype=torch.long, device=dev)
        torch.cumsum(qlens_t, 0, out=qsl[1:])
        seq_of_token = torch.repeat_interleave(torch.arange(len(order), device=dev), qlens_t, output_size=n)
        positions = starts_t[seq_of_token] + torch.arange(n, device=dev) - qsl[:-1][seq_of_token]
        tables = self.block_tables[rows_t]
        slots = tables[seq_of_token, positions // bs] * bs + positions % bs
        last_flat = qsl[1:] - 1  # in the step's (decodes-first) order
        inv = [0] * len(order)
        for j, i in enumerate(order):
            inv[i] = j
        return StepInputs(
            token_ids=seq_host.to(dev, non_blocking=True), positions=positions, slot_mapping=slots,
            block_tables=tables, seq_lens=starts_t + qlens_t, query_start_loc=qsl,
            logits_indices=last_flat[torch.tensor(inv, device=dev)],
            seq_lens_host=[s + q for s, q in zip(starts, qlens)], query_lens_host=qlens,
            num_decodes=num_decodes, block_size=bs)

    @torch.inference_mode()
    def execute(self, chunks: list[ScheduledChunk]) -> torch.Tensor:
        """Run one step.

        Args:
            chunks: (request, num_tokens) pairs; tokens [num_computed_tokens, + num_tokens) of each
                request are computed, their K/V written to the pool.
        Returns:
            logits [len(chunks), vocab] (fp32) of each chunk's last token.
        """
        if self.graphs is not None and self.graphs.can_run(chunks):
            logits, self.last_decode_kv_slots = self.graphs.run(chunks)
            return logits
        inputs = self.prepare(chunks)
        self.backend.prepare(inputs, self.pool.num_blocks)
        self.last_decode_kv_slots = self.backend.decode_kv_slots(inputs)
        return self.model.forward_step(inputs, self.pool.keys, self.pool.values, self.backend)

    def sample(self, logits: torch.Tensor, requests: list[Request]) -> list[int]:
        """Token ids from logits [len(requests), vocab]: argmax when temperature < SAMPLING_EPS, else a draw
        from softmax(logits / temperature), cut to the top_k tokens and the top_p nucleus, with the
        request's own seeded generator."""
        tokens = logits.argmax(-1).tolist()
        for r, req in enumerate(requests):
            sp = req.sampling_params
            if sp.temperature >= SAMPLING_EPS:
                gen = self._generators.get(req.request_id)
                if gen is None and sp.seed is not None:
                    gen = self._generators[req.request_id] = torch.Generator(logits.device).manual_seed(sp.seed)
                probs = top_k_top_p(torch.softmax(logits[r] / sp.temperature, dim=-1), sp.top_k, sp.top_p)
                tokens[r] = int(torch.multinomial(probs, 1, generator=gen))
        return tokens

    def release(self, request: Request) -> None:
        """Drop per-request state: its sampler and its block-table row."""
        self._generators.pop(request.request_id, None)
        entry = self._rows.pop(request.request_id, None)
        if entry is not None:
            self._free_rows.append(entry.row)
