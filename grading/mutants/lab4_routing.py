"""Plausible wrong answers to Lab 4; each must lose the points of the tests named."""

from roundtrip import Mutant

MUTANTS = [
    # one random replica: the supermarket model's d = 1 (10 s instead of 2.61 s at load 0.9)
    Mutant(name="random-instead-of-two-choices", cell="power_of_two",
           old="return (a if ctx.num_outstanding[a] <= ctx.num_outstanding[b] else b), ctx.policy_state",
           new="return a, ctx.policy_state", must_lose=("test_power_of_two",)),
    # the index grows forever: it keeps sending requests to replicas that evicted their prefix long ago
    Mutant(name="prefix-index-never-evicts", cell="prefix_aware",
           old="    while len(index) > MAX_BLOCKS_PER_REPLICA:\n        index.popitem(last=False)\n", new="",
           must_lose=("test_prefix_index",)),
    # no prefix matching at all: the least-outstanding replica every time
    Mutant(name="prefix-ignores-index", cell="prefix_aware", old="if best_key[0] == 0:", new="if True:",
           must_lose=("test_prefix_index", "test_prefix_sim")),
    # the level is never topped up with the time that passed
    Mutant(name="bucket-never-refills", cell="token_bucket",
           old="current = refill(bucket, now_s, rate_per_s, capacity)",
           new="current = bucket if bucket is not None else Bucket(capacity, now_s)",
           must_lose=("test_token_bucket",)),
    # every request costs 1: a tenant of few long requests gets ahead of one of many short ones
    Mutant(name="vtc-counts-requests", cell="vtc",
           old="counters[tenant] += INPUT_WEIGHT * chosen.num_prompt_tokens + OUTPUT_WEIGHT * chosen.num_output_tokens",
           new="counters[tenant] += 1", must_lose=("test_vtc",)),
]

# Checked by `python grading/mutcheck.py lab4_routing` (in-process, no nbgrader), not by the round trip.
DEV_MUTANTS = [
    # the most loaded of the two
    Mutant(name="two-choices-picks-busier", cell="power_of_two",
           old="ctx.num_outstanding[a] <= ctx.num_outstanding[b]", new="ctx.num_outstanding[a] >= ctx.num_outstanding[b]",
           must_lose=("test_power_of_two",)),
    # a refused request still takes its tokens
    Mutant(name="bucket-takes-on-refusal", cell="token_bucket",
           old="return False, (cost - current.level) / rate_per_s, current",
           new="return False, (cost - current.level) / rate_per_s, Bucket(0.0, now_s)",
           must_lose=("test_token_bucket",)),
    # input and output tokens weigh the same
    Mutant(name="vtc-unweighted-output", cell="vtc", old="INPUT_WEIGHT, OUTPUT_WEIGHT = 1.0, 2.0",
           new="INPUT_WEIGHT, OUTPUT_WEIGHT = 1.0, 1.0", must_lose=("test_vtc",)),
    # FCFS: the oldest request whoever sent it
    Mutant(name="vtc-is-fcfs", cell="vtc", old="tenant = min(first, key=lambda t: (counters[t], first[t]))",
           new="tenant = ctx.queue[0].tenant", must_lose=("test_vtc",)),
]
