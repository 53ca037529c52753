"""Expert-parallel MoE: equal to the dense layer, dropped tokens equal the router-recomputed count."""

import pytest
import torch

from inferlab.parallel import workers
from inferlab.parallel.expert import MoE, MoEConfig, capacity, count_dropped, keep_mask, moe_dense, route

import parallel_checks as pc

pytestmark = pytest.mark.timeout(200)


def _dense(cf):
    cfg = MoEConfig(capacity_factor=cf)
    moe = MoE(cfg, 0)
    x = workers.moe_tokens(cfg, 2 * pc.MOE_TOKENS_PER_RANK)
    out, dropped = moe_dense(moe, x, num_groups=2)
    ids = [route(moe, xg)[0] for xg in x.chunk(2)]
    cap = capacity(pc.MOE_TOKENS_PER_RANK, cfg.num_experts, cfg.top_k, cf)
    return out, dropped, sum(count_dropped(i, cfg.num_experts, cap) for i in ids)


def test_expert_parallel_equals_dense_unlimited(ranks2):
    out, dropped, _ = _dense(None)
    ep = torch.cat([r["ep_None"]["out"] for r in ranks2])
    torch.testing.assert_close(ep, out, rtol=1e-5, atol=1e-5)
    assert dropped == 0 and all(r["ep_None"]["dropped"] == 0 for r in ranks2)


def test_capacity_factor_one_drops_what_the_router_says(ranks2):
    out, dropped, recomputed = _dense(1.0)
    ep_dropped = sum(r["ep_1.0"]["dropped"] for r in ranks2)
    assert ep_dropped == dropped == recomputed > 0
    torch.testing.assert_close(torch.cat([r["ep_1.0"]["out"] for r in ranks2]), out, rtol=1e-5, atol=1e-5)


def test_ignoring_capacity_is_caught(ranks2):
    _, _, recomputed = _dense(1.0)
    assert recomputed > 0
    assert sum(r["ep_mutant"] for r in ranks2) == 0 != recomputed


def test_dispatch_traffic_is_uneven_and_matches_kept_tokens(ranks2):
    for r in ranks2:
        recs = r["ep_1.0"]["records"]
        assert [x.tag for x in recs] == ["counts", "dispatch", "dispatch", "combine"]
        kept = pc.MOE_TOKENS_PER_RANK * 2 - r["ep_1.0"]["dropped"]
        assert recs[1].num_bytes == kept * 64 * 4  # token vectors, fp32
        assert recs[2].num_bytes == kept * 8  # expert ids, int64


def test_keep_mask_priority_and_count():
    ids = torch.tensor([[0, 1], [0, 2], [0, 1], [3, 0]])  # expert 0: 3 first choices + 1 second choice
    keep = keep_mask(ids, 4, 2)
    assert keep.tolist() == [[True, True], [True, True], [False, True], [True, False]]
    assert int((~keep).sum()) == count_dropped(ids, 4, 2) == 2
    assert capacity(32, 8, 2, 1.0) == 8 and capacity(32, 8, 2, None) == 64
    with pytest.raises(ValueError, match="top_k"):
        MoEConfig(num_experts=4, top_k=5)
