"""Every lab's grading can fail: solution full marks, blank zero, mutants lose their points.

Runs the real nbgrader pipeline (generate_assignment, autograde, generate_feedback)
through grading/roundtrip.py; scores come from the gradebook.
"""

import html
import re
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "grading"))

import nbsource  # noqa: E402
import roundtrip  # noqa: E402

LABS = nbsource.labs()
pytestmark = [pytest.mark.notebook, pytest.mark.slow]


@pytest.fixture(scope="module", params=LABS)
def graded(request, tmp_path_factory):
    return roundtrip.run_roundtrip(request.param, course=tmp_path_factory.mktemp(request.param))


def test_solution_gets_full_marks(graded):
    assert graded.max_total > 0
    assert graded.scores["solution"] == graded.max_points, graded.table()


def test_blank_release_gets_zero_on_every_test(graded):
    assert all(score == 0 for score in graded.scores["blank"].values()), graded.table()


def test_course_config_alone_skips_ungraded_demos(graded):
    """Plain `nbgrader autograde` (no INFERLAB_AUTOGRADE in its environment) skips every run_demo cell."""
    source = (REPO / "grading" / "sources" / f"{graded.lab}.py").read_text()
    num_demos = source.count("if run_demo(")
    nb = nbformat.read(graded.course / "autograded" / "blank" / graded.lab / f"{graded.lab}.ipynb", as_version=4)
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert text.count("SKIPPED while autograding (ungraded demo)") == num_demos, f"{graded.lab}: a demo ran or errored"


def test_every_mutant_loses_the_points_it_should(graded):
    assert graded.mutants, f"{graded.lab} has no mutants in grading/mutants/"
    for mutant in graded.mutants:
        scores = graded.scores[f"mutant-{mutant.name}"]
        for cell in mutant.must_lose:
            assert scores[cell] < graded.max_points[cell], f"mutant {mutant.name} kept {cell}\n{graded.table()}"


def test_committed_release_matches_nbgrader_output(graded):
    fresh = graded.course / "labs" / graded.lab / f"{graded.lab}.ipynb"
    committed = REPO / "labs" / graded.lab / f"{graded.lab}.ipynb"
    assert committed.exists(), f"run `make release`: {committed} missing"
    assert committed.read_text() == fresh.read_text(), f"labs/{graded.lab} is stale: run `make release`"


def _hidden_lines(lab: str) -> list[str]:
    """Lines that occur only inside hidden-test blocks (setup lines shared with visible code reveal nothing)."""
    nb = nbformat.read(REPO / "solutions" / lab / f"{lab}.ipynb", as_version=4)
    pattern = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.S)
    hidden, visible = [], set()
    for cell in nb.cells:
        for block in pattern.findall(cell.source):
            hidden += [ln.strip() for ln in block.splitlines() if len(ln.strip()) > 25 and "import" not in ln]
        visible |= {ln.strip() for ln in pattern.sub("", cell.source).splitlines()}
    return [ln for ln in hidden if ln not in visible]


def test_hidden_tests_appear_nowhere_learners_look(graded):
    hidden = _hidden_lines(graded.lab)
    assert hidden, "this lab has no hidden tests"
    released = "\n".join(
        "\n".join(c.source for c in nbformat.read(p, as_version=4).cells) if p.suffix == ".ipynb" else p.read_text()
        for p in (REPO / "labs" / graded.lab).rglob("*")
        if p.is_file()
    )
    pages = [p.read_text() for p in (graded.course / "feedback").rglob("*.html")]
    assert pages, "no feedback was generated"
    # Feedback HTML is syntax-highlighted: drop tags and entities to compare plain text.
    feedback = html.unescape(re.sub(r"<[^>]+>", "", "\n".join(pages)))
    visible_test_line = _visible_test_line(graded.lab)
    assert visible_test_line in feedback, "positive control: a visible test line must be found in feedback"
    for line in hidden:
        assert line not in released, f"hidden test line released: {line}"
        assert line not in feedback, f"hidden test line in feedback: {line}"


def _visible_test_line(lab: str) -> str:
    nb = nbformat.read(REPO / "labs" / lab / f"{lab}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade"):
            for line in cell.source.splitlines():
                if line.startswith("assert") and len(line) > 25:
                    return line.strip()
    raise AssertionError(f"{lab}: no visible assert in any test cell")
