"""Two nodes as network namespaces: torchrun across them (2 x 2 ranks), TP and PP tokens equal to one device."""

import subprocess

import pytest

from inferlab.cluster import ClusterConfig, ClusterError, cluster_down, cluster_up, status
from inferlab.cluster.torchrun import run_across_nodes
from inferlab.model import ensure_checkpoint, generate_greedy, load_checkpoint

from .conftest import NEEDS_NAMESPACES

pytestmark = [pytest.mark.slow, NEEDS_NAMESPACES]


@pytest.fixture(scope="module")
def cluster():
    nodes = cluster_up(ClusterConfig(num_nodes=2, link_gbit=1.0))
    yield nodes
    cluster_down()


def test_nodes_reach_each_other_and_nothing_else(cluster):
    assert [n.address for n in cluster] == ["10.213.7.1", "10.213.7.2"]
    probe = "import socket,sys; s=socket.socket(); s.settimeout(2); sys.exit(0 if s.connect_ex((sys.argv[1], 9)) in (111, 0) else 1)"
    # a closed port on the other node answers "connection refused" (111): the link carries TCP
    assert subprocess.run(["ip", "netns", "exec", cluster[0].namespace, "python3", "-c", probe, cluster[1].address]).returncode == 0
    # no route off the private link
    routes = subprocess.run(["ip", "netns", "exec", cluster[0].namespace, "ip", "route"], capture_output=True, text=True).stdout
    assert "default" not in routes and "10.213.7.0/24" in routes
    tc = subprocess.run(["tc", "qdisc", "show", "dev", cluster[0].host_link], capture_output=True, text=True).stdout
    assert "tbf" in tc and "rate 1Gbit" in tc


def _one_device(prompt, max_new_tokens):
    return generate_greedy(load_checkpoint(ensure_checkpoint("tiny"), device="cpu"), prompt, max_new_tokens)


def test_tp_inside_pp_across_on_four_ranks_and_which_bytes_cross_the_link(cluster):
    """torchrun --nnodes 2 --nproc-per-node 2: TP inside a node and PP across, then the reverse.

    One launch covers what two 2-rank runs did before (TP=2 across the nodes, PP=2 across the
    nodes, each equal to one device), plus which bytes crossed the link.
    """
    prompts = [[256, 5, 6, 7], [256, 9, 10, 11]]
    results = run_across_nodes("inferlab.parallel.workers:hybrid_run", 2, prompts, 4, nproc_per_node=2)
    assert len(results) == 4
    expected = [_one_device(p, 4) for p in prompts]
    for r in results:
        inside, across = r["tp_inside"], r["tp_across"]
        assert inside["tokens"] == expected and across["tokens"] == expected
        # torchrun puts ranks 0,1 on node 0 and 2,3 on node 1
        assert [g // 2 for g in inside["tp_ranks"]] == [r["rank"] // 2] * 2
        crossing = {(kind, op) for kind, op, _, crossed in inside["records"] if crossed}
        staying = {(kind, op) for kind, op, _, crossed in inside["records"] if not crossed}
        assert crossing and all(kind == "pp" for kind, _ in crossing), crossing
        assert ("tp", "all_reduce") in staying and not any(kind == "pp" for kind, _ in staying)
        reduces = [crossed for kind, op, _, crossed in across["records"] if op == "all_reduce"]
        assert reduces and all(reduces), "TP across nodes: every all-reduce must cross the link"
        assert not any(crossed for kind, _, _, crossed in across["records"] if kind == "pp")


def test_status_and_down_are_idempotent():
    cluster_down()
    assert status()["nodes"] == []
    assert cluster_down() == []


def test_bad_config_is_refused_with_the_reason():
    with pytest.raises(ClusterError, match="netem"):
        ClusterConfig(num_nodes=2, link_latency_ms=5)
    with pytest.raises(ClusterError, match="num_nodes"):
        ClusterConfig(num_nodes=0)

