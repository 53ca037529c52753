"""Scores out of an nbgrader gradebook, as tables; filtering and CSV export.

The gradebook is opened read-only (SQLite `mode=ro`): the dashboard can never
change a grade. A score is what nbgrader itself reports (`nbgrader.api.Grade.score`):
the manual score where one was given, else the autograder's, plus extra credit.

Flow: gradebook.db -> `load_scores` (one row per student x lab x question)
-> `filter_scores` -> `to_csv` / the tables in `analysis.py`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

import pandas as pd

from .course import Course

SCORE_COLUMNS = ["student", "lab", "notebook", "question", "score", "max_score", "auto_score", "manual_score"]

# Mirrors nbgrader.api.Grade.score (a column_property with the same CASE).
_SCORES_SQL = """
SELECT sa.student_id AS student, a.name AS lab, nb.name AS notebook, bc.name AS question,
       CASE WHEN g.manual_score IS NOT NULL THEN g.manual_score + COALESCE(g.extra_credit, 0)
            WHEN g.auto_score IS NOT NULL THEN g.auto_score + COALESCE(g.extra_credit, 0)
            ELSE 0.0 END AS score,
       gc.max_score AS max_score, g.auto_score AS auto_score, g.manual_score AS manual_score
FROM grade g
JOIN base_cell bc ON bc.id = g.cell_id AND bc.type = 'GradeCell'
JOIN grade_cells gc ON gc.id = bc.id
JOIN submitted_notebook sn ON sn.id = g.notebook_id
JOIN notebook nb ON nb.id = sn.notebook_id
JOIN submitted_assignment sa ON sa.id = sn.assignment_id
JOIN assignment a ON a.id = sa.assignment_id
ORDER BY a.name, sa.student_id, nb.name, bc.name
"""


def connect(course: Course) -> sqlite3.Connection:
    """A read-only connection to the course gradebook."""
    conn = sqlite3.connect(f"file:{course.gradebook_path}?mode=ro", uri=True)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = {"grade", "base_cell", "grade_cells", "submitted_assignment", "assignment"} - tables
    if missing:
        conn.close()
        raise ValueError(f"{course.gradebook_path} is not an nbgrader gradebook (missing tables: {sorted(missing)})")
    return conn


def load_scores(course: Course) -> pd.DataFrame:
    """Every graded test cell's score for every submission.

    Returns:
        one row per (student, lab, notebook, question) with columns SCORE_COLUMNS;
        `question` is the grade id of the test cell, scores in points.
    """
    with connect(course) as conn:
        df = pd.read_sql_query(_SCORES_SQL, conn)
    return df[SCORE_COLUMNS]


def labs(course: Course) -> list[str]:
    """Every assignment the gradebook knows, submitted or not (sorted)."""
    with connect(course) as conn:
        return sorted(row[0] for row in conn.execute("SELECT name FROM assignment"))


def students(course: Course) -> list[str]:
    """Every student in the gradebook, with or without submissions (sorted)."""
    with connect(course) as conn:
        return sorted(row[0] for row in conn.execute("SELECT id FROM student"))


def submissions(course: Course) -> pd.DataFrame:
    """One row per submission: student, lab, and nbgrader's submission timestamp (None where not recorded)."""
    sql = """SELECT sa.student_id AS student, a.name AS lab, sa.timestamp AS submitted_at
             FROM submitted_assignment sa JOIN assignment a ON a.id = sa.assignment_id
             ORDER BY a.name, sa.student_id"""
    with connect(course) as conn:
        df = pd.read_sql_query(sql, conn)
    df["submitted_at"] = pd.to_datetime(df["submitted_at"], errors="coerce")
    return df


def filter_scores(
    scores: pd.DataFrame, labs: Iterable[str] | None = None, students: Iterable[str] | None = None
) -> pd.DataFrame:
    """Rows of `scores` for the given labs and students (None or empty: all of them).

    Raises:
        ValueError: a lab or student named that the table does not hold.
    """
    keep = pd.Series(True, index=scores.index)
    for column, wanted in (("lab", labs), ("student", students)):
        if not wanted:
            continue
        wanted = [wanted] if isinstance(wanted, str) else list(wanted)
        unknown = sorted(set(wanted) - set(scores[column]))
        if unknown:
            raise ValueError(f"unknown {column}(s) {unknown}; known: {sorted(set(scores[column]))}")
        keep &= scores[column].isin(wanted)
    return scores[keep].reset_index(drop=True)


def to_csv(scores: pd.DataFrame) -> str:
    """The scores as CSV text (header + one line per row), what the dashboard's export downloads."""
    return scores.to_csv(index=False, lineterminator="\n")
