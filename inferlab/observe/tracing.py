"""OpenTelemetry spans of requests, after the GenAI semantic conventions.

Flow: the server reads the client's W3C `traceparent` (`parent_context(headers)`) and tells the
tracer which request id to expect (`RequestTracer.expect`) before it submits the request; when
the engine finishes the request, `on_output` writes one SERVER span "{operation} {model}" from
arrival to finish, child of the client's span, with `gen_ai.*` attributes and the engine's
`RequestEvent`s (queued, scheduled, preempted, first_token, finished) as span events at the
times they happened. TTFT, TPOT and duration also go to the `gen_ai.server.*` histograms when a
meter provider is given. Spans are written after the fact with explicit times, so tracing adds
no work to the step itself.

Exporters (`tracer_provider`): a JSON-lines file or the console by default; OTLP/HTTP where a
collector is configured (`otlp_endpoint`, or the standard OTEL_EXPORTER_OTLP_ENDPOINT).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Callable, Mapping

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from inferlab.engine import FinishReason, LLMEngine, Request, RequestOutput

PROVIDER_NAME = "inferlab"  # gen_ai.provider.name
_PROPAGATOR = TraceContextTextMapPropagator()


def parent_context(headers: Mapping[str, str]) -> Context:
    """The caller's trace context from W3C `traceparent`/`tracestate` headers (an empty one if absent or bad)."""
    return _PROPAGATOR.extract({k.lower(): v for k, v in headers.items()})


def inject(headers: dict[str, str], context: Context | None = None) -> dict[str, str]:
    """Add `traceparent` (the current span's, or `context`'s) to `headers` for a downstream call."""
    _PROPAGATOR.inject(headers, context)
    return headers


def tracer_provider(service_name: str, traces_file: str | None = None, otlp_endpoint: str | None = None,
                    console: bool = False) -> TracerProvider:
    """A provider exporting to a JSON-lines file (one span a line), OTLP/HTTP, and/or the console.

    Args:
        service_name: `service.name` of the resource (e.g. "inferlab-serve:8000").
        traces_file: append spans here, one JSON object a line.
        otlp_endpoint: an OTLP/HTTP collector base URL (default: OTEL_EXPORTER_OTLP_ENDPOINT if set).
        console: also print spans to stderr.
    """
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if traces_file:
        stream = open(traces_file, "a", encoding="utf-8")  # closed by the exporter's shutdown
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(
            out=stream, formatter=lambda span: span.to_json(indent=None) + "\n")))
    endpoint = otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")))
    if console:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    return provider


