"""The tiny-model engine as a Ray Serve deployment, autoscaled by a policy from `inferlab.policies`.

Floor 3 of inferlab: where the policies that the simulator evaluates run for real.
`EngineReplica` wraps one `LLMEngine` (a background thread steps it) and reports
"kv_utilization", "compute_utilization" and "num_waiting_requests" through Ray Serve's
`record_autoscaling_stats`, so the policy sees the same `aggregated_metrics` as in the
simulator. The policy is plugged in as Ray Serve's custom autoscaling policy
(`AutoscalingConfig(policy={"policy_function": "module:function"})`); Ray's own
upscale/downscale delays are set to 0 so that the policy's hysteresis is the only one.

`run_demo()` starts a local Ray (temp dir in the build folder, dashboard off, auth off),
replays a short trace (calm, burst, calm) through a deployment handle, records replicas
over time and shuts everything down. `python -m inferlab.deploy.ray_serve` prints the
timeline and a JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

from inferlab.policies.slo_aware import SloAwareParams, slo_aware_policy

# A short-horizon version of the reference policy for a demo that lasts a minute.
DEMO_PARAMS = SloAwareParams(target_compute_utilization=0.5, target_kv_utilization=0.5, smoothing_window_s=2.0,
                             trend_window_s=6.0, downscale_hold_s=6.0, max_waiting_per_replica=4.0)


DEMO_POLICY = "inferlab.deploy.ray_serve:demo_policy"


def demo_policy(ctx: Any) -> tuple[int, dict[str, Any]]:
    """`slo_aware_policy` with `DEMO_PARAMS` (seconds-scale windows)."""
    num_replicas, state = slo_aware_policy(ctx, DEMO_PARAMS)
    log = os.environ.get("INFERLAB_POLICY_LOG")
    if log:  # what Ray handed the policy, for checking that the custom metrics arrive
        with open(log, "a") as handle:
            metrics = {k: sum(v.values()) for k, v in (ctx.aggregated_metrics or {}).items()}
            handle.write(json.dumps({"t": ctx.current_time, "running": ctx.current_num_replicas,
                                     "requests": ctx.total_num_requests, "metrics": metrics,
                                     "decision": num_replicas}) + "\n")
    return num_replicas, state


class EngineReplica:
    """One engine per replica; requests are dicts {"prompt_token_ids": [...], "max_tokens": n}."""

    def __init__(self, preset: str = "tiny", num_threads: int = 1) -> None:
        import torch

        from inferlab.engine import LLMEngine
        from inferlab.profile import engine_config, load_engine_model

        torch.set_num_threads(num_threads)
        try:  # the node this replica runs on (its address), so a client can see where answers come from
            import ray

            self.node = ray.util.get_node_ip_address()
        except Exception:
            self.node = None
        self.config = engine_config(max_num_seqs=32, max_num_batched_tokens=512, num_kv_blocks=1024)
        self.engine = LLMEngine(load_engine_model(preset), self.config)
        self.lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.waiters: dict[str, asyncio.Future] = {}
        self.is_running = True
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while self.is_running:
            with self.lock:
                busy = self.engine.has_unfinished()
                outputs = self.engine.step() if busy else []
            for out in outputs:
                if out.is_finished and out.request_id in self.waiters:
                    future = self.waiters.pop(out.request_id)
                    self.loop.call_soon_threadsafe(future.set_result, out)  # type: ignore[union-attr]
            if not busy:
                time.sleep(0.002)

    async def __call__(self, body: dict) -> dict:
        from inferlab.engine import SamplingParams

        future = asyncio.get_running_loop().create_future()
        self.loop = asyncio.get_running_loop()
        with self.lock:
            request_id = self.engine.add_request(body["prompt_token_ids"],
                                                 SamplingParams(max_tokens=int(body["max_tokens"]), ignore_eos=True))
            self.waiters[request_id] = future
        out = await future
        return {"request_id": request_id, "error": out.error, "node": self.node}

    def record_autoscaling_stats(self) -> dict[str, float]:
        """Custom metrics for the policy (Ray Serve calls this on each replica)."""
        with self.lock:
            now = self.engine.clock()
            recent = [s for s in self.engine.step_records[-2000:] if now - s.start_time_s <= 2.0]
            budget = self.config.max_num_batched_tokens
            compute = sum(s.step_time_s * (s.num_prefill_tokens + s.num_decode_seqs) / budget for s in recent) / 2.0
            last = self.engine.step_records[-1] if self.engine.step_records else None
            kv = (last.num_kv_blocks_used / self.config.num_kv_blocks) if last and recent else 0.0
            waiting = sum(1 for r in self.engine.requests.values() if not r.output_token_ids)
        return {"kv_utilization": kv, "compute_utilization": min(1.0, compute), "num_waiting_requests": waiting}


@dataclass
class DemoResult:
    """Replica counts over time and per-request latencies of a demo run."""

    timeline: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, running replicas)
    num_requests: int = 0
    num_errors: int = 0

    @property
    def max_replicas(self) -> int:
        return max((n for _, n in self.timeline), default=0)


def demo_trace(seconds_calm: float = 5.0, seconds_burst: float = 12.0, calm_rps: float = 2.0,
               burst_rps: float = 40.0, seed: int = 0) -> list[tuple[float, int, int]]:
    """(arrival s, prompt tokens, output tokens): calm, a burst, then nothing (to scale back down)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out, t = [], 0.0
    while t < seconds_calm + seconds_burst:
        rate = burst_rps if seconds_calm <= t < seconds_calm + seconds_burst else calm_rps
        t += float(rng.exponential(1 / rate))
        out.append((t, int(rng.integers(32, 256)), int(rng.integers(16, 64))))
    return out


