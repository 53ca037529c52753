# %% [markdown]
# # Lecture 1: Parallelism strategies for inference
#
# **Hours:** 3 h &nbsp;·&nbsp; **Objectives:** O1 (architect multi-GPU and multi-node inference with
# tensor/sequence/pipeline parallelism) &nbsp;·&nbsp; **Prepares:** Lab 1, `lab1_parallelism`
#
# - Why split a model: memory, latency, throughput
# - Tensor (Megatron), pipeline (GPipe), sequence (Ulysses, ring attention), expert parallelism
# - What each one sends: communication volumes and the alpha-beta model
# - Choosing a layout with `inferlab plan`
#
# Figures: `inferlab.costmodel` (roofline + alpha-beta), `inferlab.parallel` (pipeline schedule,
# MoE capacity).

# %% slide=skip
import matplotlib.pyplot as plt
import numpy as np
import torch

from inferlab.costmodel import Layout, Workload, choose_layout, decode_step_s, get_gpu, get_model, memory_per_gpu
from inferlab.costmodel.calibrate import default_efficiency
from inferlab.costmodel.plan import format_table
from inferlab.costmodel.roofline import ring_allreduce_s, send_s, tp_comm_s
from inferlab.parallel.expert import capacity, count_dropped
from inferlab.parallel.pipeline import bubble_fraction, simulate_gpipe

plt.rcParams.update({"figure.figsize": (8, 3.6), "figure.dpi": 100, "font.size": 12})
H100, LLAMA70 = get_gpu("h100"), get_model("llama-2-70b")
EFF = default_efficiency()

# %% [markdown]
# ## Why split a model?
#
# - **Memory**: Llama-2-70B in BF16 is ~138 GB of weights; an H100 has 80 GB.
# - **Latency**: decode reads every weight each step; *n* GPUs read *n*× the bandwidth.
# - **Throughput**: more memory left for KV cache → larger batches.
#
# Each strategy cuts a different axis of the computation and pays in a different collective.

# %% [markdown] slide=subslide
# ### Llama-2-70B memory per GPU (`inferlab.costmodel.memory_per_gpu`, 2048-token context, batch 8)

# %%
layouts = [Layout(1, 1), Layout(2, 1), Layout(4, 1), Layout(8, 1), Layout(4, 2), Layout(2, 4)]
work = Workload(1024, 1024, batch_size=8)
mems = [memory_per_gpu(LLAMA70, lay, work) for lay in layouts]
names = [str(lay) for lay in layouts]
fig, ax = plt.subplots()
ax.bar(names, [m.weight_bytes / 1e9 for m in mems], label="weights")
ax.bar(names, [m.kv_cache_bytes / 1e9 for m in mems], bottom=[m.weight_bytes / 1e9 for m in mems], label="KV cache")
ax.axhline(0.9 * H100.memory_bytes / 1e9, ls="--", color="grey", label="90 % of an H100")
ax.set(ylabel="GB per GPU")
ax.legend()
plt.show()

# %% [markdown]
# ## Tensor parallelism (Megatron-LM, Shoeybi et al. 2019)
#
# - MLP: first matrix split by **columns** (each GPU a slice of the intermediate), second by
#   **rows**; GeLU/SwiGLU stays local; one **all-reduce** of the output.
# - Attention: heads split across GPUs (column-parallel QKV, row-parallel output); one all-reduce.
# - So **2 all-reduces per layer** of the hidden state: *b·s·h·bytes* each, on the critical path.
# - Needs the fastest link: keep TP inside an NVLink node; TP must divide the heads (and the KV
#   heads, or replicate them).

# %% [markdown] slide=subslide
# ### The alpha-beta model of a collective (Hockney 1994)
#
# A message of *B* bytes costs *α + B/β* (latency + bytes / bandwidth). A **ring all-reduce** over
# *n* ranks is *2(n−1)* steps of *B/n* bytes (reduce-scatter then all-gather; Thakur et al. 2005):
#
# $$t = 2(n-1)\,\alpha + \frac{2(n-1)}{n}\,\frac{B}{\beta}$$
#
# Small messages (decode: one token per sequence) are **latency-bound**; large ones (prefill) are
# **bandwidth-bound**.

