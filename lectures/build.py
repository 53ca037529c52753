"""Lecture decks: percent-format sources -> clean notebooks -> reveal.js slides.

The one source of deck `<deck>` is `lectures/sources/<deck>.py`, in the cell format of
`grading/sources` (parsed by `grading/nbsource.py`'s `parse`). A cell's slide type is
its `slide=` attribute:

    # %% [markdown]                  a new slide (the default for markdown cells)
    # %% [markdown] slide=subslide   a slide below the previous one (reveal.js vertical)
    # %% [markdown] slide=fragment   revealed on the same slide, one step later
    # %% [markdown] slide=notes      speaker notes (press "s" in the slideshow)
    # %%                             code: on the slide of the cell before (default "-")
    # %% slide=skip                  not shown (set-up code)

Code cells are executed when rendering; their inputs are hidden on the slides (only
their outputs, the figures and tables the kit's code computes, are shown).

    python lectures/build.py                 write lectures/<deck>.ipynb and build/slides/<deck>.slides.html
    python lectures/build.py --check         exit 1 if a committed notebook differs from its source
    python lectures/build.py --no-render     write the notebooks only
    python lectures/build.py 00_kpis_roofline --out-dir /tmp/slides

Offline: `--vendor` (what `make slides` runs) fetches reveal.js 4.0.2 (the version
nbconvert's reveal template is written for) and require.js 2.3.6 from the npm registry with
`npm pack` into `build/slides/`, once, with jQuery 2.2.4 (the template's scrolling of tall
slides; its CDN's 2.0.3 is not on npm); the slides then load them by relative URL and show
as a slideshow with no network. Still remote: the reveal theme's web fonts (system fonts
stand in) and the template's mermaid loader (no deck draws a mermaid diagram). Without them (no npm, or a render elsewhere) the slides
load both from CDNs. Text and figures are inside the HTML either way (figures as inline
PNG), so a deck stays readable offline. `--vendor` also fetches MathJax 2.7.7 (the version
nbconvert's template configures) and keeps the part the slides use (the loader, the
TeX-AMS_CHTML-full and Safe configs, TeX input, CommonHTML output and its TeX web fonts:
about 5 MB of the package's 71), so the formulas render offline too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
SOURCES = REPO / "lectures" / "sources"
NOTEBOOKS = REPO / "lectures"
SLIDES = REPO / "build" / "slides"
LOCAL_REVEAL = "reveal.js"  # folder beside the rendered slides, relative URL prefix
LOCAL_REQUIRE = "require.js"  # file beside the rendered slides
LOCAL_MATHJAX = "mathjax"  # folder beside the rendered slides
LOCAL_JQUERY = "jquery.min.js"  # file beside the rendered slides (the template's tall-slide scrolling uses it)
MATHJAX_CONFIG = "TeX-AMS_CHTML-full,Safe"  # what nbconvert's template asks its CDN for
# The parts of the mathjax@2.7.7 package that config loads (the rest: other outputs, fonts, the unpacked copy).
MATHJAX_PARTS = ("MathJax.js", "config/TeX-AMS_CHTML-full.js", "config/Safe.js", "extensions", "jax/input/TeX",
                 "jax/element", "jax/output/CommonHTML", "fonts/HTML-CSS/TeX/woff", "LICENSE")
REVEAL_CDN = "https://unpkg.com/reveal.js@4.0.2"
NPM_PACKAGES = {LOCAL_REVEAL: "reveal.js@4.0.2", LOCAL_REQUIRE: "requirejs@2.3.6", LOCAL_MATHJAX: "mathjax@2.7.7",
                LOCAL_JQUERY: "jquery@2.2.4"}  # the CDN's is 2.0.3, which npm does not have
SLIDE_TYPES = ("slide", "subslide", "fragment", "notes", "skip", "-")
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
TIMEOUT_S = 120  # per cell

sys.path.insert(0, str(REPO / "grading"))
from nbsource import Cell, parse  # noqa: E402


def decks() -> list[str]:
    """Deck names, in course order."""
    return sorted(p.stem for p in SOURCES.glob("*.py"))


def slide_type(cell: Cell) -> str:
    """The cell's `slide=` attribute; markdown defaults to a new slide, code to the slide before."""
    if cell.role is not None:
        raise ValueError(f"lecture cells take no grading role, got {cell.role!r}")
    kind = cell.attrs.get("slide", "slide" if cell.kind == "markdown" else "-")
    if kind not in SLIDE_TYPES:
        raise ValueError(f"slide={kind!r} is not one of {', '.join(SLIDE_TYPES)}")
    return kind


