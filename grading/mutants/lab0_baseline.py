"""Plausible wrong answers to Lab 0; each must lose the points of the tests named."""

from roundtrip import Mutant

MUTANTS = [
    Mutant(
        name="tpot-divides-by-all-tokens",
        cell="metric_functions",
        old="/ (n - 1)",
        new="/ n",
        must_lose=("test_tpot",),
    ),
    Mutant(
        name="ttft-from-last-token",
        cell="metric_functions",
        old='return log["token_times_s"][0] - log["arrival_s"]',
        new='return log["token_times_s"][-1] - log["arrival_s"]',
        must_lose=("test_ttft",),
    ),
    Mutant(
        name="goodput-any-slo",
        cell="metric_functions",
        old="if ttft_s(log) <= slo_ttft_s and (",
        new="if ttft_s(log) <= slo_ttft_s or (",
        must_lose=("test_goodput",),
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
