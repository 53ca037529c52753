"""Checks that keep hidden tests judging the learner's own code (used inside the isolated run).

Three parts, all run by grading/isolated_child.py in the fresh interpreter that grades a notebook:
- `CheckGuard`: the functions tests judge with (math.isclose, numpy.testing.*, torch.testing.*,
  builtins such as `abs`) are captured before any notebook code runs; a test cell fails when one
  was replaced or re-assigned while it ran, and the originals are put back before every test cell.
- `Tripwire`: the package's reference objects of each exercise (grading/references.py) are wrapped;
  a call reached from an answer cell's code while that exercise's tests run is a delegation.
  Frames are told apart by code-object identity (not by file names, which `compile` can forge).
- `static_problems`: an AST look at an answer cell for the references by name and for escape
  hatches (exec, importlib, frames, IPython's machinery), plus `binding_problems`: the names an
  exercise defines must be the answer cell's own functions and classes, not references or
  subclasses/aliases of them.
"""

from __future__ import annotations

import ast
import functools
import importlib
import sys
import types
from typing import Any, Callable, Iterable

GUARDED = {
    "builtins": ("abs", "all", "any", "isinstance", "issubclass", "len", "max", "min", "round", "sorted",
                 "sum", "getattr", "hasattr", "type", "float", "int", "list", "tuple", "zip", "range",
                 "__import__", "print", "repr", "globals"),
    "math": ("isclose", "isnan", "isinf", "isfinite", "fabs", "ceil", "floor"),
    "numpy": ("isclose", "allclose", "array_equal", "isnan", "isfinite", "all", "any", "abs", "asarray"),
    "numpy.testing": ("assert_allclose", "assert_array_equal", "assert_equal", "assert_almost_equal",
                      "assert_array_almost_equal", "assert_approx_equal", "assert_array_less"),
    "torch": ("allclose", "equal", "isclose"),
    "torch.testing": ("assert_close",),
}
MODULE_ALIASES = {"math": "math", "np": "numpy", "numpy": "numpy", "torch": "torch"}


class _Watched(types.ModuleType):
    """Module class swapped in for guarded modules: records writes to guarded attributes."""

    def __setattr__(self, name: str, value: Any) -> None:
        watched = _WRITES.get(self.__name__)
        if watched is not None and name in watched[0]:
            watched[1].append(f"{self.__name__}.{name}")
        super().__setattr__(name, value)


_WRITES: dict[str, tuple[tuple[str, ...], list[str]]] = {}


class CheckGuard:
    """Originals of the checking functions, captured before any notebook code runs."""

    def __init__(self, modules: Iterable[str]) -> None:
        self.writes: list[str] = []
        self.modules: dict[str, types.ModuleType] = {}
        self.originals: dict[tuple[str, str], Any] = {}
        for name in modules:
            module = importlib.import_module(name)
            self.modules[name] = module
            for attr in GUARDED.get(name, ()):
                if hasattr(module, attr):
                    self.originals[name, attr] = getattr(module, attr)
            _WRITES[name] = (GUARDED.get(name, ()), self.writes)
            if type(module) is types.ModuleType:
                module.__class__ = _Watched

    def tampered(self, namespace: dict[str, Any]) -> list[str]:
        """What was replaced since capture (and put every original back)."""
        found = list(dict.fromkeys(self.writes))
        self.writes.clear()
        for (name, attr), original in self.originals.items():
            module = self.modules[name]
            if sys.modules.get(name) is not module:
                found.append(f"sys.modules[{name!r}]")
                sys.modules[name] = module
            if module.__dict__.get(attr) is not original:
                found.append(f"{name}.{attr}")
                module.__dict__[attr] = original
        for alias, name in MODULE_ALIASES.items():
            if name in self.modules and alias in namespace and namespace[alias] is not self.modules[name]:
                if isinstance(namespace[alias], types.ModuleType) and namespace[alias].__name__ != name:
                    continue  # e.g. `import torch.nn.functional as F` style aliases of other modules
                found.append(f"the name {alias!r}")
                namespace[alias] = self.modules[name]
        return list(dict.fromkeys(found))


def _all_codes(code: types.CodeType) -> set[types.CodeType]:
    found = {code}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found |= _all_codes(const)
    return found


