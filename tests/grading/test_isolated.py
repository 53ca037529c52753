"""The isolated executor on small synthetic notebooks: each guarantee, and its failing side.

Scores are computed with nbgrader's own `determine_grade` on the cells the executor returns,
so what is asserted is what nbgrader's SaveAutoGrades would record.
"""

import sys
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_notebook
from nbgrader.utils import determine_grade
from traitlets.config.loader import PyFileConfigLoader

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "grading"))

import isolated  # noqa: E402


def _cell(source, kind=None, grade_id=None):
    cell = new_code_cell(source)
    if kind == "answer":
        cell.metadata["nbgrader"] = {"solution": True, "grade": False, "grade_id": grade_id, "locked": False}
    elif kind == "test":
        cell.metadata["nbgrader"] = {"solution": False, "grade": True, "grade_id": grade_id, "points": 2, "locked": True}
    return cell


def _grade(cells, lab="lab0_baseline", **limits):
    executor = isolated.IsolatedExecute(**limits)
    nb, _ = executor.preprocess(new_notebook(cells=cells), {"nbgrader": {"assignment": lab}, "metadata": {"path": "."}})
    scores = {c.metadata["nbgrader"]["grade_id"]: determine_grade(c)[0] for c in nb.cells
              if c.metadata.get("nbgrader", {}).get("grade")}
    errors = {c.metadata["nbgrader"]["grade_id"]: [o.ename for o in c.outputs if o.output_type == "error"]
              for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}
    return nb, scores, errors


SETUP = "import math\nimport logging\nimport numpy as np\nfrom inferlab import metrics\n"
RECORD = "metrics.RequestRecord(0.0, 0.5, 1.0, 1, 2, (0.5, 1.0))"
# Notebook code looks through every live container for a later test cell's text.
SCAN = """import gc
def _scan():
    marker = ''.join(['HIDDEN_', 'ASSERT_7'])  # not folded into one constant
    for obj in gc.get_objects():
        values = list(obj.values()) if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else ()
        values = [*values, *(x for v in values if isinstance(v, dict) for x in v.values())]  # untracked dicts
        if any(isinstance(v, str) and marker in v for v in values):
            return True
    return False
print('later test seen:', _scan())"""


def test_outputs_stderr_hooks_and_delegation():
    nb, scores, errors = _grade([
        _cell(SETUP + "print('setup')\n1 + 1"),
        _cell("def ttft_s(record):\n    logging.warning('noisy but right')\n    np.log(np.zeros(1))\n"
              "    return record.first_token_time_s - record.arrival_time_s", "answer", "metric_functions"),
        # the test's own call of the reference is fine; stderr and a trailing value cost nothing
        _cell(f"assert math.isclose(ttft_s({RECORD}), metrics.ttft_s({RECORD}))\n'a trailing value'", "test", "t_ok"),
        _cell("assert ttft_s(" + RECORD + ") == 99", "test", "t_wrong"),
        _cell("get_ipython().events.register('pre_run_cell', lambda info: None)"),
        _cell(SCAN),
        _cell("np.testing.assert_allclose = lambda *a, **k: None"),
        _cell("assert 'HIDDEN_ASSERT_7'", "test", "t_after_patch"),
    ])
    assert nb.cells[0].outputs[-1].output_type == "execute_result"  # plain cells keep their value
    assert scores["t_ok"] == 2 and errors["t_ok"] == [], nb.cells[2].outputs
    assert "noisy but right" in nb.cells[2].outputs[0].text
    assert scores["t_wrong"] == 0 and errors["t_wrong"] == ["AssertionError"]
    assert "NameError" in [o.get("ename") for o in nb.cells[4].outputs], "no IPython in the grading process"
    assert nb.cells[5].outputs[0].text == "later test seen: False\n", "a later test cell's source reached the notebook"
    assert scores["t_after_patch"] == 0 and errors["t_after_patch"] == ["IntegrityError"]


