"""Autoscaling and routing policies: plain functions of a context (no simulator, no Ray).

`autoscale` (context, baselines: static, HPA, Ray Serve default, KPA, oracle),
`slo_aware` (the reference policy), `spot` (spot/on-demand mix), `route` (round-robin, least-outstanding, power of two, session affinity, prefix-aware, prefix+load),
`shape` (token buckets, priority, VTC fair queueing).
"""

from inferlab.policies.autoscale import (AutoscalingConfig, AutoscalingContext, hpa_policy, kpa_policy,
                                         make_oracle_policy, make_static_policy, ray_default_policy)
from inferlab.policies.route import (RouteContext, least_outstanding, power_of_two, prefix_aware, prefix_load,
                                     round_robin, session_affinity)
from inferlab.policies.slo_aware import slo_aware_policy
from inferlab.policies.spot import SpotContext, make_fixed_spot_policy, notice_aware_spot_policy

__all__ = ["AutoscalingConfig", "AutoscalingContext", "RouteContext", "hpa_policy", "kpa_policy",
           "least_outstanding", "make_oracle_policy", "make_static_policy", "power_of_two", "ray_default_policy",
           "round_robin", "slo_aware_policy", "prefix_aware", "prefix_load", "session_affinity", "SpotContext", "make_fixed_spot_policy", "notice_aware_spot_policy"]
