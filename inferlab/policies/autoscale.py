"""Autoscaling policies: plain functions `policy(ctx) -> (num_replicas, policy_state)`.

Floor 1 of inferlab: no simulator and no Ray inside. The same function runs in the
simulator (`inferlab.sim.cluster`, which builds an `AutoscalingContext`), in Ray Serve
(`inferlab.deploy.ray_serve` passes it as `AutoscalingConfig(policy={"policy_function":
"inferlab.policies.autoscale:hpa_policy"})`, where Ray builds its own
`ray.serve.config.AutoscalingContext`) and in a learner's notebook.

`AutoscalingContext` uses Ray Serve 2.60's attribute names (`current_num_replicas`,
`target_num_replicas`, `total_num_requests`, `total_queued_requests`,
`aggregated_metrics`, `capacity_adjusted_min_replicas`/`max_replicas`, `policy_state`,
`current_time`, `config`); the simulator adds `num_starting_replicas` and
`cold_start_s`, which a policy reads with `getattr(ctx, name, default)` so that it
still runs in Ray. `config` has Ray's `AutoscalingConfig` field names.

Shipped: static, Kubernetes HPA, Ray Serve's default, Knative KPA, a 5-minute oracle
(simulator only: it knows the future) and, in `slo_aware.py`, the reference policy.
Every policy returns a count within [min, max]; state is a new dict each call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence


@dataclass(frozen=True)
class AutoscalingConfig:
    """The subset of Ray Serve's `AutoscalingConfig` the policies read (same names, same meaning)."""

    min_replicas: int = 1
    max_replicas: int = 64
    initial_replicas: int | None = None
    target_ongoing_requests: float = 32.0  # Ray's default is 2: far too low for an LLM replica
    upscale_delay_s: float = 30.0  # Ray's default
    downscale_delay_s: float = 600.0  # Ray's default
    look_back_period_s: float = 30.0  # Ray's default
    upscaling_factor: float | None = None
    downscaling_factor: float | None = None

    def __post_init__(self) -> None:
        if self.min_replicas < 0:
            raise ValueError(f"AutoscalingConfig.min_replicas must be >= 0, got {self.min_replicas}")
        if self.max_replicas < max(1, self.min_replicas):
            raise ValueError(f"AutoscalingConfig.max_replicas must be >= max(1, min_replicas), got {self.max_replicas}")
        if self.initial_replicas is not None and not self.min_replicas <= self.initial_replicas <= self.max_replicas:
            raise ValueError(f"AutoscalingConfig.initial_replicas must be in [min_replicas, max_replicas], "
                             f"got {self.initial_replicas}")
        if not self.target_ongoing_requests > 0:
            raise ValueError(f"AutoscalingConfig.target_ongoing_requests must be > 0, got {self.target_ongoing_requests}")
        for name in ("upscale_delay_s", "downscale_delay_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"AutoscalingConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not self.look_back_period_s > 0:
            raise ValueError(f"AutoscalingConfig.look_back_period_s must be > 0, got {self.look_back_period_s}")

    # Ray's accessors, so Ray's own policy functions run on this config too
    def get_target_ongoing_requests(self) -> float:
        return self.target_ongoing_requests

    def get_upscaling_factor(self) -> float:
        return self.upscaling_factor or 1.0

    def get_downscaling_factor(self) -> float:
        return self.downscaling_factor or 1.0


@dataclass
class AutoscalingContext:
    """What a policy sees each control period (Ray Serve 2.60 names; see module docstring).

    Args:
        current_num_replicas: running (ready) replicas.
        target_num_replicas: the last decision (ready + starting).
        total_num_requests: ongoing requests, queued + running, over all replicas.
        total_queued_requests: requests not yet assigned to a replica.
        aggregated_metrics: metric name -> {replica id: value}; the simulator reports, per running
            replica, "kv_utilization" (0-1), "compute_utilization" (0-1, busy share since the last
            period) and "num_waiting_requests" (waiting for their first token).
        capacity_adjusted_min_replicas / capacity_adjusted_max_replicas: bounds.
        policy_state: what the policy returned last time ({} at first).
        current_time: seconds (simulated clock, or Unix time in Ray).
        config: an `AutoscalingConfig` (Ray's own in Ray Serve).
        running_replicas, last_scale_up_time, last_scale_down_time: Ray's fields; the simulator
            leaves them at their defaults.
        num_starting_replicas: replicas in their cold start (simulator extra).
        cold_start_s: seconds from launch to ready (simulator extra).
    """

    current_num_replicas: int
    target_num_replicas: int
    total_num_requests: float
    total_queued_requests: float
    capacity_adjusted_min_replicas: int
    capacity_adjusted_max_replicas: int
    current_time: float
    policy_state: dict[str, Any] = field(default_factory=dict)
    aggregated_metrics: dict[str, dict[Any, float]] = field(default_factory=dict)
    running_replicas: list[Any] = field(default_factory=list)
    config: AutoscalingConfig = field(default_factory=AutoscalingConfig)
    last_scale_up_time: float | None = None
    last_scale_down_time: float | None = None
    num_starting_replicas: int = 0
    cold_start_s: float = 0.0

    @property
    def total_running_requests(self) -> float:
        return max(0.0, self.total_num_requests - self.total_queued_requests)


class ScalingContext(Protocol):
    """What an autoscaling policy reads: the fields `AutoscalingContext` (what the simulator and
    `inferlab.deploy` send) shares with Ray Serve's own context. The simulator's extras
    (`num_starting_replicas`, `cold_start_s`) are on `AutoscalingContext` only."""

    current_num_replicas: int
    target_num_replicas: int
    total_num_requests: float
    total_queued_requests: float
    capacity_adjusted_min_replicas: int
    capacity_adjusted_max_replicas: int
    current_time: float
    policy_state: dict[str, Any]
    aggregated_metrics: dict[str, dict[Any, float]]
    config: Any


Policy = Callable[[ScalingContext], tuple[int, dict[str, Any]]]


def clamp(ctx: Any, num_replicas: float) -> int:
    """Round up and keep within [capacity_adjusted_min_replicas, capacity_adjusted_max_replicas]."""
    low, high = ctx.capacity_adjusted_min_replicas, ctx.capacity_adjusted_max_replicas
    return int(min(high, max(low, math.ceil(num_replicas - 1e-9))))


def metric_values(ctx: Any, name: str) -> list[float]:
    """Per-replica values of an aggregated metric (empty if not reported)."""
    metrics = getattr(ctx, "aggregated_metrics", None) or {}
    return [float(v) for v in (metrics.get(name) or {}).values()]


def _window(history: list[list[float]], now: float, span_s: float) -> list[list[float]]:
    return [row for row in history if now - row[0] <= span_s + 1e-9]


# ---------------------------------------------------------------- static

def make_static_policy(num_replicas: int) -> Policy:
    """Always `num_replicas` (e.g. provisioned for the peak)."""
    if num_replicas < 0:
        raise ValueError(f"num_replicas must be >= 0, got {num_replicas}")

    def static_policy(ctx: Any) -> tuple[int, dict[str, Any]]:
        return clamp(ctx, num_replicas), dict(ctx.policy_state)

    return static_policy


def static_max_policy(ctx: Any) -> tuple[int, dict[str, Any]]:
    """Always the maximum replica count."""
    return ctx.capacity_adjusted_max_replicas, dict(ctx.policy_state)


# ---------------------------------------------------------------- Kubernetes HPA

@dataclass(frozen=True)
class HpaParams:
    """Kubernetes HorizontalPodAutoscaler defaults (autoscaling/v2)."""

    sync_period_s: float = 15.0
    tolerance: float = 0.1
    downscale_stabilization_s: float = 300.0
    max_scale_up_ratio: float = 2.0  # scaleUp policy: +100% ...
    max_scale_up_pods: int = 4  # ... or +4 pods per period, whichever is more


HPA = HpaParams()


def hpa_desired(current: int, metric: float, target: float, tolerance: float = HPA.tolerance) -> int:
    """HPA's formula: ceil(current * metric / target), unchanged when |metric/target - 1| <= tolerance."""
    ratio = metric / target
    if abs(ratio - 1.0) <= tolerance:
        return current
    return math.ceil(current * ratio - 1e-9)


def hpa_policy(ctx: Any, params: HpaParams = HPA) -> tuple[int, dict[str, Any]]:
    """Kubernetes HPA on ongoing requests per replica (target: config.target_ongoing_requests).

    Syncs every 15 s; replicas still starting count as 0 load when scaling up (the HPA
    rule for unready pods); scale-down takes the highest recommendation of the last
    300 s (stabilisation window); scale-up at most max(2x, +4) per sync.
    """
    state = dict(ctx.policy_state)
    now, target = ctx.current_time, ctx.config.target_ongoing_requests
    last = state.get("hpa_last_sync_s")
    if last is not None and now - last < params.sync_period_s - 1e-9:
        return ctx.target_num_replicas, state
    state["hpa_last_sync_s"] = now
    ready = ctx.current_num_replicas
    spec = max(ctx.target_num_replicas, ready, 1)
    if ready == 0:
        desired = spec if ctx.total_num_requests > 0 else ctx.target_num_replicas
    else:
        desired = hpa_desired(ready, ctx.total_num_requests / ready, target, params.tolerance)
        if desired > ready:  # unready pods count as 0: does the scale-up survive that?
            desired = max(spec, hpa_desired(spec, ctx.total_num_requests / spec, target, params.tolerance))
            desired = min(desired, max(math.ceil(spec * params.max_scale_up_ratio), spec + params.max_scale_up_pods))
    # the replicas already there count as a recommendation when the window starts
    history = _window(state.get("hpa_recommendations", [[now, ctx.target_num_replicas]]), now,
                      params.downscale_stabilization_s)
    history.append([now, desired])
    state["hpa_recommendations"] = history
    if desired < ctx.target_num_replicas:
        desired = min(ctx.target_num_replicas, max(r[1] for r in history))
    return clamp(ctx, desired), state


# ---------------------------------------------------------------- Ray Serve default

def ray_default_policy(ctx: Any) -> tuple[int, dict[str, Any]]:
    """Ray Serve's default: total_num_requests / target_ongoing_requests, with its delays.

    As Ray 2.60: the request count is averaged over `look_back_period_s`; an upscale
    must be wanted continuously for `upscale_delay_s` (30 s) and a downscale for
    `downscale_delay_s` (600 s) before it is applied; from 0 replicas it scales at once.
    """
    state = dict(ctx.policy_state)
    cfg, now = ctx.config, ctx.current_time
    history = _window(state.get("ray_history", []), now, cfg.look_back_period_s)
    history.append([now, float(ctx.total_num_requests)])
    state["ray_history"] = history
    current = ctx.target_num_replicas
    if ctx.current_num_replicas == 0 and ctx.total_num_requests > 0:
        return clamp(ctx, max(1, current)), state
    mean_requests = sum(r[1] for r in history) / len(history)
    desired = clamp(ctx, mean_requests / cfg.get_target_ongoing_requests())
    if desired == current:
        state["ray_decision_since"], state["ray_direction"] = None, 0
        return current, state
    direction = 1 if desired > current else -1
    if state.get("ray_direction") != direction or state.get("ray_decision_since") is None:
        state["ray_direction"], state["ray_decision_since"] = direction, now
    delay = cfg.upscale_delay_s if direction > 0 else cfg.downscale_delay_s
    if now - state["ray_decision_since"] + 1e-6 >= delay:
        state["ray_decision_since"], state["ray_direction"] = None, 0
        return desired, state
    return current, state


# ---------------------------------------------------------------- Knative KPA

@dataclass(frozen=True)
class KpaParams:
    """Knative Pod Autoscaler defaults (config-autoscaler, knative.dev/serving pkg/autoscaler)."""

    stable_window_s: float = 60.0
    panic_window_s: float = 6.0  # panic-window-percentage 10% of the stable window
    panic_threshold: float = 2.0  # panic when the panic-window demand reaches 200% of the ready capacity
    target_utilization: float = 0.7  # container-concurrency-target-percentage: aim at 70% of the target
    max_scale_down_rate: float = 2.0  # per decision: at least ready / 2
    max_scale_up_rate: float = 1000.0  # per decision: at most 1000 x ready

    def __post_init__(self) -> None:
        if not 0 < self.panic_window_s <= self.stable_window_s:
            raise ValueError(f"KpaParams.panic_window_s must be in (0, stable_window_s], got {self.panic_window_s}")
        if not 0 < self.target_utilization <= 1:
            raise ValueError(f"KpaParams.target_utilization must be in (0, 1], got {self.target_utilization}")
        if self.max_scale_down_rate < 1 or self.max_scale_up_rate < 1:
            raise ValueError("KpaParams.max_scale_down_rate and max_scale_up_rate must be >= 1")


KPA = KpaParams()


def kpa_policy(ctx: Any, params: KpaParams = KPA) -> tuple[int, dict[str, Any]]:
    """Knative KPA on concurrency (target per replica: config.target_ongoing_requests x 70%).

    As Knative's `autoscaler.Scale` each 2 s tick: desired = ceil(mean concurrency / target)
    over the 60 s stable window and over the 6 s panic window, each kept within
    [floor(ready / max_scale_down_rate), ceil(ready * max_scale_up_rate)] (ready: ready
    replicas, at least 1). Panic starts when the panic desired count reaches 2x the ready
    replicas and ends one stable window after that last held; in panic the count is the
    highest asked for since the panic began (never down). No scale-down before a whole
    stable window of data. State: "kpa_history", "kpa_started_s", "kpa_panic_since",
    "kpa_last_panic_signal", "kpa_max_panic_pods".
    """
    state = dict(ctx.policy_state)
    now = ctx.current_time
    target = ctx.config.target_ongoing_requests * params.target_utilization
    history = _window(state.get("kpa_history", []), now, params.stable_window_s)
    history.append([now, float(ctx.total_num_requests)])
    state["kpa_history"] = history
    started = state.setdefault("kpa_started_s", now)
    panic_rows = _window(history, now, params.panic_window_s)
    stable = sum(r[1] for r in history) / len(history)
    panic = sum(r[1] for r in panic_rows) / len(panic_rows)
    ready = max(ctx.current_num_replicas, 1)
    max_up = math.ceil(ready * params.max_scale_up_rate - 1e-9)
    max_down = math.floor(ready / params.max_scale_down_rate + 1e-9)
    want_stable, want_panic = math.ceil(stable / target - 1e-9), math.ceil(panic / target - 1e-9)
    desired_stable = min(max(want_stable, max_down), max_up)
    desired_panic = min(max(want_panic, max_down), max_up)
    if want_panic / ready >= params.panic_threshold:
        state["kpa_panic_since"] = state.get("kpa_panic_since") or now
        state["kpa_last_panic_signal"] = now
    elif (state.get("kpa_panic_since") is not None
          and now - state["kpa_last_panic_signal"] > params.stable_window_s):
        state["kpa_panic_since"], state["kpa_max_panic_pods"] = None, 0
    desired = desired_stable
    if state.get("kpa_panic_since") is not None:
        desired = max(desired_stable, desired_panic, state.get("kpa_max_panic_pods", 0))
        state["kpa_max_panic_pods"] = desired
    if now - started < params.stable_window_s:  # no scale-down before a whole stable window of data
        desired = max(desired, ctx.target_num_replicas)
    return clamp(ctx, desired), state


# ---------------------------------------------------------------- offline oracle

def make_oracle_policy(schedule: Sequence[int], window_s: float = 300.0, lead_s: float | None = None) -> Policy:
    """Offline oracle: replicas needed in each `window_s` window, known in advance.

    It launches a window's replicas `lead_s` early (None: one cold start, so they are
    ready when the window starts; 0: at the window's start, ready one cold start late)
    and drops surplus at the window's start. `schedule[i]` is the count for
    [i*window_s, (i+1)*window_s).
    """
    if not schedule or min(schedule) < 0 or window_s <= 0:
        raise ValueError("oracle needs a non-empty schedule of counts >= 0 and window_s > 0")
    if lead_s is not None and lead_s < 0:
        raise ValueError(f"oracle lead_s must be >= 0, got {lead_s}")
    counts = list(schedule)

    def oracle_policy(ctx: Any) -> tuple[int, dict[str, Any]]:
        now = ctx.current_time
        lead = getattr(ctx, "cold_start_s", 0.0) if lead_s is None else lead_s
        here = counts[min(int(now // window_s), len(counts) - 1)]
        ahead = counts[min(int((now + lead) // window_s), len(counts) - 1)]
        return clamp(ctx, max(here, ahead)), dict(ctx.policy_state)

    return oracle_policy


def lagged_schedule(schedule: Sequence[int], num_windows: int, factor: float = 1.0) -> list[int]:
    """A causal frontier: window i gets ceil(factor x the largest need of the `num_windows` windows before it).

    With `make_oracle_policy(..., lead_s=0)` this is a policy that knows the past exactly (every finished
    window's oracle count) and nothing of the future: window i's count is decided at its start and ready one
    cold start later. Window 0 keeps its own count (every policy starts there).
    """
    if num_windows < 1 or not factor > 0 or not schedule:
        raise ValueError(f"lagged_schedule needs a schedule, num_windows >= 1 and factor > 0, "
                         f"got {num_windows} and {factor}")
    counts = list(schedule)
    return counts[:1] + [math.ceil(factor * max(counts[max(0, i - num_windows):i]) - 1e-9)
                         for i in range(1, len(counts))]
