"""Plausible wrong answers to Lab 0; each must lose the points of the tests named."""

from roundtrip import Mutant

# The round trip grades these five (one autograded notebook each): together they lose every test cell
# (must_lose lists each cell the mutant loses). The others are DEV_MUTANTS below.
MUTANTS = [
    Mutant(
        name="ttft-from-last-token",
        cell="metric_functions",
        old='return log["token_times_s"][0] - log["arrival_s"]',
        new='return log["token_times_s"][-1] - log["arrival_s"]',
        must_lose=("test_ttft", "test_tpot", "test_goodput", "test_goodput_at_slo"),
    ),
    Mutant(
        name="goodput-any-slo",
        cell="metric_functions",
        old="if ttft_s(log) <= slo_ttft_s and (",
        new="if ttft_s(log) <= slo_ttft_s or (",
        must_lose=("test_goodput", "test_goodput_at_slo"),
    ),
    # "meets the SLO" read as strictly under it: a request exactly at a target is not counted
    Mutant(
        name="goodput-strict-slo",
        cell="metric_functions",
        old="ttft_s(log) <= slo_ttft_s and (math.isnan(tpot) or tpot <= slo_tpot_s)",
        new="ttft_s(log) < slo_ttft_s and (math.isnan(tpot) or tpot < slo_tpot_s)",
        must_lose=("test_goodput_at_slo",),
    ),
    Mutant(
        name="roofline-forgets-kv-cache",
        cell="roofline",
        old=" + batch_size * context_tokens * kv_bytes_per_token",
        new="",
        must_lose=("test_roofline_memory",),
    ),
    Mutant(
        name="roofline-memory-only",
        cell="roofline",
        old="step_s = max(bytes_moved / mem_bw_bytes_s, flops / peak_flops)",
        new="step_s = bytes_moved / mem_bw_bytes_s",
        must_lose=("test_roofline_compute",),
    ),
]

# Checked by `python grading/mutcheck.py lab0_baseline` (in-process, no nbgrader), not by the round trip:
# each would cost one more autograded notebook in `make test` (see grading/requirements.md).
DEV_MUTANTS = [
    Mutant(
        name="tpot-divides-by-all-tokens",
        cell="metric_functions",
        old="/ (n - 1)",
        new="/ n",
        must_lose=("test_tpot",),
    ),
    # a single-token request has TPOT nan, and nan <= x is False: it is dropped instead of meeting the TPOT SLO
    Mutant(
        name="goodput-drops-single-token",
        cell="metric_functions",
        old="(math.isnan(tpot) or tpot <= slo_tpot_s)",
        new="tpot <= slo_tpot_s",
        must_lose=("test_goodput",),
    ),
    Mutant(name="goodput-strict-ttft", cell="metric_functions", old="ttft_s(log) <= slo_ttft_s",
           new="ttft_s(log) < slo_ttft_s", must_lose=("test_goodput_at_slo",)),
    Mutant(name="goodput-strict-tpot", cell="metric_functions", old="tpot <= slo_tpot_s", new="tpot < slo_tpot_s",
           must_lose=("test_goodput_at_slo",)),
    # divides by the span of the logs instead of the duration given
    Mutant(name="goodput-over-log-span", cell="metric_functions", old="return good / duration_s",
           new="return good / (max(x['token_times_s'][-1] for x in logs) - min(x['arrival_s'] for x in logs))",
           must_lose=("test_goodput",)),
    # forgets the single-token case: 0 / 0
    Mutant(name="tpot-no-nan-check", cell="metric_functions", old="    if n < 2:\n        return math.nan\n", new="",
           must_lose=("test_tpot",)),
    # returns the step rate, not tokens/s of the whole batch
    Mutant(name="roofline-per-sequence", cell="roofline", old="return batch_size / step_s", new="return 1.0 / step_s",
           must_lose=("test_roofline_memory", "test_roofline_compute")),
    # reads one sequence's KV cache per step, whatever the batch
    Mutant(name="roofline-kv-not-times-batch", cell="roofline",
           old="batch_size * context_tokens * kv_bytes_per_token", new="context_tokens * kv_bytes_per_token",
           must_lose=("test_roofline_memory",)),
]
