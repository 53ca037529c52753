"""Notebooks are committed clean and generated from their one source."""

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "grading"))

import nbsource  # noqa: E402

NOTEBOOKS = sorted((REPO / "solutions").glob("*/*.ipynb")) + sorted((REPO / "labs").glob("*/*.ipynb"))


@pytest.mark.parametrize("lab", nbsource.labs())
def test_solution_notebook_is_generated_from_its_source(lab):
    target = REPO / "solutions" / lab / f"{lab}.ipynb"
    assert target.read_text() == nbsource.render(lab), f"run `make notebooks`: {target} differs from grading/sources/{lab}.py"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(REPO)))
def test_notebook_is_clean(path):
    nb = json.loads(path.read_text())
    assert set(nb["metadata"]) <= {"kernelspec", "language_info"}, nb["metadata"].keys()
    for cell in nb["cells"]:
        assert set(cell["metadata"]) <= {"nbgrader", "deletable", "editable"}  # the last two: nbgrader's cell locks, (cell.get("id"), cell["metadata"])
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, cell.get("id")


def test_every_source_is_released():
    released = {p.parent.name for p in (REPO / "labs").glob("*/*.ipynb")}
    assert set(nbsource.labs()) <= released, "run `make release`"


def test_bad_cell_marker_names_the_line():
    with pytest.raises(ValueError, match=r"x.py:2: a solution cell needs id"):
        nbsource.parse("# %%\n# %% solution\npass\n", "x.py")
