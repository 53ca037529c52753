"""`inferlab bench multinode [--quick]`: TP and PP across two namespace nodes, against the cost model.

Builds a 2-node cluster (`inferlab cluster`), and for each link setting (unshaped, and `--link-gbit`
values shaped with tc tbf) times the tiny model's greedy decode step (batch 8) in three layouts,
alternated over `--rounds`, medians reported:
- TP=2 across the nodes (one rank per node: every all-reduce crosses the link),
- PP=2 across the nodes (one rank per node: one activation send per step crosses it),
- TP=2 inside each node x PP=2 across (`torchrun --nnodes 2 --nproc-per-node 2`, 4 ranks).
`predicted_*` come from `inferlab.costmodel.decode_step_s`, the function `inferlab plan` uses, on a
`GpuSpec` of the namespace node through `with_interconnect` (the same link inputs as `inferlab plan
--link-gbit --link-alpha-us --gpus-per-node`): link rate = the shaped rate (unshaped: 10 Gbit/s
assumed), link alpha = half a measured 4-byte all-reduce across the nodes (a 2-rank ring is two
messages), intra-node alpha the same inside a node; the compute term's efficiency is calibrated so
that the cost model gives the measured one-device step (one thread, as each rank has; re-measured in
every round, between the layouts, so that a machine's changing load reaches both sides).
Then a node lost under load (`inferlab.cluster.node_loss`): `inferlab route` on node 0, replicas on
nodes 1 and 2, node 2 killed mid-stream; `node_loss_requests_lost` counts requests that ended with
neither an answer nor an error (target 0).
Last line JSON. Link latency cannot be shaped here (no netem): said in the output.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from inferlab.cluster import ClusterConfig, ClusterError, cluster_down, cluster_up
from inferlab.cluster.torchrun import run_across_nodes
from inferlab.cluster.workers import one_device_step_ms
from inferlab.costmodel import GpuSpec, Layout, ModelSpec, decode_step_s, with_interconnect

UNSHAPED_GBIT = 10.0  # assumed rate of an unshaped veth link (not measured)
PROMPT_LEN, NUM_STEPS = 16, 16
MODES = {"tp": (Layout(2, 1), 1), "pp": (Layout(1, 2), 1), "tp_pp": (Layout(2, 2), 2)}  # layout, ranks per node
NAMES = {"tp": "tp_across_nodes", "pp": "pp_across_nodes", "tp_pp": "tp_inside_pp_across"}


def tiny_model_spec() -> ModelSpec:
    """The kit's tiny checkpoint as a cost-model `ModelSpec`."""
    from inferlab.model import ensure_checkpoint, load_checkpoint

    model = load_checkpoint(ensure_checkpoint("tiny"), device="cpu")
    c = model.config
    return ModelSpec(name="inferlab-tiny", num_layers=c.num_hidden_layers, hidden_size=c.hidden_size,
                     num_heads=c.num_attention_heads, num_kv_heads=c.num_key_value_heads, head_dim=c.head_dim,
                     intermediate_size=c.intermediate_size, vocab_size=c.vocab_size,
                     max_context_tokens=c.max_position_embeddings,
                     num_params=sum(p.numel() for p in model.parameters()))


# Nominal figures of one CPU thread of this VM: only their ratio matters (the efficiency is calibrated).
NAMESPACE_NODE = GpuSpec(name="namespace node (1 CPU thread per rank)", memory_bytes=8e9,
                         hbm_bandwidth_bytes_per_s=10e9, bf16_dense_flops=50e9, fp16_dense_flops=50e9,
                         fp8_dense_flops=None, fp32_dense_flops=50e9,
                         nvlink_bandwidth_bytes_per_s=UNSHAPED_GBIT * 1e9 / 8, num_gpus_per_node=1,
                         ib_bandwidth_bytes_per_s=UNSHAPED_GBIT * 1e9 / 8, nvlink_alpha_s=1e-4, ib_alpha_s=1e-4,
                         usd_per_gpu_hour=0.01)


