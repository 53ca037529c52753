# %% [markdown]
# # Lecture 4: Autoscaling, capacity planning and FinOps
#
# **Hours:** 2 h &nbsp;·&nbsp; **Objectives:** O2 (autoscaling strategies tied to performance KPIs)
# &nbsp;·&nbsp; **Prepares:** Lab 5, `lab5_autoscaling`
#
# - Sizing a fleet with queueing theory: Erlang C, Kingman
# - Reactive autoscalers: the Kubernetes HPA rule, Ray Serve, Knative KPA; cold starts
# - The oracle as a yardstick; spot vs on-demand capacity
# - FinOps: dollars per million tokens
#
# Figures: `inferlab.sim.queueing`, `inferlab.sim` (fleet simulator), `inferlab.policies.autoscale`,
# `inferlab.costmodel`.

# %% slide=skip
import matplotlib.pyplot as plt
import numpy as np

from inferlab.costmodel import Layout, decode_step_s, get_gpu, get_model
from inferlab.costmodel.calibrate import default_efficiency
from inferlab.metrics import SLO, slo_attainment
from inferlab.policies import AutoscalingConfig, hpa_policy, kpa_policy
from inferlab.sim import ClusterConfig, roofline_model, simulate
from inferlab.sim.queueing import erlang_c, kingman_wait_s, min_servers_for_wait, mmc_wait_s
from inferlab.traces import LengthDist, profile_arrivals, synthesize

plt.rcParams.update({"figure.figsize": (8, 3.6), "figure.dpi": 100, "font.size": 12})
H100, A100, LLAMA7 = get_gpu("h100"), get_gpu("a100"), get_model("llama-2-7b")
EFF = default_efficiency()

# %% [markdown]
# ## Why autoscale?
#
# - LLM traffic is diurnal and bursty (Azure's public LLM inference traces, Splitwise 2024).
# - A fleet sized for the peak idles most of the day; one sized for the mean misses the SLO at the peak.
# - GPUs are expensive (an H100 ≈ $3/hour on demand) and **slow to start** (load tens of GB of
#   weights: minutes).
# - Goal: meet the SLO at the lowest GPU-hours, with few scale actions (each one is risk).

# %% [markdown]
# ## Queueing: M/M/c and Erlang C
#
# Poisson arrivals λ, *c* servers each serving at rate μ, offered load *a = λ/μ*, utilisation ρ = a/c.
#
# - **Erlang C**: probability an arrival waits, from Erlang B's recursion
#   *B(k) = aB(k−1) / (k + aB(k−1))*, then *C = B / (1 − ρ(1 − B))*.
# - Mean wait *W_q = C / (cμ − λ)*.
# - **Economies of scale**: at the same ρ, more servers wait far less, so big fleets run hotter.

# %% [markdown] slide=subslide
# ### `inferlab.sim.queueing`: the same utilisation, very different waits

# %%
fig, (a1, a2) = plt.subplots(1, 2)
for c in (1, 4, 16, 64):
    utils = np.linspace(0.05, 0.97, 60)
    a1.plot(utils, [erlang_c(c, u * c) for u in utils], label=f"c = {c}")
    a2.plot(utils, [mmc_wait_s(u * c, 1.0, c) for u in utils], label=f"c = {c}")
a1.set(xlabel="utilisation ρ", ylabel="P(wait), Erlang C")
a2.set(xlabel="utilisation ρ", ylabel="mean wait (service times)", yscale="log", ylim=(1e-4, 1e2))
a1.legend(fontsize=10)
fig.tight_layout()
plt.show()
lam, mu = 40.0, 1.0
print(f"λ = {lam:.0f}/s, μ = {mu:.0f}/s per server: fewest servers for a mean wait ≤ 0.1 s: "
      f"{min_servers_for_wait(lam, mu, 0.1)}, ≤ 0.01 s: {min_servers_for_wait(lam, mu, 0.01)}")

# %% [markdown]
# ## Kingman: variability costs as much as load
#
# For a G/G/1 queue (any arrival and service distributions):
#
# $$W_q \approx \frac{\rho}{1-\rho}\cdot\frac{c_a^2 + c_s^2}{2}\cdot E[S]$$
#
# *c²* are squared coefficients of variation (1 for Poisson / exponential). LLM service times vary by
# 10× (output lengths), and bursty arrivals have *c_a² > 1*: both multiply the wait. Allen-Cunneen
# applies the same factor to M/M/c.

