"""`GET /metrics` of `inferlab serve`: vLLM's names and types, values that agree with the engine's own
records, preemptions counted, and one OpenTelemetry span per request under the client's trace."""

import asyncio
import json
import time

import aiohttp

import pytest
from prometheus_client.parser import text_string_to_metric_families

from inferlab.engine import EngineConfig, LLMEngine, RequestEvent
from inferlab.observe.tracing import RequestTracer, read_spans, tracer_provider

from .conftest import serve

# name (as the parser reports it, without _total) -> type; the vLLM v1 names the issue lists
EXPECTED = {
    "vllm:num_requests_running": "gauge", "vllm:num_requests_waiting": "gauge", "vllm:kv_cache_usage_perc": "gauge",
    "vllm:num_preemptions": "counter", "vllm:prompt_tokens": "counter", "vllm:generation_tokens": "counter",
    "vllm:prefix_cache_queries": "counter", "vllm:prefix_cache_hits": "counter", "vllm:request_success": "counter",
    "vllm:time_to_first_token_seconds": "histogram", "vllm:inter_token_latency_seconds": "histogram",
    "vllm:e2e_request_latency_seconds": "histogram", "vllm:request_queue_time_seconds": "histogram",
}


def scrape(base: str) -> dict:
    """name -> (type, {(sample name, labels as a sorted tuple): value})."""
    async def go():
        async with aiohttp.ClientSession() as s:
            async with s.get(base + "/metrics") as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
                return await r.text()
    return {f.name: (f.type, {(smp.name, tuple(sorted(smp.labels.items()))): smp.value for smp in f.samples})
            for f in text_string_to_metric_families(asyncio.run(go()))}


def value(families: dict, sample: str, **labels) -> float:
    name = sample
    for suffix in ("_total", "_sum", "_count", "_bucket"):
        name = name.removesuffix(suffix)
    found = [v for (n, lab), v in families[name][1].items() if n == sample and labels.items() <= dict(lab).items()]
    assert len(found) == 1, (sample, labels, families[name])
    return found[0]


def post_all(base: str, bodies: list[dict], headers: dict | None = None) -> list[dict]:
    async def go():
        async with aiohttp.ClientSession() as s:
            async def one(body):
                async with s.post(base + "/v1/completions", json=body, headers=headers) as r:
                    assert r.status == 200, await r.text()
                    return await r.json()
            return await asyncio.gather(*(one(b) for b in bodies))
    return asyncio.run(go())


def test_names_types_labels_and_values_agree_with_the_engine(served):
    bodies = [{"model": "tiny", "prompt": [1, 2, 3, 4 + i], "max_tokens": 5, "ignore_eos": True} for i in range(4)]
    post_all(served.base, bodies)
    fam = scrape(served.base)
    assert {n: fam[n][0] for n in EXPECTED if n in fam} == EXPECTED
    for name, (_type, samples) in fam.items():
        if name.startswith("vllm:"):
            assert all(dict(lab).get("model_name") == "tiny" and dict(lab).get("engine") == "0"
                       for (_n, lab) in samples), name
    records = served.engine.records()
    finished = list(served.engine.finished)
    assert value(fam, "vllm:generation_tokens_total") == sum(r.num_output_tokens for r in finished)
    assert value(fam, "vllm:prompt_tokens_total") == sum(r.num_prompt_tokens for r in records)
    assert value(fam, "vllm:request_success_total", finished_reason="length") == len(finished) == 4
    assert value(fam, "vllm:time_to_first_token_seconds_count") == 4
    ttft_sum = sum(r.first_token_time_s - r.arrival_time_s for r in records)
    assert value(fam, "vllm:time_to_first_token_seconds_sum") == pytest.approx(ttft_sum)
    assert value(fam, "vllm:inter_token_latency_seconds_count") == 4 * (5 - 1)
    e2e = sum(r.finish_time_s - r.arrival_time_s for r in records)
    assert value(fam, "vllm:e2e_request_latency_seconds_sum") == pytest.approx(e2e)
    assert value(fam, "vllm:e2e_request_latency_seconds_bucket", le="+Inf") == 4
    queue = sum(r.event_time_s(RequestEvent.SCHEDULED) - r.arrival_time_s for r in finished)
    assert value(fam, "vllm:request_queue_time_seconds_sum") == pytest.approx(queue)
    assert value(fam, "vllm:num_requests_running") == 0 and value(fam, "vllm:num_requests_waiting") == 0
    assert value(fam, "vllm:kv_cache_usage_perc") == 0


