"""Prove a lab's tests can fail: grade the solution, the blank release and mutants with nbgrader.

For one lab, in a throw-away course directory, this runs the real nbgrader
pipeline headless: `generate_assignment` from `solutions/`, one submission per
"student" (the solution filled into the release, the untouched release, and each
mutant from `grading/mutants/<lab>.py`), `autograde` of all of them in one call,
then reads every score from the gradebook (never from `nbgrader validate`,
which exits 0 on failure). `generate_feedback` is run too, so callers can check
that hidden tests do not leak.

    python grading/roundtrip.py lab0_baseline      # prints a score table
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
GRADING = REPO / "grading"


@dataclass(frozen=True)
class Mutant:
    """A plausible wrong answer: `old` replaced by `new` in solution cell `cell`.

    `must_lose` names the test cells (grade ids) that must score below their maximum.
    """

    name: str
    cell: str
    old: str
    new: str
    must_lose: tuple[str, ...]


@dataclass
class RoundTrip:
    """Scores per student per autograded test cell, the maxima, and where the course lives.

    Written answers graded by hand (`manual` cells) are listed in `manual_points`, not scored here.
    """

    lab: str
    course: Path
    max_points: dict[str, float]
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    mutants: list[Mutant] = field(default_factory=list)
    manual_points: dict[str, float] = field(default_factory=dict)

    def total(self, student: str) -> float:
        return sum(self.scores[student].values())

    @property
    def max_total(self) -> float:
        return sum(self.max_points.values())

    def table(self) -> str:
        ids = sorted(self.max_points)
        rows = [f"{'student':<34}" + "".join(f"{i[:14]:>16}" for i in ids) + f"{'total':>10}"]
        rows.append(f"{'(max)':<34}" + "".join(f"{self.max_points[i]:>16g}" for i in ids) + f"{self.max_total:>10g}")
        for student, cells in self.scores.items():
            rows.append(f"{student:<34}" + "".join(f"{cells.get(i, 0):>16g}" for i in ids) + f"{self.total(student):>10g}")
        return "\n".join(rows)


def load_mutants(lab: str) -> list[Mutant]:
    path = GRADING / "mutants" / f"{lab}.py"
    if not path.exists():
        return []
    spec = importlib.util.spec_from_file_location(f"mutants_{lab}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return list(module.MUTANTS)


def _course_config(course: Path) -> str:
    """The throw-away course's config: its own paths, and the kit's grading from course.configure_grading."""
    return f"""
