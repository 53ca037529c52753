"""Plausible wrong answers to the capstone; each must lose the points of the tests named."""

from roundtrip import Mutant

MUTANTS = [
    # the review from each replica's buckets, not summed over replicas: the last replica's histogram wins
    Mutant(name="review-from-unsummed-buckets", cell="review_prometheus",
           old="out[le] = out.get(le, 0.0) + s.value", new="out[le] = s.value",
           must_lose=("test_review_prometheus",)),
    # GPU-hours of running replicas only: the 90 s cold start of every scale-up is not billed
    Mutant(name="gpu-hours-ignore-cold-start", cell="fleet",
           old='startswith(("num_starting", "num_running", "num_draining"))',
           new='startswith(("num_running", "num_draining"))', must_lose=("test_fleet",)),
    # the replica with the fewest failed scrapes: blames a healthy replica for a killed or paused one
    Mutant(name="blames-the-wrong-replica", cell="tabletop",
           old="r = int(np.argmax(down.sum(axis=1)))", new="r = int(np.argmin(down.sum(axis=1)))",
           must_lose=("test_tabletop_replica",)),
    # items without an owner: nobody does them
    Mutant(name="backlog-without-owner", cell="backlog",
           old='{"item": item, "owner_role": owner, ', new='{"item": item, ',
           must_lose=("test_backlog",)),
]

# Checked by `python grading/mutcheck.py capstone` (in-process, no nbgrader), not by the round trip.
DEV_MUTANTS = [
    # the fastest layout (lab 1's choice), not the cheapest meeting the target
    Mutant(name="fastest-not-cheapest", cell="layout",
           old="key = (round(layout.num_gpus * latency / workload.batch_size, 12), round(latency, 12), layout.num_gpus, layout.tp)",
           new="key = (round(latency, 12), layout.num_gpus, layout.tp)", must_lose=("test_layout",)),
    # TPOT over every request: one-token requests count as meeting it, and NaN breaks the percentiles
    Mutant(name="tpot-over-all-requests", cell="review_records",
           old="tpot = np.array([tpot_s(r) for r in records if r.num_output_tokens > 1])",
           new="tpot = np.nan_to_num(np.array([tpot_s(r) for r in records]))", must_lose=("test_review_records",)),
    # histogram_quantile that ignores the +Inf rule: returns +Inf
    Mutant(name="quantile-returns-inf", cell="review_prometheus", old="            if math.isinf(bound):\n                return lower\n",
           new="", must_lose=("test_review_prometheus",)),
    # the joint SLO's upper bound reported as its attainment
    Mutant(name="joint-slo-upper-bound", cell="review_prometheus", old="lower, upper = max(0.0, a + b_all - 1), min(a, b_all)",
           new="lower, upper = min(a, b_all), min(a, b_all)", must_lose=("test_review_prometheus",)),
    # quantiles compared to equality: the bucket's interpolation error reads as a disagreement
    Mutant(name="quantiles-must-be-equal", cell="agree",
           old="if not lower - 1e-9 <= from_prometheus[k] <= upper + 1e-9:",
           new="if not math.isclose(from_prometheus[k], from_records[k], rel_tol=1e-6):", must_lose=("test_agree",)),
    # scale actions counted per timeline row with more than zero starting replicas
    Mutant(name="actions-from-starting-rows", cell="fleet",
           old='actions = sum(a["target"] != b["target"] for a, b in zip(timeline, timeline[1:]))',
           new='actions = sum(row.get("num_starting_on_demand", 0) > 0 for row in timeline)', must_lose=("test_fleet",)),
    # detection at the inject's time, not at the time the condition held: up to 10 s late, sometimes more
    Mutant(name="detect-at-the-inject", cell="tabletop",
           old='log.append({"phase": phase, "t_s": detected, "action": "detect"',
           new='log.append({"phase": phase, "t_s": inject.at_s + 5, "action": "detect"', must_lose=("test_tabletop_detect",)),
    # lab 5's reactive autoscaler: no forecast one cold start ahead (the capstone's exercise is the pre-warm)
    Mutant(name="no-prewarm", cell="autoscaler",
           old='forecast = min(need + max(0.0, slope) * getattr(ctx, "cold_start_s", 0.0), 1.25 * need)',
           new="forecast = need", must_lose=("test_autoscaler",)),
    # the forecast without its cap: one noisy slope buys a fleet (too many GPU-hours on an unseen trace)
    Mutant(name="uncapped-forecast", cell="autoscaler",
           old='forecast = min(need + max(0.0, slope) * getattr(ctx, "cold_start_s", 0.0), 1.25 * need)',
           new='forecast = need + max(0.0, slope) * getattr(ctx, "cold_start_s", 0.0)', must_lose=("test_autoscaler",)),
    # a paused replica taken for a killed one
    Mutant(name="down-is-always-killed", cell="tabletop",
           old='return ("replica_down" if np.nanmean(s["client_error_ratio"][r, down[r]]) > 0.95 else "paused"), r',
           new='return "replica_down", r', must_lose=("test_tabletop_fault",)),
]
