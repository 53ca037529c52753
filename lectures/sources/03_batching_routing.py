# %% [markdown]
# # Lecture 3: Batching, KV cache and routing
#
# **Hours:** 3 h (batching 2 h, routing 1 h) &nbsp;·&nbsp; **Objectives:** O2 (continuous batching,
# dynamic routing tied to KPIs) &nbsp;·&nbsp; **Prepares:** Lab 3, `lab3_batching`, and Lab 4, `lab4_routing`
#
# - Static vs continuous batching (Orca); paged KV cache (PagedAttention)
# - Chunked prefill, preemption, prefix caching
# - Routing a fleet: the supermarket model, power of d choices, prefix-aware routing
# - Traffic shaping and fairness: token buckets, the Virtual Token Counter
#
# Figures: `inferlab.sim` (step times, fleet), `inferlab.engine.kv_cache`, `inferlab.policies.route`.

# %% slide=skip
import matplotlib.pyplot as plt
import numpy as np

from inferlab.engine.kv_cache import PagedBlockAllocator
from inferlab.metrics import e2e_s, summarize
from inferlab.policies import AutoscalingConfig, least_outstanding, power_of_two, round_robin
from inferlab.sim import ClusterConfig, ReplicaConfig, Roof, StepTimeModel, roofline_model, simulate
from inferlab.sim.queueing import supermarket_time_in_system
from inferlab.traces import LengthDist, TraceRequest, poisson_arrivals, synthesize

plt.rcParams.update({"figure.figsize": (8, 3.6), "figure.dpi": 100, "font.size": 12})
STEP = roofline_model("llama-2-7b", "h100")
OUTPUT = LengthDist(150, 1000, max_tokens=1500)

# %% [markdown]
# ## Static vs continuous batching
#
# - **Static** (request-level): take *B* requests, decode until the *longest* finishes, then the next
#   batch. Finished requests leave empty slots; new ones wait for the whole batch.
# - **Continuous** (iteration-level, Orca, OSDI'22): the scheduler runs once per step; a finished
#   request's slot is refilled at the next step.
# - Output lengths vary by 10× (log-normal): static batching wastes most slots.

# %% [markdown] slide=subslide
# ### Busy slots per decode step, batch of 8 (lengths from `inferlab.traces.LengthDist`)

# %%
rng = np.random.default_rng(3)
lengths = list(OUTPUT.sample(rng, 64))
busy_static = []
for start in range(0, 64, 8):  # 8 static batches of 8
    batch = lengths[start:start + 8]
    busy_static += [sum(n > t for n in batch) for t in range(max(batch))]
queue, running, busy_cont = list(lengths), [], []
while queue or running:
    while queue and len(running) < 8:
        running.append(queue.pop(0))
    busy_cont.append(len(running))
    running = [n - 1 for n in running if n > 1]
fig, ax = plt.subplots()
ax.plot(busy_static, label=f"static: {len(busy_static)} steps, {np.mean(busy_static) / 8:.0%} of slots busy", lw=1)
ax.plot(busy_cont, label=f"continuous: {len(busy_cont)} steps, {np.mean(busy_cont) / 8:.0%} busy", lw=1)
ax.set(xlabel="decode step", ylabel="busy slots (of 8)", ylim=(0, 9))
ax.legend(loc="lower right", fontsize=10)
plt.show()

# %% [markdown]
# ## The paged KV cache (PagedAttention, SOSP'23)
#
# - KV cache per token = 2 · layers · KV heads · head dim · bytes (0.5 MiB for Llama-2-7B in BF16).
# - **Contiguous** allocation reserves `max_model_len` per request up front: internal fragmentation,
#   and the batch is capped by the worst case.
# - **Paged**: fixed-size blocks (16 tokens) mapped by a per-request **block table**, like virtual
#   memory pages; allocated as the sequence grows; waste < 1 block per request.
# - Blocks can be **shared** (prefix caching, parallel sampling) by reference counts.
# - The kit's engine gathers K/V through the block table before attention (no paged kernel on CPU);
#   vLLM's kernel reads the blocks in place.

# %% [markdown] slide=subslide
# ### KV utilisation: tokens held / memory reserved, 32 requests (prompt p50 500, output p50 150)

