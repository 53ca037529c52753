"""The shipped SLO rules: written by `inferlab.observe.slo`, valid for promtool, and their unit tests pass."""

import shutil
import subprocess
from pathlib import Path

import pytest

from inferlab.observe import slo

RULES = Path(slo.__file__).parent / "rules"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is missing (Debian: apt-get install prometheus; "
                                                             "`make install` does it)")


def test_the_shipped_rule_file_is_the_generators_output():
    assert (RULES / "inferlab.rules.yml").read_text() == slo.rules_yaml(), \
        "regenerate: python -m inferlab.observe.slo > inferlab/observe/rules/inferlab.rules.yml"


@needs_promtool
def test_promtool_checks_the_rules():
    out = subprocess.run([PROMTOOL, "check", "rules", "inferlab.rules.yml"], cwd=RULES, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@needs_promtool
def test_promtool_unit_tests_of_the_rules_pass():
    out = subprocess.run([PROMTOOL, "test", "rules", "inferlab.rules.test.yml"], cwd=RULES, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@needs_promtool
def test_the_unit_tests_catch_a_single_window_alert(tmp_path):
    """The unit tests can fail: paging on the 5 m window alone is caught (the short-spike case)."""
    text = slo.rules_yaml().replace("inferlab:ttft_slo_error:ratio_rate1h > (14.4 * 0.01)\n      and\n", "")
    assert text != slo.rules_yaml()
    (tmp_path / "inferlab.rules.yml").write_text(text)
    shutil.copy(RULES / "inferlab.rules.test.yml", tmp_path)
    out = subprocess.run([PROMTOOL, "test", "rules", "inferlab.rules.test.yml"], cwd=tmp_path, capture_output=True,
                         text=True)
    assert out.returncode != 0 and "TTFTErrorBudgetBurnPage" in out.stdout + out.stderr


def test_compressed_windows_and_bad_configs():
    fast = slo.SLOConfig(time_scale=60)
    assert fast.window("1h") == "1m" and fast.window("5m") == "5s" and fast.window("3d") == "72m"
    assert "[1m]" in slo.error_ratio_expr("ttft", "1h", fast)
    with pytest.raises(ValueError, match="ttft_s=0.3 is not a bucket bound"):
        slo.SLOConfig(ttft_s=0.3)
    with pytest.raises(ValueError, match="objective must be in"):
        slo.SLOConfig(objective=1.0)
    with pytest.raises(ValueError, match="unknown SLI"):
        slo.error_ratio_expr("latency", "5m")


@needs_promtool
def test_the_unit_tests_catch_an_ejection_alert_that_never_fires(tmp_path):
    """The node-loss case can fail: an ejection alert that looks at the wrong value is caught."""
    text = slo.rules_yaml().replace("inferlab_router_replica_healthy == 0", "inferlab_router_replica_healthy < 0")
    assert text != slo.rules_yaml()
    (tmp_path / "inferlab.rules.yml").write_text(text)
    shutil.copy(RULES / "inferlab.rules.test.yml", tmp_path)
    out = subprocess.run([PROMTOOL, "test", "rules", "inferlab.rules.test.yml"], cwd=tmp_path, capture_output=True,
                         text=True)
    assert out.returncode != 0 and "RouterReplicaEjected" in out.stdout + out.stderr
