"""Roofline + alpha-beta cost model of one request on a TP x PP layout.

Floor 1 of inferlab, fed by `specs.py` (GPU and model figures) and used by
`plan.py` (the layout chooser) and the simulator's step-time model. Everything is
a small pure function with units in its name (`*_bytes`, `*_s`).

The model, per GPU of a layout with `tp` GPUs per stage and `pp` stages:

- memory   = weights / tp of the heaviest stage + KV cache + activations
- KV bytes per token = 2 (K and V) * layers * kv_heads * head_dim * dtype bytes
- decode   = max(bytes read / (HBM bandwidth * eff), FLOPs / (peak * eff)) + communication,
             bytes read = weights touched + KV cache of the whole batch
- prefill  = max(FLOPs / (peak * eff), weight bytes / (HBM bandwidth * eff)) + communication,
             FLOPs = 2 * matmul params * tokens + 2 * layers * heads * head_dim * tokens^2 (causal)
- request  = prefill (gives the first token) + (output tokens - 1) * decode at the mean context
- TP: two all-reduces of the hidden state per layer (after attention, after the MLP), ring cost
      2(n-1)/n * bytes / NVLink bandwidth + 2(n-1) * alpha; a TP group wider than a node
      (`plan` refuses it, the namespace-cluster bench measures it) rings over the inter-node link,
      its bandwidth and alpha (the slowest link sets a ring's pace)
- PP: one send of the hidden state per stage boundary, over InfiniBand where it crosses nodes.

Stages run one after another for a single batch (no micro-batch overlap), so PP
saves memory but never latency. `eff` is one efficiency factor (fraction of the
datasheet peak achieved) applied to HBM bandwidth and FLOPs alike; `calibrate.py`
fits it to a published latency.

Mixture of experts: memory holds every expert; a decode step reads only the
experts its tokens are routed to, E * (1 - (1 - k/E)^tokens) per layer in
expectation under uniform routing (k for a single token, so batch-1 decode moves
about the active parameters); FLOPs use the k active experts per token.
"""

from __future__ import annotations

from dataclasses import dataclass

from inferlab.costmodel.specs import GpuSpec, ModelSpec, dtype_bytes

# Prefill is assumed chunked to at most this many tokens per forward pass (the
# order of vLLM's max_num_batched_tokens), so activations don't grow with batch x input.
MAX_PREFILL_CHUNK_TOKENS = 8192
LOGIT_BYTES = 4  # logits are kept in fp32


@dataclass(frozen=True)
class Layout:
    """`tp` GPUs per pipeline stage (tensor parallel) times `pp` stages."""

    tp: int = 1
    pp: int = 1

    def __post_init__(self) -> None:
        if self.tp < 1 or self.pp < 1:
            raise ValueError(f"Layout needs tp >= 1 and pp >= 1, got tp={self.tp} pp={self.pp}")

    @property
    def num_gpus(self) -> int:
        return self.tp * self.pp

    def __str__(self) -> str:
        return f"TP{self.tp} x PP{self.pp}"


@dataclass(frozen=True)
class Workload:
    """A batch of `batch_size` identical requests: `num_input_tokens` in, `num_output_tokens` out."""

    num_input_tokens: int
    num_output_tokens: int
    batch_size: int = 1
    dtype: str = "bf16"

    def __post_init__(self) -> None:
        if self.num_input_tokens < 1 or self.num_output_tokens < 1 or self.batch_size < 1:
            raise ValueError(f"Workload counts must be >= 1, got {self}")
        dtype_bytes(self.dtype)

    @property
    def num_context_tokens(self) -> int:
        """Longest context a request reaches (input + output)."""
        return self.num_input_tokens + self.num_output_tokens

    @property
    def mean_decode_context_tokens(self) -> float:
        """Average context over the decode steps; decode cost is linear in it."""
        return self.num_input_tokens + self.num_output_tokens / 2


# ---- memory ---------------------------------------------------------------------------

