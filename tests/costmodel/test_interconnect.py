"""The inter-node link as a cost-model input (`inferlab plan --link-gbit --link-alpha-us --gpus-per-node`)."""

import pytest

from inferlab.costmodel import Layout, get_gpu, get_model, with_interconnect
from inferlab.costmodel.plan import main as plan_main
from inferlab.costmodel.roofline import pp_comm_s, ring_allreduce_s, tp_comm_s

MODEL, H100 = get_model("llama-2-7b"), get_gpu("h100")


def test_link_figures_replace_the_datasheet_ones_with_a_source():
    gpu = with_interconnect(H100, link_gbit=8, link_alpha_s=1e-4, num_gpus_per_node=1)
    assert gpu.ib_bandwidth_bytes_per_s == 1e9 and gpu.ib_alpha_s == 1e-4 and gpu.num_gpus_per_node == 1
    assert "given" in gpu.source("ib_bandwidth_bytes_per_s")
    assert with_interconnect(H100) is H100


def test_pp_across_a_slow_link_pays_alpha_plus_bytes_over_rate():
    gpu = with_interconnect(H100, link_gbit=8, link_alpha_s=1e-4, num_gpus_per_node=1)
    num_bytes = 4 * MODEL.hidden_size * 2
    assert pp_comm_s(MODEL, gpu, Layout(1, 2), 4, "bf16") == pytest.approx(1e-4 + num_bytes / 1e9)


def test_tp_wider_than_a_node_rings_over_the_link():
    gpu = with_interconnect(H100, link_gbit=8, link_alpha_s=1e-4, num_gpus_per_node=1)
    one = ring_allreduce_s(4 * MODEL.hidden_size * 2, 2, 1e9, 1e-4)
    assert tp_comm_s(MODEL, gpu, Layout(2, 1), 4, "bf16") == pytest.approx(2 * MODEL.num_layers * one)
    inside = with_interconnect(gpu, num_gpus_per_node=2)
    assert tp_comm_s(MODEL, inside, Layout(2, 1), 4, "bf16") < tp_comm_s(MODEL, gpu, Layout(2, 1), 4, "bf16")


def test_plan_takes_the_link_and_refuses_a_bad_one(capsys):
    assert plan_main(["--model", "llama-2-7b", "--gpu", "h100", "--num-gpus", "2", "--gpus-per-node", "1",
                      "--link-gbit", "1", "--link-alpha-us", "50"]) == 0
    assert plan_main(["--model", "llama-2-7b", "--gpu", "h100", "--num-gpus", "2", "--link-gbit", "0"]) == 2
    assert "link_gbit must be > 0" in capsys.readouterr().err
