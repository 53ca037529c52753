"""A throw-away course with a class of submissions, to grade with `inferlab grade`.

The class: the solution (filled into the release), the blank release and every mutant of
`grading/mutants/<lab>.py` (as `grading/roundtrip.py` builds them), and with `--attacks` the
hostile submissions of `grading/attacks/hostile.py` between two honest students. The course is
a copy of the kit's course config (grading/*.py) and `solutions/<lab>/`, laid out like the kit,
so `inferlab grade LAB --config DEST/grading/nbgrader_config.py` grades it.

    python grading/attacks/classroom.py lab0_baseline /tmp/class0 [--attacks]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import nbformat

GRADING = Path(__file__).resolve().parents[1]
REPO = GRADING.parent
sys.path.insert(0, str(GRADING))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import roundtrip  # noqa: E402  (grading/roundtrip.py: mutants and submissions)


def release_of(lab: str) -> nbformat.NotebookNode:
    return nbformat.read(REPO / "labs" / lab / f"{lab}.ipynb", as_version=4)


solution_answers = roundtrip.solution_answers  # the solution's answer cells by grade id (one definition)


def honest_class(lab: str) -> tuple[dict[str, nbformat.NotebookNode], dict[str, tuple[str, ...]]]:
    """Submissions (solution, blank, mutant-*) and, per mutant, the cells that must lose points."""
    release, answers = release_of(lab), solution_answers(lab)
    students = {"solution": roundtrip._submission(release, answers), "blank": release}
    must_lose = {}
    for mutant in roundtrip.load_mutants(lab):
        if mutant.old not in answers[mutant.cell]:
            raise ValueError(f"mutant {mutant.name}: {mutant.old!r} not in solution cell {mutant.cell}")
        wrong = dict(answers, **{mutant.cell: answers[mutant.cell].replace(mutant.old, mutant.new)})
        students[f"mutant-{mutant.name}"] = roundtrip._submission(release, wrong)
        must_lose[f"mutant-{mutant.name}"] = mutant.must_lose
    return students, must_lose


def make_course(lab: str, dest: Path, students: dict[str, nbformat.NotebookNode]) -> Path:
    """Write a course at `dest` holding `students`' submissions; returns its config path."""
    grading = dest / "grading"
    grading.mkdir(parents=True, exist_ok=True)
    for path in GRADING.glob("*.py"):
        shutil.copy(path, grading / path.name)
    shutil.copytree(REPO / "solutions" / lab, dest / "solutions" / lab, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    for student, nb in students.items():
        folder = grading / "submitted" / student / lab
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / f"{lab}.ipynb")
    return grading / "nbgrader_config.py"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("lab")
    parser.add_argument("dest", type=Path)
    parser.add_argument("--attacks", action="store_true", help="add the hostile submissions (lab0_baseline)")
    args = parser.parse_args(argv)
    students, _ = honest_class(args.lab)
    if args.attacks:
        import hostile

        knows = hostile.Knowledge(course_db=str(args.dest.resolve() / "grading" / "gradebook.db"), repo=str(REPO), port=1)
        students = hostile.hostile_class(args.lab, release_of(args.lab), solution_answers(args.lab), knows)
    config = make_course(args.lab, args.dest, students)
    print(f"{len(students)} submissions; grade them with:\n"
          f"  inferlab grade {args.lab} --config {config}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
