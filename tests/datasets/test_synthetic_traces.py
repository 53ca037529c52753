"""The committed synthetic traces are reproducible and match the published Azure 2023 statistics."""

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from inferlab.traces import describe, load_azure_csv

DATASETS = Path(__file__).resolve().parents[2] / "datasets"
MANIFEST = json.loads((DATASETS / "manifest.json").read_text())
spec = importlib.util.spec_from_file_location("make_synthetic", DATASETS / "make_synthetic.py")
make_synthetic = importlib.util.module_from_spec(spec)
sys.modules["make_synthetic"] = make_synthetic  # dataclasses look their module up
spec.loader.exec_module(make_synthetic)


@pytest.mark.parametrize("entry", MANIFEST["traces"], ids=lambda e: e["file"])
def test_committed_file_matches_manifest_checksum(entry):
    assert hashlib.sha256((DATASETS / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]


@pytest.mark.parametrize("target", make_synthetic.TARGETS, ids=lambda t: t.name)
def test_regenerating_reproduces_the_committed_file(target, tmp_path):
    entry = make_synthetic.make(target, out_dir=tmp_path)
    assert (tmp_path / entry["file"]).read_bytes() == (DATASETS / entry["file"]).read_bytes()


@pytest.mark.parametrize("target", make_synthetic.TARGETS, ids=lambda t: t.name)
def test_statistics_match_published_figures(target):
    stats = describe(load_azure_csv(DATASETS / f"{target.name}.csv"))
    assert stats["num_requests"] == target.num_requests
    assert stats["duration_min"] == pytest.approx(target.num_minutes, abs=1.0)
    assert stats["context_p50"] == pytest.approx(target.context.p50, rel=0.03)
    assert stats["context_p99"] == pytest.approx(target.context.p99, rel=0.10)
    assert stats["generated_p50"] == pytest.approx(target.generated.p50, rel=0.08)
    assert stats["generated_p99"] == pytest.approx(target.generated.p99, rel=0.15)
    assert stats["peak_to_mean_per_minute"] == pytest.approx(target.peak_to_mean, rel=0.10)