def test_checks_replaced_at_call_time_and_subclassed_references(tmp_path):
    _, scores, errors = _grade([
        _cell("import math\nfrom inferlab.engine import kv_cache"),
        _cell("def f(x):\n    import math as m\n    m.isclose = lambda *a, **k: True\n    return 0.0", "answer", "patcher"),
        _cell("assert math.isclose(f(1), 1.0)", "test", "t_patch_at_call"),
        _cell("import functools\nSharingAllocator = type('S', (kv_cache.PagedBlockAllocator,), {})", "answer", "allocator"),
        _cell("assert SharingAllocator is not None", "test", "t_subclass"),
        _cell("import sys, types\ndef num_running(self):\n"
              "    ref = getattr(sys.modules['inferlab.engine.' + 'scheduler'], 'Continuous' + 'BatchingScheduler')\n"
              "    return getattr(ref, 'num_' + 'running')(self)", "answer", "scheduler"),
        _cell("assert num_running(types.SimpleNamespace(running=[1, 2])) == 2", "test", "t_dynamic"),
    ], lab="lab3_batching")
    assert scores == {"t_patch_at_call": 0, "t_subclass": 0, "t_dynamic": 0}, errors
    assert errors == {"t_patch_at_call": ["IntegrityError"], "t_subclass": ["DelegationError"],
                      "t_dynamic": ["DelegationError"]}


def test_per_cell_timeout_stops_the_notebook_and_names_the_limit():
    nb, scores, errors = _grade([
        _cell("x = 1"),
        _cell("assert x == 1", "test", "t_before"),
        _cell("import time\nwhile True:\n    time.sleep(0.1)"),
        _cell("assert x == 1", "test", "t_after"),
    ], lab="labx", cell_timeout_s={"labx": 3.0})
    assert scores == {"t_before": 2, "t_after": 0}
    assert nb.cells[2].outputs[-1].ename == "CellTimeoutError" and "3 s" in nb.cells[2].outputs[-1].evalue
    assert errors["t_after"] == ["NotRun"]


def test_a_process_that_exits_mid_notebook_is_recorded_and_the_rest_not_run():
    nb, scores, errors = _grade([
        _cell("x = 1"),
        _cell("assert x == 1", "test", "t_before"),
        _cell("import os\nos._exit(3)"),
        _cell("assert x == 1", "test", "t_after"),
    ], lab="labx")
    assert scores == {"t_before": 2, "t_after": 0}
    assert nb.cells[2].outputs[-1].ename == "GraderError" and "exit 3" in nb.cells[2].outputs[-1].evalue
    assert errors["t_after"] == ["NotRun"]


def test_course_config_grades_with_the_isolated_executor(tmp_path):
    config = PyFileConfigLoader("nbgrader_config.py", path=str(REPO / "grading")).load_config()
    assert config.Autograde.autograde_preprocessors[0] == "isolated.IsolatedExecute"
    assert "nbgrader.preprocessors.SaveAutoGrades" in config.Autograde.autograde_preprocessors
    assert config.IsolatedExecute.cell_timeout_s["lab5_autoscaling"] > config.IsolatedExecute.cell_timeout_s["lab0_baseline"]
    with pytest.raises(ValueError, match="timeouts must be > 0"):
        isolated.IsolatedExecute(cell_timeout_s={"labx": 0.0}).limits("labx")


def test_binary_and_surrogate_outputs_leave_a_notebook_that_can_be_written(tmp_path):
    """Lone surrogates, NULs and escapes in outputs: the cell is graded and the notebook still writes."""
    import nbformat

    nb, scores, _ = _grade([
        _cell("import sys\nprint('\\x00\\x07\\x1b[31m\\udcff\\ud800', end='')\n"
              "sys.stdout.write(bytes(range(256)).decode('latin-1'))\n'\\ud800'"),
        _cell("assert True", "test", "t_after"),
    ])
    assert scores == {"t_after": 2}
    nbformat.write(nb, tmp_path / "graded.ipynb")  # UnicodeEncodeError before the outputs were made valid
    assert "\x1b[31m" in "".join(o.get("text", "") for o in nb.cells[0].outputs)
