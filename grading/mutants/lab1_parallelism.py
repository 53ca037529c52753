"""Plausible wrong answers to Lab 1; each must lose the points of the tests named."""

from roundtrip import Mutant

MUTANTS = [
    Mutant(
        name="row-parallel-without-all-reduce",
        cell="tp_layers",
        old="for r in range(world_size)]\n    return sum(partials)",
        new="for r in range(world_size)]\n    return partials[0]",
        must_lose=("test_row_parallel",),
    ),
    Mutant(
        name="gpipe-ignores-busy-stage",
        cell="gpipe",
        old="start = max(ready, free)",
        new="start = ready",
        must_lose=("test_gpipe_schedule",),
    ),
    Mutant(
        name="all-to-all-wrong-head-group",
        cell="ulysses",
        old="s.chunk(p, dim=2)[g] for s in shards",
        new="s.chunk(p, dim=2)[p - 1 - g] for s in shards",
        must_lose=("test_seq_to_heads",),
    ),
    Mutant(
        name="moe-ignores-capacity",
        cell="moe_capacity",
        old="            if taken[e] < capacity:",
        new="            if True:",
        must_lose=("test_capacity_mask", "test_dropped"),
    ),
    Mutant(
        name="cost-model-forgets-kv-cache",
        cell="cost_memory",
        old="""            + kv_cache_bytes_per_gpu(model_spec, layout, workload)
""",
        new="",
        must_lose=("test_memory_per_gpu", "test_choose_layout"),
    ),
]

# Checked by `python grading/mutcheck.py lab1_parallelism`: each would cost a full notebook run in the round trip
# (lab 1 had 14 there, ~7 s each; the round trip keeps one per section).
DEV_MUTANTS = [
    Mutant(
        name="mlp-down-projection-not-reduced",
        cell="tp_layers",
        old="        partials.append((F.silu(gate) * up) @ shard_cols(mlp.down_proj.weight, r, world_size).T)\n    return sum(partials)",
        new="        partials.append((F.silu(gate) * up) @ shard_cols(mlp.down_proj.weight, r, world_size).T)\n    return partials[-1]",
        must_lose=("test_tp_mlp",),
    ),
    Mutant(
        name="one-all-reduce-per-layer",
        cell="tp_traffic",
        old="return 2 * num_layers * batch_size * hidden_size * dtype_bytes",
        new="return num_layers * batch_size * hidden_size * dtype_bytes",
        must_lose=("test_tp_traffic",),
    ),
    Mutant(
        name="comm-time-without-ring-factor",
        cell="tp_traffic",
        old="""    one = costmodel.ring_allreduce_s(batch_size * hidden_size * dtype_bytes, tp_size,
                                     gpu.nvlink_bandwidth_bytes_per_s, gpu.nvlink_alpha_s)""",
        new="""    one = 0.0 if tp_size == 1 else (batch_size * hidden_size * dtype_bytes / gpu.nvlink_bandwidth_bytes_per_s
                                     + gpu.nvlink_alpha_s)""",
        must_lose=("test_tp_cost",),
    ),
    Mutant(
        name="bubble-relative-to-ideal",
        cell="gpipe",
        old="return 1.0 - busy / (num_stages * makespan)",
        new="return (num_stages * makespan - busy) / busy",
        must_lose=("test_bubble",),
    ),
    Mutant(
        name="ulysses-bytes-without-gqa",
        cell="ulysses",
        old="(2 * num_heads + 2 * num_kv_heads)",
        new="4 * num_heads",
        must_lose=("test_ulysses_bytes",),
    ),
    Mutant(
        name="capacity-token-major-priority",
        cell="moe_capacity",
        old="""    for k in range(expert_ids.shape[1]):
        for t in range(expert_ids.shape[0]):""",
        new="""    for t in range(expert_ids.shape[0]):
        for k in range(expert_ids.shape[1]):""",
        must_lose=("test_capacity_mask",),
    ),
    Mutant(
        name="pipeline-drops-last-microbatch",
        cell="gpipe",
        old="for mb in range(num_microbatches):",
        new="for mb in range(num_microbatches - 1):",
        must_lose=("test_microbatches",),
    ),
    Mutant(
        name="autotp-forgets-row-parallel-lm-head",
        cell="autotp_traffic",
        old="return [layer_bytes] * (2 * num_layers) + [batch_size * num_tokens * vocab_size * dtype_bytes]",
        new="return [layer_bytes] * (2 * num_layers)",
        must_lose=("test_autotp_traffic",),
    ),
    Mutant(
        name="kv-cache-without-gqa-replication",
        cell="cost_memory",
        old="max(1, model_spec.num_kv_heads // layout.tp)",
        new="model_spec.num_kv_heads / layout.tp",
        must_lose=("test_kv_cache",),
    ),
    Mutant(
        name="tp-across-nodes-on-nvlink",
        cell="multinode_comm",
        old="ring_link = slow if layout.tp > per_node else fast",
        new="ring_link = fast",
        must_lose=("test_multinode_comm",),
    ),
    Mutant(
        name="every-stage-boundary-crosses-nodes",
        cell="multinode_comm",
        old="total_s += roofline.send_s(num_bytes, *(slow if crosses else fast))",
        new="total_s += roofline.send_s(num_bytes, *slow)",
        must_lose=("test_multinode_comm",),
    ),
    Mutant(
        name="boundary-crossing-by-stage-index",
        cell="multinode_comm",
        old="crosses = (stage * layout.tp - 1) // per_node != (stage * layout.tp) // per_node",
        new="crosses = (stage - 1) // per_node != stage // per_node",
        must_lose=("test_multinode_comm",),
    ),
]
