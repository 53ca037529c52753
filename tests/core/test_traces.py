"""inferlab.traces: public formats load, malformed rows name file/line/field, generators behave."""

import json

import numpy as np
import pytest

from inferlab import traces
from inferlab.traces import LengthDist, TraceError


def test_azure_csv_round_trip(tmp_path):
    trace = [traces.TraceRequest(0.0, 100, 10), traces.TraceRequest(1.25, 200, 5)]
    path = tmp_path / "t.csv"
    traces.save_azure_csv(trace, path)
    loaded = traces.load_trace(path)
    assert [(r.num_prompt_tokens, r.num_output_tokens) for r in loaded] == [(100, 10), (200, 5)]
    assert loaded[1].arrival_time_s == pytest.approx(1.25, abs=1e-6)


def test_azure_real_timestamp_format(tmp_path):
    path = tmp_path / "azure.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.9951690,396,109\n")
    loaded = traces.load_azure_csv(path)
    assert loaded[1].arrival_time_s == pytest.approx(4.314579, abs=1e-5)


def test_malformed_row_names_file_line_and_field(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,10,2\n1,ten,2\n")
    with pytest.raises(TraceError, match=r"bad.csv, line 3: field 'ContextTokens'"):
        traces.load_azure_csv(path)


def test_unsorted_rows_are_an_error_unless_sorting(tmp_path):
    path = tmp_path / "unsorted.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n5,10,2\n1,10,2\n")
    with pytest.raises(TraceError, match="line 3: field 'TIMESTAMP': timestamps go backwards"):
        traces.load_azure_csv(path)
    assert [r.arrival_time_s for r in traces.load_azure_csv(path, sort=True)] == [0.0, 4.0]


def test_burstgpt_and_mooncake(tmp_path):
    burst = tmp_path / "b.csv"
    burst.write_text("Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n5,ChatGPT,100,20,120,Conversation log\n7,GPT-4,50,0,50,Conversation log\n9,GPT-4,30,3,33,API log\n")
    assert [(r.arrival_time_s, r.num_output_tokens) for r in traces.load_trace(burst)] == [(0.0, 20), (4.0, 3)]
    moon = tmp_path / "m.jsonl"
    moon.write_text(json.dumps({"timestamp": 1000, "input_length": 9, "output_length": 2, "hash_ids": [1]}) + "\n" + json.dumps({"timestamp": 3500, "input_length": 4}) + "\n")
    with pytest.raises(TraceError, match="line 2: field 'output_length': missing"):
        traces.load_trace(moon)


def test_length_dist_matches_its_percentiles():
    rng = np.random.default_rng(0)
    values = LengthDist(p50=1000, p99=4000).sample(rng, 200_000)
    assert np.percentile(values, 50) == pytest.approx(1000, rel=0.02)
    assert np.percentile(values, 99) == pytest.approx(4000, rel=0.05)


def test_gamma_burstiness_raises_variability():
    rng = np.random.default_rng(1)
    poisson = np.diff(traces.poisson_arrivals(10.0, 20_000, rng))
    bursty = np.diff(traces.gamma_arrivals(10.0, 20_000, 0.25, rng))
    assert poisson.mean() == pytest.approx(0.1, rel=0.05) and bursty.mean() == pytest.approx(0.1, rel=0.05)
    assert bursty.std() / bursty.mean() == pytest.approx(2.0, rel=0.1)  # CV = 1/sqrt(0.25)


def test_scale_rate_and_bad_parameters():
    trace = [traces.TraceRequest(10.0, 1, 1)]
    assert traces.scale_rate(trace, 2.0)[0].arrival_time_s == 5.0
    with pytest.raises(TraceError, match="rate_scale"):
        traces.scale_rate(trace, 0)
    with pytest.raises(TraceError, match="p50 < p99"):
        LengthDist(p50=10, p99=5)