# %%
rng = np.random.default_rng(4)
prompts, outputs = LengthDist(500, 3000, max_tokens=2500).sample(rng, 32), OUTPUT.sample(rng, 32)
max_model_len, block_size = 4096, 16
allocator = PagedBlockAllocator(num_blocks=32 * max_model_len // block_size, block_size=block_size,
                                enable_prefix_caching=False)
paged, contiguous = [], []
for frac in np.linspace(0.0, 1.0, 11):  # progress through each request's decode
    held = prompts + np.floor(frac * outputs).astype(int)
    free_before = allocator.num_free_blocks()
    tables = [allocator.allocate(list(range(int(n))))[0] for n in held]
    used_blocks = free_before - allocator.num_free_blocks()
    for table in tables:
        allocator.free(table)
    paged.append(held.sum() / (used_blocks * block_size))
    contiguous.append(held.sum() / (len(held) * max_model_len))
fig, ax = plt.subplots()
ax.plot(np.linspace(0, 100, 11), np.multiply(paged, 100), "o-", label="paged, 16-token blocks")
ax.plot(np.linspace(0, 100, 11), np.multiply(contiguous, 100), "s-", label=f"contiguous, {max_model_len} reserved")
ax.set(xlabel="decode progress (%)", ylabel="KV utilisation (%)", ylim=(0, 105))
ax.legend()
plt.show()

# %% [markdown]
# ## Chunked prefill
#
# - A long prompt's prefill is one big compute-bound step: every decoding request waits for it
#   (an **ITL spike**; a "generation stall").
# - **Chunked prefill** (Sarathi-Serve, OSDI'24; vLLM's `max_num_batched_tokens`): split the prompt
#   into chunks and piggyback each chunk on a decode step, under a **token budget** per step.
# - Trade: slightly later first token for that prompt, smooth ITL for everyone else.
# - Scheduler policy taught in Lab 3: decode first, then prefill within the budget (vLLM V0); vLLM
#   V1 schedules prefill and decode tokens alike against one budget.

# %% [markdown] slide=subslide
# ### Step times seen by 64 decoding requests when an 8192-token prompt arrives
# (`StepTimeModel.step_s` of Llama-2-7B on an H100, 64 × 1000 tokens of KV)

# %%
kv = 64 * 1000
plain = [STEP.step_s(0, 64, kv)] * 3 + [STEP.step_s(8192, 64, kv)] + [STEP.step_s(0, 64, kv + 8192)] * 8
chunked = [STEP.step_s(0, 64, kv)] * 3 + [STEP.step_s(1024, 64, kv + 1024 * i) for i in range(8)] + \
    [STEP.step_s(0, 64, kv + 8192)] * 1
fig, ax = plt.subplots()
ax.step(range(len(plain)), np.multiply(plain, 1e3), where="post", label=f"whole prefill: max ITL {max(plain) * 1e3:.0f} ms")
ax.step(range(len(chunked)), np.multiply(chunked, 1e3), where="post", label=f"1024-token chunks: max ITL {max(chunked) * 1e3:.0f} ms")
ax.set(xlabel="step", ylabel="step time = ITL (ms)")
ax.legend()
plt.show()

# %% [markdown]
# ## When the KV cache is full: preemption
#
# - Continuous batching admits optimistically; decode keeps growing every sequence's KV.
# - Out of blocks → **preempt** the newest request(s) (vLLM: last come, first preempted):
#   - **recompute**: free its blocks, re-prefill later (cheap for short contexts; vLLM's default);
#   - **swap**: copy its blocks to CPU memory and back (PCIe-bound).
# - Preemption costs latency for the victim and throughput for all: size `max_num_seqs` and
#   `gpu_memory_utilization` so it is rare, and watch `vllm:num_preemptions`.

# %% [markdown]
# ## Prefix caching
#
# - Many prompts share a prefix: a system prompt, few-shot examples, a chat history, a document.
# - Full blocks are keyed by a **chained hash** of their tokens (block *i*'s hash includes block
#   *i−1*'s): a new request reuses every cached block of its longest matching prefix; no prefill for them.
# - Cached blocks of finished requests stay until evicted (LRU).
# - Saves TTFT and compute; only pays off when requests with the same prefix reach the **same replica**,
#   hence prefix-aware routing.

