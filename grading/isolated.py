"""nbgrader preprocessor of the course config: autograde each notebook in a fresh `python` process.

It takes the place of nbgrader's `Execute` in `Autograde.autograde_preprocessors`
(grading/course.py), so a notebook is executed once, by grading/isolated_child.py, not in an
IPython kernel the answers could patch. What it changes against nbgrader's own execution:
- ungraded demos are skipped because this executor sets `INFERLAB_AUTOGRADE=1` in the child's
  environment (`inferlab.notebook.run_demo`): plain `nbgrader autograde` needs no variable;
- a test cell's outputs are rewritten from the isolated run: its stdout and stderr as one stdout
  stream (warnings and log lines cost nothing), then an error output iff the test failed, never an
  `execute_result` (nbgrader would score that before looking at the error);
- a test fails when a checking function was replaced (IntegrityError), and every test of an
  exercise fails when its answer delegates to the package's reference (DelegationError);
- timeouts per cell and per notebook are sized per lab; on a timeout the child's process group is
  killed and the remaining cells are marked as not run.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nbformat import NotebookNode, from_dict
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Dict, Float, Unicode

import references

GRADING = Path(__file__).resolve().parent
BOOT = "import sys; sys.path.insert(0, sys.argv[1]); import isolated_child; isolated_child.main()"


def _cell_kind(cell: NotebookNode) -> str:
    meta = cell.metadata.get("nbgrader", {})
    if meta.get("solution"):
        return "answer"
    return "test" if meta.get("grade") else "plain"


def _valid_text(value: Any) -> Any:
    """`value` with every string made valid UTF-8 (lone surrogates become '?'), so the notebook can be written."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {key: _valid_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_valid_text(item) for item in value]
    return value


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _error(ename: str, evalue: str) -> dict[str, Any]:
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": [f"{ename}: {evalue}"]}


