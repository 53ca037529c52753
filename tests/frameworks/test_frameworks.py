"""Every framework really started on the kit's checkpoint, once per module, one request each; bad input named.

The greedy tokens of each framework are compared with the kit's own engine on the same
checkpoint (same weights, same argmax), so a wrapper that serves something else fails.
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request
from pathlib import Path

import pytest

from inferlab.frameworks import NAMES, CheckpointMissing, FrameworkUnavailable, PortInUse, framework
from inferlab.frameworks.common import require_module
from inferlab.serving.loadgen import run_load
from inferlab.traces import TraceRequest

PROMPT = [5, 17, 300, 42, 8, 99]
MAX_TOKENS = 6
RUNNABLE = [n for n in NAMES if n != "tensorrt_llm"]


@pytest.fixture(scope="module")
def expected_tokens() -> list[int]:
    from inferlab.engine import LLMEngine, SamplingParams
    from inferlab.model import ensure_checkpoint

    engine = LLMEngine.from_checkpoint(ensure_checkpoint("tiny"))
    [req] = engine.generate([PROMPT], SamplingParams(max_tokens=MAX_TOKENS, ignore_eos=True))
    return list(req.output_token_ids)


@pytest.fixture(scope="module", params=RUNNABLE)
def running(request):
    module = framework(request.param)
    reason = module.skip_reason()
    if reason:
        pytest.skip(reason)
    with module.serve() as base:
        yield request.param, base


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


@pytest.mark.slow
def test_framework_serves_the_checkpoint(running, expected_tokens) -> None:
    name, base = running
    assert base.startswith("http://127.0.0.1:")
    if name == "triton":
        request = json.dumps({"prompt_token_ids": PROMPT, "max_tokens": MAX_TOKENS})
        out = _post(base + "/v2/models/tiny/infer",
                    {"inputs": [{"name": "request", "shape": [1, 1], "datatype": "BYTES", "data": [request]}]})
        tokens = json.loads(out["outputs"][0]["data"][0])["token_ids"]
    else:
        body = {"model": "tiny", "prompt": PROMPT, "max_tokens": MAX_TOKENS, "temperature": 0.0, "ignore_eos": True}
        if name == "vllm":
            body["return_token_ids"] = True
        out = _post(base + "/v1/completions", body)
        assert out["usage"]["completion_tokens"] == MAX_TOKENS, out
        tokens = out["choices"][0]["token_ids"]
    assert tokens == expected_tokens, f"{name} generated {tokens}, the kit's engine {expected_tokens}"
    # the benchmark's path: the load generator, two requests, same metrics
    protocol = "triton" if name == "triton" else "openai"
    workload = [TraceRequest(0.0, len(PROMPT), 4), TraceRequest(0.05, 3, 5)]
    records, errors = asyncio.run(run_load(base, "tiny", workload, [PROMPT, PROMPT[:3]], protocol=protocol,
                                           timeout_s=120))
    assert not errors and [r.num_output_tokens for r in records] == [4, 5]
    if protocol == "openai":  # streamed: one chunk time per token
        assert all(len(r.token_times_s) == r.num_output_tokens for r in records)


@pytest.mark.parametrize("name", NAMES)
def test_port_in_use_is_named(name: str) -> None:
    module = framework(name)
    reason = module.skip_reason()
    if reason:
        with pytest.raises(FrameworkUnavailable, match=name.split("_")[0].replace("tensorrt", "TensorRT")):
            with module.serve():
                pass
        return
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUse, match=f"port {port} on 127.0.0.1 is in use"):
            with module.serve(port=port):
                pass


@pytest.mark.parametrize("name", [n for n in NAMES if n != "tensorrt_llm"])
def test_missing_checkpoint_is_named(name: str, tmp_path: Path) -> None:
    module = framework(name)
    if module.skip_reason():
        pytest.skip(module.skip_reason())
    with pytest.raises(CheckpointMissing, match="does not exist"):
        with module.serve(checkpoint=tmp_path / "nowhere"):
            pass
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointMissing, match="model.safetensors"):
        with module.serve(checkpoint=tmp_path):
            pass


def test_framework_not_installed_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FrameworkUnavailable, match="no python module 'not_a_framework_xyz'"):
        require_module("not_a_framework_xyz", "demo", "pip install it")
    monkeypatch.setenv("INFERLAB_PYTRITON_VENV", str(tmp_path / "no-venv"))
    triton = framework("triton")
    assert "PyTriton's venv is missing" in triton.skip_reason()
    with pytest.raises(FrameworkUnavailable, match="make install"):
        with triton.serve():
            pass
    with pytest.raises(ValueError, match="unknown framework 'tgi'"):
        framework("tgi")
