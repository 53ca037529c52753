"""Parallelism strategies for inference, each with its communication recorded.

`launch` runs a worker on N ranks (gloo on CPU, NCCL on GPUs, or under torchrun);
`CommRecorder` performs and records every collective; `tensor` (Megatron TP),
`pipeline` (GPipe stages + schedule simulator), `sequence` (Ulysses all-to-all),
`expert` (MoE with capacity and all-to-all dispatch); `shard` splits the checkpoint;
`frameworks` runs DeepSpeed-Inference AutoTP and vLLM TP on the same checkpoint;
`workers` holds ready-made rank workers for notebooks and tests.
"""

from inferlab.parallel.comm import CommRecord, CommRecorder, summarize
from inferlab.parallel.launch import LaunchConfig, WorkerError, launch, rank_device
from inferlab.parallel.pipeline import bubble_fraction, simulate_gpipe

__all__ = [
    "CommRecord", "CommRecorder", "LaunchConfig", "WorkerError", "bubble_fraction", "launch", "rank_device",
    "simulate_gpipe", "summarize",
]
