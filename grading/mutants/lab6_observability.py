"""Plausible wrong answers to Lab 6; each must lose the points of the tests named."""

from roundtrip import Mutant

MUTANTS = [
    # pages on the short window alone: a 4-minute spike pages someone at night
    Mutant(name="alert-on-a-single-window", cell="alerts",
           old='parts.append(f"({record_name(sli, long)} > {threshold} and {record_name(sli, short)} > {threshold})")',
           new='parts.append(f"({record_name(sli, short)} > {threshold})")',
           must_lose=("test_page_alert",)),
    # burn rate measured against the objective (0.99) instead of the budget (0.01): never fires
    Mutant(name="burn-rate-wrong-budget", cell="alerts", old="threshold = factor * budget",
           new="threshold = factor * (1 - budget)", must_lose=("test_page_alert", "test_ticket_alert")),
    # histogram_quantile of each replica's buckets: one p99 per replica, not the fleet's
    Mutant(name="quantile-over-unsummed-buckets", cell="quantile",
           old="sum by (model_name, le) (rate(vllm:time_to_first_token_seconds_bucket[{window}]))",
           new="rate(vllm:time_to_first_token_seconds_bucket[{window}])", must_lose=("test_quantile",)),
    # argmax over the wrong axis: a time index is reported as the replica
    Mutant(name="blames-the-wrong-replica", cell="diagnose", old="r = int(np.argmax(np.nanmean(errors, axis=1)))",
           new="r = int(np.argmax(np.nanmean(errors, axis=0)))", must_lose=("test_diagnose_replica",)),
    # a mean of per-replica ratios: an idle replica weighs like a busy one
    Mutant(name="sli-mean-of-ratios", cell="sli",
           old='return f"1 - ({good} / {total})"',
           new='return (f\'avg by (model_name) (1 - (rate(vllm:time_to_first_token_seconds_bucket{{le="1.0"}}[{window}])\'\n'
               '            f" / ignoring(le) rate(vllm:time_to_first_token_seconds_count[{window}])))")',
           must_lose=("test_sli",)),
]

# Checked by `python grading/mutcheck.py lab6_observability` (in-process, no nbgrader), not by the round trip.
DEV_MUTANTS = [
    Mutant(name="sli-good-ratio", cell="sli", old='return f"1 - ({good} / {total})"', new='return f"{good} / {total}"',
           must_lose=("test_sli",)),
    Mutant(name="sli-ignores-window", cell="sli", old="[{window}]))'\n", new="[5m]))'\n", must_lose=("test_sli",)),
    Mutant(name="page-only-fast-pair", cell="alerts", old='"page": [("1h", "5m", 14.4), ("6h", "30m", 6.0)]',
           new='"page": [("1h", "5m", 14.4)]', must_lose=("test_page_alert",)),
    Mutant(name="ticket-at-page-rate", cell="alerts", old='"ticket": [("3d", "6h", 1.0)]',
           new='"ticket": [("3d", "6h", 6.0)]', must_lose=("test_ticket_alert",)),
    Mutant(name="quantile-sums-away-le", cell="quantile", old="sum by (model_name, le)", new="sum by (model_name)",
           must_lose=("test_quantile",)),
    # a paused replica taken for a killed one: both are down, only the clients tell them apart
    Mutant(name="down-is-always-killed", cell="diagnose",
           old='return Diagnosis("replica_down" if refused else "paused", r, float(t[np.argmax(down[r])]))',
           new='return Diagnosis("replica_down", r, float(t[np.argmax(down[r])]))', must_lose=("test_diagnose_fault",)),
    Mutant(name="latency-blamed-on-server", cell="diagnose", old='gap = s["client_ttft_p99_s"] - s["ttft_p99_s"]',
           new='gap = s["ttft_p99_s"]', must_lose=("test_diagnose_replica",)),
    # one observation per token instead of per request
    Mutant(name="prompt-tokens-per-token", cell="instrument", old="        if out.is_finished:\n            self.histogram.observe",
           new="        if True:\n            self.histogram.observe", must_lose=("test_instrument",)),
    # Prometheus's default buckets (0.005 .. 10 s): no use for token counts, and not vLLM's
    Mutant(name="prompt-tokens-default-buckets", cell="instrument", old="buckets=buckets, registry=registry",
           new="registry=registry", must_lose=("test_instrument",)),
    Mutant(name="start-at-the-end", cell="diagnose", old="float(t[np.argmax(down[r])])",
           new="float(t[len(t) - 1 - np.argmax(down[r][::-1])])", must_lose=("test_diagnose_start",)),
]
