"""The instructor dashboard's data layer: plain functions from a course's files to tables.

    course = Course.from_env()                  # the gradebook to read (read-only)
    scores = load_scores(course)                # student x lab x question scores
    failing_tests(scores, cell_errors(course))  # which tests fail most, and with what
    students_at_risk(scores, labs(course), students(course), RiskRule())
    submission_times(course)                    # grading time and failure reason per submission
    mutant_table(course.mutants_dir, scores)    # what wrong answers look like

`dashboard.ipynb` beside these modules lays the tables out (Voila: `make dashboard`);
`plots.py` draws them. Import with `grading/` on sys.path (`import dashboard`).
"""

from .analysis import RiskRule, question_summary, students_at_risk, totals
from .course import Course
from .failures import cell_errors, failing_tests
from .gradebook import filter_scores, labs, load_scores, students, submissions, to_csv
from .mutants import mutant_table
from .timing import submission_times

__all__ = [
    "Course", "RiskRule", "cell_errors", "failing_tests", "filter_scores", "labs", "load_scores",
    "mutant_table", "question_summary", "students", "students_at_risk", "submission_times",
    "submissions", "to_csv", "totals",
]
