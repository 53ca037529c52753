"""Tables an instructor reads off the scores: per-question spread, totals, students at risk.

All take the long score table of `gradebook.load_scores` (possibly filtered) and
return a new table; none reads files.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd


def question_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Per (lab, question): number of submissions, mean, min, max, and the fraction with full marks."""
    columns = ["lab", "question", "max_score", "num_submissions", "mean_score", "min_score", "max_scored",
               "full_marks_fraction"]
    if scores.empty:
        return pd.DataFrame(columns=columns)
    grouped = scores.assign(full=scores["score"] >= scores["max_score"]).groupby(["lab", "question"], sort=True)
    table = grouped.agg(
        max_score=("max_score", "first"),
        num_submissions=("score", "size"),
        mean_score=("score", "mean"),
        min_score=("score", "min"),
        max_scored=("score", "max"),
        full_marks_fraction=("full", "mean"),
    ).reset_index()
    return table[columns]


def totals(scores: pd.DataFrame) -> pd.DataFrame:
    """Per (student, lab): points scored, points possible and their fraction."""
    columns = ["student", "lab", "score", "max_score", "fraction"]
    if scores.empty:
        return pd.DataFrame(columns=columns)
    table = scores.groupby(["student", "lab"], sort=True)[["score", "max_score"]].sum().reset_index()
    table["fraction"] = table["score"] / table["max_score"].where(table["max_score"] > 0)
    return table[columns]


@dataclass(frozen=True)
class RiskRule:
    """Who is at risk: a total below `min_fraction` of the points possible over the labs submitted,
    or more than `max_missing_labs` of the course's labs not submitted.

    `describe()` is the sentence the dashboard prints above the table.
    """

    min_fraction: float = 0.5
    max_missing_labs: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_fraction <= 1.0:
            raise ValueError(f"min_fraction must be within [0, 1], got {self.min_fraction}")
        if self.max_missing_labs < 0:
            raise ValueError(f"max_missing_labs must be >= 0, got {self.max_missing_labs}")

    def describe(self) -> str:
        return (f"At risk: total below {self.min_fraction:.0%} of the points possible over the labs submitted, "
                f"or more than {self.max_missing_labs} lab(s) of the gradebook not submitted.")


def students_at_risk(
    scores: pd.DataFrame, all_labs: Iterable[str], all_students: Iterable[str] = (), rule: RiskRule = RiskRule()
) -> pd.DataFrame:
    """Students the rule flags, with the reason.

    Args:
        scores: `gradebook.load_scores` rows.
        all_labs: the labs every student should submit (the gradebook's assignments).
        all_students: students known to the course; one with no submission at all is at risk.
        rule: the thresholds.

    Returns:
        columns student, score, max_score, fraction, num_missing_labs, missing_labs, reason;
        one row per flagged student, lowest fraction first.
    """
    columns = ["student", "score", "max_score", "fraction", "num_missing_labs", "missing_labs", "reason"]
    all_labs = sorted(set(all_labs))
    per_student = scores.groupby("student")[["score", "max_score"]].sum()
    submitted = scores.groupby("student")["lab"].agg(lambda s: set(s))
    rows = []
    for student in sorted(set(per_student.index) | set(all_students)):
        score = float(per_student["score"].get(student, 0.0))
        max_score = float(per_student["max_score"].get(student, 0.0))
        fraction = score / max_score if max_score > 0 else 0.0
        missing = [lab for lab in all_labs if lab not in submitted.get(student, set())]
        reasons = []
        if max_score > 0 and fraction < rule.min_fraction:
            reasons.append(f"total {fraction:.0%} < {rule.min_fraction:.0%}")
        if len(missing) > rule.max_missing_labs:
            reasons.append(f"{len(missing)} lab(s) missing")
        if reasons:
            rows.append((student, score, max_score, fraction, len(missing), ", ".join(missing), "; ".join(reasons)))
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(["fraction", "student"]).reset_index(drop=True)