async def _replay(handle: Any, trace: list[tuple[float, int, int]], result: DemoResult, status_fn: Any,
                  tail_s: float) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    start = time.monotonic()

    async def one(arrival: float, prompt: int, output: int) -> None:
        await asyncio.sleep(max(0.0, start + arrival - time.monotonic()))
        reply = await handle.remote({"prompt_token_ids": rng.integers(0, 256, prompt).tolist(), "max_tokens": output})
        result.num_errors += reply.get("error") is not None

    async def watch() -> None:
        # until the fleet has grown and come back to one replica, or `tail_s` after the last arrival
        end = trace[-1][0] + tail_s
        while time.monotonic() - start < end:
            result.timeline.append((round(time.monotonic() - start, 1), status_fn()))
            if result.max_replicas > 1 and result.timeline[-1][1] == 1 and time.monotonic() - start > trace[-1][0]:
                return
            await asyncio.sleep(1.0)

    result.num_requests = len(trace)
    await asyncio.gather(watch(), *(one(*r) for r in trace))


def engine_deployment(policy: "str | Callable[[Any], tuple[int, dict[str, Any]]]" = DEMO_POLICY,
                      max_replicas: int = 3, min_replicas: int = 1, num_cpus: float = 0.5) -> Any:
    """The engine as a Serve deployment "engine", autoscaled by `policy` (Ray's own delays at 0)."""
    from ray import serve
    from ray.serve.config import AutoscalingConfig

    with warnings.catch_warnings():  # metrics_interval_s is deprecated, but look_back_period_s must exceed it
        warnings.simplefilter("ignore", DeprecationWarning)
        autoscaling = AutoscalingConfig(min_replicas=min_replicas, max_replicas=max_replicas,
                                        initial_replicas=min_replicas, target_ongoing_requests=8,
                                        upscale_delay_s=0.0, downscale_delay_s=0.0, look_back_period_s=2.0,
                                        metrics_interval_s=1.0, policy={"policy_function": policy})
    return serve.deployment(EngineReplica, name="engine", autoscaling_config=autoscaling,
                            ray_actor_options={"num_cpus": num_cpus}, max_ongoing_requests=64,
                            graceful_shutdown_timeout_s=2.0)


def run_demo(policy: "str | Callable[[Any], tuple[int, dict[str, Any]]]" = "inferlab.deploy.ray_serve:demo_policy",
             max_replicas: int = 3, tail_s: float = 60.0, trace: list[tuple[float, int, int]] | None = None,
             address: str | None = None) -> DemoResult:
    """Ray + Serve, one engine deployment autoscaled by `policy`, a replayed trace, then shutdown.

    Args:
        policy: a `module:function` path or a function object (pickled by value by Ray).
        address: a running Ray cluster to join (`ray start --head` / `--address`); default the
            RAY_ADDRESS environment variable, else a local 2-CPU Ray in the build folder.
    """
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S", "1")
    os.environ.setdefault("RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S", "1")
    import ray
    from ray import serve

    from inferlab.paths import build_dir

    temp_dir = build_dir() / "ray"
    temp_dir.mkdir(parents=True, exist_ok=True)
    address = address or os.environ.get("RAY_ADDRESS")
    if address:  # joining a cluster: its resources and temp dir are the cluster's own
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    else:
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(temp_dir), log_to_driver=False,
                 configure_logging=False)
    try:
        deployment = engine_deployment(policy, max_replicas)
        handle = serve.run(deployment.bind(), name="inferlab", route_prefix=None)

        def running() -> int:
            app = serve.status().applications.get("inferlab")
            if app is None or "engine" not in app.deployments:
                return 0
            states = app.deployments["engine"].replica_states
            return int(sum(n for state, n in states.items() if str(getattr(state, "value", state)) == "RUNNING"))

        result = DemoResult()
        asyncio.run(_replay(handle, trace or demo_trace(), result, running, tail_s))
        return result
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    result = run_demo()
    for t, n in result.timeline:
        print(f"{t:>6.1f} s  {'#' * n} {n}")
    print(json.dumps({"max_replicas": result.max_replicas, "final_replicas": result.timeline[-1][1],
                      "num_requests": result.num_requests, "num_errors": result.num_errors,
                      "timeline": result.timeline, "wall_s": time.perf_counter() - started}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
