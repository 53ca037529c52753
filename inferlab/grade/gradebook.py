"""Gradebooks of a batch: the template each sandbox starts from, and the merge into the course's.

Each sandbox grades into its own copy of a template gradebook (the lab's assignment, no
student), so parallel sandboxes never share a SQLite file (nbgrader's parallel-autograding
request, jupyter/nbgrader#174, settled on separate databases merged). `merge_scores` reads a
sandbox's database read-only with plain SQL, keeps only that student's autograde scores for the
grade cells the *course* gradebook knows, clamps them to each cell's maximum and writes them
through nbgrader's API, retrying while another process holds a lock. Nothing else the sandbox
wrote is read. `record_runs` keeps what nbgrader has no field for (time, status, reason) in
`grade_runs.json` beside the course gradebook.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

_SCORES_SQL = """
SELECT n.name, bc.name, g.auto_score
FROM grade g
JOIN submitted_notebook sn ON g.notebook_id = sn.id
JOIN submitted_assignment sa ON sn.assignment_id = sa.id
JOIN assignment a ON sa.assignment_id = a.id
JOIN notebook n ON sn.notebook_id = n.id
JOIN base_cell bc ON g.cell_id = bc.id
WHERE sa.student_id = ? AND a.name = ?
"""


class MergeFailed(RuntimeError):
    """The course gradebook stayed locked (or broken) for longer than the merge waits."""


@dataclass(frozen=True)
class GradeCell:
    notebook: str
    name: str
    max_score: float


def db_path(db_url: str) -> Path:
    if not db_url.startswith("sqlite:///"):
        raise ValueError(f"inferlab grade merges SQLite gradebooks only, got db_url {db_url!r}")
    return Path(db_url[len("sqlite:///"):])


def grade_cells(db_url: str, lab: str) -> list[GradeCell]:
    """The lab's grade cells as the course gradebook knows them."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        assignment = gb.find_assignment(lab)
        return [GradeCell(nb.name, cell.name, float(cell.max_score))
                for nb in assignment.notebooks for cell in nb.grade_cells]


def read_scores(sandbox_db: Path, lab: str, student: str) -> dict[tuple[str, str], float]:
    """(notebook, cell) -> auto_score for `student` in a sandbox's gradebook, opened read-only."""
    uri = f"file:{sandbox_db}?mode=ro&immutable=1"
    conn = sqlite3.connect(uri, uri=True)
    try:
        conn.execute("PRAGMA trusted_schema = OFF")
        rows = conn.execute(_SCORES_SQL, (student, lab)).fetchall()
    finally:
        conn.close()
    return {(nb, cell): float(score) for nb, cell, score in rows if isinstance(score, (int, float))}


def merge_scores(db_url: str, lab: str, student: str, scores: dict[tuple[str, str], float],
                 max_wait_s: float = 60.0) -> dict[str, float]:
    """Write `student`'s scores (0 where missing) for the known grade cells; returns cell -> score."""
    from nbgrader.api import Gradebook
    from sqlalchemy.exc import OperationalError

    deadline = time.monotonic() + max_wait_s
    delay_s = 0.2
    while True:
        try:
            written = {}
            cells = grade_cells(db_url, lab)
            with Gradebook(db_url) as gb, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # SQLAlchemy autoflush notes from nbgrader's own API
                gb.update_or_create_student(student)
                gb.update_or_create_submission(lab, student)
                for cell in cells:
                    grade = gb.find_grade(cell.name, cell.notebook, lab, student)
                    score = min(max(scores.get((cell.notebook, cell.name), 0.0), 0.0), cell.max_score)
                    grade.auto_score = score
                    grade.needs_manual_grade = False
                    written[cell.name] = score
                gb.db.commit()
            return written
        except OperationalError as exc:
            if time.monotonic() > deadline:
                raise MergeFailed(f"course gradebook still locked after {max_wait_s:g} s: {exc.orig}") from exc
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, 5.0)


def record_runs(db_url: str, lab: str, runs: dict[str, dict]) -> Path:
    """Merge per-student run records into grade_runs.json beside the gradebook; returns its path."""
    path = db_path(db_url).with_name("grade_runs.json")
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault(lab, {}).update(runs)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)
    return path
