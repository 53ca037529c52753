"""Engine API: bad input fails one request only, abort, errors, streaming, sampling, stop tokens, step records."""

import random

import pytest

from inferlab.engine import (
    EngineConfig, FinishReason, LLMEngine, PagedBlockAllocator, RequestStatus, SamplingParams,
)
from inferlab.metrics import summarize
from tests.engine.invariants import run_checked

CONFIG = EngineConfig(max_num_seqs=8, max_num_batched_tokens=64, block_size=8, num_kv_blocks=64, max_model_len=128)


@pytest.fixture
def engine(tiny_model):
    return LLMEngine(tiny_model, CONFIG)


@pytest.mark.parametrize("prompt, params, match", [
    ([], SamplingParams(), "empty"),
    (list(range(128)), SamplingParams(), "max_model_len"),
    ([1, 2, 600], SamplingParams(), "vocabulary|token ids"),
])
def test_bad_requests_raise_and_leave_others_running(engine, greedy_ref, prompt, params, match):
    good = engine.add_request([5, 6, 7], SamplingParams(max_tokens=4, ignore_eos=True))
    with pytest.raises(ValueError, match=match):
        engine.add_request(prompt, params)
    run_checked(engine)
    assert [r.request_id for r in engine.finished] == [good]
    assert engine.finished[0].output_token_ids == greedy_ref([5, 6, 7], 4)


@pytest.mark.parametrize("kwargs", [{"max_tokens": 0}, {"max_tokens": -3}, {"temperature": -1.0}])
def test_bad_sampling_params(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        SamplingParams(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"max_num_seqs": 0}, "max_num_seqs"), ({"block_size": -1}, "block_size"), ({"dtype": "int8"}, "dtype"),
    ({"enable_chunked_prefill": False, "max_num_batched_tokens": 64, "max_model_len": 128}, "chunked"),
])
def test_bad_engine_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EngineConfig(**kwargs)


def test_request_too_large_for_the_pool_is_rejected(tiny_model):
    engine = LLMEngine(tiny_model, EngineConfig(block_size=4, num_kv_blocks=4, max_model_len=64))
    with pytest.raises(ValueError, match="KV"):
        engine.add_request(list(range(10)), SamplingParams(max_tokens=10))


def test_abort_and_unknown_id(engine):
    a = engine.add_request([1, 2, 3], SamplingParams(max_tokens=50, ignore_eos=True))
    b = engine.add_request([4, 5, 6], SamplingParams(max_tokens=5, ignore_eos=True))
    engine.step()
    engine.abort(a)
    with pytest.raises(ValueError, match="unknown"):
        engine.abort("nope")
    with pytest.raises(ValueError, match="unknown"):
        engine.abort(a)
    run_checked(engine)
    reasons = {r.request_id: r.finish_reason for r in engine.finished}
    assert reasons == {a: FinishReason.ABORT, b: FinishReason.LENGTH}


def test_a_failing_step_fails_its_requests_only(engine, monkeypatch):
    a = engine.add_request([1, 2, 3], SamplingParams(max_tokens=3, ignore_eos=True))
    real = engine.runner.execute
    calls = []

    def flaky(chunks):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return real(chunks)

    monkeypatch.setattr(engine.runner, "execute", flaky)
    engine.step()
    b = engine.add_request([4, 5], SamplingParams(max_tokens=3, ignore_eos=True))
    run_checked(engine)
    by_id = {r.request_id: r for r in engine.finished}
    assert by_id[a].finish_reason is FinishReason.ERROR and "boom" in by_id[a].error
    assert by_id[b].finish_reason is FinishReason.LENGTH and by_id[b].num_output_tokens == 3


def test_streaming_callback_and_records(engine):
    events = []
    rid = engine.add_request([9, 8, 7], SamplingParams(max_tokens=5, ignore_eos=True), on_token=events.append)
    run_checked(engine)
    assert [t for e in events for t in e.new_token_ids] == engine.finished[0].output_token_ids
    assert [e.is_finished for e in events] == [False] * 4 + [True]
    assert events[-1].finish_reason is FinishReason.LENGTH and all(e.request_id == rid for e in events)
    times = [e.time_s for e in events]
    assert times == sorted(times)
    (record,) = engine.records()
    assert record.num_output_tokens == 5 and record.token_times_s == tuple(times)
    assert summarize(engine.records()).num_requests == 1


