"""Fixtures for tests/parallel: one launch per world size runs every strategy's checks."""

import pytest
import torch

from inferlab.model import KVCache, ensure_checkpoint, generate_greedy, load_checkpoint
from inferlab.parallel.launch import launch

import parallel_checks as pc


@pytest.fixture(scope="session")
def reference():
    """Single-device logits and greedy tokens for the inputs the rank workers use."""
    model = load_checkpoint(ensure_checkpoint("tiny"), device="cpu")
    with torch.no_grad():
        cache = KVCache(model.config.num_hidden_layers)
        logits = model(torch.tensor(pc.TP_IDS), cache=cache)
        prefill, decode = logits.clone(), []
        for _ in range(3):
            logits = model(logits[:, -1:].argmax(-1), cache=cache)
            decode.append(logits[:, -1])
        sp_logits = model(torch.tensor(pc.SP_IDS))
    return {
        "model": model, "prefill": prefill, "decode": torch.stack(decode), "sp_logits": sp_logits,
        "tokens": [generate_greedy(model, p, 8) for p in pc.PROMPTS],
        "pp_tokens": [generate_greedy(model, p, 6) for p in pc.PP_PROMPTS],
    }


@pytest.fixture(scope="session")
def ranks2():
    return launch(pc.bundle, 2, timeout_s=150)


@pytest.fixture(scope="session")
def ranks4():
    return launch(pc.bundle, 4, timeout_s=150)
