"""The fresh interpreter that autogrades one notebook (started by grading/isolated.py).

Runs every code cell of the notebook, in order, in one namespace, in a plain `python` process:
no IPython, so no input transformers, no run-cell hooks, no display hook an answer could use to
fake a test's result. Before any notebook code runs it captures the checking functions
(integrity.CheckGuard) and wraps the package's reference objects (integrity.Tripwire). For each
cell it sends one JSON line to the parent over a pipe: the cell's outputs as nbformat dicts
(stdout, stderr, the value of a trailing expression, figures, the error) and, for test cells, the
integrity problems found. The parent turns that into the notebook nbgrader scores.

Job (JSON on stdin): {"references": {grade_id: [dotted names]}, "guard_modules": [...],
"event_fd": int, "cell_fd": int}. Cells arrive one JSON line at a time on `cell_fd`
({"index", "kind": "plain"|"answer"|"test", "grade_id", "exercise", "source"}), each sent only once
the one before is done, so no code sees a test cell before it runs; a test cell's source is dropped
from linecache after it ran.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import linecache
import os
import sys
import traceback
import types
import warnings
from typing import Any

import integrity


class _Capture(io.StringIO):
    """A cell's stdout or stderr (a text stream that is not a terminal)."""

    def isatty(self) -> bool:
        return False


def _error(exc: BaseException, cell_file: str) -> dict[str, Any]:
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != cell_file:
        tb = tb.tb_next  # drop this harness's frames
    lines = traceback.format_exception(type(exc), exc, tb)
    return {"output_type": "error", "ename": type(exc).__name__, "evalue": str(exc),
            "traceback": [line.rstrip("\n") for line in lines]}


def _figures() -> list[dict[str, Any]]:
    """Open matplotlib figures as PNG display data (what the inline backend would show), then closed."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return []
    outputs = []
    for num in plt.get_fignums():
        buffer = io.BytesIO()
        figure = plt.figure(num)
        figure.savefig(buffer, format="png", dpi=72, bbox_inches="tight")
        outputs.append({"output_type": "display_data", "metadata": {},
                        "data": {"image/png": base64.b64encode(buffer.getvalue()).decode(),
                                 "text/plain": repr(figure)}})
    plt.close("all")
    return outputs


class Runner:
    """Executes cells in one namespace and reports each to the parent."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.events = os.fdopen(job["event_fd"], "w", buffering=1)
        self.guard = integrity.CheckGuard(job["guard_modules"])
        self.tripwire = integrity.Tripwire({k: tuple(v) for k, v in job["references"].items()})
        self.references = job["references"]
        self.cells = os.fdopen(job["cell_fd"], "r")
        self.names: dict[str, list[str]] = {}  # exercise -> names its answer cell defines
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
        main = types.ModuleType("__main__")
        main.__dict__.update(self.namespace)
        self.namespace = main.__dict__
        sys.modules["__main__"] = main

    def send(self, event: dict[str, Any]) -> None:
        self.events.write(json.dumps(event) + "\n")
        self.events.flush()

    def run(self) -> None:
        for line in self.cells:
            cell = json.loads(line)
            self.send({"event": "start", "index": cell["index"]})
            self.send(self.run_cell(cell))
            del cell, line
        self.send({"event": "end"})

    def run_cell(self, cell: dict[str, Any]) -> dict[str, Any]:
        kind, exercise, source = cell["kind"], cell.get("exercise"), cell["source"]
        cell_file = f"<cell {cell['index']}: {cell.get('grade_id') or kind}>"
        linecache.cache[cell_file] = (len(source), None, source.splitlines(True), cell_file)
        result: dict[str, Any] = {"event": "done", "index": cell["index"], "problems": [], "delegation": []}
        if kind == "answer":
            refs = self.references.get(cell["grade_id"], [])
            result["delegation"] = integrity.static_problems(
                source, refs, lambda name: self.tripwire.is_reference(self.namespace.get(name)) is not None)
            self.names[cell["grade_id"]] = integrity.defined_names(source)
        if kind == "test":
            self.tripwire.active = exercise
            result["problems"] += self.guard.tampered(self.namespace)
            if exercise:
                result["delegation"] += self.tripwire.binding_problems(
                    exercise, self.names.get(exercise, []), self.namespace)
        stdout, stderr = _Capture(), _Capture()
        outputs: list[dict[str, Any]] = []
        error = None
        real = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = stdout, stderr
        try:
            tree = ast.parse(source, cell_file)
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            code = compile(tree, cell_file, "exec")
            self.tripwire.add_cell(code, kind, cell.get("grade_id"))
            exec(code, self.namespace)
            if last is not None:
                expr = compile(ast.Expression(last.value), cell_file, "eval")
                self.tripwire.add_cell(expr, kind, cell.get("grade_id"))
                value = eval(expr, self.namespace)
                if value is not None:
                    outputs.append({"output_type": "execute_result", "metadata": {}, "execution_count": None,
                                    "data": {"text/plain": repr(value)}})
        except BaseException as exc:  # noqa: BLE001 (SystemExit and KeyboardInterrupt are the cell's errors too)
            error = _error(exc, cell_file)
        finally:
            sys.stdout, sys.stderr = real
        if kind == "test":
            linecache.cache.pop(cell_file, None)
            result["problems"] += self.guard.tampered(self.namespace)
            if exercise:
                result["delegation"] += self.tripwire.found.pop(exercise, [])
            self.tripwire.active = None
        streams = [{"output_type": "stream", "name": name, "text": buf.getvalue()}
                   for name, buf in (("stdout", stdout), ("stderr", stderr)) if buf.getvalue()]
        result["outputs"] = streams + outputs + (_figures() if kind != "test" else []) + ([error] if error else [])
        result["failed"] = error is not None
        return result


def main() -> None:
    job = json.loads(sys.stdin.read())
    sys.stdin = open(os.devnull)  # noqa: SIM115 (notebook code reads nothing)
    warnings.filterwarnings("ignore", message=".*non-interactive.*cannot be shown")
    Runner(job).run()


if __name__ == "__main__":
    main()
