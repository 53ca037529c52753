"""The baseline: static batching with the model's own contiguous KV cache.

Requests are taken in arrival order in batches of up to `max_batch_size`; each batch is
left-padded to its longest prompt, prefilled together, then decoded step by step until
its longest member is done, so short requests wait for the longest one (their slots keep
computing padding) and a new batch starts only when the previous one is finished. This is
what continuous batching (`engine.LLMEngine`) is measured against; same weights, same layers.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import torch

from inferlab.engine.request import Request, RequestStatus, SamplingParams
from inferlab.metrics import RequestRecord
from inferlab.model.llama import KVCache, LlamaForCausalLM


class StaticBatchingEngine:
    """Run requests in padded static batches.

    Args:
        model: the model.
        max_batch_size: requests per batch.
        clock: time source in seconds.
    """

    def __init__(self, model: LlamaForCausalLM, max_batch_size: int = 32,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.model, self.max_batch_size, self.clock = model, max_batch_size, clock
        self.finished: list[Request] = []

    def generate(self, prompts: Sequence[Sequence[int]], sampling_params: Sequence[SamplingParams],
                 arrival_time_s: float | None = None) -> list[Request]:
        """Run all prompts (submitted together at `arrival_time_s`, default now); greedy only."""
        arrival = self.clock() if arrival_time_s is None else arrival_time_s
        reqs = [Request(str(i), list(p), sp, arrival, max_total_tokens=len(p) + sp.max_tokens)
                for i, (p, sp) in enumerate(zip(prompts, sampling_params))]
        ctx = self.model.config.max_position_embeddings
        for r in reqs:
            if not r.prompt_token_ids or r.max_total_tokens > ctx:
                raise ValueError(f"request {r.request_id}: empty or longer than the context {ctx}")
        for i in range(0, len(reqs), self.max_batch_size):
            self._run_batch(reqs[i:i + self.max_batch_size])
        self.finished.extend(reqs)
        return reqs

    @torch.inference_mode()
    def _run_batch(self, batch: list[Request]) -> None:
        dev, eos = self.model.device, self.model.config.eos_token_id
        lens = [r.num_prompt_tokens for r in batch]
        t = max(lens)
        pads = [t - n for n in lens]
        ids = torch.tensor([[0] * p + r.prompt_token_ids for p, r in zip(pads, batch)], device=dev)
        pad_t = torch.tensor(pads, device=dev)
        positions = (torch.arange(t, device=dev)[None, :] - pad_t[:, None]).clamp(min=0)
        valid = torch.arange(t, device=dev)[None, :] >= pad_t[:, None]  # [B, S] keys that are real tokens
        mask = valid[:, None, None, :] & torch.ones(t, t, dtype=torch.bool, device=dev).tril()[None, None]
        mask = mask | torch.eye(t, dtype=torch.bool, device=dev)[None, None]  # pad rows attend to themselves
        cache = KVCache(self.model.config.num_hidden_layers)
        logits = self.model(ids, positions, cache, mask)[:, -1]
        num_steps = max(r.sampling_params.max_tokens for r in batch)
        done = [False] * len(batch)
        for step in range(num_steps):
            tokens = logits.argmax(-1)
            now = self.clock()
            for j, (r, tok) in enumerate(zip(batch, tokens.tolist())):
                if done[j]:
                    continue
                r.output_token_ids.append(tok)
                r.token_times_s.append(now)
                reason, r.stop_reason = r.check_stop(eos)  # the same stop rule as the engine's
                if reason is not None:
                    done[j], r.finish_reason = True, reason
            if all(done) or step == num_steps - 1:
                break
            valid = torch.cat((valid, torch.ones(len(batch), 1, dtype=torch.bool, device=dev)), dim=1)
            positions = positions[:, -1:] + 1
            logits = self.model(tokens[:, None], positions, cache, valid[:, None, None, :])[:, -1]
        end = self.clock()
        for r in batch:  # the batch returns when its longest member is done
            r.status, r.finish_time_s = RequestStatus.FINISHED, end

    def records(self) -> list[RequestRecord]:
        return [r.to_record() for r in self.finished if r.output_token_ids]
