"""`inferlab bench multinode [--quick]`: TP and PP across two namespace nodes, against the cost model.

Builds a 2-node cluster (`inferlab cluster`), and for each link setting (unshaped, and `--link-gbit`
values shaped with tc tbf) runs the tiny model's decode with TP=2 across the nodes and PP=2 across
the nodes (one rank per node, gloo over the bridge), alternating TP and PP over `--rounds` and
reporting medians. The alpha-beta prediction uses the measured per-message latency (a 4-byte
all-reduce) and the link rate: TP pays 2 all-reduces per layer per step, PP one activation send per
stage boundary plus the token sent back; each prediction adds the compute: one device's step time
/ 2 for TP (the work is split), the whole step for PP (one micro-batch: the stages take turns).
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
from inferlab.costmodel.roofline import ring_allreduce_s, send_s


def _predict(row: dict, one_ms: float, link_gbit: float | None, batch_size: int) -> float:
    bw = (link_gbit or 10.0) * 1e9 / 8  # unshaped veth: ~10 Gbit/s taken as the rate
    alpha_s = row["alpha_ms"] / 1e3 / 2  # a 2-rank ring all-reduce is 2 messages
    act_bytes = batch_size * row["hidden_size"] * 4
    if row["mode"] == "tp":
        comm = 2 * row["num_layers"] * ring_allreduce_s(act_bytes, 2, bw, alpha_s)
        return (one_ms / 2 + comm * 1e3)
    comm = send_s(act_bytes, bw, alpha_s) + send_s(batch_size * 8, bw, alpha_s)
    return one_ms + comm * 1e3


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
    one_ms = statistics.median(one_device_step_ms(args.batch_size) for _ in range(3))
    out = {"one_device_ms": round(one_ms, 3), "batch_size": args.batch_size, "links": {},
           "link_latency": "not shaped: this kernel has no netem",
           "node_loss_requests_lost": None}
    try:
        for link in [None, *links]:
            cluster_up(ClusterConfig(num_nodes=2, link_gbit=link))
            rows = {"tp": [], "pp": []}
            for _ in range(rounds):
                for mode in ("tp", "pp"):
                    rows[mode].append(run_across_nodes("inferlab.cluster.workers:decode_step_ms", mode, args.batch_size)[0])
            entry = {}
            for mode, results in rows.items():
                med = statistics.median(r["step_ms"] for r in results)
                mid = sorted(results, key=lambda r: r["step_ms"])[len(results) // 2]
                entry[f"{mode}_across_nodes_ms"] = round(med, 3)
                entry[f"predicted_{mode}_across_nodes_ms"] = round(_predict(mid, one_ms, link, args.batch_size), 3)
                entry[f"{mode}_bytes_per_step"] = round(mid["bytes_per_step"])
                entry[f"{mode}_messages_per_step"] = mid["num_messages_per_step"]
                entry["alpha_ms"] = round(mid["alpha_ms"], 4)
            name = "unshaped" if link is None else f"{link:g}gbit"
            out["links"][name] = entry
            print(f"{name:>9}: TP {entry['tp_across_nodes_ms']:.2f} ms/step (predicted {entry['predicted_tp_across_nodes_ms']:.2f}), "
                  f"PP {entry['pp_across_nodes_ms']:.2f} ms/step (predicted {entry['predicted_pp_across_nodes_ms']:.2f}), "
                  f"alpha {entry['alpha_ms']:.3f} ms; one device {one_ms:.2f} ms", flush=True)
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
                                     "predicted_pp_across_nodes_ms")})
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
