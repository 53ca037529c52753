"""Prometheus metrics of `inferlab route`: what the clients saw, and the router's view of each replica.

`GET /metrics` on the router. The replicas' own `/metrics` (vLLM names, `exposition.py`) say what
each engine did; these say what the **clients** got, which is what an availability SLO is about: a
replica that refuses connections or dies mid-answer never counts the request itself.

- `inferlab_router_requests_total{code}`: every answer, by HTTP status; `code="cut"` is a stream its
  replica abandoned after the 200 (the client got an error event, not a full answer).
- `inferlab_router_retries_total`, `inferlab_router_refused_total{reason}` (shaping and bad input).
- per replica (`replica` label = its base URL): `inferlab_router_replica_healthy` (0/1),
  `inferlab_router_replica_outstanding`, `inferlab_router_replica_pending_prefill_tokens`,
  `inferlab_router_replica_ejections_total`; and `inferlab_router_queue_length`.

Availability over 5 minutes, as the lab 6 rules write it for the router:
`1 - sum(rate(inferlab_router_requests_total{code=~"5..|cut"}[5m])) / sum(rate(inferlab_router_requests_total[5m]))`.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class _RouterState:
    """A collector reading the router's own state at scrape time (no second bookkeeping)."""

    def __init__(self, state: Callable[[], dict[str, Any]]) -> None:
        self.state = state

    def collect(self) -> Iterator:
        s = self.state()
        healthy = GaugeMetricFamily("inferlab_router_replica_healthy", "1 if the router sends to the replica",
                                    labels=["replica"])
        outstanding = GaugeMetricFamily("inferlab_router_replica_outstanding",
                                        "requests the router has in flight on the replica", labels=["replica"])
        pending = GaugeMetricFamily("inferlab_router_replica_pending_prefill_tokens",
                                    "prompt tokens sent to the replica and not yet answered", labels=["replica"])
        ejections = CounterMetricFamily("inferlab_router_replica_ejections", "times the replica was ejected",
                                        labels=["replica"])
        for r in s["replicas"]:
            healthy.add_metric([r["url"]], float(r["is_healthy"]))
            outstanding.add_metric([r["url"]], r["num_outstanding"])
            pending.add_metric([r["url"]], r["num_pending_prefill_tokens"])
            ejections.add_metric([r["url"]], r["num_ejections"])
        yield from (healthy, outstanding, pending, ejections)
        yield GaugeMetricFamily("inferlab_router_queue_length", "requests waiting for a slot", value=s["num_queued"])
        yield CounterMetricFamily("inferlab_router_retries", "requests retried on another replica",
                                  value=s["num_retries"])
        refused = CounterMetricFamily("inferlab_router_refused", "requests refused by the router", labels=["reason"])
        for reason, n in s["num_refused"].items():
            refused.add_metric([reason], n)
        yield refused


class RouterMetrics:
    """The router's registry: `requests` is counted by the router's middleware, the rest read at scrape."""

    def __init__(self, state: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("inferlab_router_requests", "answers to clients, by HTTP status (cut: a stream "
                                "its replica abandoned)", ["code"], registry=self.registry)
        # the failure series exist at 0 from the start: a counter that first appears at 1 has no increase in
        # rate() (no earlier sample), so the first cut stream after a node loss would never reach the
        # availability rule (seen live: 1 cut of 120, RouterAvailabilityLow silent)
        for code in ("cut", "500", "502", "503"):
            self.requests.labels(code=code)
        self.registry.register(_RouterState(state))

    def render(self) -> bytes:
        return generate_latest(self.registry)
