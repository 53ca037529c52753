"""The router's view of its replicas: health, ejection and per-replica load from its own traffic.

Floor 3 of inferlab, used by `serving/router.py`. A `ReplicaPool` holds one `Replica`
per upstream base URL. A background task asks each replica's GET /health every
`health_interval_s`; `max_failures` failures in a row (or one refused connection seen
by the proxy) eject it, one success brings it back. The outstanding count and the
pending prefill tokens of a replica are what the router itself has in flight there:
no replica has to report them. Where a replica serves the kit's (vLLM-named) Prometheus
exposition at GET /metrics, the same loop reads its waiting and running requests and its KV
cache usage (`vllm:num_requests_waiting`, `vllm:num_requests_running`,
`vllm:kv_cache_usage_perc`) into the `Replica`, for policies to use; a replica without
/metrics keeps zeros there, and a failed scrape never ejects (only /health does).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

SCRAPED = {"vllm:num_requests_waiting": "num_waiting", "vllm:num_requests_running": "num_running",
           "vllm:kv_cache_usage_perc": "kv_utilization"}  # replica's metric -> `Replica` field


def parse_replica_metrics(text: str) -> dict[str, float]:
    """The `SCRAPED` fields from a Prometheus text exposition (summed over label sets, e.g. engines;
    KV usage averaged); fields the text lacks are left out."""
    sums: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            field_name = SCRAPED.get(sample.name)
            if field_name is not None:
                sums.setdefault(field_name, []).append(sample.value)
    return {k: (sum(v) / len(v) if k == "kv_utilization" else sum(v)) for k, v in sums.items()}


@dataclass
class Replica:
    """One upstream server as the router sees it."""

    url: str
    is_healthy: bool = True
    num_outstanding: int = 0
    num_pending_prefill_tokens: int = 0
    num_failures: int = 0  # consecutive failed health checks
    num_requests: int = 0
    num_ejections: int = 0
    last_error: str = ""
    ejected_at_s: float | None = None
    num_waiting: int = 0  # from the replica's /metrics: requests it has queued
    num_running: int = 0  # from the replica's /metrics: requests in its batch
    kv_utilization: float = 0.0  # from the replica's /metrics: KV cache usage (0-1)
    metrics_at_s: float | None = None  # when /metrics was last read (None: never)

    def to_dict(self) -> dict:
        return {"url": self.url, "is_healthy": self.is_healthy, "num_outstanding": self.num_outstanding,
                "num_pending_prefill_tokens": self.num_pending_prefill_tokens, "num_requests": self.num_requests,
                "num_ejections": self.num_ejections, "last_error": self.last_error,
                "num_waiting": self.num_waiting, "num_running": self.num_running,
                "kv_utilization": self.kv_utilization, "metrics_at_s": self.metrics_at_s}


@dataclass
class ReplicaPool:
    """The replicas, their health checker and their load counters."""

    urls: list[str]
    health_interval_s: float = 1.0
    health_timeout_s: float = 1.0
    max_failures: int = 2
    replicas: list[Replica] = field(init=False)

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("the router needs at least one replica URL (--replica)")
        for url in self.urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"replica URL {url!r} must start with http:// or https://")
        if len(set(self.urls)) != len(self.urls):
            raise ValueError(f"replica URLs repeat: {self.urls}")
        if not self.health_interval_s > 0 or self.max_failures < 1:
            raise ValueError("health_interval_s must be > 0 and max_failures >= 1")
        self.replicas = [Replica(u.rstrip("/")) for u in self.urls]
        self._task: asyncio.Task | None = None

    def healthy(self) -> list[Replica]:
        return [r for r in self.replicas if r.is_healthy]

    def add(self, url: str) -> Replica:
        """A new replica, routed to from now on (a live fleet's scale-up)."""
        url = url.rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"replica URL {url!r} must start with http:// or https://")
        if any(r.url == url for r in self.replicas):
            raise ValueError(f"replica {url} is already in the pool")
        replica = Replica(url)
        self.replicas = [*self.replicas, replica]  # one assignment: the router's loop sees old or new, never half
        return replica

    def remove(self, url: str) -> Replica:
        """Stop routing to `url` (drain): requests in flight there finish; its `num_outstanding` still counts them."""
        url = url.rstrip("/")
        gone = [r for r in self.replicas if r.url == url]
        if not gone:
            raise ValueError(f"replica {url} is not in the pool; known: {[r.url for r in self.replicas]}")
        if len(self.replicas) == 1:
            raise ValueError("cannot remove the router's last replica")
        self.replicas = [r for r in self.replicas if r.url != url]
        return gone[0]

    def describe_unhealthy(self) -> str:
        return "; ".join(f"{r.url} ({r.last_error or 'ejected'})" for r in self.replicas if not r.is_healthy)

    def eject(self, replica: Replica, reason: str) -> None:
        replica.last_error = reason
        if replica.is_healthy:
            replica.is_healthy = False
            replica.num_ejections += 1
            replica.ejected_at_s = time.monotonic()

    def _mark(self, replica: Replica, ok: bool, reason: str) -> None:
        if ok:
            replica.num_failures, replica.is_healthy, replica.last_error = 0, True, ""
            return
        replica.num_failures += 1
        replica.last_error = reason
        if replica.num_failures >= self.max_failures:
            self.eject(replica, reason)

    async def check(self, session: aiohttp.ClientSession, replica: Replica) -> None:
        try:
            async with session.get(replica.url + "/health",
                                   timeout=aiohttp.ClientTimeout(total=self.health_timeout_s)) as resp:
                self._mark(replica, resp.status == 200, f"/health answered {resp.status}")
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            self._mark(replica, False, f"/health failed: {type(exc).__name__}")

    async def scrape(self, session: aiohttp.ClientSession, replica: Replica) -> None:
        """Read the replica's load from its /metrics (kept as it was when that fails)."""
        try:
            async with session.get(replica.url + "/metrics",
                                   timeout=aiohttp.ClientTimeout(total=self.health_timeout_s)) as resp:
                if resp.status != 200:
                    return
                values = parse_replica_metrics(await resp.text())
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
            return
        if values:
            replica.num_waiting = int(values.get("num_waiting", 0))
            replica.num_running = int(values.get("num_running", 0))
            replica.kv_utilization = float(values.get("kv_utilization", 0.0))
            replica.metrics_at_s = time.monotonic()

    async def check_all(self, session: aiohttp.ClientSession) -> None:
        await asyncio.gather(*(self.check(session, r) for r in self.replicas))
        await asyncio.gather(*(self.scrape(session, r) for r in self.replicas if r.is_healthy))

    async def _loop(self, session: aiohttp.ClientSession) -> None:
        while True:
            await self.check_all(session)
            await asyncio.sleep(self.health_interval_s)

    def start(self, session: aiohttp.ClientSession) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(session))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
