"""The capstone's metrics review (`inferlab.observe.review`), its tabletop (`tabletop`), its HTML report
(`report`) and the budget layout (`costmodel.budget`): the records and Prometheus views of simulated runs
agree, the fleet's GPU-hours match the simulator's bill, bad input is named."""

import math
import re

import numpy as np
import pytest

from inferlab.costmodel.budget import cheapest_layout
from inferlab.costmodel.plan import choose_layout
from inferlab.costmodel.roofline import Workload
from inferlab.costmodel.specs import get_gpu, get_model
from inferlab.metrics import SLO, RequestRecord, duration_s
from inferlab.observe import review
from inferlab.observe.incident import validate_backlog
from inferlab.observe.report import table_html, write_report
from inferlab.observe.tabletop import TABLETOP_FAULTS, Tabletop, check_log, page_time_s
from inferlab.policies.autoscale import AutoscalingConfig, hpa_policy
from inferlab.sim import ClusterConfig, oracle_plan, roofline_model, simulate
from inferlab.trace_family import TraceSpec, generate

SLO_ = SLO(ttft_s=2.5, tpot_s=0.1)
MODEL = roofline_model("llama-2-7b", "h100")


@pytest.fixture(scope="module")
def fixed_run():
    """Two replicas, too few for 3x the conversation rate: some requests miss the TTFT SLO."""
    config = ClusterConfig(autoscaling=AutoscalingConfig(min_replicas=2, max_replicas=2, initial_replicas=2))
    return simulate(generate(TraceSpec("bursty", 3, rate_scale=5, num_minutes=6)), MODEL, config,
                    lambda ctx: (2, ctx.policy_state))


def test_records_and_prometheus_agree(fixed_run):
    a = review.records_review(fixed_run.records, SLO_)
    b = review.prometheus_review(review.histogram_samples(fixed_run.records, fixed_run.routed_to), SLO_,
                                 duration_s(fixed_run.records))
    assert 0 < a["ttft_attainment"] < 1, "the run must miss the SLO sometimes to test anything"
    assert review.review_disagreements(a, b) == []
    assert b["slo_attainment"] <= a["slo_attainment"] <= b["slo_attainment_max"]
    assert b["num_requests"] == len(fixed_run.records)


def test_disagreements_named(fixed_run):
    a = review.records_review(fixed_run.records, SLO_)
    half = review.prometheus_review(review.histogram_samples(fixed_run.records[::2], fixed_run.routed_to[::2]),
                                    SLO_, duration_s(fixed_run.records))
    problems = review.review_disagreements(a, half)
    assert any(p.startswith("num_requests") for p in problems)
    assert review.review_disagreements({**a, "ttft_p99_s": a["ttft_p99_s"] * 20}, half)


def test_bucket_quantile_is_prometheus():
    assert review.bucket_quantile(0.5, {1.0: 0.0, 2.0: 10.0, math.inf: 10.0}) == 1.5
    assert review.bucket_quantile(0.99, {1.0: 5.0, 2.0: 5.0, math.inf: 10.0}) == 2.0
    assert review.bucket_quantile(0.25, {1.0: 10.0, math.inf: 10.0}) == 0.25
    assert math.isnan(review.bucket_quantile(0.5, {1.0: 0.0, math.inf: 0.0}))


def test_bad_input_is_named():
    recs = [RequestRecord(0.0, 1.0, 2.0, 5, 3)]
    with pytest.raises(ValueError, match="replica_of"):
        review.histogram_samples(recs, [0, 1])
    with pytest.raises(ValueError, match="bucket bound"):
        review.prometheus_review(review.histogram_samples(recs, [0]), SLO(ttft_s=2.2, tpot_s=0.1), 2.0)
    with pytest.raises(ValueError, match="ttft_s and tpot_s"):
        review.records_review(recs, SLO(ttft_s=1.0))


def test_fleet_review_bills_cold_starts_like_the_simulator():
    trace = generate(TraceSpec("smooth", 16, rate_scale=4, num_minutes=10))
    plan = oracle_plan(trace, MODEL, SLO_)
    config = ClusterConfig(autoscaling=AutoscalingConfig(min_replicas=1, max_replicas=32, initial_replicas=1),
                           cold_start_s=90.0)
    result = simulate(trace, MODEL, config, hpa_policy)
    tokens = sum(r.num_output_tokens for r in result.records)
    f = review.fleet_review(result.timeline, result.end_time_s, tokens, plan.oracle_gpu_hours, 2.0)
    assert result.num_scale_actions >= 2
    assert abs(f["gpu_hours"] - result.total_gpu_hours) <= 0.02 * result.total_gpu_hours
    assert math.isclose(f["scale_actions_per_hour"], result.scale_actions_per_hour)
    assert math.isclose(f["usd_per_million_output_tokens"], f["gpu_hours"] * 2.0 / tokens * 1e6)