def predict_ms(spec: ModelSpec, mode: str, one_ms: float, link_gbit: float | None, alpha_ms: float,
               alpha_intra_ms: float | None, batch_size: int) -> float:
    """`decode_step_s` of the layout on the namespace node with these link figures, in ms."""
    layout, per_node = MODES[mode]
    ctx = PROMPT_LEN + NUM_STEPS / 2
    common = dict(batch_size=batch_size, num_context_tokens=ctx, dtype="fp32")
    efficiency = decode_step_s(spec, NAMESPACE_NODE, Layout(1, 1), efficiency=1.0, **common) / (one_ms / 1e3)
    if not 0 < efficiency <= 1:
        raise ValueError(f"calibrated efficiency {efficiency} outside (0, 1]: raise NAMESPACE_NODE's figures")
    node = with_interconnect(NAMESPACE_NODE, link_gbit=link_gbit or UNSHAPED_GBIT, link_alpha_s=alpha_ms / 2e3,
                             num_gpus_per_node=per_node,
                             intra_alpha_s=None if alpha_intra_ms is None else alpha_intra_ms / 2e3)
    return decode_step_s(spec, node, layout, efficiency=efficiency, **common) * 1e3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="inferlab bench multinode", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one shaped link, 2 rounds")
    p.add_argument("--link-gbit", type=float, nargs="*", default=None, help="shaped link rates (default 1 0.1)")
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--no-node-loss", action="store_true", help="skip the node-loss experiment (3 nodes, router)")
    args = p.parse_args(argv)
    links = args.link_gbit if args.link_gbit is not None else ([0.1] if args.quick else [1.0, 0.1])
    rounds = args.rounds or (2 if args.quick else 3)
    one_ms = one_device_step_ms(args.batch_size, PROMPT_LEN, NUM_STEPS)  # warm-up; re-measured in every round
    spec = tiny_model_spec()
    out = {"batch_size": args.batch_size, "links": {},
           "link_latency": "not shaped: this kernel has no netem",
           "node_loss_requests_lost": None}
    try:
        for link in [None, *links]:
            cluster_up(ClusterConfig(num_nodes=2, link_gbit=link))
            rows: dict[str, list[dict]] = {mode: [] for mode in MODES}
            ones = []
            for _ in range(rounds):
                ones.append(one_device_step_ms(args.batch_size, PROMPT_LEN, NUM_STEPS))
                for mode, (_, per_node) in MODES.items():
                    rows[mode].append(run_across_nodes("inferlab.cluster.workers:decode_step_ms", mode, args.batch_size,
                                                       PROMPT_LEN, NUM_STEPS, nproc_per_node=per_node)[0])
            one_ms = statistics.median(ones)
            entry = {"one_device_ms": round(one_ms, 3)}
            for mode, results in rows.items():
                name = NAMES[mode]
                mid = sorted(results, key=lambda r: r["step_ms"])[len(results) // 2]
                alpha = statistics.median(r["alpha_ms"] for r in results)
                intra = statistics.median(r["alpha_intra_ms"] for r in results) if mode == "tp_pp" else None
                entry[f"{name}_ms"] = round(statistics.median(r["step_ms"] for r in results), 3)
                entry[f"predicted_{name}_ms"] = round(predict_ms(spec, mode, one_ms, link, alpha, intra,
                                                                 args.batch_size), 3)
                entry[f"{name}_inter_node_bytes_per_step"] = round(mid["inter_node_bytes_per_step"])
                entry[f"{name}_bytes_per_step"] = round(mid["bytes_per_step"])
                entry[f"{name}_messages_per_step"] = mid["num_messages_per_step"]
                entry[f"{name}_alpha_ms"] = round(alpha, 4)
            label = "unshaped" if link is None else f"{link:g}gbit"
            out["links"][label] = entry
            print(f"{label:>9}: " + ", ".join(
                f"{NAMES[m]} {entry[NAMES[m] + '_ms']:.2f} ms/step (predicted {entry['predicted_' + NAMES[m] + '_ms']:.2f}, "
                f"{entry[NAMES[m] + '_inter_node_bytes_per_step']} B/step over the link)" for m in MODES)
                + f"; one device {one_ms:.2f} ms", flush=True)
        if not args.no_node_loss:
            from inferlab.cluster.node_loss import run_node_loss

            loss = run_node_loss(num_requests=60 if args.quick else 150, rate_rps=6.0, kill_after_s=4.0)
            out["node_loss"] = loss
            out["node_loss_requests_lost"] = loss["num_lost_silently"]
            print(f"node lost under load: {loss['num_ok']} answered, {loss['num_errors']} failed with an error the "
                  f"client saw (in flight on the dead node), {loss['num_lost_silently']} lost silently; ejected "
                  f"{loss['ejected_after_s']} s after the kill", flush=True)
    except ClusterError as err:
        print(f"inferlab bench multinode: skipped: {err}", file=sys.stderr)
        print(json.dumps({"skipped": str(err)}))
        return 0
    finally:
        cluster_down()
    last = out["links"][f"{links[-1]:g}gbit"] if links else out["links"]["unshaped"]
    out.update({k: last[k] for k in ("tp_across_nodes_ms", "pp_across_nodes_ms", "predicted_tp_across_nodes_ms",
                                     "predicted_pp_across_nodes_ms", "tp_inside_pp_across_ms",
                                     "predicted_tp_inside_pp_across_ms", "one_device_ms")})
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