def meter_provider(metrics_file: str | None = None, otlp_endpoint: str | None = None, interval_s: float = 10.0):
    """An OpenTelemetry MeterProvider for the `gen_ai.server.*` histograms: JSON lines appended to
    `metrics_file` every `interval_s` (and at shutdown), and/or OTLP/HTTP to a collector."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader

    readers = []
    if metrics_file:
        stream = open(metrics_file, "a", encoding="utf-8")  # closed by the exporter's shutdown
        readers.append(PeriodicExportingMetricReader(
            ConsoleMetricExporter(out=stream, formatter=lambda data: data.to_json(indent=None) + "\n"),
            export_interval_millis=interval_s * 1000))
    endpoint = otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint.rstrip("/") + "/v1/metrics"),
                                                     export_interval_millis=interval_s * 1000))
    return MeterProvider(metric_readers=readers)


def read_spans(path: str) -> list[dict]:
    """The spans a `traces_file` holds, as dicts (OTel's JSON form)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class RequestTracer:
    """An `EngineObserver` writing one span per finished request (see the module docstring).

    Args:
        model_name: `gen_ai.request.model` / `gen_ai.response.model`.
        provider: where spans go (`tracer_provider`).
        clock: the engine's clock (its times are turned into wall-clock nanoseconds).
        meter_provider: optional; then TTFT, TPOT and duration are recorded as `gen_ai.server.*` histograms.
    """

    def __init__(self, model_name: str, provider: TracerProvider, clock: Callable[[], float] = time.perf_counter,
                 meter_provider=None) -> None:
        self.model_name, self.provider, self.clock = model_name, provider, clock
        self.tracer = provider.get_tracer("inferlab.observe.tracing")
        self._expected: dict[str, tuple[Context, str]] = {}
        self._lock = threading.Lock()
        self._histograms, self._meter_provider = None, meter_provider
        if meter_provider is not None:
            meter = meter_provider.get_meter("inferlab.observe.tracing")
            self._histograms = (meter.create_histogram("gen_ai.server.time_to_first_token", "s"),
                                meter.create_histogram("gen_ai.server.time_per_output_token", "s"),
                                meter.create_histogram("gen_ai.server.request.duration", "s"))

    def expect(self, request_id: str, context: Context, operation: str) -> None:
        """Remember the caller's context and the operation ("chat", "text_completion") of a request to come."""
        with self._lock:
            self._expected[request_id] = (context, operation)

    def on_step(self, engine: LLMEngine) -> None:
        pass

    def on_output(self, req: Request, out: RequestOutput) -> None:
        if not out.is_finished:
            return
        with self._lock:
            context, operation = self._expected.pop(req.request_id, (None, "text_completion"))
        to_ns = _wall_ns(self.clock)
        end_s = req.finish_time_s if req.finish_time_s is not None else out.time_s
        p = req.sampling_params
        reason = out.finish_reason or FinishReason.ERROR
        span = self.tracer.start_span(f"{operation} {self.model_name}", context=context, kind=SpanKind.SERVER,
                                      start_time=to_ns(req.arrival_time_s), attributes={
                                          "gen_ai.operation.name": operation,
                                          "gen_ai.provider.name": PROVIDER_NAME,
                                          "gen_ai.request.model": self.model_name,
                                          "gen_ai.response.model": self.model_name,
                                          "gen_ai.response.id": req.request_id,
                                          "gen_ai.request.max_tokens": p.max_tokens,
                                          "gen_ai.request.temperature": p.temperature,
                                          "gen_ai.request.top_p": p.top_p,
                                          "gen_ai.usage.input_tokens": req.num_prompt_tokens,
                                          "gen_ai.usage.output_tokens": req.num_output_tokens,
                                          "gen_ai.response.finish_reasons": (reason.value,),
                                          "inferlab.num_preemptions": req.num_preemptions,
                                          "inferlab.num_cached_tokens": req.num_cached_tokens,
                                      })
        for event, t in req.events:
            span.add_event(event.value, timestamp=to_ns(t))
        if reason is FinishReason.ERROR:
            span.set_status(Status(StatusCode.ERROR, req.error or "error"))
            span.set_attribute("error.type", "engine_error")
        span.end(end_time=to_ns(end_s))
        if self._histograms is not None and req.token_times_s:
            attrs = {"gen_ai.operation.name": operation, "gen_ai.request.model": self.model_name}
            ttft, tpot, duration = self._histograms
            ttft.record(req.token_times_s[0] - req.arrival_time_s, attrs)
            if req.num_output_tokens >= 2:
                tpot.record((req.token_times_s[-1] - req.token_times_s[0]) / (req.num_output_tokens - 1), attrs)
            duration.record(end_s - req.arrival_time_s, attrs)

    def shutdown(self) -> None:
        self.provider.force_flush()
        self.provider.shutdown()
        if self._meter_provider is not None:  # flushes the last gen_ai.server.* values
            self._meter_provider.shutdown()


def _wall_ns(clock: Callable[[], float]) -> Callable[[float], int]:
    """Engine-clock seconds -> Unix nanoseconds (the offset read now, once per span)."""
    offset_s = time.time() - clock()
    return lambda t: int((t + offset_s) * 1e9)

