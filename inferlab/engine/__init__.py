"""The inference engine: continuous batching over a paged KV cache, and a static-batching baseline.

Layout (one job per module): request.py (request state, SamplingParams), config.py
(EngineConfig), kv_cache.py (block pool, BlockAllocator + reference PagedBlockAllocator),
scheduler.py (Scheduler + reference ContinuousBatchingScheduler), runner.py (one forward
step), engine.py (the loop, LLMEngine), static.py (StaticBatchingEngine baseline).
"""

from inferlab.engine.config import EngineConfig
from inferlab.engine.engine import LLMEngine, StepRecord
from inferlab.engine.kv_cache import BlockAllocator, KVBlockPool, PagedBlockAllocator
from inferlab.engine.request import FinishReason, Request, RequestEvent, RequestOutput, RequestStatus, SamplingParams
from inferlab.engine.runner import ModelRunner
from inferlab.engine.scheduler import ContinuousBatchingScheduler, ScheduledChunk, Scheduler, SchedulerOutput
from inferlab.engine.static import StaticBatchingEngine

__all__ = [
    "BlockAllocator", "ContinuousBatchingScheduler", "EngineConfig", "FinishReason", "KVBlockPool", "LLMEngine",
    "ModelRunner", "PagedBlockAllocator", "Request", "RequestEvent", "RequestOutput", "RequestStatus", "SamplingParams",
    "ScheduledChunk", "Scheduler", "SchedulerOutput", "StaticBatchingEngine", "StepRecord",
]
