"""Pipeline parallelism: same greedy tokens as one device, GPipe simulator vs the bubble formula."""

import pytest

from inferlab.parallel.pipeline import bubble_fraction, simulate_gpipe, split_microbatches
from inferlab.parallel.shard import partition_layers, pp_shard
from inferlab.model import PRESETS

import parallel_checks as pc

pytestmark = pytest.mark.timeout(200)


@pytest.mark.parametrize("world", [2, 4])
def test_pipeline_tokens_equal_one_device(world, reference, ranks2, ranks4):
    ranks = ranks2 if world == 2 else ranks4
    for out in ranks:
        assert out["pp"]["tokens"] == reference["pp_tokens"]
        sends = [r for r in out["pp"]["records"] if r.op == "isend" and r.peer == out["pp"]["rank"] + 1]
        if out["pp"]["rank"] < world - 1:  # one activation [b_j, T, hidden] per micro-batch per step
            assert len(sends) == 3 * 6
            assert sends[0].num_bytes == 2 * 4 * 256 * 4  # 2 prompts, 4 prompt tokens, fp32


@pytest.mark.parametrize("world", [2, 4])
def test_dropped_microbatch_is_detected(world, reference, ranks2, ranks4):
    ranks = ranks2 if world == 2 else ranks4
    for out in ranks:
        assert out["pp_mutant"] != reference["pp_tokens"]
        assert out["pp_mutant"][-1] == []  # the last micro-batch's prompts never came out


@pytest.mark.parametrize("p,m", [(1, 1), (2, 1), (2, 4), (4, 4), (4, 8), (3, 5), (8, 32)])
def test_simulator_reproduces_bubble_formula(p, m):
    sched = simulate_gpipe(p, m, stage_time_s=0.5)
    assert sched.makespan_s == pytest.approx((m + p - 1) * 0.5)
    assert sched.bubble_fraction == pytest.approx(bubble_fraction(p, m, "total")) == pytest.approx((p - 1) / (m + p - 1))
    bubble_time = sched.makespan_s - m * 0.5
    assert bubble_time / (m * 0.5) == pytest.approx(bubble_fraction(p, m, "ideal"))


def test_simulator_uneven_stages_and_comm():
    sched = simulate_gpipe(2, 3, stage_time_s=[1.0, 2.0], comm_time_s=0.5)
    # stage 1 is the bottleneck: starts at 1.5, then back to back
    assert sched.makespan_s == pytest.approx(1.5 + 3 * 2.0)
    assert sched.busy_s(0) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        simulate_gpipe(2, 3, stage_time_s=[1.0])
    with pytest.raises(ValueError, match="convention"):
        bubble_fraction(2, 2, "other")


def test_measured_idle_is_reported(ranks2):
    # Timing on a shared 2-core machine is noisy: only sanity here; numbers are in the report/notebook.
    for out in ranks2:
        for m, row in zip([1, 4], out["pp_bubble"]):
            assert 0.0 <= row["idle_fraction"] < 1.0 and row["busy_s"] <= row["wall_s"]
            assert len(row["microbatch_times_s"]) == m


def test_partitions():
    assert partition_layers(4, 2) == [range(0, 2), range(2, 4)]
    assert partition_layers(5, 3) == [range(0, 2), range(2, 4), range(4, 5)]
    assert split_microbatches(7, 3) == [range(0, 3), range(3, 5), range(5, 7)]
    with pytest.raises(ValueError):
        partition_layers(4, 5)
    names = ["model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight", "model.layers.3.mlp.up_proj.weight",
             "model.norm.weight", "lm_head.weight"]
    last = pp_shard({n: None for n in names}, PRESETS["tiny"], 1, 2)
    assert sorted(last) == ["lm_head.weight", "model.layers.3.mlp.up_proj.weight", "model.norm.weight"]
