"""Where the kit writes what it builds: models, Ray temp dirs, benchmark output.

`INFERLAB_BUILD_DIR` overrides; otherwise `build/` at the root of a source checkout,
else `~/.cache/inferlab`.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def build_dir() -> Path:
    """The build folder (created on demand)."""
    env = os.environ.get("INFERLAB_BUILD_DIR")
    if env:
        path = Path(env)
    elif (REPO_ROOT / "pyproject.toml").exists():
        path = REPO_ROOT / "build"
    else:
        path = Path.home() / ".cache" / "inferlab"
    path.mkdir(parents=True, exist_ok=True)
    return path