def to_notebook(deck: str) -> nbformat.NotebookNode:
    """The clean notebook of `deck`: no outputs, ids `<deck>-NNN`, `slideshow` metadata only."""
    source = SOURCES / f"{deck}.py"
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": KERNELSPEC}
    for index, cell in enumerate(parse(source.read_text(), str(source))):
        try:
            kind = slide_type(cell)
        except ValueError as err:
            raise ValueError(f"{source}: cell {index}: {err}") from None
        node = (nbformat.v4.new_markdown_cell if cell.kind == "markdown" else nbformat.v4.new_code_cell)(cell.source)
        node.id = f"{deck}-{index:03d}"
        node.metadata = {"slideshow": {"slide_type": kind}}
        nb.cells.append(node)
    nbformat.validate(nb)
    return nb


def render_notebook(deck: str) -> str:
    """The JSON text `lectures/<deck>.ipynb` must contain."""
    return nbformat.writes(to_notebook(deck)) + "\n"


def write_notebooks(names: list[str] | None = None) -> list[Path]:
    """Write the notebooks that differ from their source; returns those written."""
    written = []
    for deck in names or decks():
        target = NOTEBOOKS / f"{deck}.ipynb"
        text = render_notebook(deck)
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
            written.append(target)
    return written


def stale_notebooks(names: list[str] | None = None) -> list[str]:
    """Decks whose committed notebook is missing or differs from what the source generates."""
    stale = []
    for deck in names or decks():
        target = NOTEBOOKS / f"{deck}.ipynb"
        if not target.exists() or target.read_text() != render_notebook(deck):
            stale.append(deck)
    extra = {p.stem for p in NOTEBOOKS.glob("*.ipynb")} - set(decks())
    return stale + sorted(f"{name} (no source)" for name in extra)


async def _execute_async(deck: str) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    nb = to_notebook(deck)
    env = dict(os.environ, MPLBACKEND="module://matplotlib_inline.backend_inline")  # figures inline whatever the caller set
    await NotebookClient(nb, timeout=TIMEOUT_S, kernel_name="python3",
                         resources={"metadata": {"path": str(REPO)}}).async_execute(env=env)
    return nb


def execute_all(names: list[str], jobs: int = 1) -> dict[str, nbformat.NotebookNode]:
    """Run every code cell of each deck in its own fresh kernel (started in the repository root),
    `jobs` kernels at a time (one event loop drives them: no threads, no forks)."""
    async def run() -> list[nbformat.NotebookNode]:
        slots = asyncio.Semaphore(max(1, jobs))

        async def one(deck: str) -> nbformat.NotebookNode:
            async with slots:
                return await _execute_async(deck)

        return await asyncio.gather(*(one(deck) for deck in names))

    return dict(zip(names, asyncio.run(run())))


def execute(deck: str) -> nbformat.NotebookNode:
    """Run every code cell of `deck` in a fresh kernel started in the repository root."""
    return execute_all([deck])[deck]


def has_local_assets(out_dir: Path) -> bool:
    """True when reveal.js, require.js, jQuery and MathJax sit beside the slides (see `vendor`)."""
    return ((out_dir / LOCAL_REVEAL / "dist" / "reveal.js").is_file() and (out_dir / LOCAL_REQUIRE).is_file()
            and (out_dir / LOCAL_JQUERY).is_file() and all((out_dir / LOCAL_MATHJAX / part).exists() for part in MATHJAX_PARTS))


def _install_package(package: Path, target: str, dest: Path) -> None:
    """Copy what the slides use of an unpacked npm `package` to `dest` (`target` names which one)."""
    single = {LOCAL_REQUIRE: "require.js", LOCAL_JQUERY: "dist/jquery.min.js"}
    if target in single:
        shutil.copyfile(package / single[target], dest)
        return
    shutil.rmtree(dest, ignore_errors=True)
    if target == LOCAL_MATHJAX:
        for part in MATHJAX_PARTS:
            src = package / part
            if not src.exists():
                raise RuntimeError(f"the MathJax package has no {part}")
            (dest / part).parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if src.is_dir() else shutil.copyfile)(src, dest / part)
        return
    shutil.copytree(package, dest)


