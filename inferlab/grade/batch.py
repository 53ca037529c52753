"""`inferlab grade LAB`: autograde a class in parallel, one sandbox per submission.

    inferlab grade lab0_baseline                       # every submission under grading/submitted/
    inferlab grade lab0_baseline --students ana bo --jobs 2 --config path/to/nbgrader_config.py

Prepares once (wheel, released lab, template gradebook; see course.py), then grades
`--jobs` submissions at a time, each in its own sandbox (sandbox.py) with a tqdm bar; a
submission that fails, is killed or times out is recorded with its reason and the batch goes
on. Each sandbox's scores are merged into the course gradebook (gradebook.py) as soon as it
ends, one merge at a time on a thread of its own (a locked gradebook delays merges, not
grading). Prints one summary table (student, score, time, status) and a JSON last line.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from inferlab.grade.course import Course, build_site, ensure_assignment, release
from inferlab.grade.gradebook import MergeFailed, grade_cells, merge_scores, read_scores, record_runs
from inferlab.grade.host import Host, SandboxUnavailable
from inferlab.grade.sandbox import BatchFiles, SandboxLimits, SandboxResult, run_sandbox
from inferlab.paths import REPO_ROOT, build_dir

FIRST_UID = 61000
PASSED_ENV = ("INFERLAB_FAST", "INFERLAB_NO_CACHE")


@dataclass
class StudentRow:
    student: str
    score: float
    max_score: float
    wall_s: float
    cpu_s: float | None
    status: str
    reason: str


def _seeds() -> tuple[Path, ...]:
    """Built artifacts every submission would otherwise rebuild (the tiny checkpoint, memo caches)."""
    root = build_dir()
    return tuple(p for p in (root / "models", root / "cache") if p.is_dir())


def _table(lab: str, rows: list[StudentRow]) -> str:
    width = max([len("student")] + [len(r.student) for r in rows])
    lines = [f"{'student':<{width}}  {lab + ' score':>20}  {'time s':>7}  {'cpu s':>7}  {'status':<9}  reason",
             "-" * (width + 60)]
    for r in rows:
        cpu = f"{r.cpu_s:7.1f}" if r.cpu_s is not None else f"{'-':>7}"
        lines.append(f"{r.student:<{width}}  {f'{r.score:g} / {r.max_score:g}':>20}  {r.wall_s:7.1f}  {cpu}  "
                     f"{r.status:<9}  {r.reason[:110]}")
    return "\n".join(lines)


def grade_class(lab: str, course: Course, students: dict[str, Path], limits: SandboxLimits, num_jobs: int,
                work: Path, keep: bool = False, first_uid: int = FIRST_UID) -> list[StudentRow]:
    """Grade every submission in `students`; returns one row per student (in the given order)."""
    host = Host.detect()
    print(host.describe(), flush=True)
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o700)
    site = build_site(work)
    released, template = release(course, lab, work)
    cells = grade_cells(f"sqlite:///{template}", lab)
    max_score = sum(c.max_score for c in cells)
    threads = max(1, (os.cpu_count() or 1) // num_jobs)
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    files = BatchFiles(lab=lab, site_dir=site, config_dir=course.config_path.parent, released_dir=released,
                       template_db=template, seeds=_seeds(), env=env)
    slots: queue.Queue[int] = queue.Queue()
    for slot in range(num_jobs):
        slots.put(slot)
    merge_lock = threading.Lock()
    rows: dict[str, StudentRow] = {}
    overall = tqdm(total=len(students), desc=f"grading {lab}", position=0, unit="student")

    def merge(result: SandboxResult) -> None:
        rows[result.student] = _merge(result, course, lab, max_score, merge_lock, work)
        overall.update(1)
        overall.set_postfix_str(f"{result.student}: {rows[result.student].status}")

    # Merges run one at a time on their own thread, so a sandbox slot is free again as soon as its
    # notebook ends: a course gradebook held locked (an instructor's open session) delays merges, not grading.
    merges = ThreadPoolExecutor(max_workers=1)
    merged = []

    def one(student: str, submission: Path) -> None:
        slot = slots.get()
        bar = tqdm(total=int(limits.max_wall_s), desc=f"{student[:24]:<24}", position=slot + 1, leave=False,
                   bar_format="{desc} {bar} {n_fmt}/{total_fmt} s")

        def tick(elapsed: float) -> None:
            bar.n = min(int(elapsed), bar.total)
            bar.refresh()
        try:
            result = run_sandbox(work / "sandboxes" / student, submission, student, files, first_uid + slot,
                                 limits, host, on_tick=tick)
        finally:
            bar.close()
            slots.put(slot)
        merged.append(merges.submit(merge, result))

    try:
        with ThreadPoolExecutor(max_workers=num_jobs) as pool:
            for future in [pool.submit(one, s, p) for s, p in students.items()]:
                future.result()
        for future in merged:
            future.result()
    finally:
        merges.shutdown(wait=True)
    overall.close()
    for student, row in rows.items():  # a lock held through a merge: once more, now the batch is over
        if row.status == "unmerged":
            result = SandboxResult(student, row.reason.split(" | ")[0], "", row.wall_s, row.cpu_s,
                                   work / "sandboxes" / student / "private" / "gradebook.db", Path())
            rows[student] = _merge(result, course, lab, max_score, merge_lock, work, max_wait_s=120.0)
    runs = {r.student: {**asdict(r), "graded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")} for r in rows.values()}
    record_runs(course.db_url, lab, runs)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    for student in students:
        log = work / "sandboxes" / student / "log.txt"
        if log.exists():
            shutil.copy(log, logs / f"{student}.txt")
    if not keep:
        shutil.rmtree(work / "sandboxes", ignore_errors=True)
    return [rows[s] for s in students]


def _merge(result: SandboxResult, course: Course, lab: str, max_score: float, lock: threading.Lock,
           work: Path, max_wait_s: float = 60.0) -> StudentRow:
    status, reason = result.status, result.reason
    scores = {}
    if status == "ok":
        try:
            scores = read_scores(result.db_path, lab, result.student)
        except Exception as exc:  # a sandbox gradebook nbgrader never finished
            status, reason = "failed", f"unreadable sandbox gradebook: {exc}"
        if status == "ok" and not scores:
            status, reason = "failed", "nbgrader recorded no grades"
    with lock:
        try:
            deadline = time.monotonic() + max_wait_s
            while True:
                try:
                    ensure_assignment(course, lab, work)
                    break
                except Exception as exc:  # the course gradebook locked (nbgrader's own error text)
                    if time.monotonic() > deadline:
                        raise MergeFailed(f"could not create {lab} in the course gradebook: {exc}") from exc
                    time.sleep(2.0)
            written = merge_scores(course.db_url, lab, result.student, scores, max_wait_s=max_wait_s)
        except MergeFailed as exc:
            return StudentRow(result.student, 0.0, max_score, result.wall_s, result.cpu_s, "unmerged",
                              f"{status} | {exc}")
    return StudentRow(result.student, sum(written.values()), max_score, result.wall_s, result.cpu_s, status, reason)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inferlab grade", description=__doc__.split("\n")[0])
    parser.add_argument("lab", help="assignment id, e.g. lab0_baseline")
    parser.add_argument("--students", nargs="+", help="grade only these students (default: every submission)")
    parser.add_argument("--jobs", type=int, default=2, help="submissions graded at once (default 2)")
    parser.add_argument("--config", type=Path, default=REPO_ROOT / "grading" / "nbgrader_config.py",
                        help="course config (default grading/nbgrader_config.py)")
    parser.add_argument("--max-notebook-s", type=float, help="per-notebook wall-clock cap "
                        "(default: InferlabGrade.max_notebook_s in the course config, else the lab's "
                        "IsolatedExecute.max_notebook_s + 60, else 900)")
    parser.add_argument("--max-cpu-s", type=float, help="CPU time per submission (default 2 x the notebook cap)")
    parser.add_argument("--max-memory-mb", type=int, default=4096, help="memory cap per submission (MiB)")
    parser.add_argument("--max-procs", type=int, default=256, help="processes per submission")
    parser.add_argument("--work-dir", type=Path, help="batch folder (default build/grade/<lab>-<time>)")
    parser.add_argument("--first-uid", type=int, default=FIRST_UID, help="kernels run as uids FIRST_UID.. "
                        "FIRST_UID+jobs-1 (default 61000); give concurrent batches disjoint ranges")
    parser.add_argument("--keep", action="store_true", help="keep every sandbox folder for inspection")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    if not 1000 <= args.first_uid <= 2**31 - args.jobs:
        parser.error(f"--first-uid must be an unprivileged uid >= 1000, got {args.first_uid}")
    course = Course.load(args.config)
    # The executor inside stops at its per-lab cap and marks what did not run; this outer cap (a
    # minute later) is the backstop that kills the whole sandbox.
    inner_cap_s = course.notebook_cap_s(args.lab)
    cap_s = args.max_notebook_s or (inner_cap_s + 60.0 if inner_cap_s else 900.0)
    limits = SandboxLimits(max_wall_s=cap_s, max_cpu_s=args.max_cpu_s or 2 * cap_s,
                           max_memory_bytes=args.max_memory_mb << 20, max_procs=args.max_procs)
    students = course.students(args.lab, args.students)
    if not students:
        parser.error(f"no submissions of {args.lab} under {course.submitted_dir}")
    work = args.work_dir or build_dir() / "grade" / f"{args.lab}-{time.strftime('%Y%m%d-%H%M%S')}"
    cell_s = course.cell_cap_s(args.lab)
    cell = f"{cell_s:g} s" if cell_s else "nbgrader's default"
    print(f"grading {len(students)} submission(s) of {args.lab}, {args.jobs} at a time; per-cell timeout {cell} "
          f"(course config), per-notebook cap {cap_s:g} s, memory {args.max_memory_mb} MiB, {args.max_procs} "
          f"processes", flush=True)
    start = time.monotonic()
    try:
        rows = grade_class(args.lab, course, students, limits, args.jobs, work, keep=args.keep, first_uid=args.first_uid)
    except SandboxUnavailable as exc:
        print(f"inferlab grade: {exc}")
        return 2
    print(_table(args.lab, rows))
    print(f"logs: {work / 'logs'}; run records: {Path(course.db_url[len('sqlite:///'):]).with_name('grade_runs.json')}")
    summary = {"lab": args.lab, "num_students": len(rows), "wall_s": round(time.monotonic() - start, 1),
               "num_ok": sum(r.status == "ok" for r in rows),
               "students": {r.student: {"score": r.score, "max_score": r.max_score, "status": r.status,
                                        "wall_s": round(r.wall_s, 1), "reason": r.reason} for r in rows}}
    print(json.dumps(summary))
    return 1 if any(r.status == "unmerged" for r in rows) else 0
