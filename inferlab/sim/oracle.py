"""The offline oracle: the fewest replicas each 5-minute window needs, knowing the future.

Floor 2 of inferlab, used by `sim/main.py` for the `oracle_gpu_hours` and
`static_peak_gpu_hours` references and by `inferlab.policies.autoscale.make_oracle_policy`.

For each window, the window's requests are simulated alone on n warm replicas
(least-outstanding routing, no cold start) and n is the smallest count whose SLO
attainment reaches `min_attainment`. The oracle's GPU-hours bill exactly those
replicas for exactly their windows (no cold start, no drain): a lower reference no
online policy can reach; static peak bills the largest window's count throughout.

Each window's count is memoised on disk (`sim/memo.py`, keyed on the window's requests,
the step-time model, the SLO, the replica settings and the package's code), so a plan
asked for again (another notebook kernel, another `inferlab simulate` run) costs
nothing; `cache=False` always simulates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from inferlab.metrics import SLO, slo_attainment
from inferlab.policies.autoscale import AutoscalingConfig
from inferlab.sim.cluster import ClusterConfig, simulate
from inferlab.sim.memo import memoized
from inferlab.sim.replica import ReplicaConfig
from inferlab.sim.steptime import StepTimeModel
from inferlab.traces import TraceRequest


@dataclass(frozen=True)
class OraclePlan:
    """Replicas per window and the GPU-hours references they imply."""

    window_s: float
    schedule: tuple[int, ...]
    duration_s: float  # the span billed: the last window ends here (the trace's last arrival)
    num_gpus_per_replica: int = 1

    def _window_s(self, i: int) -> float:
        return max(0.0, min(self.window_s, self.duration_s - i * self.window_s))

    @property
    def oracle_gpu_hours(self) -> float:
        billed = sum(n * self._window_s(i) for i, n in enumerate(self.schedule))
        return billed * self.num_gpus_per_replica / 3600.0

    @property
    def static_peak_gpu_hours(self) -> float:
        return max(self.schedule) * self.duration_s * self.num_gpus_per_replica / 3600.0

    @property
    def peak_replicas(self) -> int:
        return max(self.schedule)


def _meets(window: Sequence[TraceRequest], num_replicas: int, model: StepTimeModel, replica: ReplicaConfig,
           slo: SLO, min_attainment: float) -> bool:
    config = ClusterConfig(autoscaling=AutoscalingConfig(min_replicas=num_replicas, max_replicas=num_replicas,
                                                         initial_replicas=num_replicas),
                           replica=replica, cold_start_s=0.0, control_period_s=60.0)
    result = simulate(window, model, config)
    return slo_attainment(result.records, slo) >= min_attainment


def replicas_needed(window: Sequence[TraceRequest], model: StepTimeModel, slo: SLO, *,
                    replica: ReplicaConfig = ReplicaConfig(), min_attainment: float = 0.99,
                    max_replicas: int = 512, cache: bool = True) -> int:
    """Fewest warm replicas that serve `window` (arrivals from 0) at `min_attainment` of `slo`.

    `cache`: reuse the count stored for the same inputs and package code (`sim/memo.py`).
    """
    if not window:
        return 1

    def search() -> int:
        return _search_replicas(window, model, slo, replica, min_attainment, max_replicas)

    if not cache:
        return search()
    columns = np.array([(r.arrival_time_s, r.num_prompt_tokens, r.num_output_tokens) for r in window], dtype=np.float64)
    return memoized("oracle_replicas", search, lambda n: type(n) is int and 1 <= n <= max_replicas,
                    window=columns, model=model, slo=slo, replica=replica, min_attainment=min_attainment,
                    max_replicas=max_replicas)


def _search_replicas(window: Sequence[TraceRequest], model: StepTimeModel, slo: SLO, replica: ReplicaConfig,
                     min_attainment: float, max_replicas: int) -> int:
    high = 1
    while not _meets(window, high, model, replica, slo, min_attainment):
        if high >= max_replicas:
            raise ValueError(f"even {max_replicas} replicas miss the SLO on a window; is the SLO reachable?")
        high = min(2 * high, max_replicas)
    low = high // 2 + 1 if high > 1 else 1
    while low < high:
        mid = (low + high) // 2
        if _meets(window, mid, model, replica, slo, min_attainment):
            high = mid
        else:
            low = mid + 1
    return high


def oracle_plan(trace: Sequence[TraceRequest], model: StepTimeModel, slo: SLO, *, window_s: float = 300.0,
                replica: ReplicaConfig = ReplicaConfig(), min_attainment: float = 0.99,
                num_gpus_per_replica: int = 1, cache: bool = True) -> OraclePlan:
    """Replicas needed in each `window_s` window of `trace` (see the module docstring).

    `cache`: reuse each window's count stored for the same inputs and package code (`sim/memo.py`).
    """
    if window_s <= 0:
        raise ValueError(f"window_s must be > 0, got {window_s}")
    if not trace:
        raise ValueError("trace is empty")
    num_windows = int(math.floor(trace[-1].arrival_time_s / window_s)) + 1
    windows: list[list[TraceRequest]] = [[] for _ in range(num_windows)]
    for r in trace:
        windows[int(r.arrival_time_s // window_s)].append(r)
    schedule = []
    for i, reqs in enumerate(windows):
        shifted = [TraceRequest(r.arrival_time_s - i * window_s, r.num_prompt_tokens, r.num_output_tokens)
                   for r in reqs]
        schedule.append(replicas_needed(shifted, model, slo, replica=replica, min_attainment=min_attainment,
                                        cache=cache))
    return OraclePlan(window_s, tuple(schedule), trace[-1].arrival_time_s, num_gpus_per_replica)
