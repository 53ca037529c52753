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
from inferlab.engine.kv_cache import KVBlockPool
from inferlab.engine.request import Request
from inferlab.engine.scheduler import ScheduledChunk
from inferlab.model.llama import LlamaForCausalLM, attend, rope_cos_sin


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
        self.pool = KVBlockPool(mc.num_hidden_layers, config.num_kv_blocks, config.block_size,
                                mc.num_key_value_heads, mc.head_dim, self.device, config.torch_dtype)
        self._generators: dict[str, torch.Generator] = {}

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
        # decode batch: block tables padded to the longest, a mask over each sequence's context
        if decodes:
            dec_rows = torch.tensor([o for _, o, _, _ in decodes], device=dev)
            max_blocks = max(-(-stop // bs) for *_, stop in decodes)
            tables = torch.zeros(len(decodes), max_blocks, dtype=torch.long)
            lens = torch.tensor([stop for *_, stop in decodes])
            for r, (i, *_rest) in enumerate(decodes):
                t = chunks[i].request.block_table[:max_blocks]
                tables[r, :len(t)] = torch.tensor(t)
            tables = tables.to(dev)
            dec_mask = (torch.arange(max_blocks * bs)[None, :] < lens[:, None]).to(dev)
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
            if decodes:
                nb = len(decodes)
                kd = kp[tables].view(nb, -1, *kp.shape[2:]).transpose(1, 2).to(q.dtype)  # [B, nkv, S, d]
                vd = vp[tables].view(nb, -1, *vp.shape[2:]).transpose(1, 2).to(q.dtype)
                qd = q[0, :, dec_rows].transpose(0, 1)  # [B, nh, d]
                out[dec_rows] = _decode_attention(qd, kd, vd, dec_mask)
            for i, o, start, stop in prefills:
                table = chunks[i].request.block_table[: -(-stop // bs)]
                kc = kp[table].view(-1, *kp.shape[2:])[:stop].transpose(0, 1)[None].to(q.dtype)  # [1, nkv, S, d]
                vc = vp[table].view(-1, *vp.shape[2:])[:stop].transpose(0, 1)[None].to(q.dtype)
                qc = q[:, :, o:o + stop - start]
                out[o:o + stop - start] = attend(qc, kc, vc)[0].transpose(0, 1)  # causal over the last T of S
            x = x + attn.o_proj(out.reshape(1, n, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        h = self.model.model.norm(x[0, last_idx])
        return self.model.lm_head(h).float()

    def sample(self, logits: torch.Tensor, requests: list[Request]) -> list[int]:
        """Token ids from logits [len(requests), vocab]: argmax when temperature is 0, else a draw
        from softmax(logits / temperature) with the request's own seeded generator."""
        tokens = logits.argmax(-1).tolist()
        for r, req in enumerate(requests):
            sp = req.sampling_params
            if sp.temperature > 0:
                gen = self._generators.get(req.request_id)
                if gen is None and sp.seed is not None:
                    gen = self._generators[req.request_id] = torch.Generator(logits.device).manual_seed(sp.seed)
                probs = torch.softmax(logits[r] / sp.temperature, dim=-1)
                tokens[r] = int(torch.multinomial(probs, 1, generator=gen))
        return tokens

    def release(self, request: Request) -> None:
        """Drop per-request sampler state."""
        self._generators.pop(request.request_id, None)