def vendor(out_dir: Path = SLIDES) -> None:
    """Fetch reveal.js, require.js, jQuery and MathJax with `npm pack` into `out_dir` (skipped when present).

    Raises RuntimeError naming what failed (no npm, no registry).
    """
    if has_local_assets(out_dir):
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for target, spec in NPM_PACKAGES.items():
            run = subprocess.run([npm, "pack", spec, "--silent"], cwd=tmp, capture_output=True, text=True, timeout=300)
            if run.returncode:
                raise RuntimeError(f"npm pack {spec} failed: {run.stderr.strip()[-500:]}")
            tgz = Path(tmp) / run.stdout.strip().splitlines()[-1]
            with tarfile.open(tgz) as tar:
                tar.extractall(Path(tmp) / target, filter="data")
            _install_package(Path(tmp) / target / "package", target, out_dir / target)


def to_slides_html(nb: nbformat.NotebookNode, deck: str, local_assets: bool) -> str:
    """reveal.js slides of an executed notebook, code inputs hidden."""
    from nbconvert import SlidesExporter

    urls = {"reveal_url_prefix": LOCAL_REVEAL, "require_js_url": LOCAL_REQUIRE,
            "mathjax_url": f"{LOCAL_MATHJAX}/MathJax.js?config={MATHJAX_CONFIG}", "jquery_url": LOCAL_JQUERY} if local_assets else \
        {"reveal_url_prefix": REVEAL_CDN}
    exporter = SlidesExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                              reveal_number="c/t", reveal_scroll=True, **urls)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": deck}})
    return body


def render_all(names: list[str], out_dir: Path = SLIDES, jobs: int = 1) -> dict[str, tuple[Path, nbformat.NotebookNode]]:
    """Execute every deck in `names` (`jobs` kernels at a time) and write `<out_dir>/<deck>.slides.html`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    local_assets = has_local_assets(out_dir)
    results = {}
    for deck, nb in execute_all(names, jobs).items():
        target = out_dir / f"{deck}.slides.html"
        target.write_text(to_slides_html(nb, deck, local_assets))
        results[deck] = (target, nb)
    return results


def render(deck: str, out_dir: Path = SLIDES) -> tuple[Path, nbformat.NotebookNode]:
    """Execute `deck` and write `<out_dir>/<deck>.slides.html`; returns its path and the executed notebook."""
    return render_all([deck], out_dir)[deck]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("decks", nargs="*", help=f"decks to build (default: all of {', '.join(decks())})")
    parser.add_argument("--check", action="store_true", help="only check the notebooks are in sync")
    parser.add_argument("--no-render", action="store_true", help="write the notebooks, do not render slides")
    parser.add_argument("--out-dir", type=Path, default=SLIDES, help="where the slides go (default build/slides)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="kernels run at a time (default: 2, or 1 on one core)")
    parser.add_argument("--vendor", action="store_true",
                        help="first fetch reveal.js, require.js and MathJax with npm into the output folder (offline slides)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.decks) - set(decks()))
    if unknown:
        parser.error(f"unknown deck(s) {', '.join(unknown)}; decks: {', '.join(decks())}")
    if args.check:
        stale = stale_notebooks(args.decks or None)
        for deck in stale:
            print(f"lectures/{deck}.ipynb is not what lectures/sources/{deck}.py generates: "
                  "run python lectures/build.py --no-render")
        return 1 if stale else 0
    for path in write_notebooks(args.decks or None):
        print(f"wrote {path.relative_to(REPO)}")
    if args.no_render:
        return 0
    if args.vendor:
        try:
            vendor(args.out_dir)
        except (RuntimeError, OSError, subprocess.SubprocessError) as err:
            print(f"note: could not fetch reveal.js, require.js and MathJax ({err})")
    if not has_local_assets(args.out_dir):
        print(f"note: no {args.out_dir / LOCAL_REVEAL}, {args.out_dir / LOCAL_REQUIRE} and "
              f"{args.out_dir / LOCAL_MATHJAX}: the slides load them from CDNs (text and figures are in the HTML; "
              "the slideshow layout and the formulas need the network)")
    start = time.perf_counter()
    names = args.decks or decks()
    for path, _ in render_all(names, args.out_dir, args.jobs).values():
        print(f"rendered {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    print(f"{len(names)} deck(s) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
