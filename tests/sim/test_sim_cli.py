"""`inferlab simulate` and `inferlab bench sim-speed`: last line JSON, clear errors on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inferlab.bench import sim_speed
from inferlab.sim import main as sim_main
from inferlab.traces import LengthDist, profile_arrivals, save_azure_csv, synthesize

REQUIRED = ("num_requests", "slo_attainment", "gpu_hours", "oracle_gpu_hours", "static_peak_gpu_hours", "cost_usd",
            "scale_actions_per_hour", "ttft_p99_s", "tpot_p99_s", "wall_s")


@pytest.fixture(scope="module")
def trace_csv(tmp_path_factory) -> str:
    rng = np.random.default_rng(0)
    arrivals = profile_arrivals([60, 60, 240, 240, 60, 60, 60, 60, 60, 60, 60, 60], rng)
    trace = synthesize(arrivals, LengthDist(1000, 4000, max_tokens=8000), LengthDist(100, 600, max_tokens=1500), rng)
    path = tmp_path_factory.mktemp("traces") / "azure.csv"
    save_azure_csv(trace, path)
    return str(path)


def _args(trace: str, *extra: str) -> list[str]:
    return ["--trace", trace, "--model", "llama-2-7b", "--gpu", "h100", "--router", "least-outstanding",
            "--slo-ttft-s", "2", "--slo-tpot-s", "0.2", *extra]


@pytest.mark.parametrize("autoscaler", ["slo", "static", "forecast", "oracle-lag1",
                                        "inferlab.policies.autoscale:hpa_policy"])
def test_simulate_prints_json_last(trace_csv: str, autoscaler: str, capsys) -> None:
    assert sim_main.main(_args(trace_csv, "--autoscaler", autoscaler, "--cold-start-s", "90",
                               "--rate-scale", "8", "--spot-fraction", "0.5")) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in REQUIRED:
        assert key in out
    assert out["num_requests"] > 5000
    assert 0 <= out["slo_attainment"] <= 1
    assert out["static_peak_gpu_hours"] >= out["oracle_gpu_hours"] > 0
    assert out["cost_usd"] > 0 and out["gpu_hours_spot"] > 0


def test_bad_inputs_name_the_field(trace_csv: str, tmp_path, capsys) -> None:
    assert sim_main.main(_args(trace_csv, "--cold-start-s", "-5")) == 2
    assert "cold_start_s" in capsys.readouterr().err
    assert sim_main.main(_args(trace_csv, "--slo-ttft-s", "0")) == 2
    assert "ttft_s" in capsys.readouterr().err
    bad = tmp_path / "unsorted.csv"
    bad.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:05,10,10\n2023-11-16 18:00:01,10,10\n")
    assert sim_main.main(_args(str(bad))) == 2
    assert "TIMESTAMP" in capsys.readouterr().err
    bad.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:05,ten,10\n")
    assert sim_main.main(_args(str(bad))) == 2
    assert "ContextTokens" in capsys.readouterr().err
    assert sim_main.main(_args(trace_csv, "--autoscaler", "nope")) == 2
    assert "autoscaler" in capsys.readouterr().err


def test_sim_speed_json(capsys) -> None:
    assert sim_speed.main(["--num-requests", "3000", "--rate-rps", "50", "--num-replicas", "6"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["requests_per_wall_minute"] > 0 and len(out["variants"]) == 4
