"""inferlab.hardware: the GPU count and description agree with torch's, and without GPU device nodes
a CPU-only notebook's banner does not import torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from inferlab.hardware import GPU_DEVICE_NODES

_PROBE = r"""
import json, os, sys
from inferlab import hardware, notebook
notebook.banner("lab5_autoscaling", tier="CPU", fast_min=3, full_min=6)
cheap = {"torch_imported": "torch" in sys.modules, "num_gpus": hardware.num_gpus(),
         "info": list(map(str, (hardware.describe().gpus, hardware.describe().device)))}
import torch
torch_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
with_torch = {"num_gpus": hardware.num_gpus(),
              "info": list(map(str, (hardware.describe().gpus, hardware.describe().device)))}
print(json.dumps({"cheap": cheap, "with_torch": with_torch, "torch_count": torch_count,
                  "default_device": str(hardware.default_device())}))
"""


def _probe(**env: str) -> dict:
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_gpu_answers_agree_with_torch_and_skip_torch_without_gpu_nodes() -> None:
    env = {k: v for k, v in os.environ.items() if k != "INFERLAB_DEVICE"}
    out = _probe(**env)
    assert out["cheap"]["num_gpus"] == out["with_torch"]["num_gpus"] == out["torch_count"], out
    assert out["cheap"]["info"] == out["with_torch"]["info"], out
    assert out["cheap"]["info"][1] == out["default_device"], out
    if not any(os.path.exists(p) for p in GPU_DEVICE_NODES):
        assert not out["cheap"]["torch_imported"], "the banner imported torch on a machine with no GPU nodes"


def test_a_forced_device_is_reported_as_torch_names_it() -> None:
    out = _probe(INFERLAB_DEVICE="cpu:0")
    assert out["cheap"]["info"][1] == out["with_torch"]["info"][1] == out["default_device"] == "cpu:0", out
