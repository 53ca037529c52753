"""`inferlab model`: build the random-init checkpoints and print where they are."""

from __future__ import annotations

import argparse

from inferlab.model.checkpoint import ensure_checkpoint, load_checkpoint
from inferlab.model.llama import PRESETS


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="inferlab model", description=__doc__)
    parser.add_argument("presets", nargs="*", default=["tiny"], choices=sorted(PRESETS), help="which presets")
    args = parser.parse_args(argv)
    for preset in args.presets:
        path = ensure_checkpoint(preset)
        num_params = sum(p.numel() for p in load_checkpoint(path, device="cpu").parameters())
        print(f"{preset}: {path} ({num_params / 1e6:.2f}M parameters)")
    return 0