class IsolatedExecute(NbGraderPreprocessor):
    """Execute a notebook for grading in a fresh interpreter, with integrity checks."""

    default_cell_timeout_s = Float(600.0, help="Per-cell limit (s) for labs not in cell_timeout_s").tag(config=True)
    cell_timeout_s = Dict(value_trait=Float(), help="Per-cell limit (s) per lab (assignment id)").tag(config=True)
    default_max_notebook_s = Float(1800.0, help="Whole-notebook limit (s) for labs not in max_notebook_s").tag(config=True)
    max_notebook_s = Dict(value_trait=Float(), help="Whole-notebook limit (s) per lab").tag(config=True)
    python = Unicode(sys.executable, help="Interpreter that runs the notebook").tag(config=True)
    env = Dict(value_trait=Unicode(), default_value={"INFERLAB_AUTOGRADE": "1", "MPLBACKEND": "Agg"},
               help="Environment set for the notebook's process (on top of the grader's)").tag(config=True)

    def limits(self, lab: str) -> tuple[float, float]:
        cell_s = self.cell_timeout_s.get(lab, self.default_cell_timeout_s)
        notebook_s = self.max_notebook_s.get(lab, self.default_max_notebook_s)
        if cell_s <= 0 or notebook_s <= 0:
            raise ValueError(f"{lab}: timeouts must be > 0 (cell {cell_s} s, notebook {notebook_s} s)")
        return cell_s, notebook_s

    def job(self, nb: NotebookNode, lab: str) -> list[dict[str, Any]]:
        tests_of = references.TESTS_OF.get(lab, {})
        cells, exercise = [], None
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            kind, grade_id = _cell_kind(cell), cell.metadata.get("nbgrader", {}).get("grade_id")
            if kind == "answer":
                exercise = grade_id
            owner = tests_of.get(grade_id, exercise) if kind == "test" else None
            cells.append({"index": index, "kind": kind, "grade_id": grade_id, "exercise": owner, "source": cell.source})
        return cells

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict[str, Any]]:
        lab = resources.get("nbgrader", {}).get("assignment", "")
        cwd = resources.get("metadata", {}).get("path") or "."
        cells = self.job(nb, lab)
        cell_s, notebook_s = self.limits(lab)
        results, note = self.run_child(cells, lab, cwd, cell_s, notebook_s)
        delegation: dict[str, list[str]] = {}
        for cell in cells:
            found = results.get(cell["index"], {}).get("delegation", [])
            owner = cell["grade_id"] if cell["kind"] == "answer" else cell["exercise"]
            if found and owner:
                delegation.setdefault(owner, []).extend(found)
        for count, cell in enumerate(cells, start=1):
            nb_cell = nb.cells[cell["index"]]
            nb_cell.execution_count = count
            result = results.get(cell["index"])
            if result is None:
                nb_cell.outputs = [from_dict(_error("NotRun", note or "the grader stopped before this cell"))]
                continue
            outputs = result["outputs"]
            if cell["kind"] == "test":
                outputs = self.test_outputs(result, delegation.get(cell["exercise"], []), cell["exercise"])
            nb_cell.outputs = [from_dict(_valid_text(o)) for o in outputs]
            if "execution" in result:
                nb_cell.metadata["execution"] = result["execution"]
        return nb, resources

    @staticmethod
    def test_outputs(result: dict[str, Any], delegation: list[str], exercise: str | None) -> list[dict[str, Any]]:
        """A test cell as nbgrader must score it: text, then an error iff the test failed."""
        text = "".join(o.get("text", "") for o in result["outputs"] if o["output_type"] == "stream")
        text += "".join(o["data"]["text/plain"] + "\n" for o in result["outputs"] if o["output_type"] == "execute_result")
        errors = [o for o in result["outputs"] if o["output_type"] == "error"]
        outputs = [{"output_type": "stream", "name": "stdout", "text": text}] if text else []
        if result["problems"]:
            what = ", ".join(result["problems"])
            outputs.append(_error("IntegrityError", f"{what} was replaced by notebook code: checks must stay as "
                                  "Python and the lab define them, so this test fails"))
        elif delegation:
            why = "; ".join(dict.fromkeys(delegation))
            outputs.append(_error("DelegationError", f"the answer to '{exercise}' {why}: it must be your own code "
                                  "(the lab says what you may import), so its tests score zero"))
        elif errors:
            outputs.append(errors[0])
        elif result.get("failed"):
            outputs.append(_error("TestFailed", "the test did not complete"))
        return outputs

    def run_child(self, cells: list[dict[str, Any]], lab: str, cwd: str, cell_s: float,
                  notebook_s: float) -> tuple[dict[int, dict[str, Any]], str]:
        """Run the cells in a fresh interpreter; results by cell index, and why it stopped early (or "")."""
        read_fd, write_fd = os.pipe()
        cell_read_fd, cell_write_fd = os.pipe()
        env = {**os.environ, **self.env}
        job = {"references": references.references_of(lab), "event_fd": write_fd, "cell_fd": cell_read_fd,
               "guard_modules": ["builtins", "math", "numpy", "numpy.testing"]
               + (["torch", "torch.testing"] if any("torch" in c["source"] for c in cells if c["kind"] == "test") else [])}
        child = subprocess.Popen([self.python, "-c", BOOT, str(GRADING)], cwd=cwd, env=env, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=(write_fd, cell_read_fd),
                                 start_new_session=True)
        os.close(write_fd)
        os.close(cell_read_fd)
        pending, closed = list(cells), []

        def send_next() -> None:  # one cell at a time: no later cell's source is in the child early
            if pending:
                os.write(cell_write_fd, (json.dumps(pending.pop(0)) + "\n").encode())
            elif not closed:
                closed.append(os.close(cell_write_fd))

        tail: deque[bytes] = deque(maxlen=200)  # the process's own fd 1 and 2 (C libraries, workers), for the log
        drain = threading.Thread(target=lambda: tail.extend(child.stdout), daemon=True)
        drain.start()
        results: dict[int, dict[str, Any]] = {}
        note, buffer, started = "", b"", time.monotonic()
        cell_started, current, finished, started_at = started, None, False, _now_iso()
        try:
            child.stdin.write(json.dumps(job).encode())
            child.stdin.close()
            send_next()
            while True:
                now = time.monotonic()
                if current is not None and now - cell_started > cell_s:
                    note = f"cell {current} ran over the per-cell limit of {cell_s:g} s for {lab}"
                    break
                if now - started > notebook_s:
                    note = f"the notebook ran over its limit of {notebook_s:g} s for {lab}"
                    break
                ready, _, _ = select.select([read_fd], [], [], 0.5)
                if not ready:
                    continue
                chunk = os.read(read_fd, 1 << 20)
                if not chunk:  # the process ended (or closed its end of the pipe)
                    if not finished:
                        where = f"in cell {current}" if current is not None else "between cells"
                        try:
                            code = child.wait(timeout=5.0)
                        except subprocess.TimeoutExpired:  # it closed the pipe but lives on: stopped below
                            code = None
                        note = f"the grading process ended {where} (exit {code})"
                        self.log.warning("%s\n%s", note, b"".join(tail).decode(errors="replace")[-3000:])
                    break
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    event = json.loads(line)
                    if event["event"] == "start":
                        current, cell_started, started_at = event["index"], time.monotonic(), _now_iso()
                    elif event["event"] == "done":
                        # timestamps from the grader's clock, where nbclient puts them (instructor dashboard)
                        event["execution"] = {"iopub.execute_input": started_at, "shell.execute_reply": _now_iso()}
                        results[event["index"]], current = event, None
                        send_next()
                    elif event["event"] == "end":
                        finished = True
                if finished:
                    break
        except (BrokenPipeError, json.JSONDecodeError, KeyError) as exc:
            note = f"the grading process broke its protocol ({type(exc).__name__})"
        finally:
            self._stop(child)
            os.close(read_fd)
            if not closed:
                os.close(cell_write_fd)
        if note and current is not None and current not in results:
            results[current] = {"outputs": [_error("CellTimeoutError" if "limit" in note else "GraderError", note)],
                                "problems": [], "delegation": [], "failed": True}
        return results, note

    @staticmethod
    def _stop(child: subprocess.Popen) -> None:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        child.wait()
