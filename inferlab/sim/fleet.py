"""The simulated fleet's settings, its replicas' lifecycle, and the bill.

Floor 2 of inferlab, under `sim/cluster.py`: `ClusterConfig` is what `simulate()`
is given (autoscaling limits, replica settings, cold start, prices, spot market),
`Node` is one replica as the cluster sees it (pool, lifecycle state, launch and
stop times), and `bill_nodes` + `SimResult` are what comes out: per-request
records, the replica timeline, GPU-hours per pool and their cost.

Billing: a replica costs from launch (or t=0 for the warm initial fleet) until it
stops (cancelled, drained, preempted) or until the run ends, x GPUs per replica x
the pool's price per GPU-hour.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Iterable

from inferlab.metrics import RequestRecord
from inferlab.policies.autoscale import AutoscalingConfig
from inferlab.sim.replica import Replica, ReplicaConfig

class NodeState(enum.StrEnum):
    """A replica's lifecycle (string values: the timeline's column names use them)."""

    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPED = "stopped"


class Pool(enum.StrEnum):
    """Where a replica's GPUs come from (keys of `SimResult.gpu_hours`)."""

    ON_DEMAND = "on_demand"
    SPOT = "spot"


STARTING, RUNNING, DRAINING, STOPPED = NodeState
POOLS = tuple(Pool)


@dataclass(frozen=True)
class ClusterConfig:
    """Fleet settings. Prices are per GPU-hour; each replica uses `num_gpus_per_replica` GPUs."""

    autoscaling: AutoscalingConfig = field(default_factory=AutoscalingConfig)
    replica: ReplicaConfig = field(default_factory=ReplicaConfig)
    cold_start_s: float = 90.0
    control_period_s: float = 2.0
    num_gpus_per_replica: int = 1
    on_demand_usd_per_gpu_hour: float = 2.49
    spot_usd_per_gpu_hour: float = 0.87
    spot_fraction: float = 0.0
    spot_notice_s: float = 30.0
    spot_mean_lifetime_s: float = 3600.0
    max_ongoing_requests: int | None = None
    max_tenant_share: float | None = None  # share of the fleet's request slots one tenant may hold (None: all)
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {"cold_start_s": self.cold_start_s >= 0, "control_period_s": self.control_period_s > 0,
                  "num_gpus_per_replica": self.num_gpus_per_replica >= 1,
                  "on_demand_usd_per_gpu_hour": self.on_demand_usd_per_gpu_hour >= 0,
                  "spot_usd_per_gpu_hour": self.spot_usd_per_gpu_hour >= 0,
                  "spot_fraction": 0 <= self.spot_fraction <= 1, "spot_notice_s": self.spot_notice_s >= 0,
                  "spot_mean_lifetime_s": self.spot_mean_lifetime_s > 0,
                  "max_ongoing_requests": self.max_ongoing_requests is None or self.max_ongoing_requests >= 1,
                  "max_tenant_share": self.max_tenant_share is None or (
                      0 < self.max_tenant_share <= 1 and self.max_ongoing_requests is not None)}
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"ClusterConfig.{name} is out of range: {getattr(self, name)!r}")


class Node:
    """A replica with its pool, lifecycle state and billing times."""

    __slots__ = ("replica", "pool", "state", "launch_s", "stop_s", "last_finish_s", "is_interrupted",
                 "sample_s", "sample_budget_busy_s")

    def __init__(self, replica: Replica, pool: str, launch_s: float) -> None:
        self.replica, self.pool, self.state = replica, pool, STARTING
        self.launch_s, self.stop_s, self.last_finish_s = launch_s, math.nan, launch_s
        self.is_interrupted = False
        self.sample_s, self.sample_budget_busy_s = launch_s, 0.0

    def compute_utilization(self, now: float) -> float:
        """Share of the token budget used since the last call, time-weighted (0-1)."""
        busy = self.replica.budget_busy_s
        span = now - self.sample_s
        value = (busy - self.sample_budget_busy_s) / span if span > 0 else 0.0
        self.sample_s, self.sample_budget_busy_s = now, busy
        return min(1.0, value)

    def stop(self, time_s: float) -> None:
        """Stop billing at `time_s` (never before launch)."""
        self.state, self.stop_s = STOPPED, max(time_s, self.launch_s)


@dataclass
class SimResult:
    """What a simulation produced; `timeline` rows: time_s, target, per pool/state counts."""

    records: list[RequestRecord]
    timeline: list[dict[str, float]]
    gpu_hours: dict[str, float]
    cost_usd: float
    num_scale_actions: int
    num_spot_interruptions: int  # spot replicas taken back by the market (not request preemptions)
    num_requeued: int
    end_time_s: float
    prefix_hit_rate: float = math.nan  # prompt blocks found in a replica's prefix cache / prompt blocks
    routed_to: list[int] = field(default_factory=list)  # per request (trace order), the replica that ran it

    @property
    def total_gpu_hours(self) -> float:
        return sum(self.gpu_hours.values())

    @property
    def scale_actions_per_hour(self) -> float:
        return self.num_scale_actions / (self.end_time_s / 3600.0) if self.end_time_s > 0 else 0.0


def bill_nodes(nodes: Iterable[Node], end_s: float, config: ClusterConfig) -> tuple[dict[str, float], float]:
    """GPU-hours per pool and their cost (USD) for `nodes`; nodes still up are billed until `end_s`."""
    gpu_hours = dict.fromkeys(POOLS, 0.0)
    for node in nodes:
        stop = node.stop_s if node.state == STOPPED else end_s
        gpu_hours[node.pool] += max(0.0, stop - max(node.launch_s, 0.0)) * config.num_gpus_per_replica / 3600
    cost = (gpu_hours["on_demand"] * config.on_demand_usd_per_gpu_hour
            + gpu_hours["spot"] * config.spot_usd_per_gpu_hour)
    return gpu_hours, cost