class Tripwire:
    """Wraps the reference objects of every exercise; records calls reached from answer code."""

    def __init__(self, references: dict[str, tuple[str, ...]]) -> None:
        self.test_codes: set[types.CodeType] = set()
        self.answer_codes: dict[types.CodeType, str] = {}
        self.active: str | None = None  # the exercise whose tests are running
        self.found: dict[str, list[str]] = {}
        self.objects: dict[int, tuple[str, str]] = {}  # id(reference object) -> (exercise, dotted name)
        self.classes: dict[type, tuple[str, str]] = {}
        originals: dict[int, Any] = {}
        for exercise, names in references.items():
            for dotted in names:
                module_name, _, attr = dotted.rpartition(".")
                obj = getattr(importlib.import_module(module_name), attr)
                if isinstance(obj, type):
                    self.classes[obj] = (exercise, dotted)
                    for key, member in list(vars(obj).items()):
                        if isinstance(member, types.FunctionType):
                            setattr(obj, key, self._wrap(member, exercise, f"{dotted}.{key}"))
                elif callable(obj):
                    originals[id(obj)] = self._wrap(obj, exercise, dotted)
                    self.objects[id(obj)] = (exercise, dotted)
        # Rebind every module attribute that holds an original (re-exports, `from x import y`).
        for module in list(sys.modules.values()):
            if module is None or not getattr(module, "__name__", "").startswith("inferlab"):
                continue
            for key, value in list(vars(module).items()):
                if id(value) in originals and not isinstance(value, type):
                    setattr(module, key, originals[id(value)])

    def _wrap(self, func: Callable, exercise: str, dotted: str) -> Callable:
        tripwire = self

        @functools.wraps(func)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if tripwire.active == exercise:
                tripwire._check(exercise, dotted)
            return func(*args, **kwargs)

        guarded.__inferlab_reference__ = (exercise, dotted)
        self.objects[id(guarded)] = (exercise, dotted)
        return guarded

    def _check(self, exercise: str, dotted: str) -> None:
        frame = sys._getframe(2)
        while frame is not None:
            if frame.f_code in self.test_codes:
                return
            if frame.f_code in self.answer_codes:
                self.found.setdefault(exercise, []).append(f"calls the reference {dotted}")
                return
            frame = frame.f_back

    def add_cell(self, code: types.CodeType, kind: str, grade_id: str | None) -> None:
        if kind == "test":
            self.test_codes |= _all_codes(code)
        elif kind == "answer":
            self.answer_codes.update(dict.fromkeys(_all_codes(code), grade_id))

    def is_reference(self, obj: Any) -> str | None:
        """The dotted reference `obj` is, wraps or derives from (None if it is none of these)."""
        seen = 0
        while isinstance(obj, (functools.partial, types.MethodType)) and seen < 16:
            obj, seen = (obj.func if isinstance(obj, functools.partial) else obj.__func__), seen + 1
        marker = getattr(obj, "__inferlab_reference__", None) if callable(obj) else None
        if marker:
            return marker[1]
        if id(obj) in self.objects:
            return self.objects[id(obj)][1]
        if isinstance(obj, type):
            for base in obj.__mro__:
                if base in self.classes:
                    return self.classes[base][1]
        return None

    def binding_problems(self, exercise: str, names: Iterable[str], namespace: dict[str, Any]) -> list[str]:
        """The exercise's names must be its answer cell's own code, not references or aliases."""
        problems = []
        for name in names:
            if name not in namespace:
                continue
            obj = namespace[name]
            ref = self.is_reference(obj)
            if ref:
                problems.append(f"`{name}` is or derives from the reference {ref}")
                continue
            members = [obj] if isinstance(obj, types.FunctionType) else []
            if isinstance(obj, type):
                members = [m for m in vars(obj).values() if isinstance(m, types.FunctionType)]
                for m in vars(obj).values():
                    ref = self.is_reference(m)
                    if ref:
                        problems.append(f"`{name}` takes its method from the reference {ref}")
            for m in members:
                if self.answer_codes.get(m.__code__) != exercise:
                    problems.append(f"`{name}` is not defined in its answer cell")
                    break
        return problems


def defined_names(source: str) -> list[str]:
    """Top-level names an answer cell binds (functions, classes, assignments)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def static_problems(source: str, references: Iterable[str], bound_to_reference: Callable[[str], bool]) -> list[str]:
    """References named in an answer cell's source, and escape hatches it uses.

    A bare name counts only when `bound_to_reference(name)` says the notebook binds it to a
    reference (lab 0's worked example `e2e_s` shares its name with `inferlab.metrics.e2e_s`)."""
    from references import ESCAPE_HATCHES

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    own = set(defined_names(source))
    by_name = {dotted.rpartition(".")[2]: dotted for dotted in references}
    modules = {dotted.rpartition(".")[0] for dotted in references}
    problems = []
    for node in ast.walk(tree):
        hits: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module:
            hits += [by_name[a.name] for a in node.names if a.name in by_name and f"{node.module}" in modules]
            hits += [f"from {node.module} import *" for a in node.names if a.name == "*"]
            hits += [f"import of {node.module}" for _ in [0] if node.module.split(".")[0] in ESCAPE_HATCHES]
        elif isinstance(node, ast.Import):
            hits += [f"import of {a.name}" for a in node.names if a.name.split(".")[0] in ESCAPE_HATCHES]
        elif isinstance(node, ast.Attribute):
            if node.attr in by_name and not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                hits.append(by_name[node.attr])
            if node.attr in ESCAPE_HATCHES:
                hits.append(f"`.{node.attr}`")
        elif isinstance(node, ast.Name):
            if node.id in by_name and node.id not in own and bound_to_reference(node.id):
                hits.append(by_name[node.id])
            if node.id in ESCAPE_HATCHES:
                hits.append(f"`{node.id}`")
        for hit in hits:
            kind = "uses" if hit.startswith(("`", "import", "from")) else "names the reference"
            problems.append(f"{kind} {hit}")
    return list(dict.fromkeys(problems))
