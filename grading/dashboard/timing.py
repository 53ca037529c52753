"""How long each submission took to grade, and why one failed, where that is known.

Two sources, the better one first:
1. the side record `inferlab grade` writes beside the gradebook (one row per
   submission: wall-clock grading time and failure reason), read when present;
2. otherwise what nbgrader itself leaves: each autograded notebook's cells carry
   the kernel's execution timestamps (`metadata.execution`, written by nbclient),
   so first cell start to last cell reply is the time the notebook ran (kernel
   start-up and nbgrader's own work not included), and the gradebook holds the
   submission timestamp (only when the submission had a `timestamp.txt`).

`source` in the returned table says which one each row came from.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd

from .course import Course
from .gradebook import submissions

TIMING_COLUMNS = ["student", "lab", "submitted_at", "grading_s", "num_cells_run", "failure_reason", "source"]
NBGRADER_SOURCE = "nbgrader: autograded notebook cell timestamps"
RECORD_SOURCE = "inferlab grade record"
# Accepted spellings of the side record's columns.
_ALIASES = {
    "student": ("student", "student_id"),
    "lab": ("lab", "assignment"),
    "grading_s": ("grading_s", "wall_s", "elapsed_s", "duration_s", "time_s"),
    "failure_reason": ("failure_reason", "reason", "error"),
}


def _stamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def notebook_run_s(path: Path) -> tuple[float | None, int]:
    """Seconds from the first cell's start to the last cell's end, and the number of cells that ran."""
    nb = json.loads(path.read_text())
    starts, ends = [], []
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {}).get("execution", {})
        start = meta.get("iopub.execute_input") or meta.get("iopub.status.busy")
        end = meta.get("shell.execute_reply") or meta.get("iopub.status.idle")
        if start and end:
            starts.append(_stamp(start))
            ends.append(_stamp(end))
    if not starts:
        return None, 0
    return (max(ends) - min(starts)).total_seconds(), len(starts)


def read_record(path: Path) -> pd.DataFrame:
    """The side record (grade_runs.json, JSON lines or CSV) as columns student, lab, grading_s, failure_reason."""
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        raw = pd.DataFrame(rows)
    elif path.suffix == ".json":  # `inferlab grade`'s grade_runs.json: {lab: {student: {wall_s, reason, ...}}}
        runs = json.loads(path.read_text())
        raw = pd.DataFrame([{**run, "student": student, "lab": lab}
                            for lab, students in runs.items() for student, run in students.items()])
    else:
        raw = pd.read_csv(path)
    out = {}
    for name, spellings in _ALIASES.items():
        found = next((s for s in spellings if s in raw.columns), None)
        if found is None and name in ("student", "lab"):
            raise ValueError(f"grading record {path} has no {name} column (one of {spellings}); "
                             f"it has {list(raw.columns)}")
        out[name] = raw[found] if found else None
    table = pd.DataFrame(out)
    table["grading_s"] = pd.to_numeric(table["grading_s"], errors="coerce")
    table["failure_reason"] = table["failure_reason"].where(table["failure_reason"].notna(), "")
    return table


def submission_times(course: Course) -> pd.DataFrame:
    """One row per submission in the gradebook: when submitted, how long grading ran, why it failed.

    Returns:
        columns TIMING_COLUMNS; `grading_s` is None where neither source knows.
    """
    subs = submissions(course)
    record = read_record(course.record_path) if course.record_path else None
    rows = []
    for sub in subs.itertuples(index=False):
        grading_s, num_cells, reason, source = None, 0, "", NBGRADER_SOURCE
        if record is not None:
            hit = record[(record["student"] == sub.student) & (record["lab"] == sub.lab)]
            if len(hit):
                last = hit.iloc[-1]  # the latest grading of that submission
                grading_s, reason, source = last["grading_s"], str(last["failure_reason"]), RECORD_SOURCE
        if source == NBGRADER_SOURCE:
            folder = course.autograded_dir / sub.student / sub.lab
            times = [notebook_run_s(p) for p in sorted(folder.glob("*.ipynb"))] if folder.is_dir() else []
            known = [t for t, _ in times if t is not None]
            grading_s = sum(known) if known else None
            num_cells = sum(n for _, n in times)
            if not times:
                reason = "no autograded notebook"
        rows.append((sub.student, sub.lab, sub.submitted_at, grading_s, num_cells, reason, source))
    return pd.DataFrame(rows, columns=TIMING_COLUMNS)
