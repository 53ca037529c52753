"""Attention over a paged KV pool: one step's inputs and the backends that attend through them.

A step of a serving engine runs many requests at once: prefill chunks (several new tokens of
one request) and decodes (one new token) flattened into one batch of N tokens. `StepInputs`
describes that batch with device tensors only (token ids, positions, slot mapping, block
tables, sequence lengths); the engine's runner builds it, `LlamaForCausalLM.forward_step`
consumes it, and every layer hands its queries to an `AttentionBackend`:

- `GatherAttention` (the reference, written to be read): decodes in groups padded to their
  longest context, prefill chunks one by one; K/V gathered out of the pool by block table.
- `NativePagedAttention`: decodes through a C kernel that reads K/V in place from the pool
  (`inferlab.model.native`), prefill chunks as the gather path does; the CPU's default.
- `FlexPagedAttention`: one call per layer for every chunk and decode of the step, reading
  K/V in place from the pool with PyTorch FlexAttention and a block mask built from the
  block tables (the pool itself is the key sequence; the mask says which slots each query
  may see). On CUDA this is the fast path; on CPU FlexAttention runs eagerly (no compiled
  kernel), so `default_backend` picks the native kernel (or the gather path) there
  (`inferlab bench engine --attention-backend` measures them).

Layouts: pool tensors [nkv, num_blocks, B, d] (head-major, see `inferlab.engine.kv_cache`); a slot is
block * B + offset; q [N, nh, d].
Sequences are ordered decodes first (`num_decodes` of them), then prefill chunks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from inferlab.ints import cdiv
from inferlab.model.step_ops import TORCH_OPS, NativeStepOps, TorchStepOps

DECODE_GROUP_SIZE = 12  # decode rows per gather-attention call; each group is padded to its longest context.
# 12, not 32: on the bench's --quick workload (128 decodes, block 4) a group of 32 read 955k K/V slots over the run,
# 12 read 702k; engine CPU time 3.06 s vs 3.22 s (1 thread, median of 4 alternated runs, 4/4 pairs lower), and a
# decode step's attention alone (4 layers, 128 rows, 3 sampled steps) 10.2-10.6 ms vs 24-61 ms (16: 12.0-12.2, 8: 11.1-11.5).


@dataclass
class StepInputs:
    """One step's batch, as device tensors (plus the few host integers the backends branch on).

    Attributes:
        token_ids: [N] the new tokens of every sequence, decodes first.
        positions: [N] their positions in their sequences.
        slot_mapping: [N] pool slot each new token's K/V is written to.
        block_tables: [S, max_blocks] physical block of each logical block (rows padded with 0).
        seq_lens: [S] context length of each sequence after this step (cached + new tokens).
        query_start_loc: [S + 1] offsets of each sequence's new tokens in the flat batch.
        logits_indices: [num_chunks] flat index of each chunk's last token, in the scheduler's order.
        seq_lens_host, query_lens_host: the same lengths on the host (for the gather backend's shapes).
        num_decodes: the first `num_decodes` sequences have one new token each.
        block_size: tokens per block.
        meta: per-step state a backend derives once and reuses in every layer.
    """

    token_ids: torch.Tensor
    positions: torch.Tensor
    slot_mapping: torch.Tensor
    block_tables: torch.Tensor
    seq_lens: torch.Tensor
    query_start_loc: torch.Tensor
    logits_indices: torch.Tensor
    seq_lens_host: list[int]
    query_lens_host: list[int]
    num_decodes: int
    block_size: int
    meta: dict = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return self.token_ids.shape[0]

    @property
    def num_seqs(self) -> int:
        return len(self.seq_lens_host)


def decode_kv_slots(context_lens: list[int], block_size: int, group_size: int = DECODE_GROUP_SIZE) -> int:
    """K/V slots a decode step's gather attention reads, padding included.

    Sequences are sorted by context length and grouped `group_size` at a time; each group
    reads, for every row, the blocks of its longest context. This, not the sum of context
    lengths, is what decode attention costs in the gather backend; the simulator's replica
    mirrors the formula (`inferlab.sim.steptime.DecodePadding`), and the tests check both against it.
    """
    ordered = sorted(context_lens)
    total = 0
    for g in range(0, len(ordered), group_size):
        part = ordered[g:g + group_size]
        total += len(part) * (cdiv(part[-1], block_size) * block_size)
    return total


class AttentionBackend:
    """Attends each new token of a step to its sequence's K/V in the pool (written already).

    `prepare` runs once per step (shared work of all layers); `forward` once per layer.
    """

    name = "base"
    decode_group_size = 1  # decodes whose K/V reads are padded to their longest (`decode_kv_slots`)
    step_ops: TorchStepOps = TORCH_OPS  # the step's element-wise work (`inferlab.model.step_ops`)

    def prepare(self, inputs: StepInputs, num_pool_blocks: int) -> None:
        """Derive per-step metadata into `inputs.meta` (default: nothing)."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_pool: torch.Tensor,
                v_pool: torch.Tensor, inputs: StepInputs) -> torch.Tensor:
        """q [N, nh, d] (k, v [N, nkv, d]: the new tokens', already in the pool) -> output [N, nh, d]."""
        raise NotImplementedError

    def decode_kv_slots(self, inputs: StepInputs) -> int:
        """K/V slots this step's decode attention reads, padding included."""
        return sum(cdiv(n, inputs.block_size) * inputs.block_size for n in inputs.seq_lens_host[:inputs.num_decodes])


