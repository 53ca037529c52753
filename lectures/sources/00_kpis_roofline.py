# %% [markdown]
# # Lecture 0: KPIs and the roofline
#
# **Hours:** 1 h &nbsp;·&nbsp; **Objectives:** O2 (continuous batching, routing and autoscaling *tied to KPIs*)
# &nbsp;·&nbsp; **Prepares:** Lab 0, `lab0_baseline`
#
# - What a user feels: TTFT, TPOT, ITL, end-to-end latency
# - What an operator sells: goodput and SLO attainment
# - Why decode is memory-bound and prefill compute-bound: the roofline
#
# Every figure is computed by the kit (`inferlab.metrics`, `inferlab.costmodel`, `inferlab.sim`).

# %% slide=skip
import matplotlib.pyplot as plt
import numpy as np

from inferlab.costmodel import Layout, Workload, decode_step_s, estimate_latency, get_gpu, get_model
from inferlab.costmodel.calibrate import default_efficiency, predict_published
from inferlab.costmodel.specs import published_latencies
from inferlab.metrics import SLO, RequestRecord, goodput_rps, itl_s, slo_attainment, tpot_s, ttft_s
from inferlab.policies import AutoscalingConfig
from inferlab.sim import ClusterConfig, roofline_model, simulate
from inferlab.traces import LengthDist, poisson_arrivals, synthesize

plt.rcParams.update({"figure.figsize": (8, 3.6), "figure.dpi": 100, "font.size": 12})
H100, A100, LLAMA7 = get_gpu("h100"), get_gpu("a100"), get_model("llama-2-7b")
EFF = default_efficiency()

# %% [markdown]
# ## Four latencies of one streamed request
#
# | KPI | definition | dominated by |
# |---|---|---|
# | **TTFT** time to first token | first token time − arrival | queueing + prefill |
# | **TPOT** time per output token | (finish − first token) / (output tokens − 1) | decode step time |
# | **ITL** inter-token latency | gap between consecutive tokens (a distribution) | decode steps, stalls |
# | **E2E** | finish − arrival = TTFT + (n − 1)·TPOT | both |
#
# One definition each, in `inferlab/metrics.py`; the labs, the server, the simulator and the
# dashboards all call it.

# %% [markdown] slide=subslide
# ### One request, measured by `inferlab.metrics`

# %%
gaps = [0.030] * 6 + [0.210] + [0.030] * 5  # one stall: a prefill of another request ran in between
tokens = tuple(0.45 + np.concatenate([[0.0], np.cumsum(gaps)]))
rec = RequestRecord(arrival_time_s=0.0, first_token_time_s=tokens[0], finish_time_s=tokens[-1],
                    num_prompt_tokens=512, num_output_tokens=len(tokens), token_times_s=tokens)
fig, ax = plt.subplots(figsize=(8, 2.6))
ax.eventplot([tokens], colors="C0", lineoffsets=0, linelengths=0.6)
ax.axvspan(0, ttft_s(rec), color="C1", alpha=0.25, label=f"TTFT {ttft_s(rec) * 1e3:.0f} ms")
ax.plot([], [], " ", label=f"TPOT {tpot_s(rec) * 1e3:.0f} ms (mean)")
ax.plot([], [], " ", label=f"ITL max {itl_s([rec]).max() * 1e3:.0f} ms")
ax.set(xlabel="time since arrival (s)", yticks=[], title="token arrivals of one request")
ax.legend(loc="upper left", ncols=3, fontsize=10)
plt.show()

# %% [markdown] slide=notes
# TPOT is a mean over the request; ITL keeps the distribution, so the 210 ms stall shows in ITL's
# tail but barely moves TPOT. Users notice stalls: report ITL p99 beside TPOT.

# %% [markdown]
# ## Goodput and SLO attainment
#
# - An **SLO** bounds each request: e.g. TTFT ≤ 0.5 s *and* TPOT ≤ 50 ms.
# - **SLO attainment**: the fraction of requests that meet every bound.
# - **Goodput**: requests per second that meet the SLO (DistServe, OSDI'24). Throughput counts
#   every request, goodput only the useful ones.
# - Report tails (p50, p90, p99), never only the mean: one slow request in a hundred is the p99.
#
# Operating point: the highest load whose attainment stays above target (e.g. 90 %).

# %% [markdown] slide=subslide
# ### Throughput keeps rising after goodput falls
# One Llama-2-7B replica on an H100 (`inferlab.sim`, roofline step times, 300 Poisson requests per point).

# %%
slo = SLO(ttft_s=0.5, tpot_s=0.05)
fixed = ClusterConfig(autoscaling=AutoscalingConfig(min_replicas=1, max_replicas=1, initial_replicas=1),
                      cold_start_s=0.0)
