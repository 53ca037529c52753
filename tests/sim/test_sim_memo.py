"""sim/memo.py and the oracle's cache: a stored answer only for the very same inputs and code."""

import dataclasses
import json

import numpy as np
import pytest

from inferlab.metrics import SLO
from inferlab.sim import memo, oracle
from inferlab.sim.oracle import oracle_plan, replicas_needed
from inferlab.sim.replica import ReplicaConfig
from inferlab.sim.steptime import Roof, StepTimeModel
from inferlab.traces import TraceRequest

MODEL = StepTimeModel((Roof(0.01, 1e-5, 1e-3),), max_kv_tokens=50_000)
SLO_ = SLO(ttft_s=0.5, tpot_s=0.05)


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERLAB_BUILD_DIR", str(tmp_path))
    monkeypatch.delenv("INFERLAB_NO_CACHE", raising=False)
    monkeypatch.setattr(memo, "_in_process", {})
    return tmp_path


def _window(rate_rps: float = 40.0, n: int = 400, seed: int = 0) -> list[TraceRequest]:
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.exponential(1 / rate_rps, n))
    return [TraceRequest(float(t), int(p), int(o)) for t, p, o in
            zip(times, rng.integers(50, 400, n), rng.integers(20, 120, n))]


def _count_searches(monkeypatch) -> list[int]:
    calls: list[int] = []
    search = oracle._search_replicas

    def counting(*args, **kwargs):
        calls.append(1)
        return search(*args, **kwargs)

    monkeypatch.setattr(oracle, "_search_replicas", counting)
    return calls


def test_cached_count_equals_a_fresh_search_and_is_reused_across_processes(monkeypatch, fresh_cache) -> None:
    window = _window()
    calls = _count_searches(monkeypatch)
    fresh = replicas_needed(window, MODEL, SLO_, cache=False)
    assert fresh > 1  # a window that needs a real search
    assert replicas_needed(window, MODEL, SLO_) == fresh and len(calls) == 2
    monkeypatch.setattr(memo, "_in_process", {})  # as a new kernel would start
    assert replicas_needed(window, MODEL, SLO_) == fresh and len(calls) == 2  # from disk
    assert len(list((fresh_cache / "cache" / "oracle_replicas").glob("*.json"))) == 1


@pytest.mark.parametrize("change", ["model", "slo", "replica", "min_attainment", "window", "tokens"])
def test_any_input_change_misses_the_cache(monkeypatch, change) -> None:
    window, kwargs = _window(), {}
    replicas_needed(window, MODEL, SLO_)
    calls = _count_searches(monkeypatch)
    model, slo = MODEL, SLO_
    if change == "model":
        model = dataclasses.replace(MODEL, overhead_s=1e-3)
    elif change == "slo":
        slo = SLO(ttft_s=0.5, tpot_s=0.04)
    elif change == "replica":
        kwargs["replica"] = ReplicaConfig(max_num_seqs=8)
    elif change == "min_attainment":
        kwargs["min_attainment"] = 0.95
    elif change == "window":
        window = window[:-1] + [dataclasses.replace(window[-1], arrival_time_s=window[-1].arrival_time_s + 1e-9)]
    else:
        window = window[:-1] + [dataclasses.replace(window[-1], num_output_tokens=window[-1].num_output_tokens + 1)]
    assert replicas_needed(window, model, slo, **kwargs) == replicas_needed(window, model, slo, cache=False, **kwargs)
    assert len(calls) == 2  # recomputed: no stale answer


def test_a_trace_is_keyed_column_by_column_as_exactly_as_row_by_row() -> None:
    """Traces take the columnar path (one dataclass type): any field of any request changes the key
    (a float by one ulp, an int, a tenant, a session, block hashes); a foreign row makes it uncacheable."""
    window = _window()
    assert isinstance(memo._canon(window), dict)  # the columnar form, not one entry per request
    key = memo.cache_key("t", trace=window)
    assert key == memo.cache_key("t", trace=tuple(_window()))
    last = window[-1]
    for changed in (dataclasses.replace(last, arrival_time_s=float(np.nextafter(last.arrival_time_s, np.inf))),
                    dataclasses.replace(last, num_prompt_tokens=last.num_prompt_tokens + 1),
                    dataclasses.replace(last, tenant="other"), dataclasses.replace(last, session_key="s"),
                    dataclasses.replace(last, block_hashes=(1, 2)), dataclasses.replace(last, block_hashes=(2, 1))):
        assert memo.cache_key("t", trace=window[:-1] + [changed]) != key, changed
    assert memo.cache_key("t", trace=window[:-1] + [dataclasses.replace(last, num_output_tokens=True)]) != key

    class MyRequest(TraceRequest):  # a user's subclass may mean anything: never keyed
        pass

    with pytest.raises(memo.Uncacheable):
        memo.cache_key("t", trace=window[:-1] + [MyRequest(last.arrival_time_s, 1, 1)])
    with pytest.raises(memo.Uncacheable):
        memo.cache_key("t", trace=window[:-1] + [dataclasses.replace(last, tenant=object())])


def test_code_change_misses_the_cache(monkeypatch) -> None:
    window = _window()
    replicas_needed(window, MODEL, SLO_)
    monkeypatch.setattr(memo, "_in_process", {})
    monkeypatch.setattr(memo, "PACKAGE_DIGEST", "edited")
    calls = _count_searches(monkeypatch)
    replicas_needed(window, MODEL, SLO_)
    assert len(calls) == 1


def test_malformed_entry_is_recomputed_and_unknown_types_are_not_cached(monkeypatch, fresh_cache) -> None:
    window = _window()
    expected = replicas_needed(window, MODEL, SLO_)
    (entry,) = (fresh_cache / "cache" / "oracle_replicas").glob("*.json")
    entry.write_text(json.dumps({"value": 10_000}))  # out of range: never trusted
    monkeypatch.setattr(memo, "_in_process", {})
    calls = _count_searches(monkeypatch)
    assert replicas_needed(window, MODEL, SLO_) == expected and len(calls) == 1

    class SlowerModel(StepTimeModel):  # a user's subclass may change step_s: never cached
        def step_s(self, *args):
            return 2 * super().step_s(*args)

    slower = SlowerModel(MODEL.roofs, max_kv_tokens=MODEL.max_kv_tokens)
    with pytest.raises(memo.Uncacheable):
        memo.cache_key("x", model=slower)
    replicas_needed(window, slower, SLO_)
    replicas_needed(window, slower, SLO_)
    assert len(calls) == 3


def test_no_cache_env_turns_it_off(monkeypatch, fresh_cache) -> None:
    monkeypatch.setenv("INFERLAB_NO_CACHE", "1")
    calls = _count_searches(monkeypatch)
    window = _window()
    replicas_needed(window, MODEL, SLO_)
    replicas_needed(window, MODEL, SLO_)
    assert len(calls) == 2 and not (fresh_cache / "cache").exists()


def test_oracle_plan_is_the_same_with_and_without_cache() -> None:
    trace = _window(rate_rps=30.0, n=1500, seed=3)
    cold = oracle_plan(trace, MODEL, SLO_, window_s=20.0)
    assert cold == oracle_plan(trace, MODEL, SLO_, window_s=20.0) == oracle_plan(trace, MODEL, SLO_, window_s=20.0,
                                                                                 cache=False)
    assert len(cold.schedule) == 3 and min(cold.schedule) > 1
