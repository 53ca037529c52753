# %% [markdown]
# # Lecture 5: Observability, SLOs and incident response
#
# **Hours:** 1 h &nbsp;·&nbsp; **Objectives:** O3 (instrument distributed inference for observability
# and incident response) &nbsp;·&nbsp; **Prepares:** Lab 6, `lab6_observability`
#
# - Metrics (vLLM's names), histograms and percentiles
# - Tracing with the OpenTelemetry GenAI semantic conventions
# - SLOs, error budgets, multi-window multi-burn-rate alerts
# - Chaos experiments, incident roles, postmortems
#
# Figures: `inferlab.sim` (a replica under a load spike), `inferlab.metrics`.

# %% slide=skip
import matplotlib.pyplot as plt
import numpy as np

from inferlab.metrics import SLO, meets_slo, ttft_s
from inferlab.policies import AutoscalingConfig
from inferlab.sim import ClusterConfig, roofline_model, simulate
from inferlab.traces import LengthDist, profile_arrivals, synthesize

plt.rcParams.update({"figure.figsize": (8, 3.6), "figure.dpi": 100, "font.size": 12})
# One Llama-2-7B replica on an A100, no autoscaling; an 8-minute load spike (10x) at minute 60.
RATES = [30] * 60 + [300] * 8 + [30] * 52  # requests per minute
_rng = np.random.default_rng(0)
TRACE = synthesize(profile_arrivals(RATES, _rng), LengthDist(1020, 4000, max_tokens=8000),
                   LengthDist(129, 700, max_tokens=2000), _rng)
FLEET = ClusterConfig(autoscaling=AutoscalingConfig(min_replicas=1, max_replicas=1, initial_replicas=1), cold_start_s=0.0)
RECORDS = simulate(TRACE, roofline_model("llama-2-7b", "a100"), FLEET).records
SLO_ = SLO(ttft_s=2.0, tpot_s=0.2)

# %% [markdown]
# ## Three signals
#
# | signal | answers | cost | LLM examples |
# |---|---|---|---|
# | **metrics** | is it healthy? how much? (aggregates over time) | cheap, fixed cardinality | TTFT histogram, queue length, KV usage |
# | **traces** | where did *this* request spend its time? | per request, sampled | queue → prefill → decode spans |
# | **logs / events** | what exactly happened? | verbose | preemption, OOM, restart, 429 |
#
# Alert on **symptoms** users feel (SLO burn), debug with **causes** (queue, KV, preemptions).

# %% [markdown]
# ## vLLM's metrics (Prometheus, `/metrics`)
#
# | family | names |
# |---|---|
# | load | `vllm:num_requests_running`, `vllm:num_requests_waiting` |
# | memory | `vllm:kv_cache_usage_perc`, `vllm:num_preemptions` (counter) |
# | latency (histograms) | `vllm:time_to_first_token_seconds`, `vllm:inter_token_latency_seconds`, `vllm:e2e_request_latency_seconds`, `vllm:request_queue_time_seconds` |
# | throughput (counters) | `vllm:prompt_tokens`, `vllm:generation_tokens`, `vllm:request_success` |
# | caching | `vllm:prefix_cache_queries`, `vllm:prefix_cache_hits` |
#
# Counters are exported with a `_total` suffix. Names as in the vLLM release the kit installs
# (`vllm/v1/metrics/loggers.py`); V0 called KV usage `vllm:gpu_cache_usage_perc`.

# %% [markdown] slide=subslide
# ### Percentiles come from histogram buckets
#
# `histogram_quantile(0.99, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket[5m])))`
# interpolates inside a bucket: its error is the bucket's width. Below: the calm first hour of a
# simulated replica, with vLLM's TTFT buckets.

# %%
VLLM_TTFT_BUCKETS_S = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                       10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # vllm/v1/metrics/buckets.py
calm = [r for r in RECORDS if r.arrival_time_s < 3600]
ttfts = np.array([ttft_s(r) for r in calm])
edges = np.array((0.0,) + VLLM_TTFT_BUCKETS_S)
counts = np.histogram(ttfts, bins=np.append(edges, np.inf))[0]
cumulative = np.cumsum(counts)


