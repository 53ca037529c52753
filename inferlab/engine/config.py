"""Engine settings (one frozen dataclass), checked when built.

Read by the scheduler (budgets), the block allocator (pool size) and the model runner
(device, dtype). Per-request settings live in `request.SamplingParams`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from inferlab.limits import BatchLimits
from inferlab.model.attention import BACKENDS

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class EngineConfig(BatchLimits):
    """Settings of one engine instance (its scheduler limits: `BatchLimits`, shared with the simulator).

    Args:
        max_num_seqs, max_num_batched_tokens, block_size: see `inferlab.limits.BatchLimits`.
        num_kv_blocks: blocks in the KV pool (per layer); capacity `max_kv_tokens` = num_kv_blocks * block_size.
        max_model_len: longest prompt + output, in tokens.
        enable_chunked_prefill: split long prompts across steps to fit the token budget.
        enable_prefix_caching: reuse the KV of full blocks shared with earlier prompts.
        device: "cpu", "cuda", ... (None: the model's device).
        dtype: "float32", "bfloat16" or "float16" for the KV pool (the model's dtype is kept).
        max_finished_requests: finished requests kept in `LLMEngine.finished` (None: all, for offline
            runs; a server sets a bound so its memory stays flat).
        max_step_records: step records kept in `LLMEngine.step_records` (None: all, for profiling).
        attention_backend: "gather" (the reference), "native" (a C kernel reading K/V in place; CPU, fp32)
            or "flex" (paged FlexAttention, in place);
            None: the device's default (`inferlab.model.attention.make_backend`).
        enable_cuda_graphs: replay decode-only steps from CUDA graphs captured per padded batch
            size (CUDA only; ignored elsewhere).
    """

    max_num_seqs: int = 64
    max_num_batched_tokens: int = 1024
    block_size: int = 16
    num_kv_blocks: int = 1024
    max_model_len: int = 1024
    enable_chunked_prefill: bool = True
    enable_prefix_caching: bool = True
    device: str | None = None
    dtype: str = "float32"
    max_finished_requests: int | None = None
    max_step_records: int | None = None
    attention_backend: str | None = None
    enable_cuda_graphs: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("num_kv_blocks", "max_model_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"EngineConfig.{name} must be an integer >= 1, got {value!r}")
        for name in ("max_finished_requests", "max_step_records"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(f"EngineConfig.{name} must be None (keep all) or an integer >= 0, got {value!r}")
        if self.attention_backend is not None and self.attention_backend not in BACKENDS:
            raise ValueError(f"EngineConfig.attention_backend must be None or one of {sorted(BACKENDS)}, "
                             f"got {self.attention_backend!r}")
        if not isinstance(self.enable_cuda_graphs, bool):
            raise ValueError(f"EngineConfig.enable_cuda_graphs must be a bool, got {self.enable_cuda_graphs!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"EngineConfig.dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        if not self.enable_chunked_prefill and self.max_num_batched_tokens < self.max_model_len:
            raise ValueError(
                f"without chunked prefill, max_num_batched_tokens ({self.max_num_batched_tokens}) must be >= "
                f"max_model_len ({self.max_model_len}) so that every prompt fits in one step"
            )

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    @property
    def max_kv_tokens(self) -> int:
        """KV capacity of the pool, in tokens (`num_kv_tokens` is what is held at a time)."""
        return self.num_kv_blocks * self.block_size
