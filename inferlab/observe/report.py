"""One self-contained HTML report: tables of numbers and matplotlib figures (PNG inlined).

Floor 3 of inferlab (observe/). The capstone writes its metrics review with it to
build/capstone/report.html: one file, no external assets (no scripts at all: formulas are plain text, no MathJax), that a
reviewer can open anywhere, offline; `write_report` refuses a section that would fetch anything.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from inferlab.paths import REPO_ROOT

DEFAULT_PATH = REPO_ROOT / "build" / "capstone" / "report.html"
# anything the browser would fetch: scripts, stylesheets, images, frames (MathJax from a CDN was one)
EXTERNAL = re.compile(r"""<(script|link|img|iframe|source)\b[^>]*\b(src|href)\s*=\s*["']?\s*(https?:)?//""", re.I)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return html.escape(str(value))


def table_html(columns: Mapping[str, Mapping[str, Any]]) -> str:
    """A table: one row per key of the first column, one column per mapping (e.g. records vs Prometheus)."""
    names = list(columns)
    keys: list[str] = []
    for col in columns.values():
        keys += [k for k in col if k not in keys]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in ["", *names])
    rows = "".join("<tr><td>" + html.escape(k) + "</td>" + "".join(
        f"<td>{_cell(columns[n].get(k, ''))}</td>" for n in names) + "</tr>" for k in keys)
    return f"<table><tr>{head}</tr>{rows}</table>"


def figure_html(fig: Any) -> str:
    """A matplotlib figure as an inline PNG <img>."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"/>'


def write_report(sections: Sequence[tuple[str, str]], title: str = "Capstone metrics review",
                 path: str | Path = DEFAULT_PATH) -> Path:
    """Write `sections` ((heading, HTML body) pairs: `table_html`, `figure_html`, escaped text) to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"<h2>{html.escape(h)}</h2>{b}" for h, b in sections)
    if (found := EXTERNAL.search(body)) is not None:
        raise ValueError(f"the report must be self-contained (it is read offline): a section loads {found.group(0)!r}; "
                         "inline it (figure_html) or leave it out")
    style = "body{font-family:sans-serif;max-width:60em;margin:auto}td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                    f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")
    return path
