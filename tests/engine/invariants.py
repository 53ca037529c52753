"""Checks every engine test runs after each step: blocks are owned exactly as ref counts say."""

from collections import Counter

from inferlab.engine import LLMEngine, RequestStatus


def check_blocks(engine: LLMEngine) -> None:
    alloc = engine.allocator
    running = [r for r in engine.requests.values() if r.status is RequestStatus.RUNNING]
    holders = Counter(b for r in running for b in r.block_table)
    for r in engine.requests.values():
        assert len(set(r.block_table)) == len(r.block_table), f"request {r.request_id} holds a block twice"
        if r.status is not RequestStatus.RUNNING:
            assert not r.block_table, f"{r.status} request {r.request_id} still holds blocks"
        else:
            assert len(r.block_table) * alloc.block_size >= r.num_computed_tokens
    for b in range(alloc.num_blocks):
        assert alloc.ref_counts[b] == holders.get(b, 0), f"block {b}: ref count {alloc.ref_counts[b]} != {holders.get(b, 0)}"
    assert alloc.num_free_blocks() == alloc.num_blocks - len(holders), "a block is lost or double-counted"
    assert engine.scheduler.num_running() == len(running) <= engine.config.max_num_seqs


def run_checked(engine: LLMEngine) -> int:
    """Step to completion checking invariants each step; returns the number of steps."""
    steps = 0
    while engine.has_unfinished():
        engine.step()
        check_blocks(engine)
        rec = engine.step_records[-1] if engine.step_records else None
        if rec is not None:
            assert rec.num_prefill_tokens + rec.num_decode_seqs <= engine.config.max_num_batched_tokens
        steps += 1
        assert steps < 100_000
    assert engine.allocator.num_free_blocks() == engine.allocator.num_blocks, "blocks leaked after the run"
    return steps
