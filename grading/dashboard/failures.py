"""Which hidden tests fail most, and with what error, from the autograded notebooks.

nbgrader keeps each graded notebook as it ran under `autograded/<student>/<lab>/`.
A test cell that lost points carries an `error` output (exception type and message,
the last line of its traceback); where a grader prints the traceback as text
instead, its last `SomeError: message` line is read. The gradebook says which
tests failed (score below maximum); the notebooks say why.

Flow: autograded/*.ipynb -> `cell_errors` (one row per failing cell)
-> `failing_tests(scores, errors)` (one row per test, most failed first).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from .course import Course

NO_ERROR = "(no error output)"
ERROR_COLUMNS = ["student", "lab", "notebook", "question", "error_type", "error_message", "error"]
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# The last line of a Python traceback: `pkg.SomeError: message` (or a bare exception name).
_LAST_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Failed))(?::\s?(.*))?$")


def _error_of(outputs: list[dict]) -> tuple[str, str] | None:
    """(type, message) of a cell's error, from its `error` output or a printed traceback."""
    for out in outputs:
        if out.get("output_type") == "error":
            return _ANSI.sub("", out.get("ename", "")), _ANSI.sub("", out.get("evalue", "")).strip()
    text = "".join(
        "".join(o["text"]) if isinstance(o.get("text"), list) else o.get("text", "")
        for o in outputs
        if o.get("output_type") == "stream"
    )
    if "Traceback" not in text:
        return None
    for line in reversed(_ANSI.sub("", text).splitlines()):
        match = _LAST_LINE.match(line.strip())
        if match:
            return match.group(1), (match.group(2) or "").strip()
    return None


def _graded_cells(path: Path) -> list[tuple[str, list[dict]]]:
    try:
        nb = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"unreadable autograded notebook {path}: {exc}") from exc
    cells = []
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") == "code" and meta.get("grade") and meta.get("grade_id"):
            cells.append((meta["grade_id"], cell.get("outputs", [])))
    return cells


def cell_errors(course: Course) -> pd.DataFrame:
    """Every graded cell that raised, in every autograded notebook of the course.

    Returns:
        one row per (student, lab, notebook, question) with an error; `error` is
        "Type: message" (or "Type" where the message is empty). Empty (with the
        columns) when the course has no autograded folder.
    """
    rows = []
    root = course.autograded_dir
    if root is not None and root.is_dir():
        for path in sorted(root.glob("*/*/*.ipynb")):
            student, lab = path.parent.parent.name, path.parent.name
            for question, outputs in _graded_cells(path):
                found = _error_of(outputs)
                if found:
                    kind, message = found
                    error = f"{kind}: {message}" if message else kind
                    rows.append((student, lab, path.stem, question, kind, message, error))
    return pd.DataFrame(rows, columns=ERROR_COLUMNS)


def failing_tests(scores: pd.DataFrame, errors: pd.DataFrame) -> pd.DataFrame:
    """Per test cell: how many submissions lost points on it, and their most common error.

    Args:
        scores: `gradebook.load_scores` rows (possibly filtered).
        errors: `cell_errors` rows; only those of the submissions in `scores` count.

    Returns:
        columns lab, question, max_score, num_submissions, num_failed, fail_fraction,
        most_common_error, num_with_that_error; most failed first. A failed test whose
        notebook shows no error counts under NO_ERROR.
    """
    columns = ["lab", "question", "max_score", "num_submissions", "num_failed", "fail_fraction",
               "most_common_error", "num_with_that_error"]
    if scores.empty:
        return pd.DataFrame(columns=columns)
    key = ["student", "lab", "notebook", "question"]
    failed = scores[scores["score"] < scores["max_score"]].merge(errors[key + ["error"]], on=key, how="left")
    failed["error"] = failed["error"].fillna(NO_ERROR)
    rows = []
    for (lab, question), group in scores.groupby(["lab", "question"], sort=True):
        lost = failed[(failed["lab"] == lab) & (failed["question"] == question)]
        counts = lost["error"].value_counts()
        # Ties: a real error before NO_ERROR, then by name, so the table is stable.
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] == NO_ERROR, kv[0]))
        top = ranked[0] if ranked else ("", 0)
        rows.append((lab, question, float(group["max_score"].iloc[0]), len(group), len(lost),
                     len(lost) / len(group), top[0], int(top[1])))
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(["num_failed", "lab", "question"], ascending=[False, True, True]).reset_index(drop=True)
