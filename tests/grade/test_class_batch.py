"""One `inferlab grade` batch over lab 0: honest students, the blank, a mutant and every attack.

The class (grading/attacks/classroom.py + hostile.py) is graded by the real CLI in a subprocess,
two sandboxes at a time, with a secret in the grader's environment, a TCP port open on the
grader's loopback, and this test holding an exclusive lock on the course gradebook for a while
(a lock must delay merges, not abort the batch). Then: the honest students (before and after the
attacks) and the solution get full marks, the blank and every attack get 0, a mutant loses
the cells it must and keeps the others, every submission has a row, what the attacks printed
says "blocked", and nothing they tried is left on the host (files, processes, gradebook rows,
triggers). The one-shot probes (hostile.PROBES: files, secret, network, solution, gradebooks) share one
submission, each still judged by its own verdict line; every attack that ends a sandbox its own way
(loop, memory, fork bomb, huge or binary output, missing kernel, killing the grader) has its own.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "grading" / "attacks"))
sys.path.insert(0, str(REPO / "grading"))

import classroom  # noqa: E402
import hostile  # noqa: E402

LAB = "lab0_baseline"
SECRET = "s3cr3t-do-not-leak-7f1c"
FIRST_UID, NUM_JOBS = 63100, 2  # a uid range no other batch uses
MAX_CPU_S = 25
LOCK_HOLD_S = 8.0
GROUP_PROBES = True  # hostile.PROBES in one sandbox (each sandbox costs ~10 s)

pytestmark = [pytest.mark.slow, pytest.mark.notebook]


def _sandbox_or_skip() -> None:
    from inferlab.grade.host import Host, SandboxUnavailable

    try:
        Host.detect()
    except SandboxUnavailable as exc:
        pytest.skip(f"no sandbox on this machine: {exc}")


def _hold_lock(db: Path, hold_s: float, stop: threading.Event, held: list) -> None:
    while not db.exists() and not stop.is_set():
        time.sleep(0.2)
    time.sleep(1.0)
    if stop.is_set():
        return
    conn = sqlite3.connect(db, timeout=30, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    held.append(time.monotonic())
    stop.wait(hold_s)
    conn.execute("ROLLBACK")
    conn.close()


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    _sandbox_or_skip()
    course = tmp_path_factory.mktemp("class")
    course_db = course / "grading" / "gradebook.db"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    knows = hostile.Knowledge(course_db=str(course_db), repo=str(REPO), port=listener.getsockname()[1])
    honest, must_lose = classroom.honest_class(LAB)
    attacks = hostile.hostile_class(LAB, classroom.release_of(LAB), classroom.solution_answers(LAB), knows,
                                    group_probes=GROUP_PROBES)
    # Every mutant is proved in the round trip (tests/notebooks/test_roundtrip.py); here one (the first)
    # shows that the sandboxed CLI grades per cell as the round trip does (some cells lost, the rest kept).
    mutants = sorted(k for k in honest if k.startswith("mutant-"))[:1]
    must_lose = {k: must_lose[k] for k in mutants}
    students = {**attacks, "blank": honest["blank"], **{k: honest[k] for k in mutants}}
    config = classroom.make_course(LAB, course, students)
    stop, held = threading.Event(), []
    # The gradebook appears at the first merge, so the lock (1 s later) stalls that merge and every one
    # behind it (merges run on their own thread: the two sandbox workers go on grading meanwhile); 8 s is
    # several of the merge's retries.
    locker = threading.Thread(target=_hold_lock, args=(course_db, LOCK_HOLD_S, stop, held), daemon=True)
    locker.start()
    env = dict(os.environ, INFERLAB_FAST="1", **{hostile.SECRET_NAME: SECRET})
    # CPU cap: an honest lab 0 sandbox uses ~8 s of CPU, the 40 MB printer ~16 s; the SIGINT-proof loop
    # burns the whole cap before it is stopped, so the cap is most of that submission's cost.
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "inferlab", "grade", LAB, "--config", str(config), "--jobs", str(NUM_JOBS),
         "--max-notebook-s", "240", "--max-cpu-s", str(MAX_CPU_S), "--max-memory-mb", "2048", "--max-procs", "192",
         "--first-uid", str(FIRST_UID), "--work-dir", str(course / "work"), "--keep"],
        env=env, capture_output=True, text=True, timeout=1800)
    wall_s = time.monotonic() - start
    stop.set()
    listener.close()
    print(done.stdout[-6000:])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return dict(course=course, db=course_db, summary=summary, students=students, must_lose=must_lose,
                wall_s=wall_s, lock_held=bool(held), stdout=done.stdout)


def _autograded(batch, student: str) -> nbformat.NotebookNode | None:
    path = (batch["course"] / "work" / "sandboxes" / student / "course" / "grading" / "autograded" / student
            / LAB / f"{LAB}.ipynb")
    return nbformat.read(path, as_version=4) if path.exists() else None


def _student(kind: str) -> str:
    return hostile.student_of(kind, GROUP_PROBES)


def _text(nb: nbformat.NotebookNode) -> str:
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                     if isinstance(o.get("text", ""), str))


def test_every_submission_has_a_row_and_the_table_prints(batch):
    rows = batch["summary"]["students"]
    assert set(rows) == set(batch["students"])
    assert "student" in batch["stdout"] and "status" in batch["stdout"]
    assert batch["lock_held"], "the test never got to hold the course gradebook's lock"


def test_honest_students_and_solution_get_full_marks(batch):
    rows = batch["summary"]["students"]
    for student in ("a-honest-first", "z-honest-last"):
        assert rows[student]["status"] == "ok", rows[student]
        assert rows[student]["score"] == rows[student]["max_score"] > 0, rows[student]


def test_blank_and_every_attack_get_zero(batch):
    rows = batch["summary"]["students"]
    assert rows["blank"]["score"] == 0
    for kind, (_, status) in hostile.ATTACKS.items():
        row = rows[_student(kind)]
        assert row["score"] == 0, (kind, row)
        allowed = {status} | ({"cpu-limit"} if status == "timeout" else set()) | ({"failed"} if status == "memory" else set())
        assert row["status"] in allowed, (kind, row)


def test_mutants_lose_their_cells(batch):
    from nbgrader.api import Gradebook

    assert batch["must_lose"], "no mutant in the batch"
    with Gradebook(f"sqlite:///{batch['db']}") as gb:
        names = [c.name for c in gb.find_notebook(LAB, LAB).grade_cells if c.cell_type == "code"]
        for student, cells in batch["must_lose"].items():
            for cell in names:  # the cells it must lose are lost, every other cell keeps its full score
                grade = gb.find_grade(cell, LAB, LAB, student)
                if cell in cells:
                    assert grade.score < grade.max_score, (student, cell, grade.score)
                else:
                    assert grade.score == grade.max_score, (student, cell, grade.score)
            assert batch["summary"]["students"][student]["status"] == "ok"


def test_attacks_say_blocked(batch):
    for kind, (_, status) in hostile.ATTACKS.items():
        if status != "ok":
            continue
        nb = _autograded(batch, _student(kind))
        assert nb is not None, kind
        text = _text(nb)
        assert f"ATTACK {kind}: blocked" in text, (kind, text[-2000:])
        assert "SUCCEEDED" not in text and SECRET not in text


def test_kernel_imports_the_wheel_not_the_checkout(batch):
    text = _text(_autograded(batch, _student("read-solution")))
    site = batch["course"] / "work" / "site" / "inferlab" / "__init__.py"
    assert f"inferlab from {site}" in text, text[-1500:]


def test_nothing_left_on_the_host(batch):
    assert not (REPO / "PWNED").exists() and not (batch["db"].parent / "PWNED").exists()
    assert not Path("/tmp/inferlab-PWNED").exists()
    conn = sqlite3.connect(batch["db"])
    try:
        assert conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger'").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM grade WHERE manual_score IS NOT NULL").fetchone()[0] == 0
    finally:
        conn.close()
    lingering = subprocess.run(["ps", "-eo", "uid="], capture_output=True, text=True).stdout.split()
    assert not [u for u in lingering if FIRST_UID <= int(u) < FIRST_UID + NUM_JOBS]


def test_run_records_beside_the_gradebook(batch):
    runs = json.loads((batch["db"].parent / "grade_runs.json").read_text())[LAB]
    assert set(runs) == set(batch["students"])
    assert runs["m-memory-hog"]["reason"] and runs["a-honest-first"]["wall_s"] > 0
