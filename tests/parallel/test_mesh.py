"""2-D (TP x PP) rank layouts: which ranks form each group, TP inside a node or across nodes."""

import pytest

from inferlab.parallel.launch import mesh_ranks


def test_tp_inner_keeps_tp_on_consecutive_ranks():
    tp, pp = mesh_ranks(2, 2, is_tp_inner=True)
    assert tp == [[0, 1], [2, 3]] and pp == [[0, 2], [1, 3]]


def test_tp_outer_puts_tp_across_nodes():
    tp, pp = mesh_ranks(2, 2, is_tp_inner=False)
    assert tp == [[0, 2], [1, 3]] and pp == [[0, 1], [2, 3]]


def test_every_rank_in_exactly_one_group_of_each_kind():
    for inner in (True, False):
        tp, pp = mesh_ranks(4, 3, inner)
        assert sorted(r for g in tp for r in g) == list(range(12)) == sorted(r for g in pp for r in g)
        assert all(len(g) == 4 for g in tp) and all(len(g) == 3 for g in pp)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="tp_size"):
        mesh_ranks(0, 2)


def test_groups_on_four_ranks_and_what_crosses_nodes():
    """4 ranks, 2 per (pretend) node: TP inside keeps the all-reduce on the node, PP sends cross it."""
    from inferlab.parallel import launch
    from inferlab.parallel.workers import mesh_probe

    results = launch(mesh_probe, 4, 2, 2, timeout_s=120)
    for r, res in enumerate(results):
        inside, across = res["tp_inside"], res["tp_across"]
        assert inside["tp_ranks"] == ((0, 1) if r < 2 else (2, 3))
        assert inside["tp_sum"] == sum(inside["tp_ranks"])  # the all-reduce ran in the TP group only
        ops = {op: crossed for op, _, crossed in inside["records"]}
        assert ops["all_reduce"] is False and ops["send" if r < 2 else "recv"] is True
        if r >= 2:  # peers are group ranks: rank 2 received from rank 0, rank 3 from rank 1
            assert inside["received"] == r - 2
        assert across["tp_ranks"] == ((0, 2) if r % 2 == 0 else (1, 3))
        ops = {op: crossed for op, _, crossed in across["records"]}
        assert ops["all_reduce"] is True and ops["send" if r % 2 == 0 else "recv"] is False