def test_stop_tokens_and_eos(engine, greedy_ref):
    ref = greedy_ref([3, 1, 4, 1, 5], 10)
    stop = ref[2]
    rid = engine.add_request([3, 1, 4, 1, 5], SamplingParams(max_tokens=10, stop_token_ids=(stop,)))
    run_checked(engine)
    req = engine.finished[0]
    assert req.request_id == rid and req.finish_reason is FinishReason.STOP
    assert req.output_token_ids == ref[: ref.index(stop) + 1]


def test_seeded_sampling_is_reproducible(tiny_model):
    outs = []
    for _ in range(2):
        engine = LLMEngine(tiny_model, CONFIG)
        engine.add_request([1, 2, 3], SamplingParams(max_tokens=12, temperature=1.0, seed=7, ignore_eos=True))
        engine.add_request([1, 2, 3], SamplingParams(max_tokens=12, temperature=1.0, seed=8, ignore_eos=True))
        run_checked(engine)
        outs.append([r.output_token_ids for r in sorted(engine.finished, key=lambda r: r.request_id)])
    assert outs[0] == outs[1] and outs[0][0] != outs[0][1]


def test_context_length_ends_a_request(tiny_model):
    engine = LLMEngine(tiny_model, EngineConfig(block_size=8, num_kv_blocks=64, max_model_len=32))
    engine.add_request(list(range(30)), SamplingParams(max_tokens=100, ignore_eos=True))
    run_checked(engine)
    assert engine.finished[0].finish_reason is FinishReason.LENGTH and engine.finished[0].num_output_tokens == 2


def test_step_records_account_for_every_token(engine):
    rng = random.Random(0)
    prompts = [[rng.randrange(256) for _ in range(rng.randint(1, 40))] for _ in range(6)]
    for p in prompts:
        engine.add_request(p, SamplingParams(max_tokens=7, ignore_eos=True))
    run_checked(engine)
    recs = engine.step_records
    assert sum(r.num_prefill_tokens for r in recs) == sum(len(p) for p in prompts)
    assert sum(r.num_decode_seqs for r in recs) == 6 * 6
    assert all(r.step_time_s > 0 and r.num_kv_tokens <= r.num_kv_blocks_used * 8 for r in recs)
    assert all(r.status is RequestStatus.FINISHED for r in engine.finished)


def test_allocator_prefix_cache_lru_and_double_free():
    alloc = PagedBlockAllocator(num_blocks=4, block_size=2)
    a, cached = alloc.allocate([1, 2, 3, 4, 5])
    assert cached == 0 and len(a) == 3 and alloc.num_free_blocks() == 1
    assert alloc.allocate([1, 2, 3, 4, 5, 6, 7]) is None and alloc.num_free_blocks() == 1  # no side effects
    alloc.cache_blocks([1, 2, 3, 4, 5], a, 5)
    b, cached = alloc.allocate([1, 2, 3, 4, 9])
    assert cached == 4 and b[:2] == a[:2] and alloc.ref_counts[a[0]] == 2
    alloc.free(b)
    full, cached = alloc.allocate([1, 2])
    assert cached == 0, "the last token is never served from the cache"
    alloc.free(full)
    alloc.free(a)
    assert alloc.num_free_blocks() == 4 and alloc.num_cached_blocks() == 2
    c, cached = alloc.allocate([1, 2, 3, 4, 7])  # freed cached blocks are still found
    assert cached == 4
    alloc.free(c)
    d, _ = alloc.allocate([8] * 8)  # needs every block: evicts the cached ones
    assert alloc.num_cached_blocks() == 0 and sorted(d) == [0, 1, 2, 3]
    first = d[0]
    alloc.free(d)
    assert d == [], "free empties the table"
    with pytest.raises(RuntimeError, match="twice"):
        alloc.free([first])


def test_a_scheduler_that_plans_nothing_fails_requests_instead_of_hanging(tiny_model):
    from inferlab.engine import ContinuousBatchingScheduler, SchedulerOutput

    class Stuck(ContinuousBatchingScheduler):
        def schedule(self):
            return SchedulerOutput()

    engine = LLMEngine(tiny_model, CONFIG, scheduler_factory=Stuck)
    engine.add_request([1, 2, 3], SamplingParams(max_tokens=3))
    run_checked(engine)
    assert engine.finished[0].finish_reason is FinishReason.ERROR and "no progress" in engine.finished[0].error