# %%
sizes = np.logspace(3, 9, 60)
fig, ax = plt.subplots()
for n in (2, 4, 8):
    ax.loglog(sizes, [ring_allreduce_s(s, n, H100.nvlink_bandwidth_bytes_per_s, H100.nvlink_alpha_s) * 1e6
                      for s in sizes], label=f"NVLink ring, n={n}")
ax.loglog(sizes, [ring_allreduce_s(s, 8, H100.ib_bandwidth_bytes_per_s, H100.ib_alpha_s) * 1e6 for s in sizes],
          "--", label="InfiniBand ring, n=8")
decode_msg = 8 * LLAMA70.hidden_size * 2
ax.axvline(decode_msg, color="grey", ls=":")
ax.annotate("decode, b=8", (decode_msg, 1e3), rotation=90, fontsize=10)
ax.set(xlabel="message bytes", ylabel="all-reduce time (µs)", title="H100 figures from costmodel.specs")
ax.legend(fontsize=10)
plt.show()

# %% [markdown] slide=subslide
# ### TP speeds decode up, until communication eats the gain
# `decode_step_s` for Llama-2-70B, batch 8, 2048-token context; the TP all-reduce share in orange.

# %%
tps = [2, 4, 8]
total = [decode_step_s(LLAMA70, H100, Layout(tp, 1), batch_size=8, num_context_tokens=2048, dtype="bf16",
                       efficiency=EFF) * 1e3 for tp in tps]
comm = [tp_comm_s(LLAMA70, H100, Layout(tp, 1), 8, "bf16") * 1e3 for tp in tps]
fig, ax = plt.subplots()
ax.bar([f"TP{tp}" for tp in tps], np.subtract(total, comm), label="compute / memory")
ax.bar([f"TP{tp}" for tp in tps], comm, bottom=np.subtract(total, comm), label="all-reduces")
for i, (t, c) in enumerate(zip(total, comm)):
    ax.annotate(f"{t:.1f} ms ({100 * c / t:.0f} % comm)", (i, t), ha="center", va="bottom", fontsize=10)
ax.set(ylabel="decode step (ms)", ylim=(0, 1.2 * max(total)))
ax.legend()
plt.show()

# %% [markdown]
# ## Pipeline parallelism (GPipe, Huang et al. 2019)
#
# - Layers split into *p* **stages**; activations pass stage to stage by **send/recv**
#   (*b·s·h·bytes* per boundary: cheap, fine over InfiniBand).
# - A batch is cut into *m* **micro-batches** so that stages work at once; the start-up and drain
#   leave a **bubble**.
# - **GPipe's form**: idle share of the makespan, *(p−1)/(m+p−1)*.
# - **Megatron-LM 2021's ratio form** (Narayanan et al.): bubble time over ideal time, *(p−1)/m*.
#   Same bubble, different denominator: at p = 4, m = 8, 27 % vs 37.5 %.

# %% [markdown] slide=subslide
# ### The schedule, from `inferlab.parallel.pipeline.simulate_gpipe`

# %%
sched = simulate_gpipe(4, 8, stage_time_s=1.0)
fig, (a1, a2) = plt.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
for e in sched.events:
    a1.barh(e.stage, e.end_s - e.start_s, left=e.start_s, color=f"C{e.microbatch % 10}", edgecolor="k")
    a1.text((e.start_s + e.end_s) / 2, e.stage, str(e.microbatch), ha="center", va="center", fontsize=9)
a1.set(xlabel="time (stage-steps)", ylabel="stage", title=f"p=4, m=8: bubble {sched.bubble_fraction:.0%}")
a1.invert_yaxis()
ms = np.arange(1, 33)
a2.plot(ms, [bubble_fraction(4, m, "total") for m in ms], label="(p−1)/(m+p−1) GPipe")
a2.plot(ms, [bubble_fraction(4, m, "ideal") for m in ms], label="(p−1)/m Megatron-LM")
a2.set(xlabel="micro-batches m", ylabel="bubble", ylim=(0, 1.5), title="p = 4")
a2.legend(fontsize=9)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## PP for serving: memory and throughput, paid in latency
#
# - One request still goes through every stage in turn: PP never shortens a single forward pass,
#   and adds a send per boundary. Latency at best equals one GPU's (which could not hold the model).
# - It buys **memory** (each GPU holds 1/p of the layers) and **throughput** (p micro-batches in flight).
# - TP, by contrast, splits each matmul: it cuts latency, but needs NVLink and all-reduces.
# - Rule of thumb (vLLM docs): TP inside a node, PP across nodes.

