"""The scheduler's limits, one dataclass for the engine and its simulated replica.

`inferlab.engine.EngineConfig` and `inferlab.sim.replica.ReplicaConfig` both extend
`BatchLimits` (each with its own defaults), so the two name and check these the same way
(names follow vLLM's engine arguments).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BatchLimits:
    """What one engine instance may run at once.

    Args:
        max_num_seqs: most requests running (holding KV blocks) at once.
        max_num_batched_tokens: token budget of one step (decode tokens + prefill chunk tokens).
        block_size: tokens per KV block.
    """

    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    block_size: int = 16

    def __post_init__(self) -> None:
        for name in ("max_num_seqs", "max_num_batched_tokens", "block_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{type(self).__name__}.{name} must be an integer >= 1, got {value!r}")
