"""A forecasting autoscaler: a short-horizon load forecast with an error band one cold start wide.

Floor 1 of inferlab, with the shape of every policy here: `forecast_policy(ctx) -> (num_replicas,
policy_state)`, so it runs in the simulator, in Ray Serve and in a notebook (issue 15, item 3).

A replica asked for now serves only after the cold start, so the policy sizes the fleet for the
load one **horizon** ahead, horizon = `ctx.cold_start_s` + one control period:
- the load, in replicas: `signal="busy"`, the larger of the summed compute and KV utilisations of
  the running replicas (1.0 = one replica fully busy; it saturates at the ready count), or
  `signal="need"`, the reference policy's need (`slo_aware.need_now`: utilisation, plus replicas in
  proportion to a queue) at the target utilisation;
- the forecast: its mean over `level_window_s` plus its rising least-squares trend over the last
  horizon, extrapolated one horizon ahead (a falling trend is not extrapolated: scale-down waits);
- the error band, sized to the horizon (what the load can do before a new replica is ready):
  `band="std"`: z x the load's standard deviation over the last horizon, z the normal quantile of
  `attainment_target` (0.97: z = 1.88), or `band="peak"`: the horizon's peak over the level;
  level + band is capped at the horizon's peak (a load that falls has a wide deviation too);
- replicas = (forecast + band) / `target_utilization`;
- urgent scale-up: a queue longer than `urgent_waiting_per_replica` per ready replica, with no
  replica already starting, adds replicas for it at once (no hold);
- scale-up otherwise once the wanted count has exceeded the fleet for `upscale_hold_s`;
- scale-down only `downscale_horizons` horizons after the last action, and only to a high quantile
  (`downscale_quantile`, 0.9) of the (forecast + band) seen over that time: a forecast made in that
  window is not undone by it, and the fleet does not flap on a constant load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from inferlab.policies.autoscale import clamp, metric_values
from inferlab.policies.slo_aware import need_now

DEFAULT_CONTROL_PERIOD_S = 2.0  # the simulator's control period; measured from the calls when possible


@dataclass(frozen=True)
class ForecastParams:
    """Knobs of `forecast_policy`. Defaults: the best of the designs on tune hours (README): a peak band, a 30 s
    upscale hold, a 6-horizon (~9 min) wait before scaling down, to the 90th percentile of the wait's forecasts,
    and a target utilisation of 0.80: the busy signal at a replica's SLO capacity (`inferlab.sim.capacity`:
    Llama-2-7B on H100, SLO 2 s / 0.2 s, a fleet of 4, both trace kinds: 0.83), rounded down, not a tuned constant."""

    target_utilization: float = 0.80
    attainment_target: float = 0.97
    band: str = "peak"
    signal: str = "busy"  # "busy": summed utilisation; "need": the slo policy's need (utilisation + queue)
    level_window_s: float = 30.0
    upscale_hold_s: float = 30.0
    urgent_waiting_per_replica: float = 16.0
    downscale_horizons: float = 6.0
    max_upscale_ratio: float = 4.0
    band_horizons: float = 1.0  # the band's peak (or deviation) is taken over this many horizons
    downscale_quantile: float = 0.9  # scale down to this quantile of (forecast + band) over the wait (1: its peak)

    def __post_init__(self) -> None:
        if not 0 < self.target_utilization <= 1:
            raise ValueError(f"ForecastParams.target_utilization must be in (0, 1], got {self.target_utilization}")
        if not 0.5 <= self.attainment_target < 1:
            raise ValueError(f"ForecastParams.attainment_target must be in [0.5, 1), got {self.attainment_target}")
        if self.signal not in ("busy", "need"):
            raise ValueError(f"ForecastParams.signal must be 'busy' or 'need', got {self.signal!r}")
        if self.band not in ("std", "peak"):
            raise ValueError(f"ForecastParams.band must be 'std' or 'peak', got {self.band!r}")
        for name in ("level_window_s", "upscale_hold_s", "urgent_waiting_per_replica", "downscale_horizons"):
            if getattr(self, name) < 0:
                raise ValueError(f"ForecastParams.{name} must be >= 0, got {getattr(self, name)}")
        if self.band_horizons < 1:
            raise ValueError(f"ForecastParams.band_horizons must be >= 1, got {self.band_horizons}")
        if not 0 < self.downscale_quantile <= 1:
            raise ValueError(f"ForecastParams.downscale_quantile must be in (0, 1], got {self.downscale_quantile}")
        if self.max_upscale_ratio < 1:
            raise ValueError(f"ForecastParams.max_upscale_ratio must be >= 1, got {self.max_upscale_ratio}")

    @property
    def z(self) -> float:
        """Standard deviations of band for the attainment target (one-sided normal quantile)."""
        return NormalDist().inv_cdf(self.attainment_target)


FORECAST = ForecastParams()


def load_now(ctx: Any) -> float:
    """Busy replicas now: the larger of summed compute and KV utilisation of the running replicas."""
    return max(sum(metric_values(ctx, "compute_utilization")), sum(metric_values(ctx, "kv_utilization")))


def waiting_now(ctx: Any) -> float:
    """Requests waiting for their first token, on replicas and at the cluster."""
    return sum(metric_values(ctx, "num_waiting_requests")) + ctx.total_queued_requests


def rising_slope(rows: list[list[float]]) -> float:
    """Least-squares slope of (time, value) rows, 0 if falling or too few."""
    n = len(rows)
    if n < 3:
        return 0.0
    mean_t = sum(r[0] for r in rows) / n
    mean_v = sum(r[1] for r in rows) / n
    var = sum((r[0] - mean_t) ** 2 for r in rows)
    slope = sum((r[0] - mean_t) * (r[1] - mean_v) for r in rows) / var if var > 0 else 0.0
    return max(0.0, slope)


def forecast_policy(ctx: Any, params: ForecastParams = FORECAST) -> tuple[int, dict[str, Any]]:
    """See the module docstring. State: "fc_load" ([time, load] rows over one horizon and the level
    window), "fc_upper" ([time, forecast + band] rows over the scale-down wait), "fc_started_s",
    "fc_last_tick_s", "fc_period_s", "fc_above_since", "fc_last_action_s"."""
    state = dict(ctx.policy_state)
    now = ctx.current_time
    last_tick = state.get("fc_last_tick_s")
    period = now - last_tick if last_tick is not None and now > last_tick else state.get("fc_period_s",
                                                                                         DEFAULT_CONTROL_PERIOD_S)
    state["fc_last_tick_s"], state["fc_period_s"] = now, period
    horizon = (getattr(ctx, "cold_start_s", 0.0) or 0.0) + period
    wait = params.downscale_horizons * horizon
    started = state.setdefault("fc_started_s", now)
    band_span = params.band_horizons * horizon
    keep = max(band_span, params.level_window_s) + 1e-9
    load = load_now(ctx) if params.signal == "busy" else need_now(ctx) * params.target_utilization
    rows = [r for r in state.get("fc_load", []) if now - r[0] <= keep] + [[now, load]]
    state["fc_load"] = rows
    level_rows = [r[1] for r in rows if now - r[0] <= params.level_window_s + 1e-9]
    level = sum(level_rows) / len(level_rows)
    window = [r for r in rows if now - r[0] <= horizon + 1e-9]
    values = [r[1] for r in rows if now - r[0] <= band_span + 1e-9]
    if params.band == "std":
        mean = sum(values) / len(values)
        band = params.z * math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    else:
        band = max(values) - level
    slope = rising_slope(window) if now - started >= horizon else 0.0
    # a falling load widens the deviation too: the band never asks for more than the horizon's peak
    upper = min(level + band, max(values)) + slope * horizon
    uppers = [r for r in state.get("fc_upper", []) if now - r[0] <= wait + 1e-9] + [[now, upper]]
    state["fc_upper"] = uppers
    want = upper / params.target_utilization
    current, ready = ctx.target_num_replicas, ctx.current_num_replicas
    waiting = waiting_now(ctx)
    # a queue measured against the ready replicas: once more are starting, they are the answer to it
    is_urgent = current <= ready and waiting > params.urgent_waiting_per_replica * max(ready, 1)
    if is_urgent:
        want = max(want, max(ready, 1) + waiting / params.urgent_waiting_per_replica)
    last_action = state.get("fc_last_action_s")
    if math.ceil(want - 1e-9) > current:
        since = state["fc_above_since"] = state.get("fc_above_since", None) or now
        if is_urgent or now - since >= params.upscale_hold_s - 1e-9:
            state["fc_above_since"], state["fc_last_action_s"] = None, now
            return clamp(ctx, min(want, max(current + 1, current * params.max_upscale_ratio))), state
        return clamp(ctx, current), state
    state["fc_above_since"] = None
    if now - (started if last_action is None else last_action) < wait - 1e-9:
        return clamp(ctx, current), state
    held = sorted(r[1] for r in uppers)
    down = held[min(len(held) - 1, int(params.downscale_quantile * len(held)))] / params.target_utilization
    if math.ceil(down - 1e-9) < current:
        state["fc_last_action_s"] = now
        return clamp(ctx, down), state
    return clamp(ctx, current), state
