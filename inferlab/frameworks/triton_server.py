"""The PyTriton side: runs in PyTriton's own venv (numpy<2), never imported by the kit's venv.

`python -m inferlab.frameworks.triton_server CHECKPOINT --http-port P ...` binds model "tiny"
to NVIDIA Triton Inference Server (the tritonserver binary shipped in `nvidia-pytriton`) with
Triton's `DynamicBatcher` (max queue delay, preferred batch sizes, a bounded queue that
rejects). Each request is one BYTES element holding JSON {"prompt_token_ids": [...],
"max_tokens": n}; the answer is one BYTES element with JSON {"token_ids": [...]}. Each batch
Triton forms runs to completion on the kit's `LLMEngine` (greedy, `ignore_eos`): static
batching in front of the engine, as a non-LLM Triton deployment does. Only numpy, torch and
`inferlab.engine`/`inferlab.model` are imported here.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def make_infer(checkpoint: str):
    import torch

    from inferlab.engine import LLMEngine, SamplingParams

    torch.set_num_threads(1)
    engine = LLMEngine.from_checkpoint(checkpoint)

    def infer(requests):
        """Triton's batch: one dict per request ({"request": bytes array [1, 1]}), one dict back each."""
        bodies = []
        for req in requests:
            try:
                body = json.loads(bytes(req["request"].reshape(-1)[0]).decode())
                prompt = [int(t) for t in body["prompt_token_ids"]]
                params = SamplingParams(max_tokens=int(body["max_tokens"]), ignore_eos=True)
                bodies.append((prompt, params, None))
            except (ValueError, KeyError, TypeError) as exc:
                bodies.append((None, None, f"bad request: {exc}"))
        ids = {}
        for i, (prompt, params, error) in enumerate(bodies):
            if error is None:
                try:
                    ids[i] = engine.add_request(prompt, params)
                except ValueError as exc:  # one bad request never takes its batch down
                    bodies[i] = (None, None, str(exc))
        held = {i: engine.requests[rid] for i, rid in ids.items()}
        engine.run_until_done()
        out = []
        for i, (_, _, error) in enumerate(bodies):
            answer = {"error": error} if i not in held else {"token_ids": list(held[i].output_token_ids)}
            out.append({"response": np.array([[json.dumps(answer).encode()]], dtype=np.object_)})
        return out

    return infer


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m inferlab.frameworks.triton_server")
    parser.add_argument("checkpoint")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument("--max-queue-delay-us", type=int, default=2000)
    parser.add_argument("--preferred-batch-sizes", default="4,8,16")
    parser.add_argument("--max-queue-size", type=int, default=256)
    ns = parser.parse_args(argv)

    from pytriton.model_config import DynamicBatcher, ModelConfig, QueuePolicy, Tensor
    from pytriton.triton import Triton, TritonConfig

    batcher = DynamicBatcher(
        max_queue_delay_microseconds=ns.max_queue_delay_us,
        preferred_batch_size=[int(x) for x in ns.preferred_batch_sizes.split(",") if x],
        default_queue_policy=QueuePolicy(max_queue_size=ns.max_queue_size))
    config = TritonConfig(http_address="127.0.0.1", http_port=ns.http_port, grpc_address="127.0.0.1",
                          grpc_port=ns.grpc_port, metrics_port=ns.metrics_port, allow_gpu_metrics=False)
    with Triton(config=config) as triton:
        triton.bind(model_name="tiny", infer_func=make_infer(ns.checkpoint),
                    inputs=[Tensor(name="request", dtype=np.bytes_, shape=(1,))],
                    outputs=[Tensor(name="response", dtype=np.bytes_, shape=(1,))],
                    config=ModelConfig(max_batch_size=ns.max_batch_size, batcher=batcher), strict=False)
        print(f"triton: model tiny on http://127.0.0.1:{ns.http_port}", flush=True)
        triton.serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
