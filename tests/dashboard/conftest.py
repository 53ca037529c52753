"""One real gradebook for every dashboard test: lab 0's round trip graded by nbgrader.

`grading/roundtrip.py` grades the solution, the blank release and every mutant of
lab0_baseline with real nbgrader (`autograde`) in a throw-away course; the
dashboard's tables are checked against it. Built once per test session.
INFERLAB_DASHBOARD_COURSE=/path/to/course reuses a course a previous round trip
of lab 0 left (`python grading/roundtrip.py lab0_baseline` prints its path).
"""

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "grading"))

import roundtrip  # noqa: E402

LAB = "lab0_baseline"


@pytest.fixture(scope="session")
def graded(tmp_path_factory):
    """The round trip's result (scores read back through nbgrader's API) and its wall time in seconds."""
    reuse = os.environ.get("INFERLAB_DASHBOARD_COURSE")
    if reuse:
        course = Path(reuse)
        students = sorted(p.name for p in (course / "submitted").iterdir())
        max_points, scores, manual_points = roundtrip._read_gradebook(course, LAB, students)
        return roundtrip.RoundTrip(LAB, course, max_points, scores, mutants=roundtrip.load_mutants(LAB),
                                   manual_points=manual_points), float("inf")
    start = time.monotonic()
    result = roundtrip.run_roundtrip(LAB, course=tmp_path_factory.mktemp("dashboard-course"), with_feedback=False, jobs=1)
    return result, time.monotonic() - start


@pytest.fixture(scope="session")
def course(graded):
    from dashboard import Course

    return Course(graded[0].course / "gradebook.db")


@pytest.fixture
def course_copy(course, tmp_path):
    """A copy of the course (gradebook and autograded notebooks) a test may change."""
    from dashboard import Course

    shutil.copy(course.gradebook_path, tmp_path / "gradebook.db")
    shutil.copytree(course.autograded_dir, tmp_path / "autograded")
    return Course(tmp_path / "gradebook.db")
