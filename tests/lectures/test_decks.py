"""Lecture decks: every deck executes and renders to reveal.js slides with content, hours, figures, sources.

The decks are rendered once for the module (`lectures/build.py`'s `render`, what `make slides`
runs), each in a fresh kernel; the tests then read the executed notebooks and the HTML.
"""

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Loaded under its own name: "build" is also the name of PyPI's packaging front end.
_spec = importlib.util.spec_from_file_location("lectures_build", REPO / "lectures" / "build.py")
build = importlib.util.module_from_spec(_spec)
sys.modules["lectures_build"] = build
_spec.loader.exec_module(build)

DECKS = build.decks()
SHOWN = ("slide", "subslide")  # slide types that start a slide
# The README's labs table: | `lab` | topic | objectives | lecture hours | lab hours | ...
LAB_ROW = re.compile(r"^\| `(?P<lab>\w+)` \|[^|]*\| (?P<objectives>[^|]*) \| (?P<hours>[\d.]+) h \|", re.M)
URL = re.compile(r"https?://\S+")
YEAR = re.compile(r"\b(19|20)\d\d\b")


def slides(nb) -> list[list]:
    """Cells grouped by slide: a slide or subslide cell starts a group; notes and skipped cells are left out."""
    groups: list[list] = []
    for cell in nb.cells:
        kind = cell.metadata["slideshow"]["slide_type"]
        if kind in ("notes", "skip"):
            continue
        if kind in SHOWN or not groups:
            groups.append([])
        groups[-1].append(cell)
    return groups


def visible(cell) -> bool:
    if cell.cell_type == "markdown":
        return bool(cell.source.strip())
    return any(o.output_type in ("stream", "display_data", "execute_result") and (o.get("text") or o.get("data"))
               for o in cell.outputs)


def lecture_hours_of_labs() -> dict[str, float]:
    return {m["lab"]: float(m["hours"]) for m in LAB_ROW.finditer((REPO / "README.md").read_text())}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("slides")
    return build.render_all(DECKS, out, jobs=2)


def test_committed_notebooks_are_generated_from_their_sources():
    assert build.stale_notebooks() == [], "run `python lectures/build.py --no-render` (or `make slides`)"


@pytest.mark.parametrize("deck", DECKS)
def test_committed_notebook_is_clean(deck):
    nb = json.loads((REPO / "lectures" / f"{deck}.ipynb").read_text())
    assert set(nb["metadata"]) == {"kernelspec"}
    for cell in nb["cells"]:
        assert set(cell["metadata"]) == {"slideshow"}, cell["id"]
        assert cell["metadata"]["slideshow"]["slide_type"] in build.SLIDE_TYPES, cell["id"]
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, cell["id"]


@pytest.mark.parametrize("deck", DECKS)
def test_every_slide_has_content(rendered, deck):
    path, nb = rendered[deck]
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{deck}: {errors[0].ename}: {errors[0].evalue}"
    groups = slides(nb)
    assert 10 <= len(groups) <= 20, f"{deck} has {len(groups)} slides, want 10-20"
    for number, group in enumerate(groups, start=1):
        assert any(visible(cell) for cell in group), f"{deck}: slide {number} ({group[0].id}) shows nothing"
    html = path.read_text()
    assert html.count("<section") >= len(groups), f"{deck}: fewer <section>s than slides in {path.name}"
    assert "plt.show()" not in html and "default_rng" not in html, f"{deck}: code inputs leaked onto the slides"
    for group in groups:  # every slide's heading reached the HTML
        heading = next((line for c in group if c.cell_type == "markdown" for line in c.source.splitlines()
                        if line.startswith("#")), None)
        if heading:
            words = re.sub(r"[`*&;]|nbsp", " ", heading.lstrip("# ")).split()[:2]
            assert all(w in html for w in words), f"{deck}: heading {heading!r} missing from the slides"


@pytest.mark.parametrize("deck", DECKS)
def test_figures_come_from_the_code(rendered, deck):
    _, nb = rendered[deck]
    figures = 0
    for cell in nb.cells:
        if cell.cell_type != "code" or cell.metadata["slideshow"]["slide_type"] == "skip":
            continue
        pngs = sum("image/png" in o.get("data", {}) for o in cell.outputs)
        if "plt.show()" in cell.source:
            assert pngs >= 1, f"{deck}: cell {cell.id} draws a figure but shows none"
        figures += pngs
    assert figures >= 2, f"{deck}: {figures} figure(s); every deck draws at least two from the kit's code"
    assert "data:image/png;base64," in rendered[deck][0].read_text(), f"{deck}: no inline figure in the HTML"


