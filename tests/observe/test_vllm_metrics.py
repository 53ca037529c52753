"""`inferlab serve` and vLLM's OpenAI server (vllm-cpu, the tiny checkpoint) agree on the shared metric
names and types, and on the `model_name` label (slow: vLLM's engine start-up)."""

import os
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from inferlab.bench.serverproc import free_port, server_process
from inferlab.model import ensure_checkpoint

pytestmark = pytest.mark.slow
SHARED = ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
          "vllm:num_preemptions", "vllm:prompt_tokens", "vllm:generation_tokens", "vllm:prefix_cache_queries",
          "vllm:prefix_cache_hits", "vllm:request_success", "vllm:time_to_first_token_seconds",
          "vllm:inter_token_latency_seconds", "vllm:e2e_request_latency_seconds", "vllm:request_queue_time_seconds",
          "vllm:request_time_per_output_token_seconds", "vllm:request_num_preemptions")


def _post(base: str, body: bytes) -> None:
    req = urllib.request.Request(base + "/v1/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 200


def _families(base: str) -> dict:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for f in text_string_to_metric_families(text):
        if f.name in SHARED:
            buckets = tuple(s.labels["le"] for s in f.samples if s.name.endswith("_bucket"))
            labels = {k for s in f.samples for k in s.labels} - {"le", "finished_reason"}
            out[f.name] = (f.type, buckets, frozenset(labels))
    return out


def test_shared_names_types_buckets_and_labels_agree(tmp_path):
    pytest.importorskip("vllm")
    checkpoint = str(ensure_checkpoint("tiny"))
    body = b'{"model": "tiny", "prompt": [1, 2, 3], "max_tokens": 4, "ignore_eos": true}'
    port = free_port()
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1")
    with open(tmp_path / "vllm.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", checkpoint,
                                 "--served-model-name", "tiny", "--dtype", "float32", "--max-model-len", "256",
                                 "--enforce-eager", "--host", "127.0.0.1", "--port", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
    vllm_base = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 280
        while True:
            assert proc.poll() is None, (tmp_path / "vllm.log").read_text()[-3000:]
            assert time.monotonic() < end, "vLLM's server did not start within 280 s"
            try:
                with urllib.request.urlopen(vllm_base + "/health", timeout=2):
                    break
            except OSError:
                time.sleep(1)
        _post(vllm_base, body)
        theirs = _families(vllm_base)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    with server_process(["--served-model-name", "tiny", "--model-dir", checkpoint]) as (base, _proc):
        _post(base, body)
        ours = _families(base)
    assert set(theirs) == set(SHARED), f"vLLM lacks {set(SHARED) - set(theirs)}"
    assert set(ours) == set(SHARED), f"inferlab serve lacks {set(SHARED) - set(ours)}"
    for name in SHARED:
        assert ours[name] == theirs[name], (name, ours[name], theirs[name])
