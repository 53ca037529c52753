"""A replica's SLO capacity: the highest steady load it serves within the SLO, and what the autoscalers read then.

Floor 2 of inferlab, next to `sim/oracle.py`. An autoscaler sizes the fleet as load / target utilisation;
that target is the share of a replica's capacity it may use. Instead of a tuned constant (the policies'
0.75), this derives it from the step-time model and the SLO for a workload's length distributions:

- `token_budget_share`: the largest step (in tokens, at most `max_num_batched_tokens`) whose step time
  stays within the TPOT SLO (a decoding request waits one step per token), over the budget;
- `requests_per_s`: the highest steady arrival rate (gamma gaps of the given burstiness inside each minute,
  the same every minute) that `num_replicas` warm replicas serve at `attainment` of the SLO, found by
  bisection in the simulator;
- `utilization`: the autoscalers' busy signal at that rate, per replica: the larger of the summed compute
  utilisation (share of the token budget, time-weighted) and KV utilisation (reserved tokens over the
  cache), averaged over the control periods from the second minute to the last arrival.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from inferlab.metrics import SLO, slo_attainment
from inferlab.policies.autoscale import AutoscalingConfig
from inferlab.sim.cluster import ClusterConfig, simulate
from inferlab.sim.replica import ReplicaConfig
from inferlab.sim.steptime import StepTimeModel
from inferlab.traces import LengthDist, minute_count_arrivals, synthesize


@dataclass(frozen=True)
class ReplicaCapacity:
    """See the module docstring; `tokens_per_s` is the token budget's throughput at the TPOT-feasible step."""

    token_budget_share: float
    tokens_per_s: float
    requests_per_s: float
    utilization: float
    compute_utilization: float
    kv_utilization: float


def tpot_token_budget(model: StepTimeModel, slo: SLO, replica: ReplicaConfig) -> int:
    """Largest tokens per step (<= max_num_batched_tokens) whose step time is within the TPOT SLO (>= 1)."""
    budget = replica.max_num_batched_tokens
    if slo.tpot_s is None or model.step_s(budget, 0, 0) <= slo.tpot_s:
        return budget
    low, high = 1, budget
    while low < high:
        mid = (low + high + 1) // 2
        if model.step_s(mid, 0, 0) <= slo.tpot_s:
            low = mid
        else:
            high = mid - 1
    return low


def _steady_run(model: StepTimeModel, slo: SLO, replica: ReplicaConfig, context: LengthDist, generated: LengthDist,
                rate_per_s: float, num_replicas: int, minutes: int, burstiness: float,
                seed: int) -> tuple[float, float, float]:
    rng = np.random.default_rng(seed)
    counts = np.full(minutes, int(round(rate_per_s * 60)))
    trace = synthesize(minute_count_arrivals(counts, rng, burstiness), context, generated, rng)
    seen: list[tuple[float, float]] = []
    last_arrival = trace[-1].arrival_time_s

    def record(ctx: Any) -> tuple[int, dict[str, Any]]:
        if 60.0 <= ctx.current_time <= last_arrival:  # steady state: not the first minute, not the drain
            metrics = ctx.aggregated_metrics
            seen.append((sum(metrics["compute_utilization"].values()), sum(metrics["kv_utilization"].values())))
        return ctx.target_num_replicas, ctx.policy_state

    config = ClusterConfig(autoscaling=AutoscalingConfig(min_replicas=num_replicas, max_replicas=num_replicas,
                                                         initial_replicas=num_replicas),
                           replica=replica, cold_start_s=0.0)
    result = simulate(trace, model, config, record)
    compute = float(np.mean([s[0] for s in seen])) / num_replicas if seen else 0.0
    kv = float(np.mean([s[1] for s in seen])) / num_replicas if seen else 0.0
    return slo_attainment(result.records, slo), compute, kv


def replica_capacity(model: StepTimeModel, slo: SLO, context: LengthDist, generated: LengthDist, *,
                     replica: ReplicaConfig = ReplicaConfig(), attainment: float = 0.99, num_replicas: int = 1,
                     minutes: int = 10, burstiness: float = 1.0, seed: int = 0,
                     num_bisections: int = 10) -> ReplicaCapacity:
    """The SLO capacity of one replica (of a fleet of `num_replicas`) for a workload; see the module docstring."""
    if not 0 < attainment < 1:
        raise ValueError(f"attainment must be in (0, 1), got {attainment}")
    if num_replicas < 1 or minutes < 2:
        raise ValueError(f"need num_replicas >= 1 and minutes >= 2, got {num_replicas} and {minutes}")
    budget = tpot_token_budget(model, slo, replica)
    tokens_per_s = budget / model.step_s(budget, 0, 0)
    mean_tokens = float(np.mean(context.sample(np.random.default_rng(seed), 20_000)
                                + generated.sample(np.random.default_rng(seed + 1), 20_000)))
    high = 2.0 * tokens_per_s / mean_tokens * num_replicas  # above the token roof: certainly missed
    low, best = 0.0, (0.0, 0.0)
    for _ in range(num_bisections):
        mid = (low + high) / 2
        att, compute, kv = _steady_run(model, slo, replica, context, generated, mid, num_replicas, minutes,
                                       burstiness, seed)
        if att >= attainment:
            low, best = mid, (compute, kv)
        else:
            high = mid
    return ReplicaCapacity(budget / replica.max_num_batched_tokens, tokens_per_s, low / num_replicas,
                           max(best), best[0], best[1])
