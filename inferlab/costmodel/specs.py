"""GPU and model specifications, each figure with its source.

Floor 1 of inferlab: the one place GPU and model figures live. `plan` (the layout
chooser) and the simulator's step-time model (`inferlab.sim.steptime`) both read
them from here. The figures themselves sit in `data/specs.json` as
`{"value": ..., "source": "datasheet / model card / config.json name"}`; this
module loads them into frozen dataclasses:

    >>> from inferlab.costmodel.specs import get_gpu, get_model
    >>> get_gpu("h100").hbm_bandwidth_bytes_per_s
    3350000000000.0
    >>> get_model("llama-2-70b").num_kv_heads
    8
    >>> get_gpu("h100").source("hbm_bandwidth_bytes_per_s")
    'NVIDIA H100 datasheet: H100 SXM GPU memory bandwidth 3.35 TB/s'

Units: bytes and FLOP/s are SI (1 GB = 1e9 bytes); link bandwidths are per GPU in
one direction; latencies (`*_alpha_s`) are seconds per message.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

SPECS_PATH = Path(__file__).parent / "data" / "specs.json"

# Bytes per element of weights, activations and KV cache for each supported dtype.
DTYPE_BYTES: dict[str, int] = {"bf16": 2, "fp16": 2, "fp8": 1, "fp32": 4}


def dtype_bytes(dtype: str) -> int:
    """Bytes per element for `dtype` ("bf16", "fp16" or "fp8")."""
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; valid: {sorted(DTYPE_BYTES)}")
    return DTYPE_BYTES[dtype]


def _source_of(sources: tuple[tuple[str, str], ...], field_name: str) -> str:
    for name, text in sources:
        if name == field_name:
            return text
    raise KeyError(f"no source recorded for {field_name!r}")


def _check_positive(obj: object, names: list[str]) -> None:
    for name in names:
        value = getattr(obj, name)
        if not value > 0:
            raise ValueError(f"{type(obj).__name__}.{name} must be > 0, got {value!r}")


@dataclass(frozen=True)
class GpuSpec:
    """One GPU model as deployed in an 8-GPU NVLink node with InfiniBand between nodes."""

    name: str
    memory_bytes: float  # HBM capacity
    hbm_bandwidth_bytes_per_s: float
    bf16_dense_flops: float  # FLOP/s, tensor cores, no sparsity
    fp16_dense_flops: float
    fp8_dense_flops: float | None  # None: no FP8 tensor cores
    nvlink_bandwidth_bytes_per_s: float  # per GPU, one direction
    num_gpus_per_node: int
    ib_bandwidth_bytes_per_s: float  # InfiniBand per GPU, one direction
    nvlink_alpha_s: float  # latency of one NVLink message (one ring step)
    ib_alpha_s: float  # latency of one InfiniBand message
    usd_per_gpu_hour: float  # indicative on-demand price
    fp32_dense_flops: float | None = None  # None: not given (GPU entries give tensor-core dtypes only)
    aliases: tuple[str, ...] = ()
    sources: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        _check_positive(self, ["memory_bytes", "hbm_bandwidth_bytes_per_s", "bf16_dense_flops",
                               "fp16_dense_flops", "nvlink_bandwidth_bytes_per_s",
                               "num_gpus_per_node", "ib_bandwidth_bytes_per_s",
                               "nvlink_alpha_s", "ib_alpha_s", "usd_per_gpu_hour"])
        if self.fp8_dense_flops is not None and not self.fp8_dense_flops > 0:
            raise ValueError(f"GpuSpec.fp8_dense_flops must be > 0 or None, got {self.fp8_dense_flops!r}")

    def peak_flops(self, dtype: str) -> float:
        """Dense tensor-core peak in FLOP/s for `dtype`; ValueError where the GPU lacks it."""
        dtype_bytes(dtype)
        peak = {"bf16": self.bf16_dense_flops, "fp16": self.fp16_dense_flops,
                "fp8": self.fp8_dense_flops, "fp32": self.fp32_dense_flops}[dtype]
        if peak is None:
            raise ValueError(f"{self.name} has no {dtype} tensor cores")
        return peak

    def source(self, field_name: str) -> str:
        """Where the figure in `field_name` comes from."""
        return _source_of(self.sources, field_name)


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only transformer (Llama-style: RMSNorm, GQA, SwiGLU MLP, untied embeddings).

    For a mixture of experts, every layer's MLP is `num_experts` SwiGLU experts of
    `intermediate_size`, of which `num_experts_per_token` run for each token.
    """

    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int  # per expert for MoE
    vocab_size: int
    max_context_tokens: int
    num_params: int  # as published (all experts)
    num_experts: int = 1
    num_experts_per_token: int = 1
    num_active_params: int = 0  # per token; 0 -> num_params (dense)
    is_tied_embeddings: bool = False
    aliases: tuple[str, ...] = ()
    sources: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.num_active_params == 0:
            object.__setattr__(self, "num_active_params", self.num_params)
        _check_positive(self, ["num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim",
                               "intermediate_size", "vocab_size", "max_context_tokens",
                               "num_params", "num_experts", "num_experts_per_token"])
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"{self.name}: num_kv_heads={self.num_kv_heads} must divide "
                             f"num_heads={self.num_heads}")
        if self.num_experts_per_token > self.num_experts:
            raise ValueError(f"{self.name}: num_experts_per_token={self.num_experts_per_token} > "
                             f"num_experts={self.num_experts}")
        if not 0 < self.num_active_params <= self.num_params:
            raise ValueError(f"{self.name}: num_active_params must be in (0, num_params]")

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 1

    @property
    def num_attention_params_per_layer(self) -> int:
        """Q and O projections (hidden x heads*head_dim) plus K and V (hidden x kv_heads*head_dim)."""
        return 2 * self.hidden_size * self.head_dim * (self.num_heads + self.num_kv_heads)

    @property
    def num_expert_params_per_layer(self) -> int:
        """One SwiGLU MLP (gate, up, down): 3 x hidden x intermediate."""
        return 3 * self.hidden_size * self.intermediate_size

    def num_layer_params(self, num_experts_used: float | None = None) -> float:
        """Parameters of one layer holding `num_experts_used` experts (default: all of them).

        Includes the two RMSNorm weights and, for MoE, the router.
        """
        experts = self.num_experts if num_experts_used is None else num_experts_used
        router = self.hidden_size * self.num_experts if self.is_moe else 0
        return (self.num_attention_params_per_layer + experts * self.num_expert_params_per_layer
                + router + 2 * self.hidden_size)

    @property
    def num_embedding_params(self) -> int:
        """Token embedding plus LM head (one matrix when tied) plus the final norm."""
        matrices = 1 if self.is_tied_embeddings else 2
        return matrices * self.vocab_size * self.hidden_size + self.hidden_size

    def estimate_num_params(self) -> int:
        """Total parameter count from the architecture (checks `num_params`)."""
        return int(self.num_layers * self.num_layer_params() + self.num_embedding_params)

    def estimate_num_active_params(self) -> int:
        """Parameters one token touches (checks `num_active_params`)."""
        per_layer = self.num_layer_params(self.num_experts_per_token)
        return int(self.num_layers * per_layer + self.num_embedding_params)

    def source(self, field_name: str) -> str:
        """Where the figure in `field_name` comes from."""
        return _source_of(self.sources, field_name)


