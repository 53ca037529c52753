"""Hidden tests judge the learner's own code: attacks score zero, honest noise keeps full marks.

Crafted submissions (tests/grading/attacks.py) go through the real nbgrader pipeline with the
kit's course config (grading/roundtrip.py: generate_assignment, then one `nbgrader autograde`
for all students of a lab); scores come from the gradebook. (That a blank lab, lab 5's included,
scores 0 with its ungraded demos skipped by the course config alone is checked by every lab's
round trip in tests/notebooks/test_roundtrip.py.)
"""

import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "grading"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import attacks  # noqa: E402
import roundtrip  # noqa: E402

pytestmark = [pytest.mark.notebook, pytest.mark.slow]


def _grade(lab, tmp_path_factory):
    solution = roundtrip.solution_answers(lab)
    students = {name: dict(solution, **answers) for name, answers in attacks.STUDENTS[lab].items()}
    return roundtrip.grade_students(lab, students, course=tmp_path_factory.mktemp(f"attacks-{lab}"))


@pytest.fixture(scope="module", params=sorted(attacks.STUDENTS))
def graded(request, tmp_path_factory):
    return _grade(request.param, tmp_path_factory)


def _autograded_outputs(graded, student):
    path = graded.course / "autograded" / student / graded.lab / f"{graded.lab}.ipynb"
    nb = nbformat.read(path, as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: c.outputs for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}


def test_each_attack_scores_what_it_should(graded):
    for student in attacks.STUDENTS[graded.lab]:
        for exercise, points in attacks.EXPECTED_AFTER[student].items():
            got = sum(graded.scores[student][t] for t in attacks.TESTS_OF[exercise])
            assert got == points, f"{student} scored {got} on {exercise} (expected {points})\n{graded.table()}"


def test_failed_tests_say_why(graded):
    """A delegating answer is told that it delegates (not a bare assertion error)."""
    for student, expected in attacks.EXPECTED_AFTER.items():
        if student not in attacks.STUDENTS[graded.lab] or not student.startswith("delegate"):
            continue
        outputs = _autograded_outputs(graded, student)
        exercise = next(e for e, p in expected.items() if p == 0)
        errors = [o for o in outputs[attacks.TESTS_OF[exercise][0]] if o.output_type == "error"]
        assert errors and errors[0].ename == "DelegationError", errors
        assert "reference" in errors[0].evalue, errors[0].evalue


def test_no_test_cell_is_scored_from_an_execute_result_or_stderr(graded):
    for student in attacks.STUDENTS[graded.lab]:
        for grade_id, outputs in _autograded_outputs(graded, student).items():
            kinds = {(o.output_type, o.get("name")) for o in outputs}
            assert ("execute_result", None) not in kinds and ("stream", "stderr") not in kinds, (student, grade_id, kinds)
