"""Failure isolation: a fault at each stage of a step fails that request only; bounded history.

Faults are injected where a real one would come from: the runner's forward pass, its sampler,
the stop rule, and a request's `on_token` callback. Each test runs a victim beside a healthy
request and checks the victim ends with ERROR and a message naming the stage, the healthy one
still equals the greedy reference, and every KV block is free at the end.
"""

import pytest

from inferlab.engine import EngineConfig, FinishReason, LLMEngine, SamplingParams
from inferlab.engine import stop as stop_rule
from inferlab.engine.history import History

CONFIG = EngineConfig(max_num_seqs=8, max_num_batched_tokens=64, block_size=8, num_kv_blocks=64, max_model_len=128)
GOOD, BAD = [5, 6, 7], [9, 9, 9, 9]


def _run_pair(engine, greedy_ref, bad_kwargs=None):
    good = engine.add_request(GOOD, SamplingParams(max_tokens=6, ignore_eos=True))
    bad = engine.add_request(BAD, SamplingParams(max_tokens=6, ignore_eos=True), **(bad_kwargs or {}))
    free = engine.allocator.num_free_blocks()
    engine.run_until_done()
    by_id = {r.request_id: r for r in engine.finished}
    assert by_id[good].finish_reason is FinishReason.LENGTH
    assert by_id[good].output_token_ids == greedy_ref(GOOD, 6)
    assert engine.allocator.num_free_blocks() >= free and not engine.requests
    assert engine.counters.num_errors == 1
    return by_id[bad]


def test_sampling_fault_fails_one_request(tiny_model, greedy_ref, monkeypatch):
    engine = LLMEngine(tiny_model, CONFIG)
    real = engine.runner.sample

    def sample(logits, requests):
        if any(r.prompt_token_ids == BAD for r in requests):
            raise RuntimeError("injected sampler fault")
        return real(logits, requests)

    monkeypatch.setattr(engine.runner, "sample", sample)
    bad = _run_pair(engine, greedy_ref)
    assert bad.finish_reason is FinishReason.ERROR and "sampling failed" in bad.error and "injected" in bad.error


def test_stop_check_fault_fails_one_request(tiny_model, greedy_ref, monkeypatch):
    engine = LLMEngine(tiny_model, CONFIG)
    real = stop_rule.check_stop

    def check(req, eos):
        if req.prompt_token_ids == BAD and req.num_output_tokens == 2:
            raise KeyError("injected stop-check fault")
        return real(req, eos)

    monkeypatch.setattr(stop_rule, "check_stop", check)
    bad = _run_pair(engine, greedy_ref)
    assert bad.finish_reason is FinishReason.ERROR and "stop check failed" in bad.error
    assert bad.num_output_tokens == 2


def test_callback_fault_fails_one_request(tiny_model, greedy_ref):
    engine = LLMEngine(tiny_model, CONFIG)
    seen = []

    def on_token(out):
        seen.append(out)
        if len(seen) == 3:
            raise ConnectionError("injected callback fault")

    bad = _run_pair(engine, greedy_ref, {"on_token": on_token})
    assert bad.finish_reason is FinishReason.ERROR and "on_token callback failed" in bad.error
    assert seen[-1].is_finished and seen[-1].finish_reason is FinishReason.ERROR  # told once more, at its end


def test_forward_fault_fails_the_step_requests_only(tiny_model, greedy_ref, monkeypatch):
    engine = LLMEngine(tiny_model, CONFIG)
    good = engine.add_request(GOOD, SamplingParams(max_tokens=6, ignore_eos=True))
    engine.run_until_done()
    real = engine.runner.execute
    calls = []

    def execute(chunks):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected forward fault")
        return real(chunks)

    monkeypatch.setattr(engine.runner, "execute", execute)
    bad = engine.add_request(BAD, SamplingParams(max_tokens=4, ignore_eos=True))
    engine.run_until_done()
    after = engine.add_request(GOOD, SamplingParams(max_tokens=6, ignore_eos=True))
    engine.run_until_done()
    by_id = {r.request_id: r for r in engine.finished}
    assert by_id[bad].finish_reason is FinishReason.ERROR and "injected" in by_id[bad].error
    assert by_id[after].output_token_ids == by_id[good].output_token_ids == greedy_ref(GOOD, 6)
    assert engine.allocator.num_free_blocks() == CONFIG.num_kv_blocks


