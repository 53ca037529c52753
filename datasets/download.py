"""Fetch the public Azure LLM inference traces (2023) for users with internet access.

    make datasets-download     # or: python datasets/download.py

Files land in datasets/azure2023/ (git-ignored). Their SHA-256 is checked against
datasets/azure2023.sha256 when that file lists them; a file not listed yet is
reported with its checksum so it can be pinned. Nothing in the test suite needs this.
"""

from __future__ import annotations

import hashlib
import sys
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASE = "https://raw.githubusercontent.com/Azure/AzurePublicDataset/master/data/"
FILES = ["AzureLLMInferenceTrace_code.csv", "AzureLLMInferenceTrace_conv.csv"]


def pinned() -> dict[str, str]:
    path = HERE / "azure2023.sha256"
    if not path.exists():
        return {}
    pairs = (line.split() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return {name: digest for digest, name in pairs}


def main() -> int:
    out = HERE / "azure2023"
    out.mkdir(exist_ok=True)
    expected, status = pinned(), 0
    for name in FILES:
        target = out / name
        if not target.exists():
            print(f"downloading {BASE + name}")
            urllib.request.urlretrieve(BASE + name, target)
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        if name not in expected:
            print(f"{name}: sha256 {digest} (not pinned yet: add '{digest}  {name}' to datasets/azure2023.sha256)")
        elif expected[name] != digest:
            print(f"{name}: CHECKSUM MISMATCH (got {digest}, expected {expected[name]}); delete it and retry", file=sys.stderr)
            status = 1
        else:
            print(f"{name}: checksum ok")
    return status


if __name__ == "__main__":
    sys.exit(main())
