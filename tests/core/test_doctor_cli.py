"""`inferlab doctor` and the CLI dispatcher."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from inferlab import cli, doctor

REPO = Path(__file__).resolve().parents[2]


def test_doctor_passes_here():
    done = subprocess.run([sys.executable, "-m", "inferlab.cli", "doctor", "--quick"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "backend gloo: works" in done.stdout and "labs in sync: yes" in done.stdout


def test_doctor_names_the_fix_for_a_missing_release(tmp_path):
    shutil.copytree(REPO / "solutions" / "lab0_baseline", tmp_path / "solutions" / "lab0_baseline")
    check = doctor.check_labs_in_sync(tmp_path)
    assert not check.is_ok and "lab0_baseline (not released)" in check.detail and check.fix == "make release"


def test_doctor_warns_without_the_lab_extra(monkeypatch):
    # a serving or GPU box without nbformat: a warning naming the fix, not a traceback
    monkeypatch.setitem(sys.modules, "nbformat", None)
    check = doctor.check_labs_in_sync(REPO)
    assert not check.is_ok and not check.is_required and "nbformat" in check.detail and "[lab]" in check.fix


def test_python_dash_m_inferlab_is_the_cli():
    done = subprocess.run([sys.executable, "-m", "inferlab", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "doctor" in done.stdout, done.stdout + done.stderr


def test_cli_lists_commands_and_rejects_unknown(capsys):
    assert cli.main(["--help"]) == 0
    assert "doctor" in capsys.readouterr().out
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_command_module_has_a_main(command):
    import importlib

    module = importlib.import_module(cli.COMMANDS[command][0])
    assert callable(module.main), f"{command}: {cli.COMMANDS[command][0]}.main missing"
