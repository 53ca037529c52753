"""Time one request through the model: prefill, then token-by-token decode.

Returns an `inferlab.metrics.RequestRecord`, so TTFT/TPOT come from the one
definition in `inferlab.metrics`.
"""

from __future__ import annotations

import time

import torch

from inferlab.metrics import RequestRecord
from inferlab.model.llama import KVCache, LlamaForCausalLM


@torch.no_grad()
def time_request(model: LlamaForCausalLM, prompt_ids: list[int], max_new_tokens: int, batch_size: int = 1) -> RequestRecord:
    """Greedy-decode `prompt_ids` (repeated `batch_size` times) and time every token.

    Args:
        model: the decoder.
        prompt_ids: prompt token ids (length P).
        max_new_tokens: tokens to generate (>= 1).
        batch_size: identical sequences decoded together (to see batching on the roofline).
    Returns:
        A RequestRecord whose times are seconds from the call's start.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    sync = torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)
    cache = KVCache(model.config.num_hidden_layers)
    ids = torch.tensor([prompt_ids] * batch_size, device=model.device)
    sync()
    start = time.perf_counter()
    token_times = []
    for _ in range(max_new_tokens):
        logits = model(ids, cache=cache)
        ids = logits[:, -1:].argmax(-1)
        sync()
        token_times.append(time.perf_counter() - start)
    return RequestRecord(0.0, token_times[0], token_times[-1], len(prompt_ids), max_new_tokens, tuple(token_times))
