"""Merging a sandbox's gradebook into the course's: only that student's auto scores, clamped, lock-proof.

Gradebooks are built with nbgrader's own API (no notebook runs): a course gradebook and a sandbox
gradebook that a hostile kernel "wrote" (its own manual_score at 1000, another student's rows, an
out-of-range auto_score, an extra unknown cell, a trigger). Also: a lock on the course gradebook
delays the merge and, held too long, fails it with a clear error instead of a traceback.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time

import pytest
from nbgrader.api import Gradebook

from inferlab.grade.gradebook import MergeFailed, grade_cells, merge_scores, read_scores, record_runs

LAB = "labx"


def _gradebook(path, students=()):
    url = f"sqlite:///{path}"
    with Gradebook(url) as gb:
        gb.add_assignment(LAB)
        gb.add_notebook(LAB, LAB)
        gb.add_grade_cell("t1", LAB, LAB, max_score=2, cell_type="code")
        gb.add_grade_cell("t2", LAB, LAB, max_score=3, cell_type="code")
        for student in students:
            gb.add_student(student)
            gb.add_submission(LAB, student)
    return url


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """Built once (nbgrader creates gradebooks slowly); each test gets copies."""
    tmp_path = tmp_path_factory.mktemp("books")
    course = _gradebook(tmp_path / "course.db", students=("honest",))
    with Gradebook(course) as gb:
        gb.find_grade("t1", LAB, LAB, "honest").auto_score = 2
        gb.find_grade("t2", LAB, LAB, "honest").auto_score = 3
        gb.db.commit()
    sandbox = _gradebook(tmp_path / "sandbox.db", students=("mallory", "honest"))
    with Gradebook(sandbox) as gb:
        gb.find_grade("t1", LAB, LAB, "mallory").auto_score = 50       # out of range
        gb.find_grade("t1", LAB, LAB, "mallory").manual_score = 1000   # own manual score
        gb.find_grade("t2", LAB, LAB, "mallory").auto_score = 1
        gb.find_grade("t1", LAB, LAB, "honest").auto_score = 0        # "zero the others"
        gb.db.commit()
    conn = sqlite3.connect(tmp_path / "sandbox.db")
    conn.execute("CREATE TRIGGER pwn AFTER UPDATE ON grade BEGIN UPDATE grade SET auto_score = 0; END")
    conn.commit()
    conn.close()
    return tmp_path


@pytest.fixture
def books(pristine, tmp_path):
    for name in ("course.db", "sandbox.db"):
        shutil.copy(pristine / name, tmp_path / name)
    return f"sqlite:///{tmp_path / 'course.db'}", tmp_path / "sandbox.db"


def test_only_own_auto_scores_clamped_are_merged(books):
    course, sandbox = books
    scores = read_scores(sandbox, LAB, "mallory")
    assert scores == {(LAB, "t1"): 50.0, (LAB, "t2"): 1.0}
    written = merge_scores(course, LAB, "mallory", scores)
    assert written == {"t1": 2.0, "t2": 1.0}
    with Gradebook(course) as gb:
        assert gb.find_submission(LAB, "mallory").score == 3.0
        assert gb.find_grade("t1", LAB, LAB, "mallory").manual_score is None
        assert gb.find_submission(LAB, "honest").score == 5.0  # untouched
    conn = sqlite3.connect(course[len("sqlite:///"):])
    assert conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger'").fetchone()[0] == 0
    conn.close()


def test_missing_scores_are_zero_and_cells_come_from_the_course(books, tmp_path):
    course, _ = books
    assert [c.name for c in grade_cells(course, LAB)] == ["t1", "t2"]
    assert merge_scores(course, LAB, "failed-student", {}) == {"t1": 0.0, "t2": 0.0}
    assert merge_scores(course, LAB, "x", {(LAB, "unknown-cell"): 9.0, (LAB, "t2"): -4.0}) == {"t1": 0.0, "t2": 0.0}


def test_a_lock_delays_the_merge(books):
    course, sandbox = books
    conn = sqlite3.connect(course[len("sqlite:///"):], isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN EXCLUSIVE")
    threading.Timer(2.0, lambda: conn.execute("ROLLBACK")).start()
    start = time.monotonic()
    written = merge_scores(course, LAB, "mallory", read_scores(sandbox, LAB, "mallory"), max_wait_s=60)
    assert written["t2"] == 1.0 and time.monotonic() - start >= 1.5
    conn.close()


def test_a_lock_held_too_long_fails_clearly(books):
    course, sandbox = books
    conn = sqlite3.connect(course[len("sqlite:///"):], isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(MergeFailed, match="locked"):
            merge_scores(course, LAB, "mallory", {}, max_wait_s=1.0)
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def test_run_records_are_merged_beside_the_gradebook(tmp_path):
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    record_runs(url, LAB, {"a": {"status": "ok"}})
    path = record_runs(url, LAB, {"b": {"status": "timeout", "reason": "cap"}})
    assert path == tmp_path / "grade_runs.json"
    assert set(__import__("json").loads(path.read_text())[LAB]) == {"a", "b"}
    with pytest.raises(ValueError, match="SQLite"):
        record_runs("postgresql://x/y", LAB, {})