# %%
rho = np.linspace(0.05, 0.95, 80)
fig, ax = plt.subplots()
for ca2 in (0.5, 1.0, 4.0):
    ax.plot(rho, [kingman_wait_s(r, 1.0, ca2=ca2, cs2=1.0) for r in rho], label=f"c_a² = {ca2}, c_s² = 1")
ax.set(xlabel="utilisation ρ", ylabel="W_q / E[S]", yscale="log")
ax.legend()
plt.show()

# %% [markdown] slide=notes
# An LLM replica is not a single server: continuous batching serves many requests at once, with a
# service rate that depends on the batch. Queueing formulas size the fleet on the back of an envelope;
# the simulator checks them (Lab 5 does both).

# %% [markdown]
# ## Reactive autoscalers
#
# **Kubernetes HPA**: every 15 s, *desired = ⌈current · metric / target⌉*, ignored within a ±10 %
# tolerance; scale-up at most max(2×, +4 pods) per period; scale-down uses the **highest**
# recommendation of the last **300 s** (stabilisation window); unready pods count as 0 load.
#
# **Ray Serve**: *total ongoing requests / `target_ongoing_requests`*, averaged over
# `look_back_period_s`; applied after `upscale_delay_s` (30 s) / `downscale_delay_s` (600 s) of
# agreement; or a custom policy function.
#
# **Knative KPA**: concurrency over a 60 s stable window, and a 6 s **panic** window that scales up
# at once when demand reaches 2× capacity.
#
# All three are in `inferlab.policies.autoscale`, as plain functions the simulator and Ray Serve run.

# %% [markdown]
# ## Cold starts
#
# - A new replica: schedule a node, pull the image, load weights (GBs), warm up (CUDA graphs,
#   compile): **1-10 minutes**. The simulator uses 90 s.
# - During a cold start the load lands on the old replicas: TTFT rises exactly when traffic rises.
# - Mitigations: headroom (target below capacity), minimum replicas, faster loading (local NVMe,
#   weight streaming, snapshots), warm pools, and **predictive** scaling (scale before the ramp).

# %% [markdown] slide=subslide
# ### A step in load: HPA vs KPA in `inferlab.sim`
# Llama-2-7B on A100s, 90 s cold starts, target 16 ongoing requests per replica, SLO TTFT ≤ 2 s, TPOT ≤ 0.2 s.

# %%
rates = [120] * 4 + [480] * 6 + [120] * 10  # requests per minute
rng = np.random.default_rng(0)
trace = synthesize(profile_arrivals(rates, rng), LengthDist(1020, 4000, max_tokens=8000),
                   LengthDist(129, 700, max_tokens=2000), rng)
step_model = roofline_model("llama-2-7b", "a100")
config = ClusterConfig(autoscaling=AutoscalingConfig(min_replicas=1, max_replicas=16, initial_replicas=1,
                                                     target_ongoing_requests=16), cold_start_s=90.0)
slo = SLO(ttft_s=2.0, tpot_s=0.2)
fig, ax = plt.subplots()
ax2 = ax.twinx()
ax2.step(np.arange(len(rates)), rates, where="post", color="lightgrey")
ax2.set_ylabel("load (req/min)", color="grey")
for name, policy in (("HPA", hpa_policy), ("KPA", kpa_policy)):
    result = simulate(trace, step_model, config, autoscaler=policy)
    t = [row["time_s"] / 60 for row in result.timeline]
    running = [row["num_running_on_demand"] for row in result.timeline]
    ax.step(t, running, where="post", label=f"{name}: SLO {slo_attainment(result.records, slo):.0%}, "
            f"{result.total_gpu_hours:.2f} GPU-h, {result.num_scale_actions} actions")
ax.set(xlabel="minute", ylabel="running replicas")
ax.set_zorder(ax2.get_zorder() + 1)
ax.patch.set_visible(False)
ax.legend(fontsize=9, loc="upper right")
plt.show()

# %% [markdown] slide=notes
# Nothing runs for the first 90 s after the step (cold start). The HPA's metric, ongoing requests per
# ready replica, includes the backlog that built up meanwhile, so it keeps doubling to the maximum and
# then holds it through the 300 s stabilisation window: late, then oversized. KPA's panic mode reacts
# within seconds of the step. Same trace, same SLO: the policy decides both attainment and the bill.

