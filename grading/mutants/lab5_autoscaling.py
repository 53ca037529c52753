"""Plausible wrong answers to Lab 5; each must lose the points of the tests named."""

from roundtrip import Mutant

MUTANTS = [
    Mutant(name="erlang-b-not-c", cell="erlang_c", old="return b / (1 - rho * (1 - b))", new="return b",
           must_lose=("test_erlang_c",)),
    Mutant(name="hpa-no-tolerance", cell="hpa", old="if abs(ratio - 1.0) <= tolerance:", new="if False:",
           must_lose=("test_hpa",)),
    # scales up at once but never back down: an idle fleet keeps its peak size
    Mutant(name="never-scales-down", cell="autoscaler", old="if down < current:", new="if False:",
           must_lose=("test_autoscaler_scale_down",)),
    # regression tests that call the policy and assert nothing: they kill no faulty autoscaler
    Mutant(name="regression-asserts-nothing", cell="regression", old="AUTOSCALER_TESTS = [test_stays_within_bounds,",
           new="def test_runs(policy):\n    policy(make_ctx(3, utilization=0.5))\n\n\n"
               "AUTOSCALER_TESTS = [test_runs]\n_unused = [test_stays_within_bounds,",
           must_lose=("test_regression_pass", "test_regression_half", "test_regression_most")),
    # keeps asking for spot replacements right after preemption notices
    Mutant(name="ignores-spot-preemption", cell="spot", old="if recent:", new="if False:",
           must_lose=("test_spot_policy",)),
]

# Checked by `python grading/mutcheck.py lab5_autoscaling` (in-process, no nbgrader), not by the round trip:
# each would cost one more autograded notebook (~25 s) in `make test` (see grading/requirements.md). The five
# MUTANTS above cover every exercise the round trip must prove (erlang_c, hpa, autoscaler, regression, spot);
# issue 15's autoscaler faults ("never scales down" above; "ignores cold start", "queue only" here) all lose points.
DEV_MUTANTS = [
    Mutant(name="hpa-rounds-down", cell="hpa", old="return math.ceil(current * ratio - 1e-9)",
           new="return int(current * ratio)", must_lose=("test_hpa",)),
    Mutant(name="mutates-policy-state", cell="autoscaler", old="state = dict(ctx.policy_state)",
           new="state = ctx.policy_state", must_lose=("test_autoscaler_bounds",)),
    Mutant(name="static-at-max", cell="autoscaler", old="state = dict(ctx.policy_state)",
           new="state = dict(ctx.policy_state)\n    return ctx.capacity_adjusted_max_replicas, state",
           must_lose=("test_autoscaler_gpu_hours",)),
    Mutant(name="never-scales-up", cell="autoscaler", old="if up > current:", new="if False:",
           must_lose=("test_autoscaler_attainment",)),
    # scales down the moment the need dips: flaps on a constant load, and misses the SLO while it re-grows
    Mutant(name="no-hysteresis", cell="autoscaler", old="history = [row for row in state.get(\"history\", []) if now - row[0] <= hold_s]",
           new="hold_s = 0.0\n    history = [row for row in state.get(\"history\", []) if now - row[0] <= hold_s]",
           must_lose=("test_autoscaler_behaviour", "test_autoscaler_gpu_hours", "test_autoscaler_scale_down")),
    # replicas still in their cold start do not count: the queue keeps doubling the fleet while they start
    Mutant(name="ignores-cold-start", cell="autoscaler",
           old="num_starting = max(0, ctx.target_num_replicas - ctx.current_num_replicas)", new="num_starting = 0",
           must_lose=("test_autoscaler_behaviour", "test_autoscaler_gpu_hours")),
    # |ratio - 1| < tolerance: exactly at the band's edge the HPA would already scale
    Mutant(name="hpa-strict-tolerance", cell="hpa", old="if abs(ratio - 1.0) <= tolerance:",
           new="if abs(ratio - 1.0) < tolerance:", must_lose=("test_hpa",)),
    # the price is never read: spot even when it costs as much as on-demand
    Mutant(name="spot-ignores-price", cell="spot", old="if ctx.spot_price_ratio >= 0.8 or target < 4:",
           new="if target < 4:", must_lose=("test_spot_policy",)),
    # one test only, on bounds: it kills the fault that breaks bounds and no other
    Mutant(name="regression-bounds-only", cell="regression", old="AUTOSCALER_TESTS = [test_stays_within_bounds,",
           new="AUTOSCALER_TESTS = [test_stays_within_bounds]\n_unused = [test_stays_within_bounds,",
           must_lose=("test_regression_half", "test_regression_most")),
    Mutant(name="erlang-c-unstable-strict", cell="erlang_c", old="if offered_load >= num_servers:",
           new="if offered_load > num_servers:", must_lose=("test_erlang_c",)),
    Mutant(name="kingman-unstable-strict", cell="kingman", old="if rho >= 1:", new="if rho > 1:",
           must_lose=("test_kingman",)),
    Mutant(name="kingman-without-variability", cell="kingman", old=" * (ca2 + cs2) / 2", new="",
           must_lose=("test_kingman",)),
    # Ray Serve's rule instead of the HPA's: ignores the current count
    Mutant(name="hpa-ignores-current", cell="hpa", old="return math.ceil(current * ratio - 1e-9)",
           new="return math.ceil(metric / target)", must_lose=("test_hpa",)),
    # spot on a fleet of two or three: one preemption during the rise loses the SLO
    Mutant(name="spot-on-small-fleet", cell="spot", old="if ctx.spot_price_ratio >= 0.8 or target < 4:",
           new="if ctx.spot_price_ratio >= 0.8:", must_lose=("test_spot_policy",)),
    # issue 15: sizes on the instantaneous queue only (utilisation ignored): a full fleet with no queue yet
    # is left alone until requests pile up, and scale-down keeps nothing for the load in flight
    Mutant(name="queue-only", cell="autoscaler",
           old="""need = max(sum(metric_values(ctx, "kv_utilization")),
               sum(metric_values(ctx, "compute_utilization"))) / target_utilization""",
           new="need = 0.0", must_lose=("test_autoscaler_bounds",)),
    # a test tied to one implementation: "full load means exactly the maximum" fails on a correct
    # autoscaler that asks for less than the maximum
    Mutant(name="regression-too-strict", cell="regression", old="    n, _ = policy(make_ctx(3, utilization=1.0))\n    assert n > 3, n",
           new="    n, _ = policy(make_ctx(3, utilization=1.0))\n    assert n == 16, n",
           must_lose=("test_regression_pass", "test_regression_half", "test_regression_most")),
    # no state test and no starting-replicas test: two faults survive
    Mutant(name="regression-misses-two", cell="regression",
           old="test_counts_starting_replicas,\n                    test_idle_fleet_holds_then_shrinks, test_does_not_mutate_state]",
           new="\n                    test_idle_fleet_holds_then_shrinks]",
           must_lose=("test_regression_most",)),
]