step_model = roofline_model("llama-2-7b", "h100")
rates = [2, 4, 8, 12, 16, 24, 32]
rows = []
for rate in rates:
    rng = np.random.default_rng(0)
    trace = synthesize(poisson_arrivals(rate, 300, rng), LengthDist(500, 3000, max_tokens=3500),
                       LengthDist(200, 1000, max_tokens=1500), rng)
    records = simulate(trace, step_model, fixed).records
    done = len(records) / (max(r.finish_time_s for r in records) - min(r.arrival_time_s for r in records))
    rows.append((done, goodput_rps(records, slo), slo_attainment(records, slo)))
done, good, attain = map(np.array, zip(*rows))
fig, (a1, a2) = plt.subplots(1, 2)
a1.plot(rates, done, "o-", label="throughput")
a1.plot(rates, good, "s-", label="goodput")
a1.set(xlabel="offered load (req/s)", ylabel="req/s")
a1.legend()
a2.plot(rates, 100 * attain, "o-", color="C2")
a2.axhline(90, ls="--", color="grey")
a2.set(xlabel="offered load (req/s)", ylabel="SLO attainment (%)", ylim=(0, 105))
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The roofline (Williams, Waterman, Patterson 2009)
#
# A kernel moving *B* bytes and doing *F* FLOPs takes at least
#
# $$t \ge \max\left(\frac{B}{\text{HBM bandwidth}},\ \frac{F}{\text{peak FLOP/s}}\right)$$
#
# - **Arithmetic intensity** *I = F / B* (FLOP per byte) decides which bound binds.
# - **Ridge point** *I\* = peak / bandwidth*: below it the kernel is **memory-bound**, above it
#   **compute-bound**.
# - `inferlab.costmodel.roofline` applies it per step with one fitted efficiency
#   (fraction of datasheet peak).

# %% [markdown] slide=subslide
# ### The GPUs, from `inferlab.costmodel.specs` (each figure carries its source)

# %%
print(f"{'GPU':16} {'HBM GB':>7} {'HBM TB/s':>9} {'BF16 TFLOP/s':>13} {'ridge FLOP/B':>13} {'NVLink GB/s':>12} {'$/GPU-h':>8}")
for gpu in (A100, H100):
    print(f"{gpu.name:16} {gpu.memory_bytes / 1e9:7.0f} {gpu.hbm_bandwidth_bytes_per_s / 1e12:9.2f} "
          f"{gpu.bf16_dense_flops / 1e12:13.1f} {gpu.bf16_dense_flops / gpu.hbm_bandwidth_bytes_per_s:13.0f} "
          f"{gpu.nvlink_bandwidth_bytes_per_s / 1e9:12.0f} {gpu.usd_per_gpu_hour:8.2f}")
print()
print("H100 bandwidth:", H100.source("hbm_bandwidth_bytes_per_s"))
print("H100 BF16     :", H100.source("bf16_dense_flops"))

# %% [markdown]
# ## Decode vs prefill: arithmetic intensity
#
# A matmul over *N* parameters (2 bytes each in BF16) for *T* tokens: *F = 2NT*, *B ≈ 2N*.
#
# - **Decode** (batch *b*, one token each): *I ≈ b* FLOP/byte, plus KV-cache reads that grow with
#   context. At *b = 1* that is ~1 FLOP/byte against a ridge of ~295: the H100 idles its tensor cores.
# - **Prefill** (*T* prompt tokens at once): *I ≈ T*. A 512-token prompt is past the ridge:
#   compute-bound.
# - So: batching raises decode's intensity almost for free until the ridge; prefill gains nothing
#   from batching.

# %% [markdown] slide=subslide
# ### Llama-2-7B on the H100 and A100 rooflines

# %%
params = LLAMA7.estimate_num_params()
kv_per_token = 2 * LLAMA7.num_layers * LLAMA7.num_kv_heads * LLAMA7.head_dim * 2  # K and V, BF16
intensity = np.logspace(-0.3, 4, 200)
fig, ax = plt.subplots()
for gpu, colour in ((H100, "C0"), (A100, "C1")):
    roof = np.minimum(gpu.bf16_dense_flops, intensity * gpu.hbm_bandwidth_bytes_per_s)
    ax.loglog(intensity, roof / 1e12, color=colour, label=f"{gpu.name} (ridge {gpu.bf16_dense_flops / gpu.hbm_bandwidth_bytes_per_s:.0f})")
points = {f"decode b={b}": (2 * params * b, 2 * params + b * 1024 * kv_per_token) for b in (1, 16, 64, 256)}
points["prefill 512"] = (2 * params * 512, 2 * params + 512 * kv_per_token)
for k, (label, (flops, num_bytes)) in enumerate(points.items()):
    i = flops / num_bytes
    y = min(H100.bf16_dense_flops, i * H100.hbm_bandwidth_bytes_per_s) / 1e12
    ax.plot(i, y, "ko")
    ax.annotate(f"{label} (I={i:.0f})", (i, y), textcoords="offset points", fontsize=10,
                xytext=(-120, 6) if k % 2 else (6, -14))