def num_kv_heads_per_gpu(model: ModelSpec, tp: int) -> int:
    """KV heads each GPU stores: kv_heads / tp, or 1 when tp > kv_heads (heads replicated)."""
    return max(1, model.num_kv_heads // tp)


def num_layers_per_stage(model: ModelSpec, pp: int) -> list[int]:
    """Layers of each pipeline stage, as even as possible (earlier stages take the remainder)."""
    base, extra = divmod(model.num_layers, pp)
    return [base + (1 if stage < extra else 0) for stage in range(pp)]


def weight_bytes_per_gpu(model: ModelSpec, layout: Layout, dtype: str) -> float:
    """Weight bytes on a GPU of the heaviest stage (embedding on the first, LM head on the last)."""
    layers = num_layers_per_stage(model, layout.pp)
    matrix = model.vocab_size * model.hidden_size
    stage_params = [n * model.num_layer_params() for n in layers]
    stage_params[0] += matrix
    stage_params[-1] += (0 if model.is_tied_embeddings and layout.pp == 1 else matrix) + model.hidden_size
    return max(stage_params) / layout.tp * dtype_bytes(dtype)


def kv_bytes_per_token(model: ModelSpec, dtype: str) -> int:
    """KV cache bytes of one token over the whole model: 2 * layers * kv_heads * head_dim * bytes."""
    return 2 * model.num_layers * model.num_kv_heads * model.head_dim * dtype_bytes(dtype)


def kv_cache_bytes_per_gpu(model: ModelSpec, layout: Layout, dtype: str, num_tokens: float) -> float:
    """KV cache bytes on a GPU of the heaviest stage for `num_tokens` tokens (batch x context)."""
    per_layer_token = 2 * num_kv_heads_per_gpu(model, layout.tp) * model.head_dim * dtype_bytes(dtype)
    return max(num_layers_per_stage(model, layout.pp)) * per_layer_token * num_tokens


def activation_bytes_per_gpu(model: ModelSpec, layout: Layout, workload: Workload) -> float:
    """Rough peak activation bytes: one layer's live tensors during a (chunked) prefill + logits."""
    num_tokens = min(workload.batch_size * workload.num_input_tokens, MAX_PREFILL_CHUNK_TOKENS)
    qkv = (model.num_heads + 2 * model.num_kv_heads) * model.head_dim / layout.tp
    mlp = 2 * model.intermediate_size * model.num_experts_per_token / layout.tp
    per_token = (2 * model.hidden_size + qkv + mlp) * dtype_bytes(workload.dtype)
    logits = workload.batch_size * model.vocab_size / layout.tp * LOGIT_BYTES
    return num_tokens * per_token + logits


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one GPU needs, by kind."""

    weight_bytes: float
    kv_cache_bytes: float
    activation_bytes: float

    @property
    def total_bytes(self) -> float:
        return self.weight_bytes + self.kv_cache_bytes + self.activation_bytes


def memory_per_gpu(model: ModelSpec, layout: Layout, workload: Workload) -> MemoryEstimate:
    """Memory one GPU of the heaviest stage needs for `workload` at its longest context."""
    num_kv_tokens = workload.batch_size * workload.num_context_tokens
    return MemoryEstimate(
        weight_bytes=weight_bytes_per_gpu(model, layout, workload.dtype),
        kv_cache_bytes=kv_cache_bytes_per_gpu(model, layout, workload.dtype, num_kv_tokens),
        activation_bytes=activation_bytes_per_gpu(model, layout, workload),
    )


# ---- communication (alpha-beta) ---------------------------------------------------------

def ring_allreduce_s(num_bytes: float, num_ranks: int, bandwidth_bytes_per_s: float,
                     alpha_s: float) -> float:
    """Ring all-reduce: 2(n-1) steps, each moving bytes/n: 2(n-1)/n * bytes / bw + 2(n-1) * alpha."""
    if num_ranks <= 1:
        return 0.0
    steps = 2 * (num_ranks - 1)
    return steps / num_ranks * num_bytes / bandwidth_bytes_per_s + steps * alpha_s


def send_s(num_bytes: float, bandwidth_bytes_per_s: float, alpha_s: float) -> float:
    """One point-to-point message: alpha + bytes / bw."""
    return alpha_s + num_bytes / bandwidth_bytes_per_s


def tp_comm_s(model: ModelSpec, gpu: GpuSpec, layout: Layout, num_tokens: int, dtype: str) -> float:
    """TP all-reduces of one forward pass over `num_tokens` tokens: 2 per layer, over NVLink
    (over the inter-node link when the TP group spans more than one node)."""
    num_bytes = num_tokens * model.hidden_size * dtype_bytes(dtype)
    if layout.tp > gpu.num_gpus_per_node:
        one = ring_allreduce_s(num_bytes, layout.tp, gpu.ib_bandwidth_bytes_per_s, gpu.ib_alpha_s)
    else:
        one = ring_allreduce_s(num_bytes, layout.tp, gpu.nvlink_bandwidth_bytes_per_s, gpu.nvlink_alpha_s)
    return 2 * model.num_layers * one


def num_ib_hops(gpu: GpuSpec, layout: Layout) -> int:
    """Stage boundaries that cross a node, with stages packed onto GPUs in order."""
    gpn = gpu.num_gpus_per_node
    return sum((s * layout.tp - 1) // gpn != (s * layout.tp) // gpn for s in range(1, layout.pp))


def pp_comm_s(model: ModelSpec, gpu: GpuSpec, layout: Layout, num_tokens: int, dtype: str) -> float:
    """PP sends of one forward pass: the hidden state crosses every stage boundary once."""
    num_bytes = num_tokens * model.hidden_size * dtype_bytes(dtype)
    num_ib = num_ib_hops(gpu, layout)
    num_nvlink = layout.pp - 1 - num_ib
    return (num_ib * send_s(num_bytes, gpu.ib_bandwidth_bytes_per_s, gpu.ib_alpha_s)
            + num_nvlink * send_s(num_bytes, gpu.nvlink_bandwidth_bytes_per_s, gpu.nvlink_alpha_s))


# ---- latency (roofline) -----------------------------------------------------------------

def expected_experts_per_layer(model: ModelSpec, num_tokens: float) -> float:
    """Distinct experts a layer reads for `num_tokens` tokens under uniform top-k routing."""
    if not model.is_moe:
        return 1.0
    miss = 1 - model.num_experts_per_token / model.num_experts
    return model.num_experts * (1 - miss ** num_tokens)


def _matmul_params_per_token(model: ModelSpec) -> float:
    """Parameters each token multiplies through: layers with k experts, plus the LM head."""
    return (model.num_layers * model.num_layer_params(model.num_experts_per_token)
            + model.vocab_size * model.hidden_size)


def _roofline_s(num_bytes: float, num_flops: float, gpu: GpuSpec, dtype: str, efficiency: float) -> float:
    if not 0 < efficiency <= 1:
        raise ValueError(f"efficiency must be in (0, 1], got {efficiency}")
    return max(num_bytes / (gpu.hbm_bandwidth_bytes_per_s * efficiency),
               num_flops / (gpu.peak_flops(dtype) * efficiency))


def decode_step_s(model: ModelSpec, gpu: GpuSpec, layout: Layout, *, batch_size: int,
                  num_context_tokens: float, dtype: str, efficiency: float) -> float:
    """Seconds for one decode step (one new token for each of `batch_size` requests)."""
    experts = expected_experts_per_layer(model, batch_size)
    weight_params = model.num_layers * model.num_layer_params(experts) + model.vocab_size * model.hidden_size
    num_bytes = (weight_params * dtype_bytes(dtype) / layout.tp
                 + kv_cache_bytes_per_gpu(model, Layout(layout.tp, 1), dtype, batch_size * num_context_tokens))
    attention_flops = 4 * model.num_layers * model.num_heads * model.head_dim * num_context_tokens
    num_flops = batch_size * (2 * _matmul_params_per_token(model) + attention_flops) / layout.tp
    return (_roofline_s(num_bytes, num_flops, gpu, dtype, efficiency)
            + tp_comm_s(model, gpu, layout, batch_size, dtype)
            + pp_comm_s(model, gpu, layout, batch_size, dtype))


def prefill_s(model: ModelSpec, gpu: GpuSpec, layout: Layout, *, batch_size: int,
              num_input_tokens: int, dtype: str, efficiency: float) -> float:
    """Seconds to prefill `batch_size` prompts of `num_input_tokens` (gives the first token)."""
    num_tokens = batch_size * num_input_tokens
    experts = expected_experts_per_layer(model, num_tokens)
    weight_params = model.num_layers * model.num_layer_params(experts) + model.vocab_size * model.hidden_size
    num_bytes = (weight_params * dtype_bytes(dtype) / layout.tp
                 + kv_cache_bytes_per_gpu(model, Layout(layout.tp, 1), dtype, num_tokens))
    layer_flops = 2 * model.num_layers * model.num_layer_params(model.num_experts_per_token) * num_tokens
    attention_flops = 2 * model.num_layers * model.num_heads * model.head_dim * num_input_tokens ** 2
    head_flops = 2 * model.vocab_size * model.hidden_size * batch_size  # logits of the last token only
    num_flops = (layer_flops + batch_size * attention_flops + head_flops) / layout.tp
    return (_roofline_s(num_bytes, num_flops, gpu, dtype, efficiency)
            + tp_comm_s(model, gpu, layout, num_tokens, dtype)
            + pp_comm_s(model, gpu, layout, num_tokens, dtype))


@dataclass(frozen=True)
class LatencyEstimate:
    """Predicted latencies of one batch of requests, in seconds."""

    prefill_s: float
    decode_s_per_token: float  # at the mean decode context
    request_latency_s: float


def estimate_latency(model: ModelSpec, gpu: GpuSpec, layout: Layout, workload: Workload, *,
                     efficiency: float) -> LatencyEstimate:
    """Prefill, mean decode step and end-to-end request latency for `workload` on `layout`."""
    common = dict(batch_size=workload.batch_size, dtype=workload.dtype, efficiency=efficiency)
    prefill = prefill_s(model, gpu, layout, num_input_tokens=workload.num_input_tokens, **common)
    decode = decode_step_s(model, gpu, layout, num_context_tokens=workload.mean_decode_context_tokens,
                           **common)
    return LatencyEstimate(prefill_s=prefill, decode_s_per_token=decode,
                           request_latency_s=prefill + (workload.num_output_tokens - 1) * decode)