# %% [markdown] slide=subslide
# ### `inferlab plan --model llama-2-70b --gpu h100 --num-gpus 8`

# %%
print(format_table(choose_layout(LLAMA70, H100, 8, Workload(512, 128))))

# %% [markdown] slide=notes
# PP rows keep the latency of their TP degree (plus the small send cost): the model runs stages one
# after another for one batch. The table is what `inferlab plan` prints; its last line (not shown) is JSON.

# %% [markdown]
# ## Sequence parallelism: long contexts
#
# **DeepSpeed-Ulysses** (Jacobs et al. 2023): each of *P* GPUs holds *s/P* tokens.
# Before attention an **all-to-all** trades tokens for heads (each GPU: all *s* tokens, *h/P* heads);
# after it, a second all-to-all trades back. Per layer each rank sends ~4·b·s·h/P·bytes (Q, K, V in,
# output back; less K/V with GQA): volume per GPU *falls* as *P* grows. Needs heads ≥ P.
#
# **Ring attention** (Liu, Zaharia, Abbeel 2024): queries stay put; K/V blocks travel round a ring
# in *P−1* steps, each overlapped with the attention of the block in hand (online softmax, as in
# FlashAttention). No head limit; sends *(P−1)/P* of the K/V per layer.

# %% [markdown]
# ## Expert parallelism (mixture of experts)
#
# - Experts of a MoE layer live on different GPUs; a router picks top-*k* experts per token.
# - Two **all-to-alls** per MoE layer: *dispatch* tokens to their experts, *combine* the results.
# - Load is uneven: hot experts get more tokens.
# - **Capacity factor** *C*: an expert accepts at most *C·T·k/E* tokens, the rest are **dropped**
#   (GShard, Switch Transformer). This is a *training-time* device for static shapes.
# - **Serving is dropless**: vLLM, SGLang, TensorRT-LLM compute every routed token (MegaBlocks-style
#   grouped GEMMs); dropping would change a user's answer depending on who else is in the batch.

# %% [markdown] slide=subslide
# ### What a capacity factor would drop (`inferlab.parallel.expert.capacity`, `count_dropped`)
# 8 experts, top-2, 4096 tokens; routing uniform or skewed (a hot expert gets 4× the share).

# %%
gen = torch.Generator().manual_seed(0)
num_tokens, num_experts, top_k = 4096, 8, 2
factors = [1.0, 1.1, 1.25, 1.5, 2.0, 3.0]
fig, ax = plt.subplots()
for label, weights in (("uniform", torch.ones(num_experts)), ("skewed", torch.tensor([4.0] + [1.0] * 7))):
    ids = torch.multinomial(weights.expand(num_tokens, -1), top_k, generator=gen)
    dropped = [count_dropped(ids, num_experts, capacity(num_tokens, num_experts, top_k, c)) / ids.numel()
               for c in factors]
    ax.plot(factors, np.multiply(dropped, 100), "o-", label=label)
ax.set(xlabel="capacity factor C", ylabel="assignments dropped (%)")
ax.legend()
plt.show()

# %% [markdown]
# ## Communication per layer, one forward pass
#
# | strategy | collective | bytes per GPU per layer (≈) | link |
# |---|---|---|---|
# | TP (*t* GPUs) | 2 all-reduce | 2 · 2(t−1)/t · b·s·h·B | NVLink |
# | PP (*p* stages) | send/recv | b·s·h·B per boundary (not per layer) | IB ok |
# | SP Ulysses (*P*) | 4 all-to-all | ~4 · b·s·h·B / P | NVLink |
# | SP ring (*P*) | P−1 sends | (P−1)/P · K/V of the layer | NVLink, overlapped |
# | EP (*E* GPUs) | 2 all-to-all | ~2 · T·k·h·B · (E−1)/E, *T* tokens on the GPU | NVLink / IB |
#
# *B* = bytes per element. `inferlab.parallel.comm.CommRecorder` records every byte the kit's
# implementations send; Lab 1 checks these formulas against it.

# %% [markdown] slide=subslide
# ### The same, in microseconds: Llama-2-70B, one 8-sequence decode step on H100s

