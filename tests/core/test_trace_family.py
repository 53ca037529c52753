"""The trace family: deterministic, split apart, shaped like the published statistics, bad specs refused."""

import json

import numpy as np
import pytest

from inferlab.bench import autoscale as bench_autoscale
from inferlab.trace_family import KINDS, TraceSpec, evaluation_specs, generate, tuning_specs
from inferlab.traces import TraceError, describe


def test_same_spec_same_trace_and_other_seed_other_trace():
    a, b = generate(TraceSpec("bursty", 3, 2, num_minutes=10)), generate(TraceSpec("bursty", 3, 2, num_minutes=10))
    assert a == b
    c = generate(TraceSpec("bursty", 4, 2, num_minutes=10))
    assert [r.arrival_time_s for r in c[:50]] != [r.arrival_time_s for r in a[:50]]


def test_tune_and_eval_splits_never_share_a_trace():
    eval_seeds = {s.rng_seed for s in evaluation_specs()}
    tune_seeds = {s.rng_seed for s in tuning_specs(num_seeds=50)}
    assert not eval_seeds & tune_seeds
    assert len(evaluation_specs()) >= 24
    assert {s.rate_scale for s in evaluation_specs()} == {5, 10, 20}
    same_index = [generate(TraceSpec("smooth", 0, 1, 10, split)) for split in ("tune", "eval")]
    assert same_index[0] != same_index[1]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_published_statistics_hold_across_draws(kind):
    spec = KINDS[kind]
    peaks, rates = [], []
    for seed in range(3):
        trace = generate(TraceSpec(kind, seed, 1.0, num_minutes=60, split="tune"))
        d = describe(trace)
        assert d["context_p50"] == pytest.approx(spec.context.p50, rel=0.1)
        assert d["generated_p50"] == pytest.approx(spec.generated.p50, rel=0.15)
        assert d["context_p99"] == pytest.approx(spec.context.p99, rel=0.25)
        peaks.append(d["peak_to_mean_per_minute"])
        rates.append(d["num_requests"] / 60)
    assert np.mean(peaks) == pytest.approx(spec.peak_to_mean, rel=0.2)
    assert np.mean(rates) == pytest.approx(spec.requests_per_minute, rel=0.1)


def test_the_shortest_traces_draw_too():
    for kind in KINDS:
        assert generate(TraceSpec(kind, 0, 1, num_minutes=5))


def test_rate_scale_multiplies_the_load_and_rotation_moves_the_peak():
    one = generate(TraceSpec("smooth", 1, 1, 20))
    ten = generate(TraceSpec("smooth", 1, 10, 20))
    assert len(ten) / len(one) == pytest.approx(10, rel=0.05)
    peak_minutes = {int(np.argmax(np.bincount([int(r.arrival_time_s // 60) for r in generate(TraceSpec("bursty", s, 1, 30))])))
                    for s in range(8)}
    assert len(peak_minutes) >= 4, peak_minutes


@pytest.mark.parametrize("kwargs, field", [
    ({"kind": "spiky", "seed": 0}, "kind"), ({"kind": "bursty", "seed": -1}, "seed"),
    ({"kind": "bursty", "seed": 0, "rate_scale": 0}, "rate_scale"), ({"kind": "bursty", "seed": 0, "num_minutes": 2}, "num_minutes"),
    ({"kind": "bursty", "seed": 0, "split": "test"}, "split"),
])
def test_bad_spec_names_the_field(kwargs, field):
    with pytest.raises(TraceError, match=field):
        TraceSpec(**kwargs)


def test_bench_autoscale_quick_prints_every_policy(capsys):
    assert bench_autoscale.main(["--quick", "--jobs", "1"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["num_traces"] == 2 and out["quick"]
    policies = out["policies"]
    assert set(policies) == set(bench_autoscale.POLICIES)
    for name, row in policies.items():
        assert 0 <= row["attainment_min"] <= row["attainment_mean"] <= 1, name
        assert row["gpu_h_over_oracle_max"] >= row["gpu_h_over_oracle_mean"] > 0, name
    assert policies["static"]["actions_per_hour_mean"] == 0
    assert policies["oracle"]["gpu_h_over_oracle_mean"] == pytest.approx(1.0, abs=0.1)
    assert "beats_hpa_share" in policies["slo"] and "beats_ray_share" in policies["slo"]


def test_bench_autoscale_refuses_unknown_policy(capsys):
    assert bench_autoscale.main(["--quick", "--policies", "slo,magic"]) == 2
    assert "magic" in capsys.readouterr().err


def test_bench_autoscale_rows_resume_runs_only_missing_policies(tmp_path, capsys):
    """A stored trace row is reused for the policies it holds; a later row of the same trace adds policies."""
    first, second = evaluation_specs(quick=True)
    fake = {"attainment": 0.5, "gpu_h_over_oracle": 3.0, "actions_per_hour": 7.0}
    rows = tmp_path / "rows.jsonl"
    stored = [{"trace": first.name, "kind": first.kind, "rate_scale": first.rate_scale, "num_requests": 1,
               "policies": {"static": fake}},
              {"trace": first.name, "kind": first.kind, "rate_scale": first.rate_scale, "num_requests": 1,
               "policies": {"oracle": fake}}]
    rows.write_text("".join(json.dumps(r) + "\n" for r in stored))
    assert bench_autoscale.main(["--quick", "--jobs", "1", "--policies", "static,oracle", "--rows", str(rows)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["policies"]
    # the first trace was not re-run (its fake rows count), the second was: mean of fake and real
    assert out["static"]["attainment_min"] == 0.5 and out["static"]["attainment_mean"] > 0.5
    assert out["oracle"]["gpu_h_over_oracle_max"] == 3.0
    appended = [json.loads(line) for line in rows.read_text().splitlines()[2:]]
    assert [r["trace"] for r in appended] == [second.name]


def test_summary_of_rows_where_a_policy_lacks_some_traces():
    def row(kind, **att):
        return {"kind": kind, "policies": {p: {"attainment": a, "gpu_h_over_oracle": 1.0 + (1 - a),
                                              "actions_per_hour": 2.0} for p, a in att.items()}}
    results = [row("bursty", slo=0.9, hpa=0.8, ray=0.7), row("smooth", slo=0.99, hpa=0.95),
               row("smooth", hpa=0.97)]  # slo missing on the third trace, ray on two
    summary = bench_autoscale.summarize(results, policies=("slo", "hpa", "ray", "kpa"))
    assert "kpa" not in summary  # no trace has it
    assert summary["slo"]["num_traces"] == 2 and summary["slo"]["attainment_min"] == pytest.approx(0.9)
    assert summary["slo"]["beats_hpa_share"] == 1.0  # over the two traces that have both
    assert summary["slo"]["beats_ray_share"] == 1.0 and summary["hpa"]["beats_ray_share"] == 1.0
    assert summary["ray"]["num_traces"] == 1 and "attainment_mean_smooth" not in summary["ray"]
