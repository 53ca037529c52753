"""Serve the instructor dashboard with Voila on a loopback port (`make dashboard`).

    python grading/dashboard/serve.py                        # the kit's grading/gradebook.db
    python grading/dashboard/serve.py --gradebook /path/gradebook.db --port 8866

Voila runs `dashboard.ipynb` in a kernel of this interpreter and shows only its
outputs. nbgrader's JupyterLab extensions are not loaded on the page.
The browser test starts Voila with the same `voila_command`.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parent / "dashboard.ipynb"
DEFAULT_GRADEBOOK = NOTEBOOK.parents[1] / "gradebook.db"  # the course config's db_url (as course.py)
# JupyterLab extensions of the kit's environment that fail to load on a Voila page (they need
# JupyterLab's file browser) and have no place on it.
DENIED_EXTENSIONS = ["@jupyter/nbgrader", "@jupyter-notebook/lab-extension"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on at the moment (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def voila_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """The Voila command line serving the dashboard on host:port, without opening a browser."""
    if not 0 < port < 65536:
        raise ValueError(f"port must be within 1..65535, got {port}")
    return [sys.executable, "-m", "voila", str(NOTEBOOK), "--no-browser", f"--Voila.ip={host}", f"--port={port}",
            "--Voila.port_retries=0", "--VoilaConfiguration.show_tracebacks=True",
            *(f"--VoilaConfiguration.extension_denylist={e}" for e in DENIED_EXTENSIONS)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gradebook", type=Path, help="nbgrader gradebook (default: $INFERLAB_GRADEBOOK, "
                        "else grading/gradebook.db)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    if args.gradebook:
        if not args.gradebook.is_file():
            parser.error(f"gradebook not found: {args.gradebook}")
        os.environ["INFERLAB_GRADEBOOK"] = str(args.gradebook.resolve())
    port = args.port or free_port(args.host)
    gradebook = Path(os.environ.get("INFERLAB_GRADEBOOK") or DEFAULT_GRADEBOOK)
    print(f"Instructor dashboard: http://{args.host}:{port}/  (gradebook: {gradebook}; Ctrl-C stops it)", flush=True)
    if not gradebook.is_file():
        print(f"note: {gradebook} does not exist yet (autograde a lab first); the page will say so", flush=True)
    cmd = voila_command(port, args.host)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
