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
- scales up, with `headroom`, counting starting replicas as capacity, once the need has
  stayed above the fleet for `upscale_hold_s` (a shorter burst drains before a cold
  replica would arrive, so one replica at real rates is not doubled for a blip), at once
  when the queue is long (`urgent_waiting_per_replica`) and no replica is already starting
  (those are the answer to the queue: asking again every period while they boot would
  overshoot), by at most `max_upscale_ratio`;
- scales down only after `downscale_hold_s` without an action, to a high quantile
  (`downscale_quantile`) of the smoothed need over that time, so one spike does not keep a
  burst's fleet for another hold (with headroom and `downscale_utilization_ratio`), by at
  most `max_downscale_ratio` per step: KV use per request grows as the fleet shrinks, so a
  roomy fleet under-reads the need (hysteresis: few actions, no flapping on constant load);
- keeps `min_action_interval_s` between actions (urgent upscales excepted).
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
    urgent_waiting_per_replica: float = 16.0  # a queue this long per ready replica skips the upscale hold
    downscale_utilization_ratio: float = 0.7  # scale down only to where utilisation stays 30% under target
    max_downscale_ratio: float = 0.5  # at most -50% per downscale: the need is under-read on a roomy fleet
    max_upscale_ratio: float = 4.0  # at most this multiple of the fleet per upscale (+1 at least)
    headroom: float = 1.15
    smoothing_window_s: float = 10.0
    trend_window_s: float = 60.0
    upscale_hold_s: float | None = None  # a need above the fleet must last this long; None: 2 smoothing windows
    downscale_hold_s: float = 300.0
    min_action_interval_s: float | None = None  # minimum stay between actions (urgent ups excepted); None: trend window
    max_trend_ratio: float = 1.25  # pre-warm at most this multiple of the current need
    downscale_quantile: float = 0.95  # size a downscale to this quantile of the hold's smoothed need (1: its peak)

    def __post_init__(self) -> None:
        for name in ("target_compute_utilization", "target_kv_utilization"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if not self.max_waiting_per_replica > 0:
            raise ValueError(f"max_waiting_per_replica must be > 0, got {self.max_waiting_per_replica}")
        if self.headroom < 1:
            raise ValueError(f"headroom must be >= 1, got {self.headroom}")
        if not self.urgent_waiting_per_replica >= self.max_waiting_per_replica:
            raise ValueError(f"urgent_waiting_per_replica must be >= max_waiting_per_replica, "
                             f"got {self.urgent_waiting_per_replica}")
        if not 0 < self.downscale_quantile <= 1:
            raise ValueError(f"downscale_quantile must be in (0, 1], got {self.downscale_quantile}")
        if not 0 <= self.max_downscale_ratio < 1:
            raise ValueError(f"max_downscale_ratio must be in [0, 1), got {self.max_downscale_ratio}")
        if not (self.max_upscale_ratio >= 1 and self.max_trend_ratio >= 1):
            raise ValueError(f"max_upscale_ratio and max_trend_ratio must be >= 1, "
                             f"got {self.max_upscale_ratio} and {self.max_trend_ratio}")
        if not 0 < self.downscale_utilization_ratio <= 1:
            raise ValueError(f"downscale_utilization_ratio must be in (0, 1], got {self.downscale_utilization_ratio}")
        for name in ("smoothing_window_s", "trend_window_s", "upscale_hold_s", "downscale_hold_s",
                     "min_action_interval_s"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


    @property
    def upscale_hold(self) -> float:
        """Seconds a need above the fleet must last before a (non-urgent) upscale."""
        return 2 * self.smoothing_window_s if self.upscale_hold_s is None else self.upscale_hold_s

    @property
    def min_action_interval(self) -> float:
        """Seconds between two actions (urgent upscales excepted)."""
        return self.trend_window_s if self.min_action_interval_s is None else self.min_action_interval_s


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
    """The reference policy; see the module docstring.

    State keys: "slo_history" ([time_s, need, smoothed need] rows), "slo_started_s",
    "slo_above_since" (when the need first exceeded the fleet), "slo_last_action_s".
    """
    state = dict(ctx.policy_state)
    now = ctx.current_time
    started = state.setdefault("slo_started_s", now)
    keep = max(params.trend_window_s, params.downscale_hold_s, params.smoothing_window_s)
    history = [row for row in state.get("slo_history", []) if now - row[0] <= keep + 1e-9]
    raw = need_now(ctx, params)
    recent = [r[1] for r in history if now - r[0] <= params.smoothing_window_s + 1e-9] + [raw]
    need = sum(recent) / len(recent)
    history.append([now, raw, need])
    state["slo_history"] = history
    # pre-warm: where the need is heading one cold start from now (once a whole trend window is seen)
    cold_start_s = getattr(ctx, "cold_start_s", 0.0) or 0.0
    trend = [r[:2] for r in history if now - r[0] <= params.trend_window_s + 1e-9]
    slope = _slope_per_s(trend) if now - started >= params.trend_window_s else 0.0
    ahead = need + max(0.0, slope) * cold_start_s
    need_up = min(ahead, params.max_trend_ratio * need) * params.headroom
    current = ctx.target_num_replicas
    last_action = state.get("slo_last_action_s")
    since_action = now - (started if last_action is None else last_action)
    if math.ceil(need_up - 1e-9) > current:
        since_up = state["slo_above_since"] = state.get("slo_above_since") or now
        waiting = sum(metric_values(ctx, "num_waiting_requests")) + ctx.total_queued_requests
        # the queue is measured against ready replicas: once more are starting, wait for them
        is_starting = current > ctx.current_num_replicas
        is_urgent = (not is_starting
                     and waiting > params.urgent_waiting_per_replica * max(ctx.current_num_replicas, 1))
        is_rested = last_action is None or since_action >= params.min_action_interval - 1e-9
        if is_urgent or (now - since_up >= params.upscale_hold - 1e-9 and is_rested):
            state["slo_above_since"], state["slo_last_action_s"] = None, now
            return clamp(ctx, min(need_up, max(current + 1, current * params.max_upscale_ratio))), state
        return clamp(ctx, current), state
    state["slo_above_since"] = None
    if since_action < params.downscale_hold_s - 1e-9:
        return clamp(ctx, current), state
    # hysteresis: scale down only when the smoothed need stayed below the fleet for the whole hold,
    # to a high quantile of the hold's need (its very peak is often one spike that a cold replica
    # would never have met); utilisation rises faster than linearly as replicas go (longer batches,
    # longer queues): keep `downscale_utilization_ratio` under the target
    held = sorted(r[2] for r in history if now - r[0] <= params.downscale_hold_s + 1e-9)
    high = held[min(len(held) - 1, int(params.downscale_quantile * len(held)))]
    # the step cap always allows one replica down: ceil(3 * 0.5) would pin a small fleet at 2 forever
    need_down = max(high * params.headroom / params.downscale_utilization_ratio,
                    min(current - 1, current * params.max_downscale_ratio))
    if math.ceil(need_down - 1e-9) < current:
        state["slo_last_action_s"] = now
        return clamp(ctx, need_down), state
    return clamp(ctx, current), state
