# %% [markdown]
# # Lecture 2: Serving frameworks
#
# **Hours:** 2 h &nbsp;·&nbsp; **Objectives:** O1 (multi-GPU inference), O2 (batching and serving
# tied to KPIs) &nbsp;·&nbsp; **Prepares:** Lab 2, `lab2_frameworks`
#
# - The layers of a serving stack: engine, server, orchestration
# - vLLM, DeepSpeed-Inference, Ray Serve, Triton, TensorRT-LLM: what each is for
# - The OpenAI API as the common interface
# - Reading latency/throughput curves, and choosing
#
# Figures: `inferlab.costmodel` (roofline) and `inferlab.sim` (one replica under load).

# %% slide=skip
import matplotlib.pyplot as plt
import numpy as np

from inferlab.costmodel import Layout, decode_step_s, get_gpu, get_model
from inferlab.costmodel.calibrate import default_efficiency
from inferlab.metrics import summarize
from inferlab.policies import AutoscalingConfig
from inferlab.sim import ClusterConfig, ReplicaConfig, roofline_model, simulate
from inferlab.traces import LengthDist, poisson_arrivals, synthesize

plt.rcParams.update({"figure.figsize": (8, 3.6), "figure.dpi": 100, "font.size": 12})
H100, A100 = get_gpu("h100"), get_gpu("a100")
LLAMA7, LLAMA70 = get_model("llama-2-7b"), get_model("llama-2-70b")
EFF = default_efficiency()

# %% [markdown]
# ## Three layers of a serving stack
#
# | layer | job | examples |
# |---|---|---|
# | **engine** | scheduler, KV cache, kernels, parallelism inside a model copy | vLLM engine, TensorRT-LLM, DeepSpeed-FastGen, the kit's `inferlab.engine` |
# | **server** | HTTP/gRPC API, tokenisation, streaming, admission | vLLM's OpenAI server, Triton, `inferlab serve` |
# | **orchestration** | replicas, routing, autoscaling, composition | Ray Serve, Kubernetes (KServe), Triton + K8s |
#
# Most products span two layers; the question is always which layer a knob lives in.

# %% [markdown]
# ## vLLM (Kwon et al., SOSP'23)
#
# - **PagedAttention**: KV cache in fixed-size blocks, no fragmentation → bigger batches.
# - **Continuous batching** at iteration level; chunked prefill; prefix caching (V1: on by default).
# - TP and PP across GPUs and nodes (Ray or multiprocessing), many quantisations, many GPUs/CPUs.
# - OpenAI-compatible server: `python -m vllm.entrypoints.openai.api_server --model ...`
#   (`vllm serve` is the same CLI).
# - Knobs that matter: `max_num_seqs`, `max_num_batched_tokens`, `gpu_memory_utilization`,
#   `tensor_parallel_size`.
#
# *Pick it* as the default open-source engine for throughput with good latency.

# %% [markdown]
# ## DeepSpeed-Inference and DeepSpeed-FastGen
#
# - **DeepSpeed-Inference** (Aminabadi et al., SC'22): fused transformer kernels, tensor-parallel
#   **AutoTP** (finds column/row splits from module names) or kernel injection, for models in
#   `transformers`; a library you call, not a server.
# - **DeepSpeed-FastGen / MII** (2024): a serving engine with blocked KV cache and **Dynamic
#   SplitFuse** (long prompts split, short ones fused, so every forward pass has a similar token count;
#   the same idea as chunked prefill).
#
# *Pick it* when a DeepSpeed training stack should also serve, or to shard a `transformers` model
# with minimal code (Lab 1 runs AutoTP on gloo).

# %% [markdown]
# ## Ray Serve
#
# - Python-native **deployments** with replicas, placed by Ray across a cluster.
# - **Autoscaling** on ongoing requests per replica (`target_ongoing_requests`), or a custom policy
#   function (the kit's policies run there unchanged, Lecture 4).
# - **Model composition**: chain deployments (pre-processing → LLM → guardrail) in one app.
# - Hosts engines: Ray Serve LLM runs vLLM inside deployments.
#
# *Pick it* for the orchestration layer: many models, business logic around the model, autoscaling
# without Kubernetes.

