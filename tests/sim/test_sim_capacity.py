"""A replica's SLO capacity (issue 15): TPOT-feasible token budget, bisection on a steady load, the busy signal."""

from __future__ import annotations

import pytest

from inferlab.metrics import SLO
from inferlab.sim.capacity import replica_capacity, tpot_token_budget
from inferlab.sim.replica import ReplicaConfig
from inferlab.sim.steptime import roofline_model
from inferlab.trace_family import KINDS

MODEL = roofline_model("llama-2-7b", "h100")


def test_token_budget_is_cut_to_the_tpot_slo():
    replica = ReplicaConfig()
    full = replica.max_num_batched_tokens
    assert tpot_token_budget(MODEL, SLO(2.0, 0.2), replica) == full  # a full step takes 0.196 s
    cut = tpot_token_budget(MODEL, SLO(2.0, 0.1), replica)
    assert 1 <= cut < full
    assert MODEL.step_s(cut, 0, 0) <= 0.1 < MODEL.step_s(cut + 1, 0, 0)


def test_capacity_is_a_utilisation_below_one_and_falls_with_a_tighter_slo():
    kind = KINDS["smooth"]
    loose = replica_capacity(MODEL, SLO(2.0, 0.2), kind.context, kind.generated, minutes=3, num_bisections=5)
    tight = replica_capacity(MODEL, SLO(2.0, 0.02), kind.context, kind.generated, minutes=3, num_bisections=5)
    assert 0 < loose.utilization <= 1 and loose.requests_per_s > 0
    assert tight.requests_per_s < loose.requests_per_s


def test_bad_input_is_named():
    kind = KINDS["smooth"]
    with pytest.raises(ValueError, match="attainment"):
        replica_capacity(MODEL, SLO(2.0, 0.2), kind.context, kind.generated, attainment=1.0)
    with pytest.raises(ValueError, match="num_replicas"):
        replica_capacity(MODEL, SLO(2.0, 0.2), kind.context, kind.generated, num_replicas=0)


def test_forecast_target_utilisation_is_the_derived_capacity():
    """The forecast policy's target is the busy signal at a replica's SLO capacity (fleet of 4, each kind's
    mid burstiness), not a free constant: the two agree within the coarse bisection's resolution."""
    from inferlab.policies.autoscale_forecast import FORECAST

    for name in ("bursty", "smooth"):
        kind = KINDS[name]
        derived = replica_capacity(MODEL, SLO(2.0, 0.2), kind.context, kind.generated, num_replicas=4,
                                   burstiness=sum(kind.burstiness) / 2, minutes=2, num_bisections=6)
        assert abs(derived.utilization - FORECAST.target_utilization) <= 0.1, (name, derived)
