"""What wrong answers look like: the kit's mutants, per lab, as a table.

A mutant (`roundtrip.Mutant`) is a plausible wrong answer: in solution cell `cell`
the text `old` becomes `new`, and the tests named in `must_lose` must then score
below their maximum. Where the course gradebook holds a round trip (students
named `mutant-<name>`, as `grading/roundtrip.py` grades them), the tests each
mutant actually lost are shown beside the ones it must lose.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd

from .course import GRADING

MUTANT_COLUMNS = ["lab", "mutant", "cell", "old", "new", "must_lose", "lost_in_gradebook"]


def load_mutants(mutants_dir: Path, lab: str) -> list:
    """The MUTANTS list of `<mutants_dir>/<lab>.py` (empty when the lab has no mutant file)."""
    path = Path(mutants_dir) / f"{lab}.py"
    if not path.is_file():
        return []
    if str(GRADING) not in sys.path:  # mutant files import `roundtrip.Mutant`
        sys.path.insert(0, str(GRADING))
    spec = importlib.util.spec_from_file_location(f"dashboard_mutants_{lab}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "MUTANTS"):
        raise ValueError(f"{path} defines no MUTANTS list")
    return list(module.MUTANTS)


def mutant_table(mutants_dir: Path, scores: pd.DataFrame | None = None, labs: list[str] | None = None) -> pd.DataFrame:
    """One row per mutant of each lab (all labs with a mutant file, or `labs`).

    Args:
        mutants_dir: folder of `<lab>.py` files defining MUTANTS.
        scores: `gradebook.load_scores` rows; where a student `mutant-<name>` submitted
            that lab, `lost_in_gradebook` lists the tests it scored below maximum on
            (else it is empty: this course did not grade that mutant).
        labs: only these labs.
    """
    names = labs if labs else sorted(p.stem for p in Path(mutants_dir).glob("*.py") if not p.stem.startswith("_"))
    rows = []
    for lab in names:
        for m in load_mutants(mutants_dir, lab):
            lost = ""
            if scores is not None and not scores.empty:
                mine = scores[(scores["student"] == f"mutant-{m.name}") & (scores["lab"] == lab)]
                if len(mine):
                    lost = ", ".join(sorted(mine.loc[mine["score"] < mine["max_score"], "question"])) or "(none)"
            rows.append((lab, m.name, m.cell, m.old, m.new, ", ".join(m.must_lose), lost))
    return pd.DataFrame(rows, columns=MUTANT_COLUMNS)