# %%
msg = 8 * LLAMA70.hidden_size * 2
rows = [("TP8 all-reduces (80 layers x 2)", tp_comm_s(LLAMA70, H100, Layout(8, 1), 8, "bf16")),
        ("PP2 send, inside a node", send_s(msg, H100.nvlink_bandwidth_bytes_per_s, H100.nvlink_alpha_s)),
        ("PP2 send, across nodes (IB)", send_s(msg, H100.ib_bandwidth_bytes_per_s, H100.ib_alpha_s)),
        ("one TP8 all-reduce over IB instead", ring_allreduce_s(msg, 8, H100.ib_bandwidth_bytes_per_s, H100.ib_alpha_s))]
for name, seconds in rows:
    print(f"{name:38} {seconds * 1e6:9.1f} µs")
print(f"\nmessage: {msg} bytes -> latency (alpha) dominates: {2 * 7 * H100.nvlink_alpha_s * 1e6:.0f} µs of alpha per NVLink all-reduce")

# %% [markdown]
# ## Choosing a layout
#
# 1. Does it fit? weights/(t·p) + KV + activations ≤ ~90 % of HBM.
# 2. Latency-critical: the smallest TP that fits, up to one node; then TP = node size.
# 3. Bigger than a node: TP within nodes, PP across them.
# 4. Long contexts: add SP (Ulysses if heads allow, else ring).
# 5. MoE: EP for the experts, TP or DP for attention; dropless.
# 6. Replicas (data parallel) for throughput once one copy meets the latency SLO.
#
# `inferlab plan` automates 1-3 for a workload; measure before you trust it.

# %% [markdown]
# ## Take-aways and Lab 1
#
# - TP cuts latency and costs 2 all-reduces per layer: NVLink only.
# - PP buys memory and throughput at a latency cost; the bubble is (p−1)/(m+p−1) of the makespan (GPipe).
# - SP splits the sequence (Ulysses all-to-all, ring attention); EP splits experts (all-to-all, dropless in serving).
# - The alpha-beta model says when latency (α) or bandwidth (β) dominates.
#
# **Lab 1** (4 h), on 2-4 gloo ranks: tensor-parallel layers and their traffic, micro-batches and
# the GPipe schedule, the Ulysses all-to-all, MoE capacity, DeepSpeed AutoTP's traffic, memory per
# GPU and the layout chooser behind `inferlab plan`.

# %% [markdown]
# ## Sources
#
# - M. Shoeybi et al. *Megatron-LM: Training Multi-Billion Parameter Language Models Using Model
#   Parallelism.* arXiv 2019. https://arxiv.org/abs/1909.08053
# - D. Narayanan et al. *Efficient Large-Scale Language Model Training on GPU Clusters Using
#   Megatron-LM.* SC 2021. https://arxiv.org/abs/2104.04473
# - Y. Huang et al. *GPipe: Efficient Training of Giant Neural Networks using Pipeline Parallelism.*
#   NeurIPS 2019. https://arxiv.org/abs/1811.06965
# - S. A. Jacobs et al. *DeepSpeed Ulysses: System Optimizations for Enabling Training of Extreme Long
#   Sequence Transformer Models.* arXiv 2023. https://arxiv.org/abs/2309.14509
# - H. Liu, M. Zaharia, P. Abbeel. *Ring Attention with Blockwise Transformers for Near-Infinite
#   Context.* ICLR 2024. https://arxiv.org/abs/2310.01889
# - D. Lepikhin et al. *GShard: Scaling Giant Models with Conditional Computation and Automatic
#   Sharding.* ICLR 2021. https://arxiv.org/abs/2006.16668
# - W. Fedus, B. Zoph, N. Shazeer. *Switch Transformers.* JMLR 2022. https://arxiv.org/abs/2101.03961
# - T. Gale et al. *MegaBlocks: Efficient Sparse Training with Mixture-of-Experts.* MLSys 2023.
#   https://arxiv.org/abs/2211.15841
# - R. Hockney. *The communication challenge for MPP: Intel Paragon and Meiko CS-2.* Parallel
#   Computing 20(3), 1994.
# - R. Thakur, R. Rabenseifner, W. Gropp. *Optimization of Collective Communication Operations in
#   MPICH.* IJHPCA 19(1), 2005. https://doi.org/10.1177/1094342005051521
# - vLLM documentation. *Parallelism and Scaling* (distributed serving).
#   https://docs.vllm.ai/en/latest/serving/parallelism_scaling.html