def _gather(pool: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    """K or V of the blocks `tables` [b, max_blocks] of a pool [nkv, num_blocks, B, d] -> [b, nkv, max_blocks*B, d],
    each (row, head) one contiguous run of tokens (index_select: ~3x faster than advanced indexing on CPU)."""
    nkv, num_blocks, _, d = pool.shape
    b = tables.shape[0]
    return pool.view(nkv, num_blocks, -1).index_select(1, tables.reshape(-1)).view(nkv, b, -1, d).transpose(0, 1)


def _additive_masks(cache: dict, groups: list, dtype: torch.dtype) -> list[torch.Tensor]:
    """Each decode group's boolean mask [b, S] as an additive one [b, 1, 1, S] (0 or -inf) in `dtype`, built
    once per step and reused by every layer (SDPA on CPU converts a boolean mask on every call, and its
    kernel is 6-9% faster with the float one: 32 rows x 64/200/500 slots, min of 30 interleaved rounds)."""
    masks = cache.get(dtype)
    if masks is None:
        masks = cache[dtype] = [torch.zeros(mask.shape, dtype=dtype, device=mask.device)
                                .masked_fill_(~mask, float("-inf"))[:, None, None, :] for _, _, mask in groups]
    return masks


def _causal_tail(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """GQA attention of q [nh, T, d] as the last T of k, v [nkv, S, d] (causal over them) -> [nh, T, d]."""
    t, s = q.shape[1], k.shape[1]
    mask = torch.ones(t, s, dtype=torch.bool, device=q.device).tril(diagonal=s - t)
    return F.scaled_dot_product_attention(q[None], k[None], v[None], attn_mask=mask, enable_gqa=True)[0]


class GatherAttention(AttentionBackend):
    """The reference: K/V gathered out of the pool by block table, then plain SDPA.

    Decodes are sorted by context length and taken `DECODE_GROUP_SIZE` at a time, each group
    padded to its longest context; the query heads sharing a KV head are laid along the query
    axis (GQA without copying K/V per query head). A prefill chunk that starts the sequence
    attends causally to its own new K/V; one that continues reads the earlier tokens from the pool.
    """

    name = "gather"
    decode_group_size = DECODE_GROUP_SIZE

    def prepare(self, inputs: StepInputs, num_pool_blocks: int) -> None:
        nd, bs = inputs.num_decodes, inputs.block_size
        groups = []
        if nd:
            lens = inputs.seq_lens_host[:nd]
            order = sorted(range(nd), key=lens.__getitem__)
            dev = inputs.token_ids.device
            order_t = torch.tensor(order, device=dev)
            for g in range(0, nd, DECODE_GROUP_SIZE):
                rows = order_t[g:g + DECODE_GROUP_SIZE]  # decode i is flat row i and sequence i
                max_blocks = cdiv(lens[order[min(g + DECODE_GROUP_SIZE, nd) - 1]], bs)
                tables = inputs.block_tables[rows, :max_blocks]
                mask = torch.arange(max_blocks * bs, device=dev)[None, :] < inputs.seq_lens[rows][:, None]
                groups.append((rows, tables, mask))
        inputs.meta["gather_groups"] = groups
        inputs.meta["gather_float_masks"] = {}

    def decode_kv_slots(self, inputs: StepInputs) -> int:
        return sum(mask.numel() for _, _, mask in inputs.meta["gather_groups"])

    def forward(self, q, k, v, k_pool, v_pool, inputs):
        out = torch.empty_like(q)
        if inputs.num_decodes:
            self._decodes(q, k_pool, v_pool, inputs, out)
        if inputs.num_seqs > inputs.num_decodes:
            self._prefills(q, k, v, k_pool, v_pool, inputs, out)
        return out

    def _decodes(self, q, k_pool, v_pool, inputs, out) -> None:
        """Rows [0, num_decodes) of out: each decode against its sequence's K/V."""
        nh, d = q.shape[1:]
        nkv = k_pool.shape[0]
        groups = inputs.meta["gather_groups"]
        masks = _additive_masks(inputs.meta["gather_float_masks"], groups, q.dtype)
        for (rows, tables, _), mask in zip(groups, masks):
            b = len(rows)
            kd = _gather(k_pool, tables).to(q.dtype)  # [b, nkv, S, d]
            vd = _gather(v_pool, tables).to(q.dtype)
            qd = q[rows].reshape(b, nkv, nh // nkv, d)
            out[rows] = F.scaled_dot_product_attention(qd, kd, vd, attn_mask=mask).reshape(b, nh, d)

    def _prefills(self, q, k, v, k_pool, v_pool, inputs, out) -> None:
        """Rows [num_decodes, N) of out: each prefill chunk, causal over its sequence."""
        # head-major ([heads, tokens, d], contiguous: SDPA on CPU is ~3x slower on the
        # token-major views); one copy per layer, then each chunk is a slice
        nd = inputs.num_decodes
        qh, kh, vh = (x[nd:].transpose(0, 1).contiguous() for x in (q, k, v))
        oh = torch.empty_like(qh)
        bs, offset = inputs.block_size, 0
        for s in range(nd, inputs.num_seqs):
            t, stop = inputs.query_lens_host[s], inputs.seq_lens_host[s]
            qc = qh[:, offset:offset + t]  # [nh, t, d]
            if t == stop:  # the whole context is this chunk: its K/V are at hand, plain causal attention
                oh[:, offset:offset + t] = F.scaled_dot_product_attention(  # 4-D: SDPA's fused CPU kernel (3-D: ~3x slower)
                    qc[None], kh[None, :, offset:offset + t], vh[None, :, offset:offset + t], is_causal=True,
                    enable_gqa=True)[0]
            else:
                table = inputs.block_tables[s, :cdiv(stop, bs)]
                kc = _gather(k_pool, table[None])[0, :, :stop].to(q.dtype)  # [nkv, stop, d]
                vc = _gather(v_pool, table[None])[0, :, :stop].to(q.dtype)
                oh[:, offset:offset + t] = _causal_tail(qc, kc, vc)
            offset += t
        out[nd:] = oh.transpose(0, 1)


class NativePagedAttention(GatherAttention):
    """Decodes through a C kernel that reads K/V in place from the pool (`inferlab.model.native`);
    prefill chunks as in the gather reference (SDPA's fused kernel is faster than a scalar loop there);
    the step's element-wise work through the fused C kernels (`NativeStepOps`).

    One kernel call per layer attends every decode of the step: no gather copy, no padding to a
    group's longest context, each K/V block read once (prefetched, since blocks sit anywhere in the
    pool). CPU, fp32 pool only; the default on a CPU when the kernel builds (`make_backend`).
    """

    name = "native"
    decode_group_size = 1  # each row reads its own blocks

    def __init__(self) -> None:
        from inferlab.model import native

        if not native.available():
            raise RuntimeError(f"attention backend 'native' is not available: {native.unavailable_reason()}")
        self._kernel = native.paged_decode
        self.step_ops = NativeStepOps()

    def prepare(self, inputs: StepInputs, num_pool_blocks: int) -> None:
        pass

    def decode_kv_slots(self, inputs: StepInputs) -> int:
        return AttentionBackend.decode_kv_slots(self, inputs)

    def _decodes(self, q, k_pool, v_pool, inputs, out) -> None:
        nd = inputs.num_decodes
        self._kernel(q[:nd], k_pool, v_pool, inputs.block_tables[:nd], inputs.seq_lens[:nd], out[:nd])


class FlexPagedAttention(AttentionBackend):
    """One FlexAttention call per layer over the whole pool, masked by the block tables.

    The key/value sequence is the pool itself ([1, nkv, num_blocks * B, d], a view: nothing is
    copied); query token i of sequence s may see slot j when the block holding j sits at logical
    index l in s's block table and l * B + j % B <= position(i). The block mask is built once
    per step (`prepare`) at block granularity, so whole blocks outside every table are skipped
    by the compiled kernel (on CUDA). Without compilation (CPU by default) the same mask, dense,
    goes to SDPA over the same pool view: one call per layer, nothing gathered.

    Args:
        compile: wrap `flex_attention` in `torch.compile` (default: on CUDA only).
    """

    name = "flex"

    def __init__(self, compile: bool | None = None) -> None:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        self._create_block_mask = create_block_mask
        self._compile = compile
        self._flex = flex_attention
        self._compiled = None

    def _use_compiled(self, device: torch.device) -> bool:
        return self._compile if self._compile is not None else device.type == "cuda"

    def _attention(self):
        if self._compiled is None:
            self._compiled = torch.compile(self._flex, dynamic=True)
        return self._compiled

    def prepare(self, inputs: StepInputs, num_pool_blocks: int) -> None:
        dev, bs = inputs.token_ids.device, inputs.block_size
        num_seqs, max_blocks = inputs.block_tables.shape
        # physical -> logical block index, per sequence (-1: not in its table)
        valid = torch.arange(max_blocks, device=dev)[None, :] < (inputs.seq_lens[:, None] + bs - 1) // bs
        p2l = torch.full((num_seqs, num_pool_blocks), -1, dtype=torch.long, device=dev)
        logical = torch.arange(max_blocks, device=dev).expand(num_seqs, -1)
        rows = torch.arange(num_seqs, device=dev)[:, None].expand(-1, max_blocks)
        p2l[rows[valid], inputs.block_tables[valid]] = logical[valid]
        q_seq = torch.repeat_interleave(torch.arange(num_seqs, device=dev),
                                        inputs.query_start_loc.diff(), output_size=inputs.num_tokens)
        q_pos = inputs.positions

        def mask_mod(b, h, q_idx, kv_idx):
            s = q_seq[q_idx]
            lb = p2l[s, kv_idx // bs]
            return (lb >= 0) & (lb * bs + kv_idx % bs <= q_pos[q_idx])

        n, num_slots = inputs.num_tokens, num_pool_blocks * bs
        if self._use_compiled(dev):
            inputs.meta["flex_mask"] = self._create_block_mask(mask_mod, None, None, n, num_slots, device=dev,
                                                               BLOCK_SIZE=(128, bs))
        else:  # the same mask, dense [N, slots], for the eager path
            kv = torch.arange(num_slots, device=dev)
            inputs.meta["dense_mask"] = mask_mod(None, None, torch.arange(n, device=dev)[:, None], kv[None, :])

    def forward(self, q, k_new, v_new, k_pool, v_pool, inputs):
        n, nh, d = q.shape
        nkv = k_pool.shape[0]
        k = k_pool.view(1, nkv, -1, d)  # [1, nkv, slots, d], a view of the pool
        v = v_pool.view(1, nkv, -1, d)
        if k.dtype != q.dtype:
            k, v = k.to(q.dtype), v.to(q.dtype)
        if "flex_mask" in inputs.meta:
            out = self._attention()(q.transpose(0, 1)[None], k, v, block_mask=inputs.meta["flex_mask"],
                                    enable_gqa=nkv != nh)
            return out[0].transpose(0, 1)
        # eager: FlexAttention without a compiled kernel materializes the scores through vmap (~25x
        # slower than this on CPU); SDPA over the pool with the dense mask is the same computation
        qg = q.transpose(0, 1).reshape(nkv, nh // nkv, n, d)  # query heads sharing a KV head together
        out = F.scaled_dot_product_attention(qg, k[0, :, None], v[0, :, None], attn_mask=inputs.meta["dense_mask"])
        return out.reshape(nh, n, d).transpose(0, 1)


class StaticDecodeAttention(AttentionBackend):
    """Decode-only attention with shapes fixed by the batch size alone (safe to capture in a CUDA graph).

    Every row reads all `block_tables.shape[1]` blocks of its table (padding masked by `seq_lens`),
    and nothing depends on host values, so one captured graph serves every decode step of its batch size.
    """

    name = "static-decode"

    def forward(self, q, k, v, k_pool, v_pool, inputs):
        b, nh, d = q.shape
        nkv = k_pool.shape[0]
        kd = _gather(k_pool, inputs.block_tables).to(q.dtype)  # [b, nkv, S, d]
        vd = _gather(v_pool, inputs.block_tables).to(q.dtype)
        mask = torch.arange(kd.shape[2], device=q.device)[None, :] < inputs.seq_lens[:, None]
        out = F.scaled_dot_product_attention(q.reshape(b, nkv, nh // nkv, d), kd, vd, attn_mask=mask[:, None, None, :])
        return out.reshape(b, nh, d)


BACKENDS = {"gather": GatherAttention, "native": NativePagedAttention, "flex": FlexPagedAttention}


def default_backend(device: torch.device, dtype: torch.dtype = torch.float32) -> str:
    """The fastest backend measured for `device` and pool `dtype`: flex on CUDA; on a CPU the native
    kernel for an fp32 pool when it builds (`inferlab bench engine --attention-backend` compares), else gather."""
    if device.type == "cuda":
        return "flex"
    if device.type == "cpu" and dtype == torch.float32:
        from inferlab.model import native

        if native.available():
            return "native"
    return "gather"


def make_backend(name: str | None, device: torch.device, dtype: torch.dtype = torch.float32) -> AttentionBackend:
    """The backend called `name` ("gather", "native", "flex"), or `default_backend(device, dtype)` when None."""
    if name is None:
        name = default_backend(device, dtype)
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose from {sorted(BACKENDS)}")
    if name == "native" and (device.type != "cpu" or dtype != torch.float32):
        raise ValueError(f"attention backend 'native' needs a CPU fp32 KV pool, got {dtype} on {device}")
    return BACKENDS[name]()