# %% [markdown] slide=subslide
# ### `PagedBlockAllocator` with and without prefix caching: 16 chats sharing a 1024-token system prompt

# %%
system = list(range(1024))
results = {}
for enabled in (False, True):
    alloc = PagedBlockAllocator(num_blocks=4096, block_size=16, enable_prefix_caching=enabled)
    tables, reused = [], 0
    for user in range(16):
        tokens = system + [100_000 + user * 1000 + i for i in range(200)]
        table, num_cached = alloc.allocate(tokens)
        alloc.cache_blocks(tokens, table, len(tokens))
        tables.append(table)
        reused += num_cached
    results[enabled] = (4096 - alloc.num_free_blocks(), reused)
for enabled, (blocks, reused) in results.items():
    print(f"prefix caching {'on ' if enabled else 'off'}: {blocks:5d} blocks held, "
          f"{reused:6d} prompt tokens not prefilled again (of {16 * 1224})")

# %% [markdown]
# ## Routing a fleet: the supermarket model
#
# *n* servers, Poisson arrivals at load ρ per server. Send each request to the shortest of *d*
# queues drawn at random (Mitzenmacher 2001; Vvedenskaya et al. 1996). As *n* → ∞ the mean time in
# system (service time 1) is
#
# $$T_{d=1} = \frac{1}{1-\rho}, \qquad T_{d\ge 2} = \sum_{i\ge 1} \rho^{\frac{d^i-d}{d-1}}$$
#
# d = 2 turns the queue-length tail from geometric to doubly exponential: "the power of two choices".
# Ray Serve's router and the kit's `power_of_two` use it; it needs only two load probes.

# %% [markdown] slide=subslide
# ### Mean time in system: the formulas (`sim.queueing.supermarket_time_in_system`) and the simulator
# Dots: `inferlab.sim` with the kit's `power_of_two` router over 40 one-at-a-time servers.

# %%
rho = np.linspace(0.05, 0.97, 100)
fig, ax = plt.subplots()
for d in (1, 2, 3):
    ax.plot(rho, [supermarket_time_in_system(r, d) for r in rho], label=f"d = {d} (n → ∞)")
one_at_a_time = ClusterConfig(autoscaling=AutoscalingConfig(min_replicas=40, max_replicas=40, initial_replicas=40),
                              replica=ReplicaConfig(max_num_seqs=1), cold_start_s=0.0)
unit_steps = StepTimeModel((Roof(0.01),), max_kv_tokens=100_000)  # 10 ms per token, 20 tokens on average
for load in (0.5, 0.7, 0.85):
    rng = np.random.default_rng(7)
    arrivals = np.cumsum(rng.exponential(0.2 / (load * 40), 4000))
    trace = [TraceRequest(float(a), 16, int(n)) for a, n in zip(arrivals, rng.geometric(1 / 20, 4000))]
    records = simulate(trace, unit_steps, one_at_a_time, router=power_of_two).records
    ax.plot(load, np.mean([e2e_s(r) for r in records]) / 0.2, "ko")
ax.plot([], [], "ko", label="simulated, power of two")
ax.set(xlabel="load ρ", ylabel="mean time in system (service times)", yscale="log")
ax.legend()
plt.show()

# %% [markdown] slide=notes
# At rho = 0.9: d=1 gives 10, d=2 about 2.6, d=3 about 2.0; most of the gain is the second choice.

# %% [markdown] slide=subslide
# ### The same question on an LLM fleet: `inferlab.sim`, 8 replicas of 16 slots (`max_num_seqs`), three routers

# %%
fig, ax = plt.subplots()
fixed = ClusterConfig(autoscaling=AutoscalingConfig(min_replicas=8, max_replicas=8, initial_replicas=8),
                      replica=ReplicaConfig(max_num_seqs=16), cold_start_s=0.0)
loads = [30, 36, 42, 48, 54]
for name, router in (("round robin", round_robin), ("power of two", power_of_two),
                     ("least outstanding", least_outstanding)):
    p99 = []
    for rate in loads:
        rng = np.random.default_rng(5)
        trace = synthesize(poisson_arrivals(rate, 1500, rng), LengthDist(500, 3000, max_tokens=3000), OUTPUT, rng)
        p99.append(summarize(simulate(trace, STEP, fixed, router=router).records).ttft_s["p99"])
    ax.plot(loads, p99, "o-", label=name)
