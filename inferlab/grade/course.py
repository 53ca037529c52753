"""The course side of a batch: its config, its submissions, the wheel and the template gradebook.

Everything here runs as the instructor, before any submission is touched: read the course
config (`grading/nbgrader_config.py` by default), list the submissions, build a wheel of the
package once and install it into a private folder (so no sandbox imports the instructor's
checkout through the editable install), and release the lab in a private build course whose
gradebook becomes the template each sandbox copies.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from inferlab.paths import REPO_ROOT

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$")


@dataclass(frozen=True)
class Course:
    """What `inferlab grade` needs from the course config."""

    config_path: Path
    root: Path
    db_url: str
    source_dir: Path
    submitted_dir: Path
    cell_timeout_s: float | None
    max_notebook_s: float | None
    lab_cell_timeout_s: dict[str, float] = field(default_factory=dict)
    lab_max_notebook_s: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, config_path: Path) -> "Course":
        from traitlets.config.loader import PyFileConfigLoader

        config_path = Path(config_path).resolve()
        if not config_path.is_file():
            raise FileNotFoundError(f"course config {config_path} does not exist")
        cfg = PyFileConfigLoader(config_path.name, path=str(config_path.parent)).load_config()
        cd = cfg.CourseDirectory
        root = Path(cd.root) if "root" in cd else config_path.parent
        db_url = cd.db_url if "db_url" in cd else f"sqlite:///{root / 'gradebook.db'}"
        cap = cfg.InferlabGrade.max_notebook_s if "max_notebook_s" in cfg.InferlabGrade else None
        isolated = cfg.IsolatedExecute  # the course's per-lab limits (grading/course.py LIMITS_S)
        return cls(config_path=config_path, root=root, db_url=db_url,
                   source_dir=root / (cd.source_directory if "source_directory" in cd else "source"),
                   submitted_dir=root / (cd.submitted_directory if "submitted_directory" in cd else "submitted"),
                   cell_timeout_s=float(cfg.Execute.timeout) if "timeout" in cfg.Execute else None,
                   max_notebook_s=float(cap) if cap is not None else None,
                   lab_cell_timeout_s=dict(isolated.cell_timeout_s) if "cell_timeout_s" in isolated else {},
                   lab_max_notebook_s=dict(isolated.max_notebook_s) if "max_notebook_s" in isolated else {})

    def notebook_cap_s(self, lab: str) -> float | None:
        """Whole-notebook limit for `lab`: InferlabGrade's if set, else the executor's per-lab limit."""
        return self.max_notebook_s or self.lab_max_notebook_s.get(lab)

    def cell_cap_s(self, lab: str) -> float | None:
        """Per-cell limit for `lab`: the executor's per-lab limit, else nbgrader's Execute.timeout."""
        return self.lab_cell_timeout_s.get(lab) or self.cell_timeout_s

    def students(self, lab: str, only: list[str] | None = None) -> dict[str, Path]:
        """student id -> submission folder, for every submission of `lab` (or those in `only`)."""
        found = {}
        if self.submitted_dir.is_dir():
            for folder in sorted(self.submitted_dir.iterdir()):
                if (folder / lab).is_dir():
                    found[folder.name] = folder / lab
        if only:
            missing = [s for s in only if s not in found]
            if missing:
                raise ValueError(f"no submission of {lab} for {', '.join(missing)} under {self.submitted_dir}")
            found = {s: found[s] for s in only}
        bad = [s for s in found if not STUDENT_ID.match(s)]
        if bad:
            raise ValueError(f"student ids must match {STUDENT_ID.pattern}: {bad}")
        return found


def _nbgrader(cwd: Path, *args: str) -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args, "--log-level=WARN"], cwd=cwd, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-4000:]}")


def build_site(work: Path) -> Path:
    """The package as a wheel, installed (not editable) into `work/site`; returns that folder."""
    site = work / "site"
    if not (REPO_ROOT / "pyproject.toml").exists():  # already an installed, non-editable package
        shutil.copytree(Path(__file__).resolve().parents[1], site / "inferlab",
                        ignore=shutil.ignore_patterns("__pycache__"))
        return site
    src = work / "wheel-src"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO_ROOT / name).exists():
            shutil.copy(REPO_ROOT / name, src / name)
    shutil.copytree(REPO_ROOT / "inferlab", src / "inferlab", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    for cmd in ([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(work / "wheel"), str(src)],):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"building the wheel failed:\n{done.stderr[-4000:]}")
    wheel = next((work / "wheel").glob("inferlab-*.whl"))
    done = subprocess.run([*pip, "install", "--no-deps", "--no-compile", "--target", str(site), str(wheel)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"installing the wheel failed:\n{done.stderr[-4000:]}")
    shutil.rmtree(src)
    return site


def release(course: Course, lab: str, work: Path) -> tuple[Path, Path]:
    """Release `lab` in a private build course; returns (released folder, template gradebook)."""
    build = work / "build-course"
    shutil.copytree(course.config_path.parent, build / "grading",
                    ignore=lambda d, names: [n for n in names if not n.endswith(".py")])
    source = course.source_dir / lab
    if not source.is_dir():
        raise FileNotFoundError(f"no source of {lab} at {source}")
    shutil.copytree(source, build / "solutions" / lab, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    template = work / "template.db"
    root = f"--CourseDirectory.root={build}"
    _nbgrader(build / "grading", "generate_assignment", lab, "--force", root,
              "--CourseDirectory.source_directory=solutions", "--CourseDirectory.release_directory=labs",
              f"--CourseDirectory.db_url=sqlite:///{template}")
    return build / "labs" / lab, template


def ensure_assignment(course: Course, lab: str, work: Path) -> None:
    """Create `lab` in the course gradebook (from the build course of `release`) when it is missing."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(course.db_url) as gb:
        try:
            gb.find_assignment(lab)
            return
        except MissingEntry:
            pass
    build = work / "build-course"
    _nbgrader(build / "grading", "generate_assignment", lab, "--force", f"--CourseDirectory.root={build}",
              "--CourseDirectory.source_directory=solutions", "--CourseDirectory.release_directory=labs",
              f"--CourseDirectory.db_url={course.db_url}")
