"""vLLM offline throughput on a token-id workload, run as its own process (vLLM spawns workers).

`python -m inferlab.bench.vllm_offline MODEL_DIR WORKLOAD_JSON` reads
{"prompts": [[ids...]], "max_tokens": [n...], "max_model_len": L}, submits every request at
once (`LLM.generate`, greedy, `ignore_eos`, no tokenizer) and prints one JSON line:
{"num_output_tokens", "generate_s", "startup_s", "output_tok_s", "vllm_version"}.
Used by `inferlab bench engine` through `run_vllm_offline`, or, for rounds alternated with other
variants, through `VllmRounds`: the same process (`--rounds`) prints {"ready": ...} once started,
then runs the workload once per "go" line on its stdin, one JSON line each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def run_vllm_offline(model_dir: str | Path, prompts: list[list[int]], max_tokens: list[int], max_model_len: int,
                     workdir: Path, timeout_s: float = 600.0) -> dict:
    """Run the workload through vLLM in a subprocess; returns its JSON result, or {"error": reason}."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec = workdir / "vllm_workload.json"
    spec.write_text(json.dumps({"prompts": prompts, "max_tokens": max_tokens, "max_model_len": max_model_len}))
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        proc = subprocess.run([sys.executable, "-m", "inferlab.bench.vllm_offline", str(model_dir), str(spec)],
                              env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"vLLM did not finish within {timeout_s:.0f} s"}
    except OSError as exc:
        return {"error": f"could not start vLLM: {exc}"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"vLLM exited with {proc.returncode}: {' | '.join(tail)[-500:]}"}
    return json.loads(lines[-1])


def pinned_env(env: dict[str, str], cpus: list[int]) -> dict[str, str]:
    """`env` for a vLLM CPU process confined to `cpus`: its worker's OpenMP threads bound there, no core
    reserved for its scheduler process (by default vLLM binds one OpenMP thread per core it may use and
    leaves one core to the scheduler process, which then runs beside the worker: 2 cores on a 2-core box)."""
    return env | {"VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, cpus)), "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}


class VllmRounds:
    """A vLLM process kept alive across benchmark rounds (start-up paid once, none of it timed).

    `start()` -> {"startup_s", ...} or {"error"}; each `run()` -> one round's result or {"error"}; `close()`.
    `cpus`: confine vLLM's processes (scheduler and worker) to these cores (None: vLLM's own binding).
    """

    def __init__(self, model_dir: str | Path, prompts: list[list[int]], max_tokens: list[int], max_model_len: int,
                 workdir: Path, cpus: list[int] | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.spec = workdir / "vllm_workload.json"
        self.spec.write_text(json.dumps({"prompts": prompts, "max_tokens": max_tokens, "max_model_len": max_model_len}))
        self.model_dir, self.proc, self.error = str(model_dir), None, None
        self.log = workdir / "vllm_rounds.log"
        self.cpus = cpus

    def start(self) -> dict:
        env = dict(os.environ)
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        cpus = self.cpus
        if cpus:
            env = pinned_env(env, cpus)
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "inferlab.bench.vllm_offline", self.model_dir,
                                          str(self.spec), "--rounds"], env=env, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self.log.open("w"), text=True,
                                         preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
        except OSError as exc:
            self.error = f"could not start vLLM: {exc}"
            return {"error": self.error}
        return self._read()

    def _read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith("{"):
                return json.loads(line)
        tail = self.log.read_text().strip().splitlines()[-3:] if self.log.exists() else []
        self.error = f"vLLM exited with {self.proc.wait()}: {' | '.join(tail)[-500:]}"
        return {"error": self.error}

    def run(self) -> dict:
        if self.error or self.proc is None:
            return {"error": self.error or "not started"}
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _rounds(model_dir: str, spec_path: str) -> None:
    import vllm
    from vllm import LLM, SamplingParams

    spec = json.loads(Path(spec_path).read_text())
    started = time.perf_counter()
    llm = LLM(model=model_dir, skip_tokenizer_init=True, dtype="float32", max_model_len=spec["max_model_len"],
              gpu_memory_utilization=0.3, enforce_eager=True, seed=0)
    params = [SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True, detokenize=False)
              for n in spec["max_tokens"]]
    llm.generate([{"prompt_token_ids": p} for p in spec["prompts"][:4]], params[:4], use_tqdm=False)
    print(json.dumps({"ready": True, "startup_s": time.perf_counter() - started, "vllm_version": vllm.__version__}),
          flush=True)
    prompts = [{"prompt_token_ids": p} for p in spec["prompts"]]
    for _ in sys.stdin:
        llm.reset_prefix_cache()  # every round starts cold, like the engine's fresh instance
        t0 = time.perf_counter()
        outs = llm.generate(prompts, params, use_tqdm=False)
        elapsed = time.perf_counter() - t0
        num_out = sum(len(o.outputs[0].token_ids) for o in outs)
        print(json.dumps({"num_output_tokens": num_out, "generate_s": elapsed, "output_tok_s": num_out / elapsed}),
              flush=True)


def _main(model_dir: str, spec_path: str) -> dict:
    import vllm
    from vllm import LLM, SamplingParams

    spec = json.loads(Path(spec_path).read_text())
    started = time.perf_counter()
    # enforce_eager: no graph capture/compilation, so startup stays ~35 s on 2 CPU cores
    llm = LLM(model=model_dir, skip_tokenizer_init=True, dtype="float32", max_model_len=spec["max_model_len"],
              gpu_memory_utilization=0.3, enforce_eager=True, seed=0)
    ready = time.perf_counter()
    params = [SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True, detokenize=False)
              for n in spec["max_tokens"]]
    warm = [{"prompt_token_ids": p} for p in spec["prompts"][:4]]
    llm.generate(warm, params[:4], use_tqdm=False)
    t0 = time.perf_counter()
    outs = llm.generate([{"prompt_token_ids": p} for p in spec["prompts"]], params, use_tqdm=False)
    elapsed = time.perf_counter() - t0
    num_out = sum(len(o.outputs[0].token_ids) for o in outs)
    return {"num_output_tokens": num_out, "generate_s": elapsed, "startup_s": ready - started,
            "output_tok_s": num_out / elapsed, "vllm_version": vllm.__version__}


if __name__ == "__main__":
    if sys.argv[3:] == ["--rounds"]:
        _rounds(sys.argv[1], sys.argv[2])
    else:
        print(json.dumps(_main(sys.argv[1], sys.argv[2])), flush=True)