def test_cheapest_layout_trades_latency_for_gpus():
    m, g, w = get_model("llama-2-70b"), get_gpu("h100"), Workload(512, 128, batch_size=8)
    eff = 0.55
    fastest = choose_layout(m, g, 8, w, efficiency=eff).chosen
    cheap = cheapest_layout(m, g, 8, w, 3.0, efficiency=eff)
    assert cheap.layout.num_gpus < fastest.layout.num_gpus and cheap.latency.request_latency_s <= 3.0
    assert cheapest_layout(m, g, 8, w, fastest.latency.request_latency_s, efficiency=eff).layout == fastest.layout
    assert cheapest_layout(m, g, 8, w, 0.01, efficiency=eff) is None
    with pytest.raises(ValueError, match="max_latency_s"):
        cheapest_layout(m, g, 8, w, 0.0, efficiency=eff)


@pytest.mark.parametrize("fault", TABLETOP_FAULTS)
def test_tabletop_reveals_only_the_past_and_pages(fault):
    table = Tabletop(fault, 1, 80.0, seed=5)
    alert = table.alert_s()
    assert alert is not None and 80.0 <= alert <= 90.0
    seen = []
    while (step := table.next_inject()) is not None:
        i, inject, snap = step
        assert snap.time_s[-1] <= inject.at_s
        seen.append(i)
    assert seen == list(range(table.num_injects))
    full = Tabletop(fault, 1, 80.0, seed=5)
    assert page_time_s(full._snap) == alert


def test_check_log_judges_detection_and_blame():
    table = Tabletop("replica_down", 2, 60.0, seed=1)
    alert = table.alert_s()
    phase = next(i for i, inj in enumerate(table.injects) if inj.at_s >= alert)
    good = [{"phase": phase, "t_s": alert, "action": "detect"},
            {"phase": phase, "t_s": table.injects[phase].at_s, "action": "diagnose", "fault": "replica_down", "replica": 2}]
    assert check_log(table, good) == []
    assert "wrong replica named" in check_log(table, [good[0], {**good[1], "replica": 0}])
    assert any("detection" in p for p in check_log(table, [{**good[0], "t_s": 30.0, "phase": 1}, good[1]]))
    assert any("after its phase" in p for p in check_log(table, [{**good[0], "phase": 0}, good[1]]))
    with pytest.raises(ValueError, match="fault"):
        Tabletop("burst", 0, 60.0)


def test_report_is_one_file(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from inferlab.observe.report import figure_html

    fig, ax = plt.subplots()
    ax.plot(np.arange(3))
    path = write_report([("t", table_html({"records": {"x": 1.0}, "Prometheus": {"x": float("nan")}})),
                         ("f", figure_html(fig))], path=tmp_path / "r.html")
    text = path.read_text()
    assert "<table>" in text and "data:image/png;base64," in text and "<td>-</td>" in text
    assert not re.search(r"<(script|link)\b", text, re.I) and not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text, re.I), \
        "the report loads something from the network (scripts, stylesheets, MathJax)"
    for bad in ('<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>',
                "<link rel='stylesheet' href='//example.org/a.css'>", '<img src="http://example.org/x.png"/>'):
        with pytest.raises(ValueError, match="self-contained"):
            write_report([("t", bad)], path=tmp_path / "bad.html")
    assert validate_backlog([{"item": "ten chars long", "owner_role": "platform", "priority": "P1",
                              "linked": "ttft", "due": "2027-01-01"}]) == []


def test_live_tabletop_has_the_tabletop_interface():
    from inferlab.observe.snapshots import synthesize
    from inferlab.observe.tabletop import LiveTabletop, page_time_s

    snap = synthesize("replica_down", 1, 30.0, seed=3, num_replicas=2, duration_s=90)
    table = LiveTabletop(snap, "replica_down", 1, 30.0, alerts={"ReplicaDown": 31.5, "TTFTErrorBudgetBurnTicket": 40.0})
    assert table.alert_s() == 31.5, "the first page alert Prometheus fired, not a ticket"
    assert LiveTabletop(snap, "replica_down", 1, 30.0).alert_s() == page_time_s(snap), "no alert: the page rule"
    seen = []
    while (step := table.next_inject()) is not None:
        phase, inject, part = step
        assert part.time_s[-1] <= inject.at_s, "an inject reveals only the past"
        seen.append(inject.at_s)
    assert seen == sorted(seen) and len(seen) == table.num_injects and table.next_inject() is None
    phase = next(i for i, j in enumerate(table.injects) if j.at_s >= 35.0)
    good = [{"phase": phase, "t_s": 33.0, "action": "detect"},
            {"phase": phase, "t_s": 34.0, "action": "diagnose", "fault": "replica_down", "replica": 1}]
    assert check_log(table, good) == []
    late = [{**good[0], "t_s": 44.0, "phase": phase + 2}, {**good[1], "t_s": 45.0, "phase": phase + 2}]
    assert any("detection" in p for p in check_log(table, late)), "detected 12.5 s after the real page"