@pytest.mark.parametrize("deck", DECKS)
def test_title_slide_states_hours_objectives_and_lab(deck):
    first = build.to_notebook(deck).cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# Lecture "), f"{deck}: no title slide"
    hours = re.search(r"\*\*Hours:\*\* ([\d.]+) h", first.source)
    objectives = re.search(r"\*\*Objectives:\*\*(.*?)(&nbsp;|$)", first.source, re.S)
    prepares = re.search(r"\*\*Prepares:\*\*(.*)", first.source)
    assert hours and objectives and prepares, f"{deck}: title slide needs Hours, Objectives and Prepares"
    labs = re.findall(r"`(lab\d\w*)`", prepares[1])
    table = lecture_hours_of_labs()
    assert labs and all(lab in table for lab in labs), f"{deck}: prepares {labs}, not in the README's labs table"
    assert float(hours[1]) == sum(table[lab] for lab in labs), \
        f"{deck}: {hours[1]} h, but the README gives {[table[lab] for lab in labs]} h of lecture for {labs}"
    assert re.findall(r"O[1-3]", objectives[1]), f"{deck}: no objective (O1-O3) named"


def test_decks_add_up_to_the_course_lecture_hours():
    total = sum(float(re.search(r"\*\*Hours:\*\* ([\d.]+) h", build.to_notebook(d).cells[0].source)[1]) for d in DECKS)
    assert total == 12, f"the decks add up to {total} h of lecture, the course has 12 h"


@pytest.mark.parametrize("deck", DECKS)
def test_last_slide_lists_sources(deck):
    last = slides(build.to_notebook(deck))[-1]
    text = "\n".join(c.source for c in last)
    assert text.startswith("## Sources"), f"{deck}: the last slide is not 'Sources'"
    entries = [e for e in re.split(r"\n(?=- )", text.split("\n", 1)[1].strip()) if e.startswith("- ")]
    assert len(entries) >= 5, f"{deck}: {len(entries)} sources"
    for entry in entries:  # authors or publisher, title in italics, then a year or a URL
        assert "*" in entry and (URL.search(entry) or YEAR.search(entry)), f"{deck}: incomplete source {entry!r}"
    assert sum(bool(URL.search(e)) for e in entries) >= 3, f"{deck}: fewer than 3 sources with a URL"


def test_check_command(capsys, tmp_path, monkeypatch):
    assert build.main(["--check"]) == 0
    monkeypatch.setattr(build, "NOTEBOOKS", tmp_path)  # no committed notebooks there
    assert build.main(["--check", DECKS[0]]) == 1
    assert f"lectures/{DECKS[0]}.ipynb is not what lectures/sources/{DECKS[0]}.py generates" in capsys.readouterr().out


def test_bad_slide_type_is_named(tmp_path, monkeypatch):
    (tmp_path / "zz.py").write_text("# %% [markdown] slide=sideways\n# # Title\n")
    monkeypatch.setattr(build, "SOURCES", tmp_path)
    with pytest.raises(ValueError, match=r"zz.py: cell 0: slide='sideways' is not one of slide, subslide"):
        build.to_notebook("zz")


def test_a_failing_cell_fails_the_render_naming_it(tmp_path, monkeypatch):
    (tmp_path / "zz.py").write_text("# %% [markdown]\n# # Title\n\n# %%\nraise ValueError('figure data missing')\n")
    monkeypatch.setattr(build, "SOURCES", tmp_path)
    with pytest.raises(Exception, match="figure data missing"):
        build.render("zz", tmp_path / "out")
    assert not (tmp_path / "out" / "zz.slides.html").exists()


def _fake_vendored(out: Path) -> None:
    """The files `has_local_assets` looks for, as `vendor` would leave them (empty)."""
    for rel in ("reveal.js/dist/reveal.js", build.LOCAL_REQUIRE, build.LOCAL_JQUERY):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text("")
    for part in build.MATHJAX_PARTS:
        path = out / build.LOCAL_MATHJAX / part
        if "." in path.name:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")
        else:
            path.mkdir(parents=True, exist_ok=True)


def test_vendored_assets_replace_the_cdns(rendered, tmp_path):
    deck = DECKS[0]
    _, nb = rendered[deck]
    assert not build.has_local_assets(tmp_path)
    online = build.to_slides_html(nb, deck, local_assets=False)
    assert "cdnjs.cloudflare.com/ajax/libs/mathjax" in online
    _fake_vendored(tmp_path)
    assert build.has_local_assets(tmp_path)
    html = build.to_slides_html(nb, deck, local_assets=True)
    for local in (f'src="{build.LOCAL_MATHJAX}/MathJax.js?config={build.MATHJAX_CONFIG}"',
                  f'src="{build.LOCAL_JQUERY}"', f'"{build.LOCAL_REQUIRE}"'):
        assert local in html, f"{local} not in the offline slides"
    for cdn in ("ajax/libs/mathjax", "ajax/libs/jquery", "unpkg.com/reveal.js"):
        assert cdn not in html, f"the offline slides still load {cdn}"
    (tmp_path / build.LOCAL_MATHJAX / "jax" / "output" / "CommonHTML").rmdir()
    assert not build.has_local_assets(tmp_path), "a missing MathJax part went unnoticed"


def test_a_mathjax_package_without_a_part_is_named(tmp_path):
    package = tmp_path / "package"
    package.mkdir()
    (package / "MathJax.js").write_text("")
    with pytest.raises(RuntimeError, match="config/TeX-AMS_CHTML-full.js"):
        build._install_package(package, build.LOCAL_MATHJAX, tmp_path / "out")
