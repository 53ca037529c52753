"""Crafted submissions that game the hidden tests, and one honest answer with stderr noise.

Each student replaces whole answer cells (by grade id) of the released lab; cells not named keep
the solution's answer. `EXPECTED_AFTER` gives, per student, the points each exercise must score
under the kit's grading (grading/isolated.py); the README's table also lists what they scored with
nbgrader's own kernel execution before it.
"""

from __future__ import annotations

_RECORD = '''
def _rec(log):
    t = log["token_times_s"]
    return RequestRecord(log["arrival_s"], t[0], t[-1], 1, len(t), tuple(t))
'''

# Lab 0: the metrics answered by the package's reference, imported by name.
METRICS_IMPORT = '''from inferlab.metrics import RequestRecord, SLO
from inferlab.metrics import ttft_s as _ttft, tpot_s as _tpot, goodput_rps as _goodput
''' + _RECORD + '''

def ttft_s(log: dict) -> float:
    return _ttft(_rec(log))


def tpot_s(log: dict) -> float:
    return _tpot(_rec(log))


def goodput_rps(logs, slo_ttft_s, slo_tpot_s, duration_s):
    return _goodput([_rec(x) for x in logs], SLO(ttft_s=slo_ttft_s, tpot_s=slo_tpot_s), duration=duration_s)
'''

# Lab 0: the same reference, reached through sys.modules and built-up strings (no name to spot).
METRICS_DYNAMIC = '''import sys as _sys
_m = _sys.modules["inferlab." + "met" + "rics"]
RequestRecord = getattr(_m, "Request" + "Record")
''' + _RECORD + '''

def ttft_s(log: dict) -> float:
    return getattr(_m, "tt" + "ft_s")(_rec(log))


def tpot_s(log: dict) -> float:
    return getattr(_m, "tp" + "ot_s")(_rec(log))


def goodput_rps(logs, slo_ttft_s, slo_tpot_s, duration_s):
    slo = getattr(_m, "S" + "LO")(ttft_s=slo_ttft_s, tpot_s=slo_tpot_s)
    return getattr(_m, "good" + "put_rps")([_rec(x) for x in logs], slo, duration=duration_s)
'''

_WRONG_METRICS = '''def ttft_s(log: dict) -> float:
    return 0.0


def tpot_s(log: dict) -> float:
    return 0.0


def goodput_rps(logs, slo_ttft_s, slo_tpot_s, duration_s):
    return 0.0
'''

# Lab 0: wrong metrics, and the checks replaced at the top level of the answer cell.
METRICS_PATCH_TOP = _WRONG_METRICS + '''

math.isclose = lambda *args, **kwargs: True
math.isnan = lambda x: True
'''

# Lab 0: wrong metrics, and an IPython input transformer that empties every cell with an assert.
METRICS_TRANSFORMER = _WRONG_METRICS + '''

get_ipython().input_transformers_post.append(
    lambda lines: ["pass\\n"] if any("assert" in line for line in lines) else lines)
'''

_ROOFLINE_SIGNATURE = '''def roofline_decode_tok_s(num_params, bytes_per_param, kv_bytes_per_token, context_tokens, batch_size,
                          mem_bw_bytes_s, peak_flops):
'''

# Lab 0: a correct roofline that prints a numpy RuntimeWarning and a log line on stderr.
ROOFLINE_NOISY = '''import logging
import warnings
''' + _ROOFLINE_SIGNATURE + '''    np.log(np.zeros(1))  # RuntimeWarning: divide by zero, on stderr
    logging.warning("roofline: %d sequences", batch_size)
    bytes_moved = num_params * bytes_per_param + batch_size * context_tokens * kv_bytes_per_token
    step_s = max(bytes_moved / mem_bw_bytes_s, 2.0 * num_params * batch_size / peak_flops)
    return batch_size / step_s
'''

# Lab 0: a wrong roofline that replaces math.isclose while the test calls it.
ROOFLINE_PATCH_AT_CALL = _ROOFLINE_SIGNATURE + '''    import math as _math
    _math.isclose = lambda *args, **kwargs: True
    return 1.0
'''

# Lab 0: a wrong roofline, and a pre_run_cell hook that emits an execute_result before each test.
ROOFLINE_HOOK = _ROOFLINE_SIGNATURE + '''    return 1.0


def _fake_result(info):
    if "assert" in info.raw_cell:
        get_ipython().displayhook("full marks")


get_ipython().events.register("pre_run_cell", _fake_result)
'''

# Lab 3: both policies are the package's reference: a literal subclass, and one built by name.
SCHEDULER_SUBCLASS = '''from inferlab.engine import ContinuousBatchingScheduler


class MyScheduler(ContinuousBatchingScheduler):
    pass
'''
ALLOCATOR_DYNAMIC = '''import sys as _sys
SharingAllocator = type("SharingAllocator", (getattr(_sys.modules["inferlab.engine"], "Paged" + "BlockAllocator"),), {})
'''

STUDENTS: dict[str, dict[str, dict[str, str]]] = {
    "lab0_baseline": {
        "delegate-import+noisy": {"metric_functions": METRICS_IMPORT, "roofline": ROOFLINE_NOISY},
        "delegate-dynamic+patch-at-call": {"metric_functions": METRICS_DYNAMIC, "roofline": ROOFLINE_PATCH_AT_CALL},
        "patch-top+transformer+hook": {"metric_functions": METRICS_PATCH_TOP + METRICS_TRANSFORMER[len(_WRONG_METRICS):],
                                       "roofline": ROOFLINE_HOOK},
    },
    "lab3_batching": {
        "delegate-subclass": {"scheduler": SCHEDULER_SUBCLASS, "allocator": ALLOCATOR_DYNAMIC},
    },
}
# Each IPython attack alone (graded only with nbgrader's kernel, for the README's "before" column).
BEFORE_ONLY = {
    "lab0_baseline": {
        "transformer-only": {"metric_functions": METRICS_TRANSFORMER},
        "hook-only": {"roofline": ROOFLINE_HOOK},
    },
}

# student -> exercise -> points it must score (metric_functions: 5 points, roofline: 4; lab 3: 5 + 11)
EXPECTED_AFTER: dict[str, dict[str, float]] = {
    "delegate-import+noisy": {"metric_functions": 0, "roofline": 4},
    "delegate-dynamic+patch-at-call": {"metric_functions": 0, "roofline": 0},
    "patch-top+transformer+hook": {"metric_functions": 0, "roofline": 0},
    "delegate-subclass": {"allocator": 0, "scheduler": 0},
}
TESTS_OF = {
    "metric_functions": ("test_ttft", "test_tpot", "test_goodput"),
    "roofline": ("test_roofline_memory", "test_roofline_compute"),
    "allocator": ("test_allocator_basic", "test_allocator_prefix"),
    "scheduler": ("test_scheduler_correct", "test_scheduler_preemption", "test_scheduler_fcfs",
                  "test_scheduler_budget", "test_throughput"),
}
