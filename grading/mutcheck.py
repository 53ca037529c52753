"""Check mutants quickly, without nbgrader: run a lab's cells in one process with an answer replaced.

The round trip (`roundtrip.py`) proves every mutant in `MUTANTS` through the real nbgrader pipeline,
one autograded notebook per mutant. Plausible wrong answers that would cost too much there live in
`DEV_MUTANTS` of `grading/mutants/<lab>.py`; this runner executes the lab's source cells in order
(solution cells with the mutant's replacement, markdown skipped) in one Python namespace and reports
which test cells fail, so that every row of `grading/requirements.md` can be re-checked:

    python grading/mutcheck.py lab3_batching                 # every DEV_MUTANT of the lab
    python grading/mutcheck.py lab3_batching NAME [NAME ...] # chosen mutants (DEV_MUTANTS or MUTANTS)
    python grading/mutcheck.py --solution lab3_batching      # the solution first (full marks?)

Exit status 1 when a mutant keeps a test it must lose (or the solution fails one). Ungraded demos are
skipped (INFERLAB_AUTOGRADE=1) and fast mode is on unless INFERLAB_FAST is set.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

GRADING = Path(__file__).resolve().parent
sys.path.insert(0, str(GRADING))

import nbsource  # noqa: E402
from roundtrip import Mutant  # noqa: E402


def load(lab: str) -> tuple[list[Mutant], list[Mutant]]:
    """(MUTANTS, DEV_MUTANTS) of `grading/mutants/<lab>.py`."""
    path = GRADING / "mutants" / f"{lab}.py"
    spec = importlib.util.spec_from_file_location(f"mutcheck_{lab}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.MUTANTS), list(getattr(module, "DEV_MUTANTS", []))


def run_cells(lab: str, mutant: Mutant | None) -> dict[str, str]:
    """Execute the lab's code cells; returns {test id: "ok" or the failure}.

    A mutant's run stops after the last test cell it must lose (later cells cannot change those).
    """
    cells = nbsource.parse((nbsource.SOURCES / f"{lab}.py").read_text(), lab)
    namespace: dict = {"__name__": "__main__"}
    results: dict[str, str] = {}
    for cell in cells:
        if cell.kind != "code":
            continue
        source = cell.source
        if mutant is not None and cell.role == "solution" and cell.attrs["id"] == mutant.cell:
            if mutant.old not in source:
                raise ValueError(f"mutant {mutant.name}: {mutant.old!r} not in solution cell {mutant.cell}")
            source = source.replace(mutant.old, mutant.new)
        try:
            exec(compile(source, f"{lab}:{cell.attrs.get('id', 'cell')}", "exec"), namespace)
            outcome = "ok"
        except Exception as exc:  # a failing cell is a result here, as under nbgrader
            outcome = f"{type(exc).__name__}: {str(exc)[:120]}"
        if cell.role == "tests":
            results[cell.attrs["id"]] = outcome
            if mutant is not None and all(t in results for t in mutant.must_lose):
                break
    return results


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    os.environ.setdefault("INFERLAB_FAST", "1")
    os.environ["INFERLAB_AUTOGRADE"] = "1"
    import matplotlib

    matplotlib.use("Agg")
    with_solution = "--solution" in argv
    argv = [a for a in argv if a != "--solution"]
    lab, names = argv[0], argv[1:]
    mutants, dev = load(lab)
    known = {m.name: m for m in mutants + dev}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown mutants for {lab}: {unknown}; known: {sorted(known)}")
    chosen = [known[n] for n in names] if names else dev
    failed = 0
    for mutant in ([None] if with_solution else []) + chosen:
        start = time.perf_counter()
        results = run_cells(lab, mutant)
        name = "solution" if mutant is None else mutant.name
        if mutant is None:
            kept_wrongly = [t for t, r in results.items() if r != "ok"]
            verdict = "full marks" if not kept_wrongly else f"FAILS {kept_wrongly}"
        else:
            kept_wrongly = [t for t in mutant.must_lose if results.get(t) == "ok"]
            verdict = "loses " + ", ".join(mutant.must_lose) if not kept_wrongly else f"KEEPS {kept_wrongly}"
        failed += bool(kept_wrongly)
        lost = [t for t, r in results.items() if r != "ok"]
        print(f"{name:<34} {verdict:<50} failing: {', '.join(lost) or '-'} ({time.perf_counter() - start:.0f} s)",
              flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