# %% [markdown]
# ## Triton Inference Server and its dynamic batcher
#
# - A **model repository** served over HTTP/gRPC by **backends**: TensorRT, ONNX Runtime, PyTorch,
#   Python, vLLM, TensorRT-LLM; ensembles chain models.
# - **Dynamic batcher**: holds requests up to `max_queue_delay_microseconds`, then runs them as one
#   batch (`preferred_batch_size`). Request-level: good for fixed-shape models (encoders, vision).
# - For LLMs the batcher is the wrong tool (one generate call = many steps): the TensorRT-LLM backend
#   does **in-flight batching** (continuous batching) inside the engine instead.
#
# *Pick it* for a fleet mixing LLMs with classic models under one server and metrics endpoint.

# %% [markdown] slide=subslide
# ### Request-level vs iteration-level batching
#
# A dynamic batcher forms a batch once; every request in it waits for the longest. Continuous
# batching (Orca) refills the batch every decode step. The kit's simulator runs the latter; Lecture 3
# plots both from the kit's engine.
#
# | | dynamic (request-level) | continuous (iteration-level) |
# |---|---|---|
# | batch formed | once, before the call | every step |
# | short request behind a long one | waits for it | leaves when done |
# | knob | max queue delay, preferred size | max_num_seqs, token budget |

# %% [markdown]
# ## TensorRT-LLM
#
# - Compiles a model into an optimised **engine** for a given GPU, precision and TP/PP layout
#   (now also a PyTorch workflow): fused kernels, FP8/FP4, paged KV, in-flight batching, speculative
#   decoding.
# - Fastest on NVIDIA hardware, at the cost of a build step per configuration and NVIDIA-only.
# - Served by Triton's TensorRT-LLM backend or `trtllm-serve` (OpenAI-compatible).
#
# The kit's cost model is calibrated on NVIDIA's published TensorRT-LLM latencies (Lecture 0); the
# course studies it on paper (no GPU needed).

# %% [markdown]
# ## How to choose
#
# | need | first choice | why |
# |---|---|---|
# | open models, high throughput, quick start | vLLM | continuous batching + paged KV, OpenAI server |
# | lowest latency on NVIDIA, fixed config | TensorRT-LLM (+ Triton) | compiled kernels, FP8 |
# | DeepSpeed shop, shard an HF model fast | DeepSpeed-Inference / MII | AutoTP, FastGen |
# | many models + business logic, autoscaling | Ray Serve (hosting vLLM) | Python composition, policies |
# | mixed LLM + CV/ASR fleet, one endpoint | Triton | backends, ensembles, dynamic batcher |
#
# Then benchmark *your* traffic: the right answer moves with prompt/output lengths and SLOs.

# %% [markdown]
# ## The OpenAI API: the interface everyone speaks
#
# ```
# curl localhost:8000/v1/chat/completions -H 'Content-Type: application/json' -d '{
#   "model": "tiny", "messages": [{"role": "user", "content": "Hello"}],
#   "max_tokens": 32, "temperature": 0, "stream": true }'
# ```
# - `/v1/completions` (prompt) and `/v1/chat/completions` (messages, chat template applied server-side).
# - `stream: true` → server-sent events, one chunk per token group; the client measures TTFT and ITL.
# - `usage` counts prompt and completion tokens: the unit of billing ($/M tokens, Lecture 4).
# - vLLM, TensorRT-LLM (`trtllm-serve`), Ray Serve LLM and `inferlab serve` all expose it, so one
#   load generator (`inferlab loadgen`) measures them all.

# %% [markdown]
# ## Latency/throughput curves: batch size is the knob
# Each point is a batch size (1 … 256): decode step (TPOT) against tokens/s per replica
# (`decode_step_s`, 1024-token contexts, calibrated efficiency).

# %%
batches = [1, 2, 4, 8, 16, 32, 64, 128, 256]
fig, ax = plt.subplots()
for label, model, gpu, layout in (("7B, 1x A100", LLAMA7, A100, Layout(1, 1)), ("7B, 1x H100", LLAMA7, H100, Layout(1, 1)),
                                  ("70B, TP4 H100", LLAMA70, H100, Layout(4, 1))):
    step = np.array([decode_step_s(model, gpu, layout, batch_size=b, num_context_tokens=1024, dtype="bf16",
                                   efficiency=EFF) for b in batches])
    ax.plot(np.array(batches) / step, step * 1e3, "o-", label=label)
ax.axhline(50, ls="--", color="grey")
ax.annotate("TPOT SLO 50 ms", (30, 52), fontsize=10)
ax.set(xscale="log", xlabel="tokens/s per replica", ylabel="TPOT (ms)")
ax.legend()
plt.show()

# %% [markdown] slide=fragment
# Read it as: the best throughput whose latency still meets the SLO. Past the knee, latency grows
# for little gain.

