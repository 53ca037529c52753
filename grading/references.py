"""What each graded exercise must not delegate to: the package's reference of the same thing.

Read by the isolated autograder (grading/isolated.py, grading/integrity.py). For every lab and
answer cell (grade id): the dotted names of the package objects that already solve that exercise.
An answer that imports, subclasses, aliases or calls one of them (however it reaches it: a literal
import, `importlib`, `getattr`, `sys.modules`) scores zero on that exercise's tests, with a message
naming the reference. Everything else in the package is allowed: the labs say, next to each
exercise, what learners may import (e.g. lab 3's schedulers build on the allocator they are given,
lab 5's policies read `metric_values`).

Test cells belong to the answer cell before them (the last solution cell above them in the
notebook), unless `TESTS_OF` names them explicitly.
"""

from __future__ import annotations

# lab -> answer grade id -> dotted reference names (module path + attribute; classes guard every method)
REFERENCES: dict[str, dict[str, tuple[str, ...]]] = {
    "lab0_baseline": {
        "metric_functions": (
            "inferlab.metrics.ttft_s", "inferlab.metrics.tpot_s", "inferlab.metrics.e2e_s",
            "inferlab.metrics.itl_s", "inferlab.metrics.meets_slo", "inferlab.metrics.slo_attainment",
            "inferlab.metrics.goodput_rps", "inferlab.metrics.summarize",
        ),
        "roofline": ("inferlab.costmodel.roofline.decode_step_s", "inferlab.costmodel.roofline.estimate_latency"),
    },
    "lab1_parallelism": {
        "multinode_comm": ("inferlab.costmodel.roofline.tp_comm_s", "inferlab.costmodel.roofline.pp_comm_s",
                           "inferlab.costmodel.roofline.num_ib_hops", "inferlab.costmodel.roofline.decode_step_s",
                           "inferlab.costmodel.roofline.prefill_s", "inferlab.costmodel.roofline.estimate_latency"),
    },
    "lab2_frameworks": {
        "batcher": ("inferlab.policies.batching.TritonDynamicBatcher",),
        "max_rate": ("inferlab.metrics.max_rate_meeting_slo",),
        "knee": ("inferlab.metrics.knee_index",),
    },
    "lab3_batching": {
        "allocator": ("inferlab.engine.kv_cache.PagedBlockAllocator",),
        "scheduler": ("inferlab.engine.scheduler.ContinuousBatchingScheduler",),
    },
    "lab4_routing": {
        "power_of_two": ("inferlab.policies.route.power_of_two",),
        "prefix_aware": (
            "inferlab.policies.route.make_prefix_aware", "inferlab.policies.route.prefix_aware",
            "inferlab.policies.route.make_prefix_load", "inferlab.policies.route.prefix_load",
            "inferlab.policies.route.remember_blocks", "inferlab.policies.route.num_matched_blocks",
        ),
        "token_bucket": ("inferlab.policies.shape.take", "inferlab.policies.shape.refill",
                         "inferlab.policies.shape.admit"),
        "vtc": ("inferlab.policies.shape.make_vtc", "inferlab.policies.shape.vtc", "inferlab.policies.shape.vtc_cost"),
    },
    "lab5_autoscaling": {
        "erlang_c": (
            "inferlab.sim.queueing.erlang_c", "inferlab.sim.queueing.mmc_wait_s",
            "inferlab.sim.queueing.allen_cunneen_wait_s", "inferlab.sim.queueing.min_servers_for_wait",
        ),
        "kingman": ("inferlab.sim.queueing.kingman_wait_s",),
        "hpa": ("inferlab.policies.autoscale.hpa_desired", "inferlab.policies.autoscale.hpa_policy"),
        "autoscaler": (
            "inferlab.policies.autoscale.hpa_policy", "inferlab.policies.autoscale.kpa_policy",
            "inferlab.policies.autoscale.ray_default_policy", "inferlab.policies.autoscale.make_oracle_policy",
            "inferlab.policies.autoscale.static_max_policy",
        ),
        "spot": ("inferlab.policies.spot.notice_aware_spot_policy", "inferlab.policies.spot.make_fixed_spot_policy"),
    },
    "lab6_observability": {
        "sli": ("inferlab.observe.slo.error_ratio_expr", "inferlab.observe.slo.recording_rules",
                "inferlab.observe.slo.rule_groups", "inferlab.observe.slo.rules_yaml"),
        "quantile": ("inferlab.observe.slo.recording_rules", "inferlab.observe.slo.rule_groups",
                     "inferlab.observe.slo.rules_yaml"),
        "alerts": ("inferlab.observe.slo.burn_rate_expr", "inferlab.observe.slo.alert_rules",
                   "inferlab.observe.slo.rule_groups", "inferlab.observe.slo.rules_yaml"),
        "diagnose": ("inferlab.observe.snapshots.reference_diagnose",),
    },
    "capstone": {
        "layout": ("inferlab.costmodel.budget.cheapest_layout", "inferlab.costmodel.plan.choose_layout"),
        "review_records": ("inferlab.observe.review.records_review", "inferlab.metrics.summarize"),
        "review_prometheus": ("inferlab.observe.review.prometheus_review", "inferlab.observe.review.bucket_quantile"),
        "agree": ("inferlab.observe.review.review_disagreements",),
        "fleet": ("inferlab.observe.review.fleet_review",),
        "autoscaler": (
            "inferlab.policies.autoscale.hpa_policy", "inferlab.policies.autoscale.kpa_policy",
            "inferlab.policies.autoscale.ray_default_policy", "inferlab.policies.autoscale.make_oracle_policy",
            "inferlab.policies.autoscale.static_max_policy", "inferlab.policies.slo_aware.slo_aware_policy",
        ),
        "tabletop": ("inferlab.observe.snapshots.reference_diagnose", "inferlab.observe.tabletop.page_time_s",
                     "inferlab.observe.tabletop.check_log"),
    },
}

# lab -> test grade id -> answer grade id, where "the last answer cell above" is not the right owner
TESTS_OF: dict[str, dict[str, str]] = {
    # the throughput test runs MyScheduler: it stays the scheduler's, below the regression-test exercise
    "lab3_batching": {"test_throughput": "scheduler"},
}

# Names no answer cell needs, which reach around the checks: code generation, frames, the import
# system, the interpreter's internals, IPython's machinery.
ESCAPE_HATCHES: frozenset[str] = frozenset({
    "exec", "eval", "compile", "__import__", "importlib", "ctypes", "gc", "inspect", "builtins",
    "__builtins__", "_getframe", "settrace", "setprofile", "f_back", "f_globals", "f_locals",
    "__globals__", "__code__", "__closure__", "get_ipython", "input_transformers_post",
    "input_transformers_cleanup", "ast_transformers", "displayhook", "excepthook", "__subclasses__",
})


def references_of(lab: str) -> dict[str, tuple[str, ...]]:
    """The reference names per answer grade id of `lab` (empty for a lab without any)."""
    return dict(REFERENCES.get(lab, {}))