ax.set(xlabel="load (req/s over 8 replicas)", ylabel="TTFT p99 (s)", yscale="log")
ax.legend()
plt.show()

# %% [markdown]
# ## Prefix-aware routing
#
# - Load-only routers scatter a conversation over replicas: each one re-prefills its history.
# - **Prefix-aware** (cache-aware) routing sends a request to the replica holding the longest
#   matching prefix (SGLang's router, llm-d, vLLM production stack), *unless* that replica is
#   overloaded: then fall back to load.
# - Typical rule: score = prefix-hit tokens − λ · outstanding; or consistent hashing on a session
#   or system-prompt id, with bounded loads.
# - Win: TTFT and GPU time; risk: hot prefixes pile on one replica.

# %% [markdown]
# ## Traffic shaping: token buckets
#
# - A **token bucket** per tenant: capacity *b* (burst), refilled at rate *r*; a request costing *c*
#   passes if the bucket holds *c*, else it is delayed or refused (429 with `Retry-After`).
# - For LLMs, charge **tokens**, not requests: cost = prompt + max output tokens (refund the unused
#   part at the end).
# - Long-run rate ≤ *r*, bursts ≤ *b*: protects the fleet from one tenant's spike; admission limits
#   (`--max-waiting` in `inferlab serve`) protect the replica itself.

# %% [markdown]
# ## Fairness: the Virtual Token Counter (Sheng et al., OSDI'24)
#
# - Rate limits waste capacity when the fleet is idle; FCFS lets a heavy tenant starve the others.
# - **VTC** keeps a counter per client of service received, weighted tokens
#   (*w_p* · prompt + *w_q* · output); the scheduler serves the backlogged client with the
#   **smallest counter**.
# - A client that returns from idle is lifted to the minimum counter of the active ones (no banked
#   credit).
# - Guarantee: backlogged clients' service differs by a bounded amount; work-conserving.

# %% [markdown]
# ## Take-aways, Labs 3 and 4
#
# - Continuous batching fills the slots static batching leaves empty; paged KV makes room for them.
# - Chunked prefill smooths ITL; preemption is the price of optimistic admission; prefix caching
#   skips prefill.
# - Two random choices are almost as good as full knowledge; prefix-aware routing adds cache locality.
# - Token buckets bound tenants; VTC shares fairly when the fleet is busy.
#
# **Lab 3** (3 h): your block allocator and scheduler in the kit's engine, throughput against static
# batching. **Lab 4** (2 h, in preparation): routing and traffic shaping in front of several replicas.

# %% [markdown]
# ## Sources
#
# - G.-I. Yu et al. *Orca: A Distributed Serving System for Transformer-Based Generative Models.*
#   OSDI 2022. https://www.usenix.org/conference/osdi22/presentation/yu
# - W. Kwon et al. *Efficient Memory Management for Large Language Model Serving with
#   PagedAttention.* SOSP 2023. https://arxiv.org/abs/2309.06180
# - A. Agrawal et al. *Taming Throughput-Latency Tradeoff in LLM Inference with Sarathi-Serve.*
#   OSDI 2024. https://arxiv.org/abs/2403.02310
# - L. Zheng et al. *SGLang: Efficient Execution of Structured Language Model Programs* (RadixAttention).
#   NeurIPS 2024. https://arxiv.org/abs/2312.07104
# - M. Mitzenmacher. *The Power of Two Choices in Randomized Load Balancing.* IEEE TPDS 12(10), 2001.
#   https://doi.org/10.1109/71.963420
# - N. D. Vvedenskaya, R. L. Dobrushin, F. I. Karpelevich. *Queueing System with Selection of the
#   Shortest of Two Queues: An Asymptotic Approach.* Problems of Information Transmission 32(1), 1996.
# - Y. Sheng et al. *Fairness in Serving Large Language Models* (VTC). OSDI 2024.
#   https://www.usenix.org/conference/osdi24/presentation/sheng
# - vLLM documentation. *Automatic prefix caching; optimization and tuning (preemption, chunked
#   prefill).* https://docs.vllm.ai/en/latest/configuration/optimization.html