def bucket_quantile(q: float) -> float:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket holding rank q*n."""
    rank = q * cumulative[-1]
    i = int(np.searchsorted(cumulative, rank))
    below = cumulative[i - 1] if i else 0
    return edges[i] + (edges[i + 1] - edges[i]) * (rank - below) / counts[i]


fig, ax = plt.subplots()
ax.hist(ttfts, bins=60, color="C0", alpha=0.7, label="TTFT of each request")
for q, style in ((0.5, "--"), (0.99, "-")):
    ax.axvline(np.quantile(ttfts, q), color="k", ls=style, label=f"exact p{int(q * 100)} {np.quantile(ttfts, q):.3f} s")
    ax.axvline(bucket_quantile(q), color="C3", ls=style, label=f"from buckets p{int(q * 100)} {bucket_quantile(q):.3f} s")
ax.set(xlabel="TTFT (s)", ylabel="requests")
ax.legend(fontsize=9)
plt.show()

# %% [markdown]
# ## Tracing: OpenTelemetry GenAI semantic conventions
#
# A **trace** is a tree of **spans** (name, start, end, attributes, parent) across services
# (Dapper, 2010): router → server → engine queue → prefill → decode.
#
# The GenAI conventions name the attributes, so any backend reads any framework's spans:
#
# - span name `{gen_ai.operation.name} {gen_ai.request.model}`, e.g. `chat llama-2-7b`
# - request: `gen_ai.request.model`, `gen_ai.request.max_tokens`, `gen_ai.request.temperature`, `gen_ai.request.top_p`
# - response: `gen_ai.response.model`, `gen_ai.response.finish_reasons`
# - usage: `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`
# - metrics: `gen_ai.server.time_to_first_token`, `gen_ai.server.time_per_output_token`,
#   `gen_ai.client.operation.duration`, `gen_ai.client.token.usage`
#
# The conventions are still marked *Development*: pin the version you emit.

# %% [markdown]
# ## SLOs and error budgets
#
# - **SLI**: good events / valid events, e.g. requests with TTFT ≤ 2 s and TPOT ≤ 0.2 s.
# - **SLO**: a target for the SLI over a window: 99 % over 30 days.
# - **Error budget**: 1 − SLO = 1 % of requests may be bad (≈ 7.2 hours of total outage in 30 days).
# - Budget left → ship features, run chaos experiments; budget spent → freeze, fix reliability.
# - **Burn rate**: how fast the budget is being spent, *error ratio / (1 − SLO)*; burn 1 spends it
#   exactly in 30 days, burn 14.4 spends 2 % of it in one hour.

# %% [markdown]
# ## Multi-window, multi-burn-rate alerts (SRE Workbook, ch. 5)
#
# | severity | long window | short window | burn rate | budget spent when it fires |
# |---|---|---|---|---|
# | page | 1 h | 5 min | 14.4× | 2 % |
# | page | 6 h | 30 min | 6× | 5 % |
# | ticket | 3 d | 6 h | 1× | 10 % |
#
# Fire when **both** windows burn faster than the rate: the long one for significance, the short one
# (1/12 of it) so that the alert **resets** soon after the problem stops.

# %% [markdown] slide=subslide
# ### A 10× load spike for 8 minutes on one replica (`inferlab.sim`), seen by the 1 h / 5 min page (SLO 99 %)

# %%
minutes = len(RATES)
bad = np.zeros(minutes)
total = np.zeros(minutes)
for r in RECORDS:
    m = min(int(r.arrival_time_s // 60), minutes - 1)
    total[m] += 1
    bad[m] += not meets_slo(r, SLO_)


def burn_rate(window_min: int, target: float = 0.99) -> np.ndarray:
    """Error ratio over the trailing window, divided by the error budget, at the end of each minute."""
    b = np.convolve(bad, np.ones(window_min))[:minutes]
    t = np.convolve(total, np.ones(window_min))[:minutes]
    return b / np.maximum(t, 1) / (1 - target)


long, short = burn_rate(60), burn_rate(5)
firing = (long > 14.4) & (short > 14.4)
fig, ax = plt.subplots()
ax.plot(long, label="burn rate, 1 h window")
ax.plot(short, label="burn rate, 5 min window", alpha=0.7)
ax.axhline(14.4, color="grey", ls="--", label="14.4×")
ax.fill_between(range(minutes), 0, firing * max(short.max(), 20), color="C3", alpha=0.15, label="page firing")
ax.set(xlabel="minute", ylabel="burn rate", yscale="symlog")
ax.legend(fontsize=9, loc="upper left")
plt.show()
print(f"SLO attainment over 2 h: {1 - bad.sum() / total.sum():.1%}; page fired at minute "
      f"{int(np.argmax(firing))}, reset at minute {int(minutes - np.argmax(firing[::-1]))}")

# %% [markdown] slide=notes
# With the 1 h window alone the page would keep firing for up to an hour after the spike (the bad
# minutes stay in the window); the 5 min window resets it a few minutes after the queue drains.

# %% [markdown]
# ## Chaos experiments
#
# Principles of Chaos Engineering (Basiri et al., Netflix, 2016):
#
# 1. Define the **steady state** by an SLI (goodput, TTFT p99).
# 2. **Hypothesis**: it holds when *X* fails (a replica dies, a node is slow, KV fills, the network drops).
# 3. **Inject** *X* in a small blast radius (one replica, a share of traffic), with an abort switch.
# 4. Compare with a control; fix what broke; **automate** the experiment.
#
# For LLM serving: kill an engine mid-stream, preempt a spot node, slow one TP rank, flood with long
# prompts. The kit's engine and server tests inject faults per request (`tests/engine/test_faults.py`).

# %% [markdown]
# ## Incidents: roles and the loop
#
# | role | does |
# |---|---|
# | **Incident commander (IC)** | owns the incident: decides, delegates, keeps the big picture |
# | **Ops lead** | the only one changing production: mitigations, rollbacks |
# | **Comms lead** | status updates to users and stakeholders on a fixed cadence |
# | **Scribe** | the timeline: what was seen, decided, done, when |
#
# Detect (alert) → triage (declare, assign roles) → **mitigate first** (roll back, shed load with
# 429s, scale out, drain a bad replica) → resolve → postmortem.

# %% [markdown]
# ## Blameless postmortems
#
# - Written for every incident that paged or spent a set share of the budget.
# - **Summary, impact** (users, duration, budget spent), **timeline** (from the scribe),
#   **root causes and trigger**, what went well, what went badly, where we got lucky.
# - **Action items** with owners and dates: prevent, detect faster, mitigate faster.
# - Blameless: people acted reasonably on what they knew; fix the system that let it happen.

# %% [markdown]
# ## Take-aways and Lab 6
#
# - Metrics for health (vLLM's names), traces for one request (GenAI conventions), logs for details.
# - Percentiles from histograms are only as good as the buckets.
# - Alert on SLO burn with two windows; page on fast burn, ticket on slow.
# - Practise failure (chaos), run incidents with roles, learn with blameless postmortems.
#
# **Lab 6** (2 h, in preparation): metrics and spans on the kit's server, burn-rate alerts, a chaos
# experiment and its incident report.

# %% [markdown]
# ## Sources
#
# - B. Beyer, C. Jones, J. Petoff, N. R. Murphy (eds.). *Site Reliability Engineering* (ch. 4 SLOs,
#   ch. 14 Managing Incidents, ch. 15 Postmortem Culture). O'Reilly, 2016. https://sre.google/sre-book/table-of-contents/
# - B. Beyer et al. (eds.). *The Site Reliability Workbook*, ch. 5 *Alerting on SLOs*. O'Reilly, 2018.
#   https://sre.google/workbook/alerting-on-slos/
# - OpenTelemetry. *Semantic conventions for generative AI systems.*
#   https://opentelemetry.io/docs/specs/semconv/gen-ai/
# - vLLM documentation. *Production metrics.* https://docs.vllm.ai/en/latest/usage/metrics.html
# - Prometheus documentation. *Histograms and summaries.* https://prometheus.io/docs/practices/histograms/
# - B. H. Sigelman et al. *Dapper, a Large-Scale Distributed Systems Tracing Infrastructure.* Google
#   Technical Report, 2010. https://research.google/pubs/dapper-a-large-scale-distributed-systems-tracing-infrastructure/
# - A. Basiri et al. *Chaos Engineering.* IEEE Software 33(3), 2016. https://doi.org/10.1109/MS.2016.60
# - *Principles of Chaos Engineering.* https://principlesofchaos.org/
