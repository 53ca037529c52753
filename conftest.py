"""Root pytest settings shared by tests/ and the nbval run over solutions/."""

import os
import sys
from pathlib import Path

os.environ.setdefault("INFERLAB_FAST", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Kernels (nbval, nbgrader autograde) start `python` from PATH: make it this interpreter.
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