# %% [markdown] slide=subslide
# ### Under load: one server setting, two very different curves
# One Llama-2-7B/H100 replica in `inferlab.sim`, Poisson load; `max_num_seqs` (vLLM's name) 8 vs 128.

# %%
rates = [2, 4, 6, 8, 10, 12, 14]
fig, (a1, a2) = plt.subplots(1, 2)
step_model = roofline_model("llama-2-7b", "h100")
for max_seqs in (8, 128):
    config = ClusterConfig(autoscaling=AutoscalingConfig(min_replicas=1, max_replicas=1, initial_replicas=1),
                           replica=ReplicaConfig(max_num_seqs=max_seqs), cold_start_s=0.0)
    p90_ttft, p50_tpot = [], []
    for rate in rates:
        rng = np.random.default_rng(1)
        trace = synthesize(poisson_arrivals(rate, 250, rng), LengthDist(400, 2000, max_tokens=3000),
                           LengthDist(150, 800, max_tokens=1000), rng)
        s = summarize(simulate(trace, step_model, config).records)
        p90_ttft.append(s.ttft_s["p90"])
        p50_tpot.append(s.tpot_s["p50"] * 1e3)
    a1.plot(rates, p90_ttft, "o-", label=f"max_num_seqs={max_seqs}")
    a2.plot(rates, p50_tpot, "o-", label=f"max_num_seqs={max_seqs}")
a1.set(xlabel="load (req/s)", ylabel="TTFT p90 (s)", yscale="log")
a2.set(xlabel="load (req/s)", ylabel="TPOT p50 (ms)")
a1.legend(fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown] slide=notes
# A small max_num_seqs keeps TPOT low but queues requests (TTFT explodes at a lower load); a large
# one admits more and pays in TPOT. The knob trades the two KPIs; the SLO decides.

# %% [markdown]
# ## Benchmarking a framework honestly
#
# - **Open loop** (arrivals on a clock, as users) for latency under load; closed loop (N clients)
#   hides queueing.
# - Same model, checkpoint, precision, lengths and hardware; warm up first.
# - Report TTFT/TPOT/ITL percentiles and **goodput at the SLO**, not peak tokens/s alone.
# - Sweep the load to draw the curve; one number is a point on it.
# - The kit: `inferlab loadgen` (any OpenAI endpoint), `inferlab bench` (variants alternated over
#   rounds, medians, ratios, a JSON line).

# %% [markdown]
# ## Take-aways and Lab 2
#
# - Engine, server, orchestration: know which layer solves your problem.
# - vLLM (throughput, open), TensorRT-LLM (NVIDIA speed), DeepSpeed (sharding, FastGen), Ray Serve
#   (composition, autoscaling), Triton (heterogeneous fleets, dynamic batching for fixed shapes).
# - The OpenAI API makes them comparable; latency/throughput curves at an SLO make the choice.
#
# **Lab 2** (2.5 h, in preparation): the kit's checkpoint under vLLM, DeepSpeed-Inference, Ray Serve
# and Triton on CPU, one load generator against all of them.

# %% [markdown]
# ## Sources
#
# - W. Kwon et al. *Efficient Memory Management for Large Language Model Serving with
#   PagedAttention.* SOSP 2023. https://arxiv.org/abs/2309.06180
# - G.-I. Yu et al. *Orca: A Distributed Serving System for Transformer-Based Generative Models.*
#   OSDI 2022. https://www.usenix.org/conference/osdi22/presentation/yu
# - R. Y. Aminabadi et al. *DeepSpeed-Inference: Enabling Efficient Inference of Transformer Models
#   at Unprecedented Scale.* SC 2022. https://arxiv.org/abs/2207.00032
# - C. Holmes et al. *DeepSpeed-FastGen: High-throughput Text Generation for LLMs via MII and
#   DeepSpeed-Inference.* arXiv 2024. https://arxiv.org/abs/2401.08671
# - P. Moritz et al. *Ray: A Distributed Framework for Emerging AI Applications.* OSDI 2018.
#   https://www.usenix.org/conference/osdi18/presentation/moritz
# - Ray documentation. *Ray Serve.* https://docs.ray.io/en/latest/serve/index.html
# - NVIDIA. *Triton Inference Server: model configuration, dynamic batcher.*
#   https://docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/user_guide/model_configuration.html
# - NVIDIA. *TensorRT-LLM documentation.* https://nvidia.github.io/TensorRT-LLM/
# - OpenAI. *API reference: chat completions.* https://platform.openai.com/docs/api-reference/chat
# - vLLM documentation. *OpenAI-compatible server.* https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html