@dataclass(frozen=True)
class PublishedLatency:
    """A published end-to-end request latency, used to calibrate or check the cost model."""

    gpu: str
    model: str
    num_gpus: int
    tp: int
    dtype: str
    num_input_tokens: int
    num_output_tokens: int
    batch_size: int
    request_latency_s: float
    source: str
    role: str  # "calibration" or "validation"

    def __post_init__(self) -> None:
        _check_positive(self, ["num_gpus", "tp", "num_input_tokens", "num_output_tokens",
                               "batch_size", "request_latency_s"])
        dtype_bytes(self.dtype)
        if self.role not in ("calibration", "validation"):
            raise ValueError(f"PublishedLatency.role must be calibration|validation, got {self.role!r}")


def with_interconnect(gpu: GpuSpec, *, link_gbit: float | None = None, link_alpha_s: float | None = None,
                      num_gpus_per_node: int | None = None, intra_gbit: float | None = None,
                      intra_alpha_s: float | None = None) -> GpuSpec:
    """`gpu` with other link figures: the inter-node link (`link_*`, the InfiniBand fields), the
    intra-node link (`intra_*`, the NVLink fields) and the node size; None keeps the datasheet's.

    Rates are in Gbit/s (10^9 bit/s) one direction, latencies in seconds per message. `inferlab plan
    --link-gbit --link-alpha-us --gpus-per-node` and `inferlab bench multinode` both go through here.
    """
    changes: dict[str, Any] = {}
    for name, value, field_name, scale in (
            ("link_gbit", link_gbit, "ib_bandwidth_bytes_per_s", 1e9 / 8),
            ("link_alpha_s", link_alpha_s, "ib_alpha_s", 1.0),
            ("num_gpus_per_node", num_gpus_per_node, "num_gpus_per_node", 1),
            ("intra_gbit", intra_gbit, "nvlink_bandwidth_bytes_per_s", 1e9 / 8),
            ("intra_alpha_s", intra_alpha_s, "nvlink_alpha_s", 1.0)):
        if value is None:
            continue
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")
        changes[field_name] = value * scale if scale != 1 else value
    if not changes:
        return gpu
    given = tuple((k, f"given: {k} = {v}") for k, v in changes.items())
    kept = tuple((k, v) for k, v in gpu.sources if k not in changes)
    return replace(gpu, sources=kept + given, **changes)


