# %% [markdown]
# # Lab 3: continuous batching and a paged KV cache
#
# **Module MOD-526, Distributed Inference & Scaling.** Objective served: *"Implement continuous
# batching, dynamic routing, and autoscaling strategies tied to performance KPIs"*. You write the
# two policies at the heart of a vLLM-style engine, a **block allocator with prefix sharing** and an
# **iteration-level scheduler** (token budget, chunked prefill, recompute preemption), and plug them
# into `inferlab.engine.LLMEngine`, a real engine running the tiny Llama model. Then you measure
# them against static batching.
#
# | | |
# |---|---|
# | Prerequisites | Lab 0 (TTFT/TPOT), Lab 1; lecture deck `lectures/03_batching_routing.ipynb` (paged attention, continuous batching) |
# | Hardware tier | **CPU** (any laptop); on a GPU box it runs on the GPU (`default_device()`), where the engine builds each step's batch on the device, reads the KV blocks in place and replays CUDA graphs for decodes |
# | Time | ~2 min in fast mode, ~8 min in full mode |
# | Hours | lecture 2 h, lab 3 h (the course: 12 h lecture, 18 h lab, 6 h portfolio, 4 h assessment; see COURSE.md) |
# | Graded | block allocator (5 points), scheduler (12 points), regression tests graded by mutation (3 points), throughput vs static batching (2 points) |
#
# The interfaces you implement live in the package: `inferlab.engine.BlockAllocator`
# (`kv_cache.py`) and `inferlab.engine.Scheduler` (`scheduler.py`). Read their docstrings first.

# %%
import dataclasses
import random

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from collections import Counter, OrderedDict, deque

from inferlab.engine import (
    BlockAllocator, EngineConfig, FinishReason, LLMEngine, PagedBlockAllocator, Request, RequestStatus,
    SamplingParams, ScheduledChunk, Scheduler, SchedulerOutput, StaticBatchingEngine,
)
from inferlab.hardware import default_device
from inferlab.metrics import summarize
from inferlab.model import ensure_checkpoint, generate_greedy, load_checkpoint
from inferlab.notebook import banner, pick, progress

banner("lab3_batching", tier="CPU", fast_min=2, full_min=8)
# One thread: this lab compares schedulers, not thread counts, and the tiny model's ops are too
# small to gain from more; on a shared machine a second thread's OpenMP barrier can cost 10x.
torch.set_num_threads(1)
model = load_checkpoint(ensure_checkpoint("tiny"), device=default_device())  # CUDA on a GPU box

# %% [markdown]
# ## 1. The engine, with the reference policies
#
# Each `step()` the scheduler picks chunks `(request, num_tokens)`: a decode is one token, a
# prefill chunk is part of a prompt. The runner flattens all chunks into one batch, writes their
# K/V into the block pool through each request's **block table**, and samples a token for every
# request whose chunk reached its end. Block `i` of a table holds token positions `[i*B, (i+1)*B)`.
#
# How attention reads the cache here: on a CPU the runner **gathers** each request's K/V from its
# blocks into a contiguous tensor and calls ordinary attention on it (measured faster there). On a
# GPU it uses a **paged** backend instead: one FlexAttention call per layer reads K/V from the blocks
# in place (no copy), masked by the block tables, like vLLM's paged-attention kernel
# (`inferlab.model.attention`). The memory layout and the scheduling you write are the same, only the
# kernel differs.

# %%
demo = LLMEngine(model, EngineConfig(max_num_seqs=4, max_num_batched_tokens=32, block_size=8,
                                     num_kv_blocks=32, max_model_len=128))
for n in (5, 40, 12):
    demo.add_request(list(range(1, n + 1)), SamplingParams(max_tokens=6, ignore_eos=True))
while demo.has_unfinished():
    demo.step()
    s = demo.step_records[-1]
    print(f"prefill tokens {s.num_prefill_tokens:>3}  decodes {s.num_decode_seqs}  "
          f"KV tokens {s.num_kv_tokens:>3} in {s.num_kv_blocks_used} blocks")

# %% [markdown]
# ## 2. A block allocator with prefix sharing (graded)
#
# Worked example: the simplest allocator, a free list with no sharing.

# %%
class FreeListAllocator(BlockAllocator):
    """Hands out blocks from a free list; nothing is ever shared or cached."""

    def __init__(self, num_blocks: int, block_size: int) -> None:
        super().__init__(num_blocks, block_size)
        self.free_blocks = list(range(num_blocks))

    def num_free_blocks(self) -> int:
        return len(self.free_blocks)

    def allocate(self, token_ids):
        need = self.num_blocks_for(len(token_ids))
        if need > len(self.free_blocks):
            return None
        return [self.free_blocks.pop() for _ in range(need)], 0

    def append_slots(self, block_table, num_tokens):
        need = self.num_blocks_for(num_tokens) - len(block_table)
        if need > len(self.free_blocks):
            return False
        block_table.extend(self.free_blocks.pop() for _ in range(max(need, 0)))
        return True

    def free(self, block_table):
        self.free_blocks.extend(block_table)
        block_table.clear()


# %% [markdown]
# Now yours: `SharingAllocator`. Requirements (the `BlockAllocator` docstrings are the contract):
# - `ref_counts[b]` = how many block tables hold block `b`; `free` decrements, a block is free at 0.
# - `cache_blocks(token_ids, table, num_computed)`: every **full, computed** block gets a key, the
#   chained hash `hash((key_of_previous_block, tuple(its tokens)))` (first block: previous = None).
# - `allocate(token_ids)`: reuse cached blocks for the longest run of leading full blocks whose keys
#   match, but never the block holding the last token (at least one token must be computed);
#   return `(table, num_cached_tokens)`; return None and change nothing when blocks are short.
# - Freed cached blocks stay findable until their block is needed for something else; evict the
#   **least recently freed** first, and hand out never-cached free blocks before cached ones.
#
# *What you may use:* the `BlockAllocator` base class, the standard library (`OrderedDict`, ...).
# Not the reference `PagedBlockAllocator`: subclassing, wrapping or calling it scores zero here.

