"""One forward step over many requests: the model runner.

Flow: the scheduler's chunks -> `ModelRunner.execute` flattens every chunk's tokens into one
batch (prefill chunks and decode tokens together), runs the model's own layers
(`project_qkv`, RoPE tables, RMSNorm, MLP, `attend`) with attention reading K/V from the
paged `KVBlockPool` through each request's block table, and returns the logits of each
chunk's last token; `sample` turns them into token ids. Plain PyTorch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from inferlab.engine.config import EngineConfig
from inferlab.engine.host_memory import steady_malloc
from inferlab.engine.kv_cache import KVBlockPool
from inferlab.engine.request import Request
from inferlab.engine.scheduler import ScheduledChunk
from inferlab.model.llama import LlamaForCausalLM, attend, rope_cos_sin


SAMPLING_EPS = 1e-5  # temperatures below this are greedy (vLLM's rule): logits / 1e-300 overflow to inf -> NaN
DECODE_GROUP_SIZE = 32  # decode rows per attention call; each group is padded to its longest context


def decode_kv_slots(context_lens: list[int], block_size: int, group_size: int = DECODE_GROUP_SIZE) -> int:
    """K/V slots a decode step's attention reads, padding included.

    Sequences are sorted by context length and grouped `group_size` at a time; each group
    reads, for every row, the blocks of its longest context (`_decode_groups`, whose masks
    give the runner's `last_decode_kv_slots`). This, not the sum of context lengths, is
    what decode attention costs in this runner; the simulator's replica mirrors the formula
    (`inferlab.sim.steptime.DecodePadding`), and the tests check both against it.
    """
    ordered = sorted(context_lens)
    total = 0
    for g in range(0, len(ordered), group_size):
        part = ordered[g:g + group_size]
        total += len(part) * (-(-part[-1] // block_size) * block_size)
    return total


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


def _gather(pool: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    """Blocks `tables` [...] of a pool [num_blocks, B, nkv, d] -> [..., B*nkv*d] (index_select: ~3x
    faster than advanced indexing on CPU)."""
    return pool.view(pool.shape[0], -1).index_select(0, tables.reshape(-1)).view(*tables.shape, -1)


def _decode_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """GQA attention of one new token per sequence without copying K/V per query head.

    q [B, nh, d]; k, v [B, nkv, S, d]; mask [B, S] (True = attend) -> [B, nh, d].
    The nh/nkv query heads sharing a KV head are laid along the query axis, which is the
    same computation as `attend` (repeat_interleave of K/V) with a fraction of the memory traffic.
    """
    b, nh, d = q.shape
    nkv = k.shape[1]
    out = F.scaled_dot_product_attention(q.reshape(b, nkv, nh // nkv, d), k, v, attn_mask=mask[:, None, None, :])
    return out.reshape(b, nh, d)


class ModelRunner:
    """Executes steps of the model against a paged KV pool.

    Args:
        model: the `LlamaForCausalLM` whose weights and layers are used as they are.
        config: engine settings (pool size, block size, KV dtype).
    """

    def __init__(self, model: LlamaForCausalLM, config: EngineConfig) -> None:
        self.model, self.config = model, config
        mc = model.config
        self.device = model.device
        if self.device.type == "cpu":
            steady_malloc()  # step times stable from run to run (see host_memory.py)
        self.pool = KVBlockPool(mc.num_hidden_layers, config.num_kv_blocks, config.block_size,
                                mc.num_key_value_heads, mc.head_dim, self.device, config.torch_dtype)
        self._generators: dict[str, torch.Generator] = {}
        self.last_decode_kv_slots = 0  # K/V slots the last step's decode attention read (padding included)

    def _slots(self, table: list[int], start: int, stop: int) -> list[int]:
        bs = self.config.block_size
        return [table[p // bs] * bs + p % bs for p in range(start, stop)]

    @torch.inference_mode()
    def execute(self, chunks: list[ScheduledChunk]) -> torch.Tensor:
        """Run one step.

        Args:
            chunks: (request, num_tokens) pairs; tokens [num_computed_tokens, + num_tokens) of each
                request are computed, their K/V written to the pool.
        Returns:
            logits [len(chunks), vocab] (fp32) of each chunk's last token.
        """
        dev, bs = self.device, self.config.block_size
        mc = self.model.config
        ids, positions, slots = [], [], []
        decodes, prefills = [], []  # indices into chunks
        offset = 0
        for i, ch in enumerate(chunks):
            req, start = ch.request, ch.request.num_computed_tokens
            stop = start + ch.num_tokens
            ids.extend(req.all_token_ids[start:stop] if ch.num_tokens > 1 else [req.all_token_ids[start]])
            positions.extend(range(start, stop))
            slots.extend(self._slots(req.block_table, start, stop))
            (decodes if ch.num_tokens == 1 else prefills).append((i, offset, start, stop))
            offset += ch.num_tokens
        ids_t = torch.tensor(ids, device=dev)
        pos_t = torch.tensor(positions, device=dev)
        slots_t = torch.tensor(slots, device=dev)
        last_idx = torch.tensor([o + (stop - start) - 1 for _, o, start, stop in sorted(decodes + prefills)],
                                device=dev)
        groups = self._decode_groups(chunks, decodes) if decodes else []
        self.last_decode_kv_slots = sum(mask.numel() for _, _, mask in groups)  # rows x padded context
        cos, sin = rope_cos_sin(pos_t, mc.head_dim, mc.rope_theta)
        cos, sin = cos[None, None], sin[None, None]
        x = self.model.model.embed_tokens(ids_t)[None]  # [1, N, H]
        n = x.shape[1]
        for li, layer in enumerate(self.model.model.layers):
            attn = layer.self_attn
            q, k, v = attn.project_qkv(layer.input_layernorm(x), cos, sin)  # [1, nh|nkv, N, d]
            kp, vp = self.pool.keys[li], self.pool.values[li]
            kp.view(-1, *kp.shape[2:]).index_copy_(0, slots_t, k[0].transpose(0, 1).to(kp.dtype))
            vp.view(-1, *vp.shape[2:]).index_copy_(0, slots_t, v[0].transpose(0, 1).to(vp.dtype))
            out = torch.empty(n, attn.num_heads, attn.head_dim, device=dev, dtype=x.dtype)  # [N, nh, d]
            for rows, tables, mask in groups:
                nb = len(rows)
                kd = _gather(kp, tables).view(nb, -1, *kp.shape[2:]).transpose(1, 2).to(q.dtype)  # [b, nkv, S, d]
                vd = _gather(vp, tables).view(nb, -1, *vp.shape[2:]).transpose(1, 2).to(q.dtype)
                out[rows] = _decode_attention(q[0, :, rows].transpose(0, 1), kd, vd, mask)
            for i, o, start, stop in prefills:
                qc = q[:, :, o:o + stop - start]
                if start == 0:  # the whole context is this chunk: its K/V are at hand, plain causal attention
                    kc, vc = k[:, :, o:o + stop], v[:, :, o:o + stop]
                    oc = F.scaled_dot_product_attention(qc, kc, vc, is_causal=True, enable_gqa=True)
                else:  # continue after cached or earlier-chunk tokens: read them through the block table
                    table = torch.tensor(chunks[i].request.block_table[: -(-stop // bs)], device=dev)
                    kc = _gather(kp, table).view(-1, *kp.shape[2:])[:stop].transpose(0, 1)[None].to(q.dtype)
                    vc = _gather(vp, table).view(-1, *vp.shape[2:])[:stop].transpose(0, 1)[None].to(q.dtype)
                    oc = attend(qc, kc, vc)  # causal over the last T of S
                out[o:o + stop - start] = oc[0].transpose(0, 1)
            x = x + attn.o_proj(out.reshape(1, n, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        h = self.model.model.norm(x[0, last_idx])
        return self.model.lm_head(h).float()

    def _decode_groups(self, chunks: list[ScheduledChunk], decodes: list[tuple[int, int, int, int]],
                       max_group: int = DECODE_GROUP_SIZE) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Decode rows grouped by context length, so padding each group to its longest stays small.

        Returns (rows in the flat batch, block tables [b, max_blocks], mask [b, max_blocks*B]) per group.
        """
        bs, dev = self.config.block_size, self.device
        ordered = sorted(decodes, key=lambda d: d[3])
        groups = []
        for g in range(0, len(ordered), max_group):
            part = ordered[g:g + max_group]
            max_blocks = -(-part[-1][3] // bs)
            tables = torch.zeros(len(part), max_blocks, dtype=torch.long)
            for r, (i, *_rest) in enumerate(part):
                t = chunks[i].request.block_table[:max_blocks]
                tables[r, :len(t)] = torch.tensor(t)
            lens = torch.tensor([stop for *_, stop in part])
            mask = torch.arange(max_blocks * bs)[None, :] < lens[:, None]
            rows = torch.tensor([o for _, o, _, _ in part])
            groups.append((rows.to(dev), tables.to(dev), mask.to(dev)))
        return groups

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
        """Drop per-request sampler state."""
        self._generators.pop(request.request_id, None)