import sys
sys.path.insert(0, {str(GRADING)!r})
from course import configure_grading
c = get_config()
c.CourseDirectory.course_id = "roundtrip"
c.CourseDirectory.root = {str(course)!r}
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "labs"
c.CourseDirectory.db_url = "sqlite:///{course / 'gradebook.db'}"
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "build", "*.db"]
configure_grading(c)
"""


def _nbgrader_start(course: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ)
    # nbgrader calls `alembic` by name when it creates a gradebook: the venv's bin must be on PATH.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.pop("INFERLAB_AUTOGRADE", None)  # the course config alone must make autograding skip demos
    cmd = [sys.executable, "-m", "nbgrader", *args]
    return subprocess.Popen(cmd, cwd=course, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _nbgrader_wait(processes: list[subprocess.Popen], args: tuple[str, ...]) -> None:
    """Wait for every process (all of them, even after one failed); raise on the first failure."""
    done = [(proc, *proc.communicate()) for proc in processes]
    for proc, out, err in done:
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}) in {proc.args}:\n{out[-3000:]}\n{err[-6000:]}")


def _nbgrader(course: Path, *args: str) -> None:
    _nbgrader_wait([_nbgrader_start(course, *args)], args)


def _nbgrader_all(courses: list[Path], *args: str) -> None:
    """The same nbgrader command in several courses at once."""
    _nbgrader_wait([_nbgrader_start(course, *args) for course in courses], args)


def default_jobs() -> int:
    """Concurrent autograde processes: INFERLAB_ROUNDTRIP_JOBS, else the CPU count (at most 4)."""
    return int(os.environ.get("INFERLAB_ROUNDTRIP_JOBS", "0")) or min(os.cpu_count() or 1, 4)


def _solution_code(nb: nbformat.NotebookNode) -> dict[str, str]:
    return {
        c.metadata["nbgrader"]["grade_id"]: c.source
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }


def _submission(release: nbformat.NotebookNode, answers: dict[str, str]) -> nbformat.NotebookNode:
    nb = nbformat.from_dict(json.loads(json.dumps(release)))
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    return nb


def setup_course(lab: str, course: Path) -> Path:
    """A course dir with the lab's solution copied in and released; returns the release notebook path."""
    (course / "nbgrader_config.py").write_text(_course_config(course))
    shutil.copytree(REPO / "solutions" / lab, course / "solutions" / lab, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    _nbgrader(course, "generate_assignment", lab, "--force")
    return course / "labs" / lab / f"{lab}.ipynb"


def run_roundtrip(lab: str, course: Path | None = None, with_feedback: bool = True, jobs: int | None = None) -> RoundTrip:
    """Autograde solution, blank and mutants of `lab`; returns every score."""
    solution = nbformat.read(REPO / "solutions" / lab / f"{lab}.ipynb", as_version=4)
    answers = _solution_code(solution)
    mutants = load_mutants(lab)
    students: dict[str, dict[str, str] | None] = {"solution": answers, "blank": None}
    for mutant in mutants:
        if mutant.old not in answers[mutant.cell]:
            raise ValueError(f"mutant {mutant.name}: {mutant.old!r} not found in solution cell {mutant.cell}")
        students[f"mutant-{mutant.name}"] = dict(answers, **{mutant.cell: answers[mutant.cell].replace(mutant.old, mutant.new)})
    result = grade_students(lab, students, course, with_feedback, jobs)
    result.mutants = mutants
    return result


def solution_answers(lab: str) -> dict[str, str]:
    """The solution's source of every answer cell of `lab`, by grade id."""
    return _solution_code(nbformat.read(REPO / "solutions" / lab / f"{lab}.ipynb", as_version=4))


def grade_students(lab: str, students: dict[str, dict[str, str] | None], course: Path | None = None,
                   with_feedback: bool = False, jobs: int | None = None) -> RoundTrip:
    """Autograde crafted submissions of `lab`: student -> answer cells by grade id (None: the untouched
    release). Each answer replaces the whole cell's source.

    The students are dealt round-robin over `jobs` courses (default `default_jobs()`) graded at the same
    time, each by one plain `nbgrader autograde` call with its own gradebook: `course` itself and copies
    under `course/shards/<k>/`. Every student's autograded notebook and feedback are then gathered
    under `course/` (so callers read one folder); `course/gradebook.db` holds shard 0's students.
    """
    course = Path(course or tempfile.mkdtemp(prefix=f"roundtrip-{lab}-"))
    release_path = setup_course(lab, course)
    release = nbformat.read(release_path, as_version=4)
    names = list(students)
    num_shards = max(1, min(jobs or default_jobs(), len(names)))
    shards = [course] + [_copy_course(course, course / "shards" / str(k)) for k in range(1, num_shards)]
    shard_of = {student: shards[i % num_shards] for i, student in enumerate(names)}
    for student, answers in students.items():
        nb = release if answers is None else _submission(release, answers)
        folder = shard_of[student] / "submitted" / student / lab
        for extra in release_path.parent.iterdir():  # files released beside the notebook
            if extra.name != release_path.name and extra.is_file():
                folder.mkdir(parents=True, exist_ok=True)
                shutil.copy(extra, folder / extra.name)
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / f"{lab}.ipynb")
    _nbgrader_all(shards, "autograde", lab, "--force")
    if with_feedback:
        _nbgrader_all(shards, "generate_feedback", lab, "--force")
    max_points, scores, manual_points = {}, {}, {}
    for shard in shards:
        members = [s for s in names if shard_of[s] == shard]
        max_points, shard_scores, manual_points = _read_gradebook(shard, lab, members)
        scores.update(shard_scores)
        if shard != course:
            for kind in ("submitted", "autograded", "feedback"):
                for student in members:
                    if (shard / kind / student).exists():
                        shutil.copytree(shard / kind / student, course / kind / student, dirs_exist_ok=True)
    return RoundTrip(lab, course, max_points, {s: scores[s] for s in names}, manual_points=manual_points)


def _copy_course(course: Path, shard: Path) -> Path:
    """A copy of a released course (sources, release, gradebook) with its own config and paths."""
    shard.mkdir(parents=True)
    for name in ("solutions", "labs", "source", "release"):
        if (course / name).exists():
            shutil.copytree(course / name, shard / name)
    shutil.copy(course / "gradebook.db", shard / "gradebook.db")
    (shard / "nbgrader_config.py").write_text(_course_config(shard))
    return shard


def _read_gradebook(course: Path, lab: str, students: list[str]):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", course_id="roundtrip") as gb:
        notebook = gb.find_notebook(lab, lab)
        max_points = {cell.name: cell.max_score for cell in notebook.grade_cells if cell.cell_type == "code"}
        manual_points = {cell.name: cell.max_score for cell in notebook.grade_cells if cell.cell_type != "code"}
        scores = {
            student: {cell: gb.find_grade(cell, lab, lab, student).score for cell in max_points}
            for student in students
        }
    return max_points, scores, manual_points


if __name__ == "__main__":
    result = run_roundtrip(sys.argv[1])
    print(result.table())
    print(f"course: {result.course}")