# %% [markdown]
# ## The oracle: a yardstick, not a policy
#
# - Knows the future: for each 5-minute window, the fewest replicas that meet the SLO
#   (`inferlab.sim.oracle_plan`), launched one cold start early.
# - Its GPU-hours are a **lower bound** for any reactive policy on that trace; report yours as a ratio.
# - Between the two: **predictive** autoscaling (forecast the next window from history: daily
#   seasonality, trends) plus a reactive correction.
# - Lab 5 grades your autoscaler by SLO attainment, GPU-hours against the oracle and the HPA, and
#   scale actions per hour, on the lab's trace and hidden ones.

# %% [markdown]
# ## Spot vs on-demand capacity
#
# - **Spot** (preemptible) GPUs cost ~⅓ of on-demand but can be reclaimed with a short **notice**
#   (AWS: 2 minutes; GCP: 30 s).
# - On notice: stop routing to the replica, re-route its waiting requests, let running ones finish if
#   they can; requests cut off start again elsewhere.
# - A **mix policy**: keep the SLO-critical floor on demand, the elastic part on spot; more spot
#   where preemptions are rare, less where they cluster.
# - The simulator models spot lifetimes, notices and prices (`ClusterConfig.spot_*`).

# %% [markdown]
# ## FinOps: dollars per million tokens
#
# $$\frac{\$}{10^6\ \text{tokens}} = \frac{\$/\text{GPU-hour} \times \text{GPUs}}{\text{tokens/s} \times 3600} \times 10^6$$
#
# Throughput depends on batch size, so cost does too: below, decode only, Llama-2-7B, 1024-token
# contexts, list prices from `costmodel.specs`.

# %%
batches = np.array([1, 4, 16, 64, 256])
fig, ax = plt.subplots()
for gpu in (A100, H100):
    step = np.array([decode_step_s(LLAMA7, gpu, Layout(), batch_size=int(b), num_context_tokens=1024, dtype="bf16",
                                   efficiency=EFF) for b in batches])
    usd_per_m = gpu.usd_per_gpu_hour / (batches / step * 3600) * 1e6
    ax.plot(batches, usd_per_m, "o-", label=f"{gpu.name} (${gpu.usd_per_gpu_hour}/h)")
ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="$ per 1M output tokens")
ax.legend()
plt.show()

# %% [markdown] slide=fragment
# The cheapest token is the one produced at the largest batch the TPOT SLO allows; an idle replica
# makes every token expensive. Utilisation, not list price, dominates the bill. (The two GPUs nearly
# coincide: at these list prices the H100's price premium is about its bandwidth premium, and decode
# is memory-bound.)

# %% [markdown]
# ## Take-aways and Lab 5
#
# - Size with Erlang C / Kingman, then check in the simulator; variability costs like load.
# - Reactive autoscalers trade reaction time against flapping; cold starts make them late.
# - Measure against the oracle; buy spot for the elastic part.
# - Report $/M tokens at the SLO.
#
# **Lab 5** (3 h): Erlang C, Kingman, the HPA rule, your SLO-aware autoscaler and spot mix in the
# simulator, then your autoscaler inside Ray Serve.

# %% [markdown]
# ## Sources
#
# - A. K. Erlang. *Solution of some problems in the theory of probabilities of significance in
#   automatic telephone exchanges.* Elektroteknikeren 13, 1917.
# - J. F. C. Kingman. *The single server queue in heavy traffic.* Mathematical Proceedings of the
#   Cambridge Philosophical Society 57(4), 1961. https://doi.org/10.1017/S0305004100036094
# - M. Harchol-Balter. *Performance Modeling and Design of Computer Systems.* Cambridge University
#   Press, 2013.
# - Kubernetes documentation. *Horizontal Pod Autoscaling* (algorithm, stabilization window).
#   https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/
# - Ray documentation. *Ray Serve autoscaling.* https://docs.ray.io/en/latest/serve/autoscaling-guide.html
# - Knative documentation. *Configuring scale bounds / KPA (stable and panic windows).*
#   https://knative.dev/docs/serving/autoscaling/kpa-specific/
# - AWS documentation. *Spot Instance interruption notices.*
#   https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html
# - Google Cloud documentation. *Spot VMs* (preemption notice). https://cloud.google.com/compute/docs/instances/spot
# - P. Patel et al. *Splitwise: Efficient Generative LLM Inference Using Phase Splitting* (the Azure
#   LLM inference traces, 2023). ISCA 2024. https://arxiv.org/abs/2311.18677
# - FinOps Foundation. *FinOps Framework.* https://www.finops.org/framework/
