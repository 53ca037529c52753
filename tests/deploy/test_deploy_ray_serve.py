"""The policies as Ray Serve custom autoscaling policies: same names as Ray's context; a live run."""

from __future__ import annotations

import inspect

import pytest

from inferlab.policies.autoscale import AutoscalingConfig, AutoscalingContext

SHARED = ("current_num_replicas", "target_num_replicas", "total_num_requests", "total_queued_requests",
          "aggregated_metrics", "capacity_adjusted_min_replicas", "capacity_adjusted_max_replicas", "policy_state",
          "current_time", "config", "running_replicas", "last_scale_up_time", "last_scale_down_time")


def test_context_uses_ray_serve_names() -> None:
    ray_config = pytest.importorskip("ray.serve.config")
    ray_params = set(inspect.signature(ray_config.AutoscalingContext.__init__).parameters)
    ours = set(inspect.signature(AutoscalingContext).parameters)
    for name in SHARED:
        assert name in ray_params, f"Ray's AutoscalingContext has no {name!r}"
        assert name in ours
    ray_fields = set(ray_config.AutoscalingConfig.model_fields)
    for name in ("min_replicas", "max_replicas", "target_ongoing_requests", "upscale_delay_s", "downscale_delay_s",
                 "look_back_period_s", "upscaling_factor", "downscaling_factor", "initial_replicas"):
        assert name in ray_fields and name in AutoscalingConfig.__dataclass_fields__


def test_demo_policy_on_a_ray_shaped_context() -> None:
    from inferlab.deploy.ray_serve import demo_policy

    ctx = AutoscalingContext(current_num_replicas=1, target_num_replicas=1, total_num_requests=60,
                             total_queued_requests=0, capacity_adjusted_min_replicas=1,
                             capacity_adjusted_max_replicas=3, current_time=1e9, policy_state={},
                             aggregated_metrics={"kv_utilization": {"r1": 0.6}, "compute_utilization": {"r1": 0.5},
                                                 "num_waiting_requests": {"r1": 20}})
    n, state = demo_policy(ctx)
    assert n == 3 and isinstance(state, dict)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_ray_serve_scales_up_and_back_down() -> None:
    pytest.importorskip("ray.serve")
    from inferlab.deploy.ray_serve import run_demo

    result = run_demo(tail_s=150.0)  # the watch ends as soon as the fleet is back to one; 150 s bounds a loaded machine
    assert result.num_errors == 0 and result.num_requests > 100
    assert result.max_replicas >= 2, result.timeline
    assert result.timeline[-1][1] == 1, result.timeline
