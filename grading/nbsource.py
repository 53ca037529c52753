"""Build the nbgrader source notebooks in `solutions/` from percent-format sources.

`grading/sources/<lab>.py` is the one source of each lab. Cells are separated by
marker lines:

    # %% [markdown]                       a markdown cell (each line starts with "# ")
    # %%                                  a plain code cell
    # %% solution id=<grade_id>           an autograded answer cell (### BEGIN/END SOLUTION)
    # %% tests id=<grade_id> points=<n>   an autograder test cell (### BEGIN/END HIDDEN TESTS)
    # %% readonly id=<grade_id>           a locked code cell (setup learners must not edit)
    # %% [markdown] manual id=<grade_id> points=<n>
                                          a written answer graded by hand (the solution's text is
                                          the model answer; the release shows "YOUR ANSWER HERE")

`write_notebook` turns a source into a clean notebook: no outputs, no execution
counts, deterministic cell ids, only nbgrader and kernelspec metadata. Run
`python grading/nbsource.py` (or `make notebooks`) after editing a source.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
SOURCES = REPO / "grading" / "sources"
SOLUTIONS = REPO / "solutions"

_MARKER = re.compile(r"^# %%(?: \[(?P<kind>markdown)\])?(?: (?P<role>solution|tests|readonly|manual))?(?P<attrs>(?: \w+=\S+)*)\s*$")
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


@dataclass
class Cell:
    kind: str  # "markdown" | "code"
    role: str | None  # None | "solution" | "tests" | "readonly" | "manual"
    attrs: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    @property
    def source(self) -> str:
        lines = list(self.lines)
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if self.kind == "markdown":
            lines = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines]
        return "\n".join(lines)


def parse(text: str, name: str = "<source>") -> list[Cell]:
    """Split a percent-format source into cells; raises ValueError naming the line on bad markers."""
    cells: list[Cell] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("# %%"):
            match = _MARKER.match(line)
            if not match:
                raise ValueError(f"{name}:{number}: bad cell marker {line!r}")
            attrs = dict(pair.split("=", 1) for pair in match["attrs"].split())
            role = match["role"]
            if role and "id" not in attrs:
                raise ValueError(f"{name}:{number}: a {role} cell needs id=<grade_id>")
            if role in ("tests", "manual") and "points" not in attrs:
                raise ValueError(f"{name}:{number}: a {role} cell needs points=<n>")
            if role == "manual" and not match["kind"]:
                raise ValueError(f"{name}:{number}: a manual cell is a markdown cell: `# %% [markdown] manual ...`")
            cells.append(Cell("markdown" if match["kind"] else "code", role, attrs))
        elif cells:
            cells[-1].lines.append(line)
        elif line.strip():
            raise ValueError(f"{name}:{number}: text before the first cell marker")
    return [c for c in cells if c.source or c.role]


def _nbgrader_meta(cell: Cell) -> dict | None:
    if cell.role is None:
        return None
    graded = cell.role in ("tests", "manual")
    answer = cell.role in ("solution", "manual")
    return {
        "grade": graded,
        "grade_id": cell.attrs["id"],
        "locked": not answer,
        **({"points": int(cell.attrs["points"])} if graded else {}),
        "schema_version": 3,
        "solution": answer,
        "task": False,
    }


def to_notebook(cells: list[Cell], lab: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": KERNELSPEC}
    seen: set[str] = set()
    for index, cell in enumerate(cells):
        cell_id = cell.attrs.get("id", f"{lab}-{index:03d}")
        if cell_id in seen:
            raise ValueError(f"{lab}: duplicate cell id {cell_id!r}")
        seen.add(cell_id)
        if cell.kind == "markdown":
            node = nbformat.v4.new_markdown_cell(cell.source)
        else:
            node = nbformat.v4.new_code_cell(cell.source)
        node.id = cell_id
        meta = _nbgrader_meta(cell)
        node.metadata = {"nbgrader": meta} if meta else {}
        nb.cells.append(node)
    nbformat.validate(nb)
    return nb


def render(lab: str) -> str:
    """The notebook JSON text that `solutions/<lab>/<lab>.ipynb` must contain."""
    source = SOURCES / f"{lab}.py"
    nb = to_notebook(parse(source.read_text(), str(source)), lab)
    return nbformat.writes(nb) + "\n"


def labs() -> list[str]:
    return sorted(p.stem for p in SOURCES.glob("*.py"))


def write_all() -> list[Path]:
    written = []
    for lab in labs():
        target = SOLUTIONS / lab / f"{lab}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        text = render(lab)
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
            written.append(target)
    return written


if __name__ == "__main__":
    for path in write_all():
        print(f"wrote {path.relative_to(REPO)}")
    sys.exit(0)
