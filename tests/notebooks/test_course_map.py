"""COURSE.md is the course map: hours that add up to MOD-526's 40, the same hours in every lab header and
in the README, and every roadmap item mapped to graded cells that exist."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COURSE = REPO / "COURSE.md"
SOURCES = REPO / "grading" / "sources"
ROADMAP_HOURS = {"lecture": 12, "lab": 18, "portfolio": 6, "assessment": 4}


def _table(section: str) -> list[list[str]]:
    """Rows (cells stripped) of the first markdown table under `## {section}` in COURSE.md."""
    text = COURSE.read_text()
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"COURSE.md has no section '## {section}'"
    rows = [line for line in match[1].splitlines() if line.startswith("|")]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows[2:]]  # skip header and rule


def _hours() -> dict[str, dict[str, float]]:
    out = {}
    for item, *cells in _table("Hours"):
        if item.startswith("**"):
            continue
        name = item.strip("`")
        out[name] = {kind: float(c.rstrip(" h") or 0) if c not in ("", "—") else 0.0
                     for kind, c in zip(ROADMAP_HOURS, cells)}
    return out


def test_hours_add_up_to_the_roadmap():
    hours = _hours()
    for kind, total in ROADMAP_HOURS.items():
        assert sum(h[kind] for h in hours.values()) == total, f"{kind} hours do not add up to {total}: {hours}"


def test_every_lab_is_in_the_map():
    hours = _hours()
    for source in SOURCES.glob("*.py"):
        assert source.stem in hours, f"{source.stem} has no row in COURSE.md's hours table"


@pytest.mark.parametrize("lab", sorted(p.stem for p in SOURCES.glob("*.py")))
def test_lab_header_states_the_same_hours(lab):
    h = _hours()[lab]
    header = (SOURCES / f"{lab}.py").read_text().split("# %%", 2)[1]
    if lab == "capstone":
        want = f"portfolio {h['portfolio']:g} h, assessment {h['assessment']:g} h"
    else:
        want = f"lecture {h['lecture']:g} h, lab {h['lab']:g} h"
    assert f"| Hours | {want}" in header, f"{lab}: its header must say '| Hours | {want} ...' as COURSE.md does"


def test_readme_lab_table_agrees():
    readme = (REPO / "README.md").read_text()
    for lab, h in _hours().items():
        if lab == "capstone":
            continue
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{lab}` |")), None)
        assert row, f"README's lab table has no row for {lab}"
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[3:5] == [f"{h['lecture']:g} h", f"{h['lab']:g} h"], f"README row for {lab}: {cells[3:5]}"


def _grade_ids(lab: str) -> set[str]:
    return set(re.findall(r"^# %% (?:\[markdown\] )?(?:tests|solution|manual) id=(\S+)", (SOURCES / f"{lab}.py").read_text(), re.M))


def test_every_roadmap_item_has_evidence_that_exists():
    rows = _table("Roadmap map")
    assert len(rows) >= 15, "objectives (3), topics (5), activities (3), assessments (2), competencies (2)"
    for item, *rest in rows:
        evidence = " ".join(rest)
        refs = re.findall(r"`(\w+):(\w+)`", evidence)
        planned = "not built" in evidence
        assert refs or planned, f"{item}: no graded cell named (`lab:grade_id`) and not marked 'not built'"
        for lab, grade_id in refs:
            assert (SOURCES / f"{lab}.py").exists(), f"{item}: no lab {lab}"
            assert grade_id in _grade_ids(lab), f"{item}: {lab} has no cell {grade_id}"
