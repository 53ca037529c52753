"""inferlab.metrics: the vllm-bench-serve definitions, on hand-checked logs."""

import math

import pytest

from inferlab import metrics
from inferlab.metrics import SLO, RequestRecord

A = RequestRecord(0.0, 0.5, 1.5, 10, 11, tuple(0.5 + 0.1 * i for i in range(11)))  # TTFT .5, TPOT .1
B = RequestRecord(1.0, 3.0, 3.0, 5, 1, (3.0,))  # one token: no TPOT


def test_per_request_definitions():
    assert metrics.ttft_s(A) == 0.5 and math.isclose(metrics.e2e_s(A), 1.5)
    assert math.isclose(metrics.tpot_s(A), 0.1)  # (1.5 - 0.5) / (11 - 1), not / 11
    assert math.isnan(metrics.tpot_s(B))


def test_itl_pools_all_gaps():
    gaps = metrics.itl_s([A, B])
    assert len(gaps) == 10 and all(math.isclose(g, 0.1) for g in gaps)


def test_goodput_counts_requests_meeting_every_slo():
    slo = SLO(ttft_s=1.0, tpot_s=0.2)
    assert metrics.meets_slo(A, slo) and not metrics.meets_slo(B, slo)  # B misses TTFT (2.0 s)
    assert metrics.slo_attainment([A, B], slo) == 0.5
    assert math.isclose(metrics.goodput_rps([A, B], slo), 1 / 3.0)  # 1 good request over 0..3 s
    assert metrics.meets_slo(B, SLO(ttft_s=3.0, tpot_s=1e-9))  # NaN TPOT meets any TPOT SLO


def test_summary_throughput_and_percentiles():
    s = metrics.summarize([A, B], slo=SLO(ttft_s=1.0))
    assert s.num_requests == 2 and math.isclose(s.duration_s, 3.0)
    assert math.isclose(s.output_throughput_tok_s, 12 / 3.0)
    assert math.isclose(s.ttft_s["p50"], 1.25) and s.slo_attainment == 0.5


@pytest.mark.parametrize("bad", [dict(ttft_s=0), dict(tpot_s=-1.0)])
def test_zero_or_negative_slo_is_an_error(bad):
    with pytest.raises(ValueError, match=list(bad)[0]):
        SLO(**bad)


def test_impossible_record_is_an_error():
    with pytest.raises(ValueError, match="arrival_time_s <= first_token_time_s"):
        RequestRecord(2.0, 1.0, 3.0, 1, 2)
