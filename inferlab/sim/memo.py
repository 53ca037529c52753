"""A disk memo for pure simulator results: the same inputs and the same code give the stored answer.

Floor 2 of inferlab, used by `sim/oracle.py`: finding the replicas one oracle window
needs simulates the window many times, and notebooks, autograding (a fresh kernel per
submission) and `inferlab simulate` ask for the same windows again and again.

An entry is stored under `build_dir()/cache/<namespace>/<sha256>.json`, the hash of
- the inputs, canonicalised: numbers, strings, None, tuples/lists, float arrays (by
  their bytes) and dataclasses defined in `inferlab` (type name + every field); any
  other value (a user's subclass, a callable) makes the call uncacheable, so it is
  simply computed;
- every `.py` file of the installed `inferlab` package, hashed when this module is
  imported (so any edit to the simulator, a policy or the metrics starts afresh), and
  the Python and numpy versions.
Writes are atomic (temporary file + rename); an unreadable or malformed entry is
recomputed. `INFERLAB_NO_CACHE=1` turns the memo off.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

T = TypeVar("T")
_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_MAX_IN_PROCESS = 4096


class Uncacheable(TypeError):
    """An input the memo cannot key exactly."""


def _package_digest() -> str:
    digest = hashlib.sha256(f"{sys.version}\0numpy {np.__version__}\0".encode())
    for path in sorted(_PACKAGE_DIR.rglob("*.py")):
        digest.update(str(path.relative_to(_PACKAGE_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


PACKAGE_DIGEST = _package_digest()
_in_process: dict[str, Any] = {}


def _canon(value: Any) -> Any:
    """A JSON-able form of `value` that identifies it exactly (floats by repr, arrays by bytes)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return {"float": repr(value)}
    if isinstance(value, np.generic):
        return _canon(value.item())
    if isinstance(value, np.ndarray):
        return {"array": str(value.dtype), "shape": list(value.shape),
                "sha256": hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()}
    if isinstance(value, (tuple, list)):
        rows = _canon_rows(value)
        return rows if rows is not None else [_canon(v) for v in value]
    cls = type(value)
    if dataclasses.is_dataclass(value) and cls.__module__.split(".")[0] == "inferlab":
        return {"type": f"{cls.__module__}.{cls.__qualname__}",
                "fields": {f.name: _canon(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    raise Uncacheable(f"cannot key a {cls.__module__}.{cls.__qualname__}")


def _is_int(x: Any) -> bool:
    return type(x) is int and -(1 << 63) <= x < (1 << 63)


def _canon_column(column: list) -> Any:
    """One field over many rows: floats and ints as array bytes, strings/None and int tuples as JSON."""
    kinds = set(map(type, column))
    if kinds == {float}:
        return _canon(np.array(column, dtype=np.float64))
    if kinds == {int} and all(map(_is_int, column)):
        return _canon(np.array(column, dtype=np.int64))
    if kinds <= {str, type(None)}:
        return {"json": column}
    if kinds == {tuple} and all(_is_int(x) for row in column for x in row):
        return {"json": [list(row) for row in column]}
    return [_canon(v) for v in column]


def _canon_rows(values: tuple | list) -> dict | None:
    """A sequence of one `inferlab` dataclass (a trace), column by column; None for anything else.

    The same exactness as row by row (floats by their bytes, ints and strings as they are), at a
    fraction of the cost: a 25,000-request trace is keyed in a few hundredths of a second.
    """
    if len(values) < 2:
        return None
    cls = type(values[0])
    if not (dataclasses.is_dataclass(cls) and cls.__module__.split(".")[0] == "inferlab"):
        return None
    if any(type(v) is not cls for v in values):
        return None
    return {"rows": f"{cls.__module__}.{cls.__qualname__}", "num_rows": len(values),
            "columns": {f.name: _canon_column([getattr(v, f.name) for v in values]) for f in dataclasses.fields(cls)}}


def cache_key(namespace: str, **inputs: Any) -> str:
    """sha256 of the namespace, the package digest and the canonical inputs; raises Uncacheable."""
    text = json.dumps({"namespace": namespace, "package": PACKAGE_DIGEST,
                       "inputs": {k: _canon(v) for k, v in sorted(inputs.items())}}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def is_enabled() -> bool:
    return os.environ.get("INFERLAB_NO_CACHE", "") in ("", "0")


def cache_dir(namespace: str) -> Path:
    from inferlab.paths import build_dir

    return build_dir() / "cache" / namespace


def memoized(namespace: str, compute: Callable[[], T], is_valid: Callable[[Any], bool], **inputs: Any) -> T:
    """`compute()`, or the stored result for the same `inputs` and package code.

    Args:
        namespace: folder under the cache dir, one per kind of result.
        compute: the pure function of `inputs` to run on a miss; its result must be JSON-able.
        is_valid: checks a stored value before it is trusted (a malformed one is recomputed).
        inputs: everything the result depends on besides the package's code.
    """
    if not is_enabled():
        return compute()
    try:
        key = cache_key(namespace, **inputs)
    except Uncacheable:
        return compute()
    if key in _in_process:
        return _in_process[key]
    path = cache_dir(namespace) / f"{key}.json"
    try:
        stored = json.loads(path.read_text())["value"]
        if is_valid(stored):
            _remember(key, stored)
            return stored
    except (OSError, ValueError, KeyError, TypeError):
        pass
    value = compute()
    _remember(key, value)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
            json.dump({"namespace": namespace, "value": value}, handle)
        os.replace(handle.name, path)
    except OSError:
        pass  # a read-only build folder only costs the speed-up
    return value


def _remember(key: str, value: Any) -> None:
    if len(_in_process) >= _MAX_IN_PROCESS:
        _in_process.clear()
    _in_process[key] = value
