"""The reference SLO-aware autoscaler: queue and KV driven, with hysteresis and pre-warming.

Floor 1 of inferlab, next to the baselines in `autoscale.py` and with the same shape,
`slo_aware_policy(ctx) -> (num_replicas, policy_state)`, so it runs in the simulator and
as a Ray Serve custom policy (there, the replicas report "kv_utilization" and
"num_waiting_requests" through `record_autoscaling_stats`; without them it falls back
to request counts alone).

Each control period it estimates the replicas the load needs now, as the largest of
- ongoing requests / `target_ongoing_requests` (the baselines' signal),
- summed KV-cache utilisation / `target_kv_utilization` (long requests weigh more),
- ready replicas + waiting requests / `target_ongoing_requests` when replicas queue
  (a queue means the fleet is already short),
then
- pre-warms: extrapolates that need one cold start ahead from its trend over
  `trend_window_s`, because a replica asked for now serves only after the cold start;
- scales up at once, with `headroom`, counting starting replicas as capacity;
- scales down only when the need (with headroom) stayed below the fleet for
  `downscale_hold_s`, and then in one step to the highest need seen in that time
  (hysteresis: few actions, no flapping on constant load).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from inferlab.policies.autoscale import clamp, metric_values


@dataclass(frozen=True)
class SloAwareParams:
    """Knobs of the reference policy (defaults tuned on the Azure-shaped traces in the simulator)."""

    target_ongoing_requests: float | None = None  # fallback only; None: ctx.config's
    target_compute_utilization: float = 0.75
    target_kv_utilization: float = 0.75
    max_waiting_per_replica: float = 4.0
    downscale_utilization_ratio: float = 0.7  # scale down only to where utilisation stays 30% under target
    max_downscale_ratio: float = 0.5  # at most halve the fleet per downscale
    headroom: float = 1.15
    smoothing_window_s: float = 10.0
    trend_window_s: float = 60.0
    downscale_hold_s: float = 300.0
    max_trend_ratio: float = 1.5  # pre-warm at most this multiple of the current need

    def __post_init__(self) -> None:
        for name in ("target_compute_utilization", "target_kv_utilization"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if not self.max_waiting_per_replica > 0:
            raise ValueError(f"max_waiting_per_replica must be > 0, got {self.max_waiting_per_replica}")
        if self.headroom < 1:
            raise ValueError(f"headroom must be >= 1, got {self.headroom}")
        for name in ("smoothing_window_s", "trend_window_s", "downscale_hold_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


SLO_AWARE = SloAwareParams()


def need_now(ctx: Any, params: SloAwareParams = SLO_AWARE) -> float:
    """Replicas the current load needs (fractional), before smoothing, trend and headroom."""
    running = ctx.current_num_replicas
    compute, kv = metric_values(ctx, "compute_utilization"), metric_values(ctx, "kv_utilization")
    if not compute and not kv:  # no engine metrics (plain Ray deployment): count requests
        target = params.target_ongoing_requests or ctx.config.target_ongoing_requests
        return ctx.total_num_requests / target
    need = max(sum(compute) / params.target_compute_utilization, sum(kv) / params.target_kv_utilization)
    waiting = sum(metric_values(ctx, "num_waiting_requests")) + ctx.total_queued_requests
    if waiting > params.max_waiting_per_replica * max(running, 1):
        # queues grow without bound when short of capacity: add replicas in proportion, at most doubling
        extra = waiting / params.max_waiting_per_replica - running
        need = max(need, running + min(extra, max(running, 1)))
    return need


def _slope_per_s(rows: list[list[float]]) -> float:
    """Least-squares slope of (time, value) rows."""
    if len(rows) < 3:
        return 0.0
    n = len(rows)
    mean_t = sum(r[0] for r in rows) / n
    mean_v = sum(r[1] for r in rows) / n
    var = sum((r[0] - mean_t) ** 2 for r in rows)
    return sum((r[0] - mean_t) * (r[1] - mean_v) for r in rows) / var if var > 0 else 0.0


def slo_aware_policy(ctx: Any, params: SloAwareParams = SLO_AWARE) -> tuple[int, dict[str, Any]]:
    """The reference policy; see the module docstring."""
    state = dict(ctx.policy_state)
    now = ctx.current_time
    keep = max(params.trend_window_s, params.downscale_hold_s, params.smoothing_window_s)
    history = [row for row in state.get("slo_history", []) if now - row[0] <= keep + 1e-9]
    history.append([now, need_now(ctx, params)])
    state["slo_history"] = history
    recent = [r[1] for r in history if now - r[0] <= params.smoothing_window_s + 1e-9]
    need = sum(recent) / len(recent)
    # pre-warm: where the need is heading one cold start from now
    cold_start_s = getattr(ctx, "cold_start_s", 0.0) or 0.0
    trend = [r for r in history if now - r[0] <= params.trend_window_s + 1e-9]
    ahead = need + max(0.0, _slope_per_s(trend)) * cold_start_s
    need_up = min(ahead, params.max_trend_ratio * need) * params.headroom
    current = ctx.target_num_replicas
    if math.ceil(need_up - 1e-9) > current:
        state["slo_below_since"] = None
        return clamp(ctx, need_up), state
    # hysteresis: scale down only after the need stayed below the fleet for the whole hold
    window = [r[1] for r in history if now - r[0] <= params.downscale_hold_s + 1e-9]
    # utilisation rises faster than linearly as replicas go (longer batches, longer requests): be conservative
    need_down = max(max(window) * params.headroom / params.downscale_utilization_ratio,
                    current * params.max_downscale_ratio)
    if math.ceil(need_down - 1e-9) < current:
        since = state.get("slo_below_since")
        if since is None:
            state["slo_below_since"] = now
        elif now - since >= params.downscale_hold_s:
            state["slo_below_since"] = None
            return clamp(ctx, need_down), state
    else:
        state["slo_below_since"] = None
    return clamp(ctx, current), state