# %% solution id=allocator
class SharingAllocator(BlockAllocator):
    """Reference counts + a prefix cache of full blocks, LRU eviction."""

    def __init__(self, num_blocks: int, block_size: int) -> None:
        super().__init__(num_blocks, block_size)
        self.ref_counts = [0] * num_blocks
        ### BEGIN SOLUTION
        self.free_blocks: OrderedDict[int, None] = OrderedDict((b, None) for b in range(num_blocks))
        self.key_of: dict[int, int] = {}  # block -> its chained hash
        self.block_of: dict[int, int] = {}  # chained hash -> block
        ### END SOLUTION

    def num_free_blocks(self) -> int:
        ### BEGIN SOLUTION
        return len(self.free_blocks)
        ### END SOLUTION

    def allocate(self, token_ids):
        ### BEGIN SOLUTION
        bs, hits, key = self.block_size, [], None
        for i in range((len(token_ids) - 1) // bs):
            key = hash((key, tuple(token_ids[i * bs:(i + 1) * bs])))
            if key not in self.block_of:
                break
            hits.append(self.block_of[key])
        need = self.num_blocks_for(len(token_ids)) - len(hits)
        if need + sum(self.ref_counts[b] == 0 for b in hits) > len(self.free_blocks):
            return None
        for b in hits:
            self.free_blocks.pop(b, None)
            self.ref_counts[b] += 1
        return hits + [self._take() for _ in range(need)], len(hits) * bs
        ### END SOLUTION

    def append_slots(self, block_table, num_tokens):
        ### BEGIN SOLUTION
        need = self.num_blocks_for(num_tokens) - len(block_table)
        if need > len(self.free_blocks):
            return False
        block_table.extend(self._take() for _ in range(max(need, 0)))
        return True
        ### END SOLUTION

    def free(self, block_table):
        ### BEGIN SOLUTION
        for b in reversed(block_table):
            self.ref_counts[b] -= 1
            if self.ref_counts[b] == 0:
                self.free_blocks[b] = None
                if b not in self.key_of:
                    self.free_blocks.move_to_end(b, last=False)
        block_table.clear()
        ### END SOLUTION

    def cache_blocks(self, token_ids, block_table, num_computed_tokens):
        ### BEGIN SOLUTION
        bs, key = self.block_size, None
        for i in range(min(num_computed_tokens // bs, len(block_table))):
            b = block_table[i]
            if b not in self.key_of:
                self.key_of[b] = hash((key, tuple(token_ids[i * bs:(i + 1) * bs])))
                self.block_of.setdefault(self.key_of[b], b)
            key = self.key_of[b]
        ### END SOLUTION

    ### BEGIN SOLUTION
    def _take(self) -> int:
        b, _ = self.free_blocks.popitem(last=False)
        key = self.key_of.pop(b, None)
        if key is not None and self.block_of.get(key) == b:
            del self.block_of[key]
        self.ref_counts[b] = 1
        return b
    ### END SOLUTION

# %% tests id=test_allocator_basic points=2
_a = SharingAllocator(num_blocks=6, block_size=4)
_t, _cached = _a.allocate(list(range(10)))
assert _cached == 0 and len(_t) == 3 and len(set(_t)) == 3 and _a.num_free_blocks() == 3
assert _a.allocate(list(range(20))) is None and _a.num_free_blocks() == 3, "a failed allocate must change nothing"
assert _a.append_slots(_t, 13) and len(_t) == 4 and _a.num_free_blocks() == 2
_a.free(_t)
assert _t == [] and _a.num_free_blocks() == 6 and sum(_a.ref_counts) == 0
### BEGIN HIDDEN TESTS
_rng = random.Random(7)
_a = SharingAllocator(num_blocks=20, block_size=4)
_tables = []
for _ in range(300):
    if _tables and _rng.random() < 0.4:
        _a.free(_tables.pop(_rng.randrange(len(_tables))))
    else:
        _res = _a.allocate([_rng.randrange(50) for _ in range(_rng.randint(1, 30))])
        if _res is not None:
            _tables.append(_res[0])
    _owned = [b for t in _tables for b in t]
    assert len(set(_owned)) == len(_owned), "a block is owned twice (no sharing was possible here)"
    assert _a.num_free_blocks() == 20 - len(_owned), "free blocks + owned blocks != all blocks"
    assert all(_a.ref_counts[b] == 1 for b in _owned), "ref counts do not match the owners"
### END HIDDEN TESTS

# %% tests id=test_allocator_prefix points=3
_a = SharingAllocator(num_blocks=8, block_size=4)
_p = list(range(100, 110))  # 10 tokens: 2 full blocks + 2
_t1, _ = _a.allocate(_p)
_a.cache_blocks(_p, _t1, num_computed_tokens=10)
_t2, _cached = _a.allocate(_p[:8] + [7, 7, 7])
assert _cached == 8 and _t2[:2] == _t1[:2] and _a.ref_counts[_t1[0]] == 2
### BEGIN HIDDEN TESTS
_a = SharingAllocator(num_blocks=8, block_size=4)
_p = [5] * 12
_t1, _ = _a.allocate(_p)
_a.cache_blocks(_p, _t1, 12)
_t2, _c = _a.allocate(_p)
assert _c == 8, "the block holding the last prompt token must not be served from the cache"
_a.free(_t2)
_a.free(_t1)
assert _a.num_free_blocks() == 8
_t3, _c = _a.allocate(_p[:8] + [1])
assert _c == 8, "freed cached blocks must still be found"
_a.free(_t3)
_t4, _c = _a.allocate([9] * 5)  # 2 blocks: must come from never-cached free blocks
_t5, _c5 = _a.allocate(_p[:8] + [2])
assert _c5 == 8, "never-cached free blocks must be handed out before cached ones"
_a.free(_t4)
_a.free(_t5)
_big, _ = _a.allocate([3] * 32)  # every block: evicts all cached ones
_a.free(_big)
_t6, _c = _a.allocate(_p[:8] + [2])
assert _c == 0, "an evicted block must not be found in the cache"
_a.free(_t6)
_a = SharingAllocator(num_blocks=8, block_size=2)
_x, _y = [1, 2, 3, 4, 5], [1, 2, 9, 9, 5]
_tx, _ = _a.allocate(_x)
_a.cache_blocks(_x, _tx, 5)
_ty, _c = _a.allocate(_y)
assert _c == 2, "only the matching leading blocks are shared"
_a.cache_blocks(_y, _ty, 5)
_tz, _c = _a.allocate([3, 4, 0])
assert _c == 0, "keys must chain: a block is only found after the same prefix"
_a = SharingAllocator(num_blocks=8, block_size=4)
_p = list(range(40, 52))
_t, _ = _a.allocate(_p)
_a.cache_blocks(_p, _t, 6)  # 6 of 12 tokens computed: only the first block is full and computed
_t2, _c = _a.allocate(_p[:8] + [1])
assert _c == 4, "only full, computed blocks may be cached"
_a.free(_t2)
_a.cache_blocks(_p, _t, 12)
_t3, _c = _a.allocate(_p[:8] + [1])
assert _c == 8, "a block must be cached once it is full and computed"
_a.free(_t3)
_a.free(_t)
_a = SharingAllocator(num_blocks=4, block_size=2)
_ta, _ = _a.allocate([1, 2, 3])
_a.cache_blocks([1, 2, 3], _ta, 3)
_a.free(_ta)  # cached block of [1, 2] freed first ...
_tb, _ = _a.allocate([5, 6, 7])
_a.cache_blocks([5, 6, 7], _tb, 3)
_a.free(_tb)  # ... then the cached block of [5, 6]
_a.free(_a.allocate([9] * 5)[0])  # 3 blocks: the 2 never-cached ones, then one cached block is evicted
assert _a.allocate([5, 6, 0])[1] == 2, "the most recently freed cached block must survive"
assert _a.allocate([1, 2, 0])[1] == 0, "evict the least recently freed cached block first"
### END HIDDEN TESTS

# %% [markdown]
# ## 3. An iteration-level scheduler (graded)
#
# Worked example: one request at a time, whole prompts, no budget (correct but slow).

# %%
class OneAtATimeScheduler(Scheduler):
    """Runs the oldest request alone until it finishes."""

    def __init__(self, config, allocator):
        super().__init__(config, allocator)
        self.queue: deque[Request] = deque()

    def add(self, request):
        self.queue.append(request)

    def has_unfinished(self):
        return bool(self.queue)

    def num_running(self):
        return int(bool(self.queue) and self.queue[0].status is RequestStatus.RUNNING)

    def finish(self, request):
        self.queue.remove(request)
        self.allocator.free(request.block_table)

    def schedule(self):
        out = SchedulerOutput()
        if not self.queue:
            return out
        req = self.queue[0]
        if req.status is not RequestStatus.RUNNING:
            req.block_table, req.num_computed_tokens = self.allocator.allocate(req.all_token_ids)
            req.status = RequestStatus.RUNNING
        elif not self.allocator.append_slots(req.block_table, req.num_tokens):
            return out
        out.chunks.append(ScheduledChunk(req, req.num_tokens - req.num_computed_tokens))
        return out


# %% [markdown]
# **Which policy is taught.** The scheduler below is **decode-first**, as vLLM's V0 scheduler with
# chunked prefill: requests already decoding get their one token before any prefill. vLLM's V1 engine
# has no prefill and decode phases at all: every running request is owed `num_tokens -
# num_computed_tokens` tokens (1 for a decode, many for a prompt), and one token budget is spent on
# running requests first, then on waiting ones. With chunked prefill both pick much the same chunks;
# decode-first makes the TPOT guarantee explicit, which is why it is the one you write.
#
# Now yours: `MyScheduler`. Each `schedule()`:
# 1. **Decodes first**: every running request with exactly one token left to compute
#    (`num_tokens - num_computed_tokens == 1`), oldest first, costs 1 token of the budget
#    `config.max_num_batched_tokens`. Grow its table with `append_slots(table, req.num_tokens)`;
#    when that fails, **preempt by recompute** the most recently admitted running request (free its
#    blocks, `num_computed_tokens = 0`, status PREEMPTED, put it at the **front** of the waiting
#    queue, list it in `out.preempted`) and retry; if the victim is the request itself, skip it.
# 2. **Prefill chunks**: running requests with more than one token left get
#    `min(left, remaining budget)` tokens (chunked prefill).
# 3. **Admission**, first come first served, only in a step without preemption, while budget is
#    left and fewer than `config.max_num_seqs` run: `allocate(req.all_token_ids)`; stop at the first
#    request that does not fit. Set `block_table`, `num_computed_tokens` (= cached tokens), status
#    RUNNING, and schedule a first chunk within the budget.
#
# *What you may use:* the allocator you are given (`self.allocator`), `Scheduler`, `SchedulerOutput`,
# `ScheduledChunk`, `Request`, `RequestStatus`. Not the reference `ContinuousBatchingScheduler`:
# subclassing, wrapping or calling it scores zero on the scheduler's tests.

# %% solution id=scheduler
class MyScheduler(Scheduler):
    """Token budget, decode first, chunked prefill, FCFS admission, recompute preemption."""

    def __init__(self, config, allocator):
        super().__init__(config, allocator)
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []  # admission order

    def add(self, request):
        self.waiting.append(request)

    def has_unfinished(self):
        return bool(self.waiting or self.running)

    def num_running(self):
        return len(self.running)

    def finish(self, request):
        ### BEGIN SOLUTION
        if request in self.running:
            self.running.remove(request)
        if request in self.waiting:
            self.waiting.remove(request)
        self.allocator.free(request.block_table)
        ### END SOLUTION

    def schedule(self):
        out = SchedulerOutput()
        budget = self.config.max_num_batched_tokens
        ### BEGIN SOLUTION
        for req in list(self.running):
            if budget == 0:
                break
            if req not in self.running or req.num_tokens - req.num_computed_tokens != 1:
                continue
            while not self.allocator.append_slots(req.block_table, req.num_tokens):
                victim = self.running.pop()
                self.allocator.free(victim.block_table)
                victim.num_computed_tokens, victim.status = 0, RequestStatus.PREEMPTED
                self.waiting.appendleft(victim)
                out.preempted.append(victim)
                if victim is req:
                    break
            if req in self.running:
                out.chunks.append(ScheduledChunk(req, 1))
                budget -= 1
        for req in self.running:
            left = req.num_tokens - req.num_computed_tokens
            if left > 1 and budget > 0:
                n = min(left, budget)
                out.chunks.append(ScheduledChunk(req, n))
                budget -= n
        while not out.preempted and self.waiting and budget > 0 and len(self.running) < self.config.max_num_seqs:
            req = self.waiting[0]
            allocation = self.allocator.allocate(req.all_token_ids)
            if allocation is None:
                break
            self.waiting.remove(req)
            req.block_table, req.num_computed_tokens = allocation
            req.status = RequestStatus.RUNNING
            self.running.append(req)
            n = min(req.num_tokens - req.num_computed_tokens, budget)
            out.chunks.append(ScheduledChunk(req, n))
            budget -= n
        ### END SOLUTION
        return out

# %% [markdown]
# A harness used by the tests below: run a workload through the engine with your policies,
# checking after every step that the token budget holds and that blocks are owned exactly as the
# reference counts say.

# %%
def run_workload(scheduler_cls, allocator, config, prompts, max_tokens, max_steps=20_000):
    """Run requests to completion; returns (engine, order in which requests were first scheduled).

    `engine.schedule_log` has one row per step, requests named by arrival index: `running_before`
    (running requests in admission order), `ready` (those with one token left to compute),
    `waiting_before` (not running), then what `schedule()` did: `chunk_of` {request: tokens},
    `preempted`, `admitted` (newly running) and `num_running` (running after planning).
    """
    engine = LLMEngine(model, config, scheduler_factory=scheduler_cls, allocator=allocator)
    ids = [engine.add_request(p, SamplingParams(max_tokens=m, ignore_eos=True)) for p, m in zip(prompts, max_tokens)]
    first_scheduled, steps = [], 0
    real_schedule = engine.scheduler.schedule
    admitted: list[Request] = []  # running requests in admission order
    engine.schedule_log = []

    def checked_schedule():
        admitted[:] = [r for r in admitted if r.status is RequestStatus.RUNNING]
        row = {"running_before": [ids.index(r.request_id) for r in admitted],
               "ready": [ids.index(r.request_id) for r in admitted if r.num_tokens - r.num_computed_tokens == 1],
               "waiting_before": sorted(ids.index(r.request_id) for r in engine.requests.values()
                                        if r.status is not RequestStatus.RUNNING)}
        out = real_schedule()
        assert out.num_tokens <= config.max_num_batched_tokens, "the token budget was exceeded"
        for c in out.chunks:
            if c.request.request_id not in first_scheduled:
                first_scheduled.append(c.request.request_id)
        admitted[:] = [r for r in admitted if r.status is RequestStatus.RUNNING and r not in out.preempted]
        new = [c.request for c in out.chunks if c.request.status is RequestStatus.RUNNING and c.request not in admitted]
        admitted.extend(new)
        row.update(chunk_of={ids.index(c.request.request_id): c.num_tokens for c in out.chunks},
                   preempted=[ids.index(r.request_id) for r in out.preempted],
                   admitted=[ids.index(r.request_id) for r in new],
                   num_running=sum(r.status is RequestStatus.RUNNING for r in engine.requests.values()))
        engine.schedule_log.append(row)
        return out

    engine.scheduler.schedule = checked_schedule
    while engine.has_unfinished() and steps < max_steps:
        engine.step()
        steps += 1
        running = [r for r in engine.requests.values() if r.status is RequestStatus.RUNNING]
        owned = Counter(b for r in running for b in r.block_table)
        if hasattr(allocator, "ref_counts"):
            assert all(allocator.ref_counts[b] == n for b, n in owned.items()), "ref counts != owners"
    assert not engine.has_unfinished(), f"not finished after {max_steps} steps"
    return engine, [ids.index(i) for i in first_scheduled]


def random_workload(seed, num_requests, max_prompt, max_output, shared_prefix=0):
    rng = random.Random(seed)
    prefix = [rng.randrange(256) for _ in range(shared_prefix)]
    prompts = [prefix + [rng.randrange(256) for _ in range(rng.randint(1, max_prompt))] for _ in range(num_requests)]
    return prompts, [rng.randint(1, max_output) for _ in prompts]


# %% tests id=test_scheduler_correct points=3
_cfg = EngineConfig(max_num_seqs=4, max_num_batched_tokens=16, block_size=4, num_kv_blocks=64, max_model_len=128)
_prompts, _max = random_workload(0, 6, 30, 8)
_engine, _ = run_workload(MyScheduler, PagedBlockAllocator(64, 4), _cfg, _prompts, _max)
for _r, _p, _m in zip(sorted(_engine.finished, key=lambda r: int(r.request_id)), _prompts, _max):
    assert _r.finish_reason is FinishReason.LENGTH and _r.output_token_ids == generate_greedy(model, _p, _m)
assert _engine.allocator.num_free_blocks() == 64, "blocks leaked"
### BEGIN HIDDEN TESTS
for _seed in (11, 12):
    _cfg = EngineConfig(max_num_seqs=8, max_num_batched_tokens=24, block_size=4, num_kv_blocks=96, max_model_len=128)
    _prompts, _max = random_workload(_seed, 8, 40, 10, shared_prefix=12)
    _alloc = SharingAllocator(96, 4)
    _engine, _ = run_workload(MyScheduler, _alloc, _cfg, _prompts, _max)
    for _r, _p, _m in zip(sorted(_engine.finished, key=lambda r: int(r.request_id)), _prompts, _max):
        assert _r.output_token_ids == generate_greedy(model, _p, _m), "an output differs from the request run alone"
    assert _alloc.num_free_blocks() == 96 and sum(_alloc.ref_counts) == 0, "blocks leaked after the run"
    assert max(s.num_prefill_tokens + s.num_decode_seqs for s in _engine.step_records) <= 24, "budget exceeded"
    assert sum(s.num_prefill_tokens for s in _engine.step_records) < sum(map(len, _prompts)), \
        "a shared prefix was computed again: an admitted request's num_computed_tokens starts at its cached tokens"
### END HIDDEN TESTS

# %% tests id=test_scheduler_preemption points=3
_cfg = EngineConfig(max_num_seqs=6, max_num_batched_tokens=32, block_size=4, num_kv_blocks=14, max_model_len=64)
_prompts, _max = random_workload(3, 6, 12, 1)
_max = [20] * 6
_engine, _ = run_workload(MyScheduler, PagedBlockAllocator(14, 4), _cfg, _prompts, _max)
assert all(r.finish_reason is FinishReason.LENGTH for r in _engine.finished), "every request must complete"
assert sum(s.num_preempted for s in _engine.step_records) > 0, "the pool is too small to finish without preempting"
### BEGIN HIDDEN TESTS
_cfg = EngineConfig(max_num_seqs=8, max_num_batched_tokens=16, block_size=4, num_kv_blocks=12, max_model_len=64)
_prompts, _max = random_workload(21, 8, 14, 1)
_max = [16] * 8
_engine, _ = run_workload(MyScheduler, PagedBlockAllocator(12, 4), _cfg, _prompts, _max)
assert all(r.finish_reason is FinishReason.LENGTH for r in _engine.finished), "a request did not complete"
for _r, _p, _m in zip(sorted(_engine.finished, key=lambda r: int(r.request_id)), _prompts, _max):
    assert _r.output_token_ids == generate_greedy(model, _p, _m), "recompute changed an output"
assert _engine.allocator.num_free_blocks() == 12, "blocks leaked"
for _row in _engine.schedule_log:
    _victims = _row["preempted"]
    assert sorted(_victims) == sorted(_row["running_before"][::-1][:len(_victims)]), \
        "the victim must be the most recently admitted"
assert sum(len(_row["preempted"]) for _row in _engine.schedule_log) > 0
### END HIDDEN TESTS

# %% tests id=test_scheduler_fcfs points=2
_cfg = EngineConfig(max_num_seqs=2, max_num_batched_tokens=64, block_size=4, num_kv_blocks=64, max_model_len=128)
_prompts, _max = random_workload(5, 6, 20, 4)
_, _order = run_workload(MyScheduler, PagedBlockAllocator(64, 4), _cfg, _prompts, _max)
assert _order == sorted(_order), f"requests must be admitted in arrival order, got {_order}"
### BEGIN HIDDEN TESTS
_cfg = EngineConfig(max_num_seqs=3, max_num_batched_tokens=8, block_size=4, num_kv_blocks=40, max_model_len=128)
_prompts, _max = random_workload(8, 9, 30, 6)
_, _order = run_workload(MyScheduler, PagedBlockAllocator(40, 4), _cfg, _prompts, _max)
assert _order == list(range(9)), "requests were not admitted first come, first served"
# under preemption too: every admission takes the earliest-arrived request not running (a preempted one
# goes back to the front of the queue)
_cfg = EngineConfig(max_num_seqs=6, max_num_batched_tokens=24, block_size=4, num_kv_blocks=13, max_model_len=64)
_prompts, _max = random_workload(23, 8, 12, 1)
_engine, _ = run_workload(MyScheduler, PagedBlockAllocator(13, 4), _cfg, _prompts, [14] * 8)
assert sum(len(_row["preempted"]) for _row in _engine.schedule_log) > 0, "this workload must preempt"
for _row in _engine.schedule_log:
    assert _row["admitted"] == _row["waiting_before"][:len(_row["admitted"])], \
        "an admission skipped an earlier request (after a preemption, the victim goes to the front)"
### END HIDDEN TESTS

# %% tests id=test_scheduler_budget points=1
_cfg = EngineConfig(max_num_seqs=8, max_num_batched_tokens=8, block_size=4, num_kv_blocks=64, max_model_len=128)
_prompts, _max = random_workload(9, 4, 30, 4)
_engine, _ = run_workload(MyScheduler, PagedBlockAllocator(64, 4), _cfg, _prompts, _max)
### BEGIN HIDDEN TESTS
_cfg = EngineConfig(max_num_seqs=8, max_num_batched_tokens=5, block_size=4, num_kv_blocks=64, max_model_len=128)
_prompts, _max = random_workload(19, 6, 40, 5)
_engine, _ = run_workload(MyScheduler, PagedBlockAllocator(64, 4), _cfg, _prompts, _max)
assert max(s.num_prefill_tokens + s.num_decode_seqs for s in _engine.step_records) <= 5, "budget exceeded"
### END HIDDEN TESTS

# %% tests id=test_scheduler_max_seqs points=1
_cfg = EngineConfig(max_num_seqs=2, max_num_batched_tokens=64, block_size=4, num_kv_blocks=64, max_model_len=128)
_prompts, _max = random_workload(5, 6, 20, 4)
_engine, _ = run_workload(MyScheduler, PagedBlockAllocator(64, 4), _cfg, _prompts, _max)
_peak = max(row["num_running"] for row in _engine.schedule_log)
assert _peak <= 2, f"max_num_seqs=2 but {_peak} requests ran at once"
assert _peak == 2, "with requests waiting, budget and blocks to spare, admit up to max_num_seqs"
### BEGIN HIDDEN TESTS
for _seed, _max_seqs in ((31, 1), (32, 3), (33, 5)):
    _cfg = EngineConfig(max_num_seqs=_max_seqs, max_num_batched_tokens=48, block_size=4, num_kv_blocks=80,
                        max_model_len=128)
    _prompts, _max = random_workload(_seed, 8, 24, 6)
    _engine, _ = run_workload(MyScheduler, PagedBlockAllocator(80, 4), _cfg, _prompts, _max)
    _peak = max(row["num_running"] for row in _engine.schedule_log)
    assert _peak <= _max_seqs, "more requests ran at once than max_num_seqs"
    assert _peak == _max_seqs, "admission stopped below max_num_seqs with requests waiting and room to spare"
### END HIDDEN TESTS

# %% tests id=test_scheduler_decode_first points=2
def _passed_over(engine):
    """Steps in which a running request with one token left (and not preempted) got no one-token chunk."""
    steps = []
    for step, row in enumerate(engine.schedule_log):
        want = [i for i in row["ready"] if i not in row["preempted"]]
        got = [i for i in row["ready"] if row["chunk_of"].get(i) == 1]
        if got != want:
            steps.append(step)
    return steps


_cfg = EngineConfig(max_num_seqs=4, max_num_batched_tokens=8, block_size=4, num_kv_blocks=96, max_model_len=128)
_prompts, _max = random_workload(41, 8, 40, 12)
_engine, _ = run_workload(MyScheduler, PagedBlockAllocator(96, 4), _cfg, _prompts, _max)
_steps = _passed_over(_engine)
assert not _steps, f"decodes first: a running request ready to decode got no token in steps {_steps[:5]}"
### BEGIN HIDDEN TESTS
for _seed, _max_seqs, _budget, _max_prompt in ((42, 6, 4, 3), (43, 3, 16, 36), (44, 8, 5, 2)):
    _cfg = EngineConfig(max_num_seqs=_max_seqs, max_num_batched_tokens=_budget, block_size=4, num_kv_blocks=128,
                        max_model_len=128)
    _prompts, _max = random_workload(_seed, 10, _max_prompt, 14)
    _engine, _ = run_workload(MyScheduler, PagedBlockAllocator(128, 4), _cfg, _prompts, _max)
    assert not _passed_over(_engine), "decodes first: a running request ready to decode was passed over"
### END HIDDEN TESTS

# %% [markdown]
# ### Regression tests for a scheduler (graded by mutation)
#
# A scheduler is the part of an engine that changes most often, and each change can silently break a
# rule that the rest of the engine relies on. Write pytest-style tests that pin the rules of section 3
# down: each test is a function of a scheduler **class** `scheduler_cls` that runs a small workload through
# `run_workload(scheduler_cls, PagedBlockAllocator(num_blocks, block_size), EngineConfig(...), prompts,
# max_tokens)` (prompts from `random_workload`) and asserts on `engine.schedule_log`,
# `engine.step_records`, `engine.allocator` or the admission order it returns. List them in
# `SCHEDULER_TESTS`. The rules: never more than `max_num_seqs` running; every block free at the end;
# first come, first served admission; decodes first; the victim of a preemption is the most recently
# admitted request, and nothing is admitted in a step that preempted.
#
# Graded by **mutation**: your tests must all pass on a correct scheduler (the reference), then each of
# several hidden **faulty** schedulers (each breaks one rule) is run through them, and a fault is
# *killed* when at least one test fails on it. Points: all pass on the correct one and at least one
# fault killed (1), at least half killed (1), all but one killed (1). Keep each workload small (a few
# requests, a few tokens): the tests run once per scheduler.
#
# *What you may use:* `run_workload`, `random_workload`, `EngineConfig`, `PagedBlockAllocator`, plain `assert`.

# %% solution id=scheduler_tests
### BEGIN SOLUTION
def _small(**overrides):
    fields = dict(max_num_seqs=4, max_num_batched_tokens=16, block_size=4, num_kv_blocks=64, max_model_len=64)
    fields.update(overrides)
    return EngineConfig(**fields)


def test_never_more_than_max_num_seqs(scheduler_cls):
    prompts, max_tokens = random_workload(1, 6, 10, 4)
    engine, _ = run_workload(scheduler_cls, PagedBlockAllocator(64, 4), _small(max_num_seqs=2), prompts, max_tokens)
    assert max(row["num_running"] for row in engine.schedule_log) <= 2


def test_every_block_free_at_the_end(scheduler_cls):
    prompts, max_tokens = random_workload(2, 5, 12, 4)
    engine, _ = run_workload(scheduler_cls, PagedBlockAllocator(64, 4), _small(), prompts, max_tokens)
    assert engine.allocator.num_free_blocks() == 64


def test_first_come_first_served(scheduler_cls):
    prompts, max_tokens = random_workload(3, 6, 8, 3)
    _, order = run_workload(scheduler_cls, PagedBlockAllocator(64, 4), _small(max_num_seqs=2), prompts, max_tokens)
    assert order == sorted(order), order


def test_decodes_first(scheduler_cls):
    prompts, max_tokens = random_workload(4, 6, 30, 6)
    engine, _ = run_workload(scheduler_cls, PagedBlockAllocator(96, 4), _small(max_num_batched_tokens=8, num_kv_blocks=96),
                             prompts, max_tokens)
    for row in engine.schedule_log:
        for i in row["ready"]:
            assert i in row["preempted"] or row["chunk_of"].get(i) == 1, row


def test_preempts_the_newest_and_admits_nobody_then(scheduler_cls):
    prompts, _ = random_workload(5, 6, 12, 1)
    engine, _ = run_workload(scheduler_cls, PagedBlockAllocator(14, 4),
                             _small(max_num_seqs=6, max_num_batched_tokens=32, num_kv_blocks=14), prompts, [20] * 6)
    preempting = [row for row in engine.schedule_log if row["preempted"]]
    assert preempting, "this workload must preempt"
    for row in preempting:
        assert sorted(row["preempted"]) == sorted(row["running_before"][::-1][:len(row["preempted"])]), row
        assert not row["admitted"], row


SCHEDULER_TESTS = [test_never_more_than_max_num_seqs, test_every_block_free_at_the_end, test_first_come_first_served,
                   test_decodes_first, test_preempts_the_newest_and_admits_nobody_then]
### END SOLUTION

# %%
def run_tests(tests, scheduler_cls):
    """The names of the tests in `tests` that fail (any exception) on `scheduler_cls`."""
    failed = []
    for test in tests:
        try:
            test(scheduler_cls)
        except Exception:  # an assertion or an error: either way the test did not pass
            failed.append(getattr(test, "__name__", repr(test)))
    return failed

# %% tests id=test_scheduler_tests_pass points=1
### BEGIN HIDDEN TESTS
class _Candidate(Scheduler):
    """A correct scheduler (fault None) and faulty ones, each breaking one rule."""

    fault = None

    def __init__(self, config, allocator):
        super().__init__(config, allocator)
        self.waiting, self.running = deque(), []

    def add(self, request):
        request.status = RequestStatus.WAITING
        self.waiting.append(request)

    def has_unfinished(self):
        return bool(self.waiting or self.running)

    def num_running(self):
        return len(self.running)

    def finish(self, request):
        if request in self.running:
            self.running.remove(request)
        elif request in self.waiting:
            self.waiting.remove(request)
        if self.fault != "leaks_blocks":
            self.allocator.free(request.block_table)

    def _decodes(self, out, budget):
        for req in list(self.running):
            if budget == 0:
                break
            if req not in self.running or req.num_tokens - req.num_computed_tokens != 1:
                continue
            while not self.allocator.append_slots(req.block_table, req.num_tokens):
                victim = self.running[0] if self.fault == "preempts_oldest" else self.running[-1]
                self.running.remove(victim)
                self.allocator.free(victim.block_table)
                victim.num_computed_tokens, victim.status = 0, RequestStatus.PREEMPTED
                self.waiting.appendleft(victim)
                out.preempted.append(victim)
                if victim is req:
                    break
            if req in self.running:
                out.chunks.append(ScheduledChunk(req, 1))
                budget -= 1
        return budget

    def _prefills(self, out, budget):
        for req in self.running:
            left = req.num_tokens - req.num_computed_tokens
            if left > 1 and budget > 0 and all(c.request is not req for c in out.chunks):
                n = min(left, budget)
                out.chunks.append(ScheduledChunk(req, n))
                budget -= n
        return budget

    def schedule(self):
        out, budget = SchedulerOutput(), self.config.max_num_batched_tokens
        if self.fault == "prefill_first":
            budget = self._decodes(out, self._prefills(out, budget))
        else:
            budget = self._prefills(out, self._decodes(out, budget))
        seats = 10 ** 6 if self.fault == "ignores_max_num_seqs" else self.config.max_num_seqs
        while ((self.fault == "admits_after_preempting" or not out.preempted) and self.waiting and budget > 0
               and len(self.running) < seats):
            req = self.waiting[-1] if self.fault == "last_come_first" else self.waiting[0]
            allocation = self.allocator.allocate(req.all_token_ids)
            if allocation is None:
                break
            self.waiting.remove(req)
            req.block_table, req.num_computed_tokens = allocation
            req.status = RequestStatus.RUNNING
            self.running.append(req)
            n = min(req.num_tokens - req.num_computed_tokens, budget)
            out.chunks.append(ScheduledChunk(req, n))
            budget -= n
        return out


def _candidate(fault):
    return type("CandidateScheduler", (_Candidate,), {"fault": fault})


_FAULTS = ("ignores_max_num_seqs", "leaks_blocks", "last_come_first", "prefill_first", "preempts_oldest",
           "admits_after_preempting")
_passes_correct = not run_tests(SCHEDULER_TESTS, _candidate(None))
_num_killed = sum(bool(run_tests(SCHEDULER_TESTS, _candidate(f))) for f in _FAULTS)
_scheduler_kills = (SCHEDULER_TESTS, _passes_correct, _num_killed)  # the next two cells reuse this
### END HIDDEN TESTS
assert SCHEDULER_TESTS and all(callable(t) for t in SCHEDULER_TESTS), "list your test functions in SCHEDULER_TESTS"
_own = run_tests(SCHEDULER_TESTS, MyScheduler)
print(f"{len(SCHEDULER_TESTS)} tests; failing on your MyScheduler: {_own or 'none'}")
assert not _own, f"these tests fail on your own MyScheduler: {_own}"
### BEGIN HIDDEN TESTS
assert _passes_correct, "a test fails on a correct scheduler"
assert _num_killed >= 1, "no faulty scheduler was caught"
### END HIDDEN TESTS

# %% tests id=test_scheduler_tests_half points=1
class _NoSeatLimit(MyScheduler):
    """Your scheduler with `max_num_seqs` ignored: every waiting request that fits is admitted."""

    def schedule(self):
        seats, self.config = self.config, dataclasses.replace(self.config, max_num_seqs=10 ** 6)
        try:
            return super().schedule()
        finally:
            self.config = seats


print("the visible fault (your scheduler without a seat limit) is",
      "killed" if run_tests(SCHEDULER_TESTS, _NoSeatLimit) else "NOT killed")
assert run_tests(SCHEDULER_TESTS, _NoSeatLimit), "no test catches a scheduler that ignores max_num_seqs"
### BEGIN HIDDEN TESTS
_tests, _ok, _killed = globals().get("_scheduler_kills", (None, False, 0))
if _tests is not SCHEDULER_TESTS:
    raise AssertionError("the faulty schedulers were not run (the cell above stopped early)")
assert _ok, "a test fails on a correct scheduler"
assert 2 * _killed >= 6, "fewer than half of the faulty schedulers were caught"
### END HIDDEN TESTS

# %% tests id=test_scheduler_tests_most points=1
assert len(SCHEDULER_TESTS) >= 3, "one rule per test: at least three tests"
### BEGIN HIDDEN TESTS
_tests, _ok, _killed = globals().get("_scheduler_kills", (None, False, 0))
if _tests is not SCHEDULER_TESTS:
    raise AssertionError("the faulty schedulers were not run (the cell above stopped early)")
assert _ok, "a test fails on a correct scheduler"
assert _killed >= 5, "more than one faulty scheduler went uncaught"
### END HIDDEN TESTS

# %% [markdown]
# ## 4. Your policies against static batching (graded)
#
# Same weights, same workload (every request submitted at once): static batches wait for their
# longest member; your scheduler refills the batch every step.

# %%
def compare_with_static(num_requests, seed=0):
    """Output tokens/s of static batching and of the engine with your policies, on one workload."""
    rng = random.Random(seed)
    prompts = [[rng.randrange(256) for _ in range(rng.randint(4, 60))] for _ in range(num_requests)]
    # heavy-tailed output lengths, as in production traces: most short, a few long
    max_tokens = [rng.randint(40, 64) if rng.random() < 0.2 else rng.randint(1, 8) for _ in prompts]
    params = [SamplingParams(max_tokens=m, ignore_eos=True) for m in max_tokens]
    static = StaticBatchingEngine(model, max_batch_size=16)
    static.generate(prompts, params)
    cfg = EngineConfig(max_num_seqs=16, max_num_batched_tokens=256, block_size=8, num_kv_blocks=512, max_model_len=128)
    engine = LLMEngine(model, cfg, scheduler_factory=MyScheduler, allocator=SharingAllocator(512, 8))
    engine.generate(prompts, params)
    s_tok, e_tok = summarize(static.records()).output_throughput_tok_s, summarize(engine.records()).output_throughput_tok_s
    return {"static_tok_s": s_tok, "engine_tok_s": e_tok, "ratio": e_tok / s_tok,
            "records": {"static": static.records(), "continuous": engine.records()}, "steps": engine.step_records,
            "max_model_len": cfg.max_model_len, "block_size": cfg.block_size}


comparison = compare_with_static(pick(128, 48))
print({k: round(v, 2) for k, v in comparison.items() if isinstance(v, float)})

# %% [markdown]
# What the two schedulers did to each request, and what paging did to memory. Left: TTFT and TPOT
# distributions (CDFs) of static against continuous batching: static batching makes every request of a
# batch wait for the longest one. Right: the share of reserved KV memory that holds real tokens, per
# step, for the paged cache (blocks of `block_size`) against a contiguous cache that reserves
# `max_model_len` slots per running request (as servers did before PagedAttention).

# %%
from inferlab import metrics as _metrics

fig, axes = plt.subplots(1, 3, figsize=(12, 3))
for name, records in comparison["records"].items():
    for ax, fn, label in ((axes[0], _metrics.ttft_s, "TTFT (s)"), (axes[1], _metrics.tpot_s, "TPOT (s)")):
        values = sorted(v for v in map(fn, records) if v == v)
        ax.step(values, [(i + 1) / len(values) for i in range(len(values))], where="post", label=name)
        ax.set_xlabel(label), ax.set_ylabel("share of requests"), ax.legend()
_steps = [s for s in comparison["steps"] if s.num_running_seqs]
_paged = [s.num_kv_tokens / (s.num_kv_blocks_used * comparison["block_size"]) for s in _steps]
_contiguous = [s.num_kv_tokens / (s.num_running_seqs * comparison["max_model_len"]) for s in _steps]
axes[2].plot(_paged, label="paged"), axes[2].plot(_contiguous, label="contiguous (max_model_len)")
axes[2].set_xlabel("engine step"), axes[2].set_ylabel("KV memory holding tokens"), axes[2].set_ylim(bottom=0)
axes[2].legend()
plt.tight_layout()
plt.show()
print(f"KV memory holding tokens, mean over steps: paged {sum(_paged) / len(_paged):.0%}, "
      f"contiguous {sum(_contiguous) / len(_contiguous):.0%}")

# %% tests id=test_throughput points=2
assert comparison["ratio"] > 1.0, comparison
### BEGIN HIDDEN TESTS
assert comparison["ratio"] >= 1.5, "continuous batching should clearly beat static batching here"
### END HIDDEN TESTS

# %% [markdown]
# ## 5. Explore: pool size and token budget
#
# Move the sliders: a small pool forces preemptions (recompute shows as extra prefill tokens);
# a small budget spreads long prompts over many steps (chunked prefill) and delays first tokens.

# %%
def explore(num_kv_blocks=64, max_num_batched_tokens=64):
    prompts, max_tokens = random_workload(1, 12, 40, 24)
    cfg = EngineConfig(max_num_seqs=12, max_num_batched_tokens=max_num_batched_tokens, block_size=4,
                       num_kv_blocks=num_kv_blocks, max_model_len=128)
    engine, _ = run_workload(MyScheduler, SharingAllocator(num_kv_blocks, 4), cfg, prompts, max_tokens)
    steps = engine.step_records
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.plot([s.num_running_seqs for s in steps], label="running requests")
    ax.plot([s.num_kv_blocks_used for s in steps], label="KV blocks used")
    ax.bar(range(len(steps)), [s.num_prefill_tokens / 4 for s in steps], alpha=0.3, label="prefill tokens / 4")
    ax.set_xlabel("engine step")
    ax.legend(loc="upper right")
    plt.show()
    summary = summarize(engine.records())
    print(f"{len(steps)} steps, {sum(s.num_preempted for s in steps)} preemptions, "
          f"TTFT p50 {summary.ttft_s['p50'] * 1e3:.0f} ms")


widgets.interact(explore, num_kv_blocks=widgets.IntSlider(64, min=24, max=160, step=8),
                 max_num_batched_tokens=widgets.IntSlider(64, min=8, max=256, step=8));

# %% [markdown]
# **Questions for your portfolio** (not autograded): why is the victim of preemption the most
# recently admitted request? What does a step cost when it mixes one 200-token prefill chunk with
# 30 decodes, and how does the token budget trade TTFT against TPOT? Run `inferlab bench engine
# --quick` and explain the gap between the engine and vLLM.
