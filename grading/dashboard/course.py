"""Where a course's grading data lives, for the instructor dashboard.

The dashboard only reads: the nbgrader gradebook (SQLite), the autograded
notebooks nbgrader wrote beside it (`autograded/<student>/<lab>/*.ipynb`), the
mutants in `grading/mutants/`, and, where `inferlab grade` wrote one, its side
record of grading time and failure reason per submission. Both layouts the kit
uses put `autograded/` beside the gradebook: the course config keeps
`grading/gradebook.db` with `grading/autograded/`, and a round-trip course keeps
`<course>/gradebook.db` with `<course>/autograded/`.

    course = Course.from_env()            # INFERLAB_GRADEBOOK, else grading/gradebook.db
    course = Course(Path("/tmp/c/gradebook.db"))
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

GRADING = Path(__file__).resolve().parents[1]
DEFAULT_GRADEBOOK = GRADING / "gradebook.db"
# What `inferlab grade` writes beside the gradebook (first one found is read).
RECORD_NAMES = ("grade_runs.json", "grading_record.jsonl", "grading_record.csv", "grade_record.jsonl", "grade_record.csv")


@dataclass(frozen=True)
class Course:
    """The files one course's dashboard reads.

    Attributes:
        gradebook_path: the nbgrader SQLite gradebook.
        autograded_dir: nbgrader's autograded folder (default: `autograded/` beside the gradebook).
            May be missing: then no test errors are shown, and the page says so.
        mutants_dir: the folder of `<lab>.py` mutant files (default: the kit's `grading/mutants/`).
        record_path: the side record of `inferlab grade` (default: the first of RECORD_NAMES
            beside the gradebook, or None when there is none).
    """

    gradebook_path: Path
    autograded_dir: Path | None = None
    mutants_dir: Path = GRADING / "mutants"
    record_path: Path | None = field(default=None)

    def __post_init__(self) -> None:
        gradebook = Path(self.gradebook_path).expanduser().resolve()
        if not gradebook.is_file():
            raise FileNotFoundError(
                f"gradebook not found: {gradebook} (run `nbgrader autograde LAB` from grading/, "
                "or pass the gradebook of another course: INFERLAB_GRADEBOOK=/path/gradebook.db)"
            )
        with gradebook.open("rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                raise ValueError(f"not an SQLite gradebook: {gradebook}")
        object.__setattr__(self, "gradebook_path", gradebook)
        autograded = Path(self.autograded_dir) if self.autograded_dir else gradebook.parent / "autograded"
        object.__setattr__(self, "autograded_dir", autograded.resolve())
        mutants = Path(self.mutants_dir).resolve()
        if not mutants.is_dir():
            raise FileNotFoundError(f"mutants folder not found: {mutants}")
        object.__setattr__(self, "mutants_dir", mutants)
        record = self.record_path
        if record is None:
            record = next((gradebook.parent / n for n in RECORD_NAMES if (gradebook.parent / n).is_file()), None)
        elif not Path(record).is_file():
            raise FileNotFoundError(f"grading record not found: {record}")
        object.__setattr__(self, "record_path", Path(record).resolve() if record else None)

    @classmethod
    def from_env(cls, gradebook: str | os.PathLike | None = None) -> "Course":
        """The course named by `gradebook`, else $INFERLAB_GRADEBOOK, else the kit's grading/gradebook.db."""
        path = gradebook or os.environ.get("INFERLAB_GRADEBOOK") or DEFAULT_GRADEBOOK
        autograded = os.environ.get("INFERLAB_AUTOGRADED") or None
        return cls(Path(path), autograded_dir=Path(autograded) if autograded else None)