ax.set(xlabel="arithmetic intensity (FLOP/byte)", ylabel="attainable TFLOP/s")
ax.legend(loc="lower right")
plt.show()

# %% [markdown] slide=notes
# Decode points use a 1024-token context per sequence. Weights are read once per step, but every
# sequence reads its own KV cache (Llama-2-7B has no GQA: 0.5 MiB per token), so intensity saturates
# far below b. Long contexts keep decode memory-bound at any batch size; GQA and KV quantisation help.

# %% [markdown]
# ## Decode step time against batch size
# `inferlab.costmodel.decode_step_s`, Llama-2-7B, 1 GPU, 1024-token contexts, calibrated efficiency
# (fitted to a published A100 latency by `inferlab.costmodel.calibrate`).

# %%
batch = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256])
fig, (a1, a2) = plt.subplots(1, 2)
for gpu in (H100, A100):
    step = np.array([decode_step_s(LLAMA7, gpu, Layout(), batch_size=int(b), num_context_tokens=1024,
                                   dtype="bf16", efficiency=EFF) for b in batch])
    a1.plot(batch, step * 1e3, "o-", label=gpu.name)
    a2.plot(batch, batch / step, "o-", label=gpu.name)
a1.set(xscale="log", xlabel="batch size", ylabel="step = TPOT (ms)")
a2.set(xscale="log", yscale="log", xlabel="batch size", ylabel="tokens/s")
a1.legend()
fig.tight_layout()
plt.show()

# %% [markdown] slide=fragment
# TPOT barely moves while throughput grows ~linearly: the case for continuous batching (Lecture 3).

# %% [markdown]
# ## Does the model predict real latencies?

# %%
for pub in published_latencies():
    print(f"{pub.role:11} {pub.gpu:14} {pub.model} b={pub.batch_size} {pub.num_input_tokens} in/{pub.num_output_tokens} out: "
          f"published {pub.request_latency_s * 1e3:6.1f} ms, model {predict_published(pub) * 1e3:6.1f} ms")
print(f"\nfitted efficiency: {EFF:.2f} of datasheet peak")
est = estimate_latency(LLAMA7, H100, Layout(), Workload(512, 256), efficiency=EFF)
print(f"\nLlama-2-7B on 1 H100, 512 in / 256 out: TTFT ≈ {est.prefill_s * 1e3:.1f} ms, "
      f"TPOT ≈ {est.decode_s_per_token * 1e3:.2f} ms, E2E ≈ {est.request_latency_s:.2f} s")

# %% [markdown] slide=fragment
# One efficiency, fitted to the A100 figure (*calibration*), predicts the H100 figure (*validation*).

# %% [markdown]
# ## What the estimate leaves out
#
# - **Queueing**: the roofline is one request on an idle GPU; under load TTFT is mostly waiting
#   (Lectures 3-4, `inferlab.sim`).
# - **Kernel overheads**: launch latency, CUDA graphs, sampling, detokenisation.
# - **Overlap**: communication and compute are added, not overlapped (pessimistic for TP).
# - **One efficiency** for bandwidth and FLOPs alike; real kernels differ per shape.
# - Attention FLOPs and KV bytes *are* counted (they grow with context).
#
# Use it to rank designs and find the binding resource, then measure.

# %% [markdown]
# ## Take-aways and Lab 0
#
# - Define KPIs once; judge a system by goodput at an SLO, with tails.
# - Decode: memory-bound, batch it. Prefill: compute-bound, chunk or separate it.
# - Ridge point H100 ≈ 295 FLOP/byte, A100 ≈ 153: the faster GPU needs *more* batching to be busy.
#
# **Lab 0** (1.5 h): you implement the metric functions (TTFT, TPOT, goodput, SLO attainment) and the
# roofline estimate, graded against the kit's definitions.

# %% [markdown]
# ## Sources
#
# - S. Williams, A. Waterman, D. Patterson. *Roofline: An Insightful Visual Performance Model for
#   Multicore Architectures.* Communications of the ACM 52(4), 2009. https://doi.org/10.1145/1498765.1498785
# - R. Pope et al. *Efficiently Scaling Transformer Inference.* MLSys 2023. https://arxiv.org/abs/2211.05102
# - Y. Zhong et al. *DistServe: Disaggregating Prefill and Decoding for Goodput-optimized Large
#   Language Model Serving.* OSDI 2024. https://www.usenix.org/conference/osdi24/presentation/zhong-yinmin
# - NVIDIA. *H100 Tensor Core GPU datasheet*, 2023. https://www.nvidia.com/en-us/data-center/h100/
# - NVIDIA. *A100 Tensor Core GPU datasheet*, 2021. https://www.nvidia.com/en-us/data-center/a100/
# - NVIDIA. *NIM for LLMs benchmarking: metrics* (TTFT, ITL, TPOT definitions).
#   https://docs.nvidia.com/nim/benchmarking/llm/latest/metrics.html
