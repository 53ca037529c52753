"""The nbgrader exchange from the kit's course config, end to end, with two students.

Instructor (the kit's grading/nbgrader_config.py, copied into a temporary course, exchange from
INFERLAB_EXCHANGE): generate_assignment, release_assignment. Students alice and bob, each as their
own unprivileged uid with their own HOME: fetch_assignment, answer (alice right, bob wrong), submit.
Instructor: collect, autograde, generate_feedback, release_feedback. Students: fetch_feedback, and
each reads their own score in their feedback, with the hidden test stripped from it. The
assignment is a one-exercise notebook so that the test is about the workflow, not a lab's runtime.
Also: loading the course config creates the default exchange folder in the course.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
LAB = "ex1"
STUDENTS = {"alice": (62001, "    return 2 * x\n"), "bob": (62002, "    return x + 2\n")}
HIDDEN = "HIDDEN_CANARY_91"

pytestmark = pytest.mark.notebook


def _source_notebook() -> nbformat.NotebookNode:
    def meta(**kw):
        return {"nbgrader": {"schema_version": 3, "locked": False, "solution": False, "grade": False, **kw}}

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [
        nbformat.v4.new_code_cell("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n",
                                  metadata=meta(solution=True, grade_id="double")),
        nbformat.v4.new_code_cell(f"assert double(2) == 4\n### BEGIN HIDDEN TESTS\n_case = '{HIDDEN}'\n"
                                  "assert double(5) == 10, 'double is wrong for an odd input'\n### END HIDDEN TESTS\n",
                                  metadata=meta(grade=True, locked=True, grade_id="test_double", points=2)),
    ]
    return nb


def _run(cmd: list[str], cwd: Path, env: dict, uid: int | None = None, passwd: Path | None = None) -> str:
    if uid is not None:  # as the student's uid, with an /etc/passwd naming it (in a private mount namespace)
        cmd = ["unshare", "--mount", "sh", "-c", 'mount --bind "$0" /etc/passwd && exec "$@"', str(passwd),
               "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *cmd]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout + done.stderr


def _nbgrader(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "nbgrader"), *args]


@pytest.fixture
def course(tmp_path):
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("students run as their own uids: needs root and setpriv (util-linux)")
    venv_bin = Path(sys.executable).parent
    closed = [p for p in (venv_bin, *venv_bin.parents) if not p.stat().st_mode & 0o001]
    if closed:  # e.g. a checkout under `mktemp -d` (mode 0700): the students' uids cannot run its nbgrader
        pytest.skip(f"the students' uids cannot reach this venv's nbgrader: {closed[0]} is not searchable by others")
    shared = Path(tempfile.mkdtemp(prefix="inferlab-exchange-test-"))
    shared.chmod(0o755)
    grading = tmp_path / "grading"
    grading.mkdir()
    for path in (REPO / "grading").glob("*.py"):
        shutil.copy(path, grading / path.name)
    (tmp_path / "solutions" / LAB).mkdir(parents=True)
    nbformat.write(_source_notebook(), tmp_path / "solutions" / LAB / f"{LAB}.ipynb")
    yield tmp_path, grading, shared
    shutil.rmtree(shared, ignore_errors=True)


def test_default_exchange_is_created_in_the_course(tmp_path):
    grading = tmp_path / "grading"
    grading.mkdir()
    for path in (REPO / "grading").glob("*.py"):
        shutil.copy(path, grading / path.name)
    env = {k: v for k, v in os.environ.items() if k != "INFERLAB_EXCHANGE"}
    code = ("from traitlets.config.loader import PyFileConfigLoader as L; "
            f"print(L('nbgrader_config.py', path={str(grading)!r}).load_config().Exchange.root)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    exchange = tmp_path / "build" / "exchange"
    assert out.strip() == str(exchange) and exchange.is_dir()
    assert exchange.stat().st_mode & 0o1777 == 0o1777


def test_release_to_feedback_with_two_students(course):
    root, grading, shared = course
    exchange = shared / "exchange"
    path = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
    instructor = dict(os.environ, INFERLAB_EXCHANGE=str(exchange), PATH=path)
    _run(_nbgrader("generate_assignment", LAB, "--force"), grading, instructor)
    _run(_nbgrader("release_assignment", LAB, "--force"), grading, instructor)
    passwd = shared / "passwd"
    passwd.write_text(Path("/etc/passwd").read_text() + "".join(
        f"{s}:x:{uid}:{uid}::{shared / s}:/bin/sh\n" for s, (uid, _) in STUDENTS.items()))
    passwd.chmod(0o644)
    homes = {}
    for student, (uid, answer) in STUDENTS.items():
        home = shared / student
        (home / ".jupyter").mkdir(parents=True)
        (home / ".jupyter" / "nbgrader_config.py").write_text(
            f"c = get_config()\nc.Exchange.root = {str(exchange)!r}\nc.CourseDirectory.course_id = 'mod-526'\n")
        shutil.chown(home / ".jupyter", uid, uid)
        shutil.chown(home, uid, uid)
        env = {"PATH": path, "HOME": str(home), "USER": student, "LOGNAME": student, "LANG": "C.UTF-8"}
        _run(_nbgrader("fetch_assignment", LAB), home, env, uid, passwd)
        fetched = home / LAB / f"{LAB}.ipynb"
        nb = nbformat.read(fetched, as_version=4)
        assert HIDDEN not in nbformat.writes(nb), "hidden test released to a student"
        nb.cells[0].source = nb.cells[0].source.replace("    # YOUR CODE HERE\n    raise NotImplementedError()\n", answer)
        assert answer in nb.cells[0].source
        nbformat.write(nb, fetched)  # the file keeps its owner: the student
        _run(_nbgrader("submit", LAB), home, env, uid, passwd)
        homes[student] = (home, env, uid)
    _run(_nbgrader("collect", LAB), grading, instructor)
    for student in STUDENTS:
        assert (grading / "submitted" / student / LAB / f"{LAB}.ipynb").exists()
    _run(_nbgrader("autograde", LAB), grading, instructor)
    _run(_nbgrader("generate_feedback", LAB), grading, instructor)
    _run(_nbgrader("release_feedback", LAB), grading, instructor)
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{grading / 'gradebook.db'}") as gb:
        scores = {s: gb.find_submission(LAB, s).score for s in STUDENTS}
    assert scores == {"alice": 2.0, "bob": 0.0}
    for student, (home, env, uid) in homes.items():
        _run(_nbgrader("fetch_feedback", LAB), home, env, uid, passwd)
        html = list((home / LAB / "feedback").glob(f"*/{LAB}.html"))
        assert len(html) == 1, f"{student}: {list((home / LAB).rglob('*'))}"
        text = html[0].read_text()
        assert f"Score: {scores[student]:g}" in text.replace(".0", "") or f"{scores[student]:g} / 2" in text
        assert HIDDEN not in text, "hidden test leaked into feedback"