def test_prefix_cache_and_preemptions_are_counted(tiny):
    # 10 blocks of 16 slots: three distinct 40-token prompts fit (3 blocks each), growing to 4 blocks they do not
    config = EngineConfig(max_num_seqs=4, max_num_batched_tokens=256, num_kv_blocks=10, block_size=16,
                          max_model_len=128)
    engine = LLMEngine(tiny, config)
    step = engine.step  # each step 20 ms or more: the four requests below arrive while the first still runs
    engine.step = lambda: (time.sleep(0.02), step())[1]
    with serve(engine) as s:
        prompt = list(range(1, 41))
        for _ in range(2):  # the second time, its first two full blocks come from the prefix cache
            post_all(s.base, [{"model": "tiny", "prompt": prompt, "max_tokens": 2, "ignore_eos": True}])
        assert value(scrape(s.base), "vllm:prefix_cache_hits_total") == 32
        post_all(s.base, [{"model": "tiny", "prompt": [200 + 4 * j + i for j in range(40)], "max_tokens": 24,
                           "ignore_eos": True} for i in range(4)])
        fam = scrape(s.base)
        preempted = sum(r.num_preempted for r in s.engine.step_records)
        assert preempted > 0, "the test's KV pool should force preemptions"
        assert value(fam, "vllm:num_preemptions_total") == preempted
        assert value(fam, "vllm:prefix_cache_queries_total") >= 6 * 40


def test_one_span_per_request_child_of_the_clients_traceparent(tiny, tmp_path):
    path = tmp_path / "spans.jsonl"
    engine = LLMEngine(tiny, EngineConfig(max_num_seqs=4, max_num_batched_tokens=256, num_kv_blocks=64,
                                          max_model_len=256))
    tracer = RequestTracer("tiny", tracer_provider("test", str(path)), engine.clock)
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with serve(engine, tracer=tracer) as s:
        post_all(s.base, [{"model": "tiny", "prompt": [5, 6, 7], "max_tokens": 4, "ignore_eos": True}],
                 headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})
        s.call("POST", "/v1/chat/completions", {"model": "tiny", "max_tokens": 3,
                                                 "messages": [{"role": "user", "content": "hi"}]})
    spans = read_spans(str(path))  # the app's cleanup flushed them
    assert [sp["name"] for sp in spans] == ["text_completion tiny", "chat tiny"]
    first = spans[0]
    assert first["context"]["trace_id"] == "0x" + trace_id and first["parent_id"] == "0x" + parent_id
    assert spans[1]["parent_id"] is None
    attrs = first["attributes"]
    assert attrs["gen_ai.request.model"] == "tiny" and attrs["gen_ai.operation.name"] == "text_completion"
    assert attrs["gen_ai.usage.input_tokens"] == 3 and attrs["gen_ai.usage.output_tokens"] == 4
    assert [e["name"] for e in first["events"]] == ["queued", "scheduled", "first_token", "finished"]
    assert first["kind"] == "SpanKind.SERVER"
    json.dumps(spans)  # plain JSON all the way down


def test_gen_ai_server_histograms_record_ttft_tpot_and_duration(tiny, tmp_path):
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    engine = LLMEngine(tiny, EngineConfig(max_num_seqs=4, max_num_batched_tokens=256, num_kv_blocks=64,
                                          max_model_len=256))
    tracer = RequestTracer("tiny", tracer_provider("test", str(tmp_path / "spans.jsonl")), engine.clock,
                           meter_provider=MeterProvider(metric_readers=[reader]))
    with serve(engine, tracer=tracer) as s:
        post_all(s.base, [{"model": "tiny", "prompt": [5, 6, 7], "max_tokens": 5, "ignore_eos": True}] * 3)
        records = list(s.engine.finished)
    points = {m.name: m.data.data_points[0] for rm in reader.get_metrics_data().resource_metrics
              for sm in rm.scope_metrics for m in sm.metrics}
    assert set(points) == {"gen_ai.server.time_to_first_token", "gen_ai.server.time_per_output_token",
                           "gen_ai.server.request.duration"}
    assert all(p.count == 3 for p in points.values())
    ttft = points["gen_ai.server.time_to_first_token"]
    want = sum(r.token_times_s[0] - r.arrival_time_s for r in records)
    assert ttft.sum == pytest.approx(want, rel=1e-6)
    assert dict(ttft.attributes) == {"gen_ai.operation.name": "text_completion", "gen_ai.request.model": "tiny"}
