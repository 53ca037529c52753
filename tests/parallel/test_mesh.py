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
