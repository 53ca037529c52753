"""The autograding part of the course config, shared by grading/nbgrader_config.py and roundtrip.py.

`configure_grading(c)` sets what grading needs on an nbgrader config object, so that plain
`nbgrader autograde`, `inferlab grade` and the round-trip tests grade every lab the same way:
- autograding executes each notebook with `isolated.IsolatedExecute` (a fresh `python` process,
  hidden tests guarded against patching and delegation, ungraded demos skipped, stderr free)
  instead of nbgrader's IPython `Execute`;
- per-cell and per-notebook time limits sized per lab (fast mode runs well inside them; full mode
  is what learners run, up to the per-cell limit);
- feedback strips hidden tests and their tracebacks.
"""

from __future__ import annotations

from typing import Any

# Per lab: (per-cell limit s, whole-notebook limit s). Fast mode takes 1-5 min per notebook; full
# mode's longest graded cells (lab 5's hidden traces, lab 1's ranks) take a few minutes on 2 cores.
LIMITS_S: dict[str, tuple[float, float]] = {
    "lab0_baseline": (180.0, 900.0),
    "lab1_parallelism": (300.0, 1500.0),
    "lab2_frameworks": (300.0, 1200.0),
    "lab3_batching": (300.0, 1200.0),
    "lab4_routing": (300.0, 1200.0),
    "lab5_autoscaling": (600.0, 2400.0),
    "capstone": (300.0, 1200.0),
}
DEFAULT_LIMITS_S = (600.0, 2400.0)

AUTOGRADE_PREPROCESSORS = [
    "isolated.IsolatedExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
FEEDBACK_PREPROCESSORS = [
    "nbgrader.preprocessors.GetGrades",
    "feedback.ClearHiddenTestsInFeedback",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]


def configure_grading(c: Any) -> None:
    """Set autograding and feedback on nbgrader config `c` (grading/ must be on sys.path)."""
    c.Autograde.autograde_preprocessors = list(AUTOGRADE_PREPROCESSORS)
    c.IsolatedExecute.default_cell_timeout_s, c.IsolatedExecute.default_max_notebook_s = DEFAULT_LIMITS_S
    c.IsolatedExecute.cell_timeout_s = {lab: cell for lab, (cell, _) in LIMITS_S.items()}
    c.IsolatedExecute.max_notebook_s = {lab: total for lab, (_, total) in LIMITS_S.items()}
    # nbgrader's IPython executor is no longer used to grade; these bound any other use of it.
    c.Execute.timeout = int(DEFAULT_LIMITS_S[0])
    c.Execute.interrupt_on_timeout = True
    c.GenerateFeedback.preprocessors = list(FEEDBACK_PREPROCESSORS)