def _from_entry(cls: type, name: str, entry: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)} - {"name", "aliases", "sources"}
    unknown = set(entry) - names - {"aliases"}
    if unknown:
        raise ValueError(f"{SPECS_PATH.name}: {name} has unknown fields {sorted(unknown)}")
    values = {key: entry[key]["value"] for key in names if key in entry}
    sources = tuple((key, entry[key]["source"]) for key in sorted(names) if key in entry)
    return cls(name=name, aliases=tuple(entry.get("aliases", ())), sources=sources, **values)


@functools.cache
def _load() -> tuple[dict[str, GpuSpec], dict[str, ModelSpec], tuple[PublishedLatency, ...]]:
    raw = json.loads(SPECS_PATH.read_text())
    gpus = {name: _from_entry(GpuSpec, name, e) for name, e in raw["gpus"].items()}
    models = {name: _from_entry(ModelSpec, name, e) for name, e in raw["models"].items()}
    published = tuple(PublishedLatency(**e) for e in raw["published_latencies"])
    return gpus, models, published


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def _lookup(name: str, table: dict[str, Any], kind: str) -> Any:
    key = _normalise(name)
    for spec in table.values():
        if key == _normalise(spec.name) or key in (_normalise(a) for a in spec.aliases):
            return spec
    valid = ", ".join(f"{s.name} ({'/'.join(s.aliases)})" for s in table.values())
    raise ValueError(f"unknown {kind} {name!r}; valid names: {valid}")


def get_gpu(name: str) -> GpuSpec:
    """The GPU called `name` or one of its aliases, case-insensitively ("h100", "A100")."""
    return _lookup(name, _load()[0], "GPU")


def get_model(name: str) -> ModelSpec:
    """The model called `name` or one of its aliases, case-insensitively ("llama-2-70b")."""
    return _lookup(name, _load()[1], "model")


def list_gpus() -> list[str]:
    """Canonical names of all GPUs in the data file."""
    return list(_load()[0])


def list_models() -> list[str]:
    """Canonical names of all models in the data file."""
    return list(_load()[1])


def published_latencies(role: str | None = None) -> tuple[PublishedLatency, ...]:
    """Published request latencies, optionally only those with `role` ("calibration"/"validation")."""
    return tuple(p for p in _load()[2] if role is None or p.role == role)
