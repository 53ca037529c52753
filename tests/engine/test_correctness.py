"""Batched, chunked, preempted and prefix-cached runs give each request its solo greedy output."""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferlab.engine import EngineConfig, FinishReason, LLMEngine, SamplingParams, StaticBatchingEngine
from tests.engine.invariants import run_checked


def _submit_and_check(engine, prompts, max_tokens, greedy_ref):
    ids = [engine.add_request(p, SamplingParams(max_tokens=m, ignore_eos=True)) for p, m in zip(prompts, max_tokens)]
    run_checked(engine)
    by_id = {r.request_id: r for r in engine.finished}
    assert set(ids) <= set(by_id), "a request was lost"
    for rid, p, m in zip(ids, prompts, max_tokens):
        req = by_id[rid]
        assert req.finish_reason is FinishReason.LENGTH
        assert req.output_token_ids == greedy_ref(p, m), f"request {rid} differs from its solo greedy run"
    return [by_id[i] for i in ids]


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10_000),
    num_requests=st.integers(1, 8),
    block_size=st.sampled_from([4, 8, 16]),
    budget=st.sampled_from([8, 32, 256]),
    max_num_seqs=st.sampled_from([2, 8]),
    tight=st.booleans(),
    prefix_caching=st.booleans(),
)
def test_random_workloads_match_solo_greedy(tiny_model, greedy_ref, seed, num_requests, block_size, budget,
                                            max_num_seqs, tight, prefix_caching):
    rng = random.Random(seed)
    shared = [rng.randrange(256) for _ in range(rng.randint(0, 20))]
    prompts = [shared + [rng.randrange(256) for _ in range(rng.randint(1, 30))] for _ in range(num_requests)]
    max_tokens = [rng.randint(1, 12) for _ in prompts]
    need = max(-(-(len(p) + m) // block_size) for p, m in zip(prompts, max_tokens))
    config = EngineConfig(max_num_seqs=max_num_seqs, max_num_batched_tokens=budget, block_size=block_size,
                          num_kv_blocks=need + 1 if tight else 256, max_model_len=128,
                          enable_prefix_caching=prefix_caching)
    _submit_and_check(LLMEngine(tiny_model, config), prompts, max_tokens, greedy_ref)


def test_preemption_by_recompute_keeps_outputs(tiny_model, greedy_ref):
    rng = random.Random(1)
    prompts = [[rng.randrange(256) for _ in range(rng.randint(5, 20))] for _ in range(8)]
    max_tokens = [24] * 8
    config = EngineConfig(max_num_seqs=8, max_num_batched_tokens=64, block_size=4, num_kv_blocks=16,
                          max_model_len=64, enable_prefix_caching=False)
    reqs = _submit_and_check(LLMEngine(tiny_model, config), prompts, max_tokens, greedy_ref)
    assert sum(r.num_preemptions for r in reqs) > 0, "the pool was meant to be too small to avoid preemption"


def test_chunked_prefill_splits_long_prompts(tiny_model, greedy_ref):
    rng = random.Random(2)
    prompts = [[rng.randrange(256) for _ in range(90)], [rng.randrange(256) for _ in range(5)]]
    config = EngineConfig(max_num_batched_tokens=16, block_size=8, num_kv_blocks=64, max_model_len=128)
    engine = LLMEngine(tiny_model, config)
    _submit_and_check(engine, prompts, [6, 6], greedy_ref)
    assert max(r.num_prefill_tokens for r in engine.step_records) <= 16
    assert sum(r.num_prefill_tokens for r in engine.step_records) == 95


def test_prefix_caching_reuses_blocks_and_keeps_outputs(tiny_model, greedy_ref):
    rng = random.Random(3)
    prefix = [rng.randrange(256) for _ in range(40)]
    config = EngineConfig(max_num_batched_tokens=64, block_size=8, num_kv_blocks=64, max_model_len=128)
    engine = LLMEngine(tiny_model, config)
    first = [prefix + [rng.randrange(256) for _ in range(5)] for _ in range(2)]
    _submit_and_check(engine, first, [4, 4], greedy_ref)
    computed_before = sum(r.num_prefill_tokens for r in engine.step_records)
    second = [prefix + [rng.randrange(256) for _ in range(rng.randint(1, 9))] for _ in range(3)]
    reqs = _submit_and_check(engine, second, [5, 5, 5], greedy_ref)
    assert all(r.num_cached_tokens == 40 for r in reqs), [r.num_cached_tokens for r in reqs]
    computed = sum(r.num_prefill_tokens for r in engine.step_records) - computed_before
    assert computed == sum(len(p) for p in second) - 3 * 40


def test_static_batching_matches_solo_greedy(tiny_model, greedy_ref):
    rng = random.Random(4)
    prompts = [[rng.randrange(256) for _ in range(rng.randint(1, 30))] for _ in range(7)]
    max_tokens = [rng.randint(1, 12) for _ in prompts]
    reqs = StaticBatchingEngine(tiny_model, max_batch_size=3).generate(
        prompts, [SamplingParams(max_tokens=m, ignore_eos=True) for m in max_tokens])
    for r, p, m in zip(reqs, prompts, max_tokens):
        assert r.output_token_ids == greedy_ref(p, m)
    # a batch returns when its longest member is done
    assert len({r.finish_time_s for r in reqs[:3]}) == 1


def test_overload_twice_the_kv_pool_completes_everything(tiny_model):
    rng = random.Random(5)
    config = EngineConfig(max_num_seqs=16, max_num_batched_tokens=128, block_size=8, num_kv_blocks=32,
                          max_model_len=128)
    prompts = [[rng.randrange(256) for _ in range(24)] for _ in range(16)]  # 16 x 32 tokens = 2x 256 slots
    engine = LLMEngine(tiny_model, config)
    for p in prompts:
        engine.add_request(p, SamplingParams(max_tokens=8, ignore_eos=True))
    run_checked(engine)
    assert len(engine.finished) == 16
    assert all(r.finish_reason is FinishReason.LENGTH and r.num_output_tokens == 8 for r in engine.finished)
    assert max(s.num_kv_blocks_used for s in engine.step_records) <= 32


def test_without_chunked_prefill_whole_prompts_run_in_one_step(tiny_model, greedy_ref):
    rng = random.Random(6)
    prompts = [[rng.randrange(256) for _ in range(rng.randint(20, 60))] for _ in range(5)]
    config = EngineConfig(max_num_seqs=4, max_num_batched_tokens=128, block_size=8, num_kv_blocks=64,
                          max_model_len=128, enable_chunked_prefill=False, enable_prefix_caching=False)
    engine = LLMEngine(tiny_model, config)
    seen = []
    real = engine.runner.execute

    def spy(chunks):
        seen.extend((c.request.num_computed_tokens, c.num_tokens, c.request.num_tokens) for c in chunks)
        return real(chunks)

    engine.runner.execute = spy
    _submit_and_check(engine, prompts, [5] * 5, greedy_ref)
    assert all(start + n == total for start, n, total in seen), "a prompt was split across steps"
    assert sum(1 for start, n, _ in seen if n > 1) == 5


def test_kv_utilization_definition():
    from inferlab.bench.engine_bench import kv_utilization
    from inferlab.engine import StepRecord

    steps = [StepRecord(0.0, 1.0, 0, 2, num_kv_tokens=12, num_kv_blocks_used=2, num_running_seqs=2, num_preempted=0),
             StepRecord(1.0, 3.0, 0, 1, num_kv_tokens=8, num_kv_blocks_used=1, num_running_seqs=1, num_preempted=0)]
    paged, contiguous = kv_utilization(steps, block_size=8, max_model_len=32)
    assert paged == pytest.approx((12 / 16 * 1 + 8 / 8 * 3) / 4)
    assert contiguous == pytest.approx((12 / 64 * 1 + 8 / 32 * 3) / 4)
