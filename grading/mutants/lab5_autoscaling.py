"""Plausible wrong answers to Lab 5; each must lose the points of the tests named."""

from roundtrip import Mutant

MUTANTS = [
    Mutant(name="erlang-b-not-c", cell="erlang_c", old="return b / (1 - rho * (1 - b))", new="return b",
           must_lose=("test_erlang_c",)),
    Mutant(name="hpa-no-tolerance", cell="hpa", old="if abs(ratio - 1.0) <= tolerance:", new="if False:",
           must_lose=("test_hpa",)),
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
           must_lose=("test_autoscaler_behaviour", "test_autoscaler_gpu_hours")),
    # replicas still in their cold start do not count: the queue keeps doubling the fleet while they start
    Mutant(name="ignores-cold-start", cell="autoscaler",
           old="num_starting = max(0, ctx.target_num_replicas - ctx.current_num_replicas)", new="num_starting = 0",
           must_lose=("test_autoscaler_behaviour", "test_autoscaler_gpu_hours")),
    # keeps asking for spot replacements right after preemption notices
    Mutant(name="ignores-spot-preemption", cell="spot", old="if recent:", new="if False:",
           must_lose=("test_spot_policy",)),
]