def test_fail_all_tells_every_request_even_with_broken_state(tiny_model, monkeypatch):
    engine = LLMEngine(tiny_model, CONFIG)
    outs = []
    ids = [engine.add_request([i + 1, 2], SamplingParams(max_tokens=9), on_token=outs.append) for i in range(3)]
    engine.step()
    monkeypatch.setattr(engine.scheduler, "finish", lambda r: (_ for _ in ()).throw(RuntimeError("broken")))
    engine.fail_all("loop died")
    ends = {o.request_id: o for o in outs if o.is_finished}
    assert set(ends) == set(ids) and all(o.finish_reason is FinishReason.ERROR for o in ends.values())
    assert not engine.requests


@pytest.mark.parametrize("stop, cut", [("c", 3), (("xy", "de"), 5)])
def test_stop_strings_end_generation(tiny_model, monkeypatch, stop, cut):
    engine = LLMEngine(tiny_model, CONFIG)
    script = iter(b"abcdef")
    monkeypatch.setattr(engine.runner, "sample", lambda logits, reqs: [next(script) for _ in reqs])
    (req,) = engine.generate([[1, 2]], SamplingParams(max_tokens=6, stop=stop))
    assert req.finish_reason is FinishReason.STOP and bytes(req.output_token_ids) == b"abcdef"[:cut]
    assert req.stop_reason == (stop if isinstance(stop, str) else "de")


def test_stop_token_id_is_the_stop_reason(tiny_model, greedy_ref):
    engine = LLMEngine(tiny_model, CONFIG)
    ref = greedy_ref([5, 6, 7], 6)
    (req,) = engine.generate([[5, 6, 7]], SamplingParams(max_tokens=6, ignore_eos=True, stop_token_ids=(ref[2],)))
    assert req.output_token_ids == ref[:ref.index(ref[2]) + 1] and req.stop_reason == ref[2]


def test_top_k_1_and_tiny_top_p_are_greedy_and_seed_repeats(tiny_model, greedy_ref):
    engine = LLMEngine(tiny_model, CONFIG)
    prompt, ref = [3, 4, 5], greedy_ref([3, 4, 5], 8)
    reqs = engine.generate([prompt] * 4, [SamplingParams(max_tokens=8, temperature=5.0, top_k=1, ignore_eos=True),
                                          SamplingParams(max_tokens=8, temperature=5.0, top_p=1e-6, ignore_eos=True),
                                          SamplingParams(max_tokens=8, temperature=5.0, seed=7, ignore_eos=True),
                                          SamplingParams(max_tokens=8, temperature=5.0, seed=7, ignore_eos=True)])
    assert reqs[0].output_token_ids == ref and reqs[1].output_token_ids == ref
    assert reqs[2].output_token_ids == reqs[3].output_token_ids != ref  # hot and seeded: same draw, not greedy


def test_a_vanishing_temperature_is_greedy_not_nan(tiny_model, greedy_ref):
    # found by `inferlab bench fuzz`: logits / 1e-300 overflow to inf, softmax gives NaN, sampling raised
    engine = LLMEngine(tiny_model, CONFIG)
    reqs = engine.generate([[3, 4, 5]] * 2, [SamplingParams(max_tokens=6, temperature=t, ignore_eos=True)
                                             for t in (1e-300, 1e-87)])
    assert all(r.finish_reason is FinishReason.LENGTH and r.output_token_ids == greedy_ref([3, 4, 5], 6) for r in reqs)


@pytest.mark.parametrize("kwargs, match", [
    ({"temperature": float("inf")}, "temperature"), ({"temperature": float("nan")}, "temperature"),
    ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"), ({"top_k": -2}, "top_k"), ({"seed": -1}, "seed"),
    ({"seed": 2**63}, "seed"), ({"stop": ("",)}, "stop"), ({"stop_token_ids": (-1,)}, "stop_token_ids"),
])
def test_bad_sampling_params_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SamplingParams(**kwargs)


def test_history_is_bounded_and_sliceable(tiny_model):
    engine = LLMEngine(tiny_model, EngineConfig(max_num_seqs=4, max_num_batched_tokens=64, block_size=8,
                                                num_kv_blocks=64, max_model_len=128, max_finished_requests=3,
                                                max_step_records=5))
    reqs = engine.generate([[i + 1, 2] for i in range(6)], SamplingParams(max_tokens=4, ignore_eos=True))
    assert len(reqs) == 6 and all(r.num_output_tokens == 4 for r in reqs)  # generate keeps its own
    assert list(engine.finished) == reqs[-3:] and engine.finished.num_dropped == 3
    assert len(engine.step_records) == 5 and engine.step_records[-2:] == list(engine.step_records)[3:]
    h = History(range(10))
    assert h[2:5] == [2, 3, 4] and h[-1] == 9 and h[::3] == [0, 3, 6, 9]
