# %% [markdown]
# # Lab 0: baseline and roofline
#
# **Module MOD-526, Distributed Inference & Scaling.** This lab serves the objective
# *"Implement continuous batching, dynamic routing, and autoscaling strategies tied to
# performance KPIs"*: before we scale anything we fix what the KPIs mean (TTFT, TPOT,
# goodput) and how fast one request can possibly go on this machine (the roofline).
#
# | | |
# |---|---|
# | Prerequisites | MOD-524, MOD-525; Python, PyTorch basics; lecture deck `lectures/00_kpis_roofline.ipynb` |
# | Hardware tier | **CPU** (any laptop); a GPU is used automatically if present |
# | Time | ~2 min in fast mode, ~15 min in full mode |
# | Hours | lecture 1 h, lab 1.5 h (the course: 12 h lecture, 18 h lab, 6 h portfolio, 4 h assessment; see COURSE.md) |
# | Graded | metric functions (6 points), roofline estimate (4 points) |
#
# You will:
# 1. check your environment and run the tiny Llama model;
# 2. measure prefill and decode latency for one request;
# 3. **implement** TTFT, TPOT and goodput exactly as `vllm bench serve` defines them;
# 4. measure this machine's memory bandwidth and matmul rate;
# 5. **implement** a roofline estimate of decode throughput and compare it with a measurement.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np

from inferlab import metrics
from inferlab.doctor import summary
from inferlab.hardware import measure_matmul_flops, measure_memory_bandwidth_bytes_s
from inferlab.model import ensure_checkpoint, load_checkpoint, generate_greedy
from inferlab.model.timing import time_request
from inferlab.model.tokenizer import decode, encode
from inferlab.notebook import banner, pick, progress, run_demo

banner("lab0_baseline", tier="CPU", fast_min=2, full_min=15)

# %% [markdown]
# ## 1. Environment and the tiny model
#
# `inferlab doctor` (here as a function) tells which versions, devices and backends you have.
# The tiny model is a real Llama-architecture decoder (RMSNorm, RoPE, grouped-query attention,
# SwiGLU) with random weights: its text is gibberish, but its systems behaviour (FLOPs, bytes,
# KV cache) is the real thing. The same checkpoint directory loads in `transformers`, vLLM and DeepSpeed.

# %%
print(summary())
model_dir = ensure_checkpoint("tiny")
model = load_checkpoint(model_dir)
num_params = sum(p.numel() for p in model.parameters())
print(f"checkpoint: {model_dir}\nparameters: {num_params / 1e6:.2f} M on {model.device}")
new_ids = generate_greedy(model, encode("Hello, inference!"), max_new_tokens=16)
print("greedy continuation ids:", new_ids)
print("as text:", repr(decode(new_ids)))

# %% [markdown]
# ## 2. One request, timed
#
# Prefill processes the whole prompt in one forward pass and produces the first token;
# decode then produces one token per forward pass, reading the KV cache. `time_request`
# records the time of every output token.

# %%
prompt = list(range(pick(256, 64)))
record = time_request(model, prompt, max_new_tokens=pick(64, 16))
print(f"prefill of {len(prompt)} tokens -> first token after {record.first_token_time_s * 1e3:.1f} ms")
gaps = np.diff(record.token_times_s)
print(f"decode: {len(gaps)} gaps, mean {gaps.mean() * 1e3:.2f} ms, max {gaps.max() * 1e3:.2f} ms")

# %% [markdown]
# ## 3. The serving metrics (graded)
#
# A request log here is a dict with the arrival time and the time of every output token:
#
# ```python
# {"arrival_s": 10.0, "token_times_s": [10.4, 10.45, 10.52]}
# ```
#
# Definitions (those of `vllm bench serve`, and of `inferlab.metrics`):
# - **TTFT** = time of the first token − arrival.
# - **E2E** = time of the last token − arrival.
# - **TPOT** = (E2E − TTFT) / (number of output tokens − 1), per request; a request with a single
#   output token has no TPOT (return `math.nan`).
# - **Goodput** = number of requests that meet *every* SLO, divided by the duration (requests/s).
#   A request *meets* an SLO when its value is at or under the target (`<=`): a request whose TTFT
#   equals the TTFT SLO meets it. A request with no TPOT meets any TPOT SLO.
#
# A worked example first: E2E latency.

# %%
def e2e_s(log: dict) -> float:
    """End-to-end latency of one request log, in seconds."""
    return log["token_times_s"][-1] - log["arrival_s"]


example = {"arrival_s": 10.0, "token_times_s": [10.4, 10.45, 10.52]}
print(f"E2E = {e2e_s(example):.2f} s")

# %% [markdown]
# Now yours: `ttft_s`, `tpot_s` and `goodput_rps` with the signatures below.
#
# *What you may use:* `math`, `numpy` and the worked example `e2e_s`. The tests compare against
# `inferlab.metrics`: an answer that imports, calls or wraps it (however reached) scores zero here.

# %% solution id=metric_functions
def ttft_s(log: dict) -> float:
    """Time to first token of one request log, in seconds."""
    ### BEGIN SOLUTION
    return log["token_times_s"][0] - log["arrival_s"]
    ### END SOLUTION


def tpot_s(log: dict) -> float:
    """Time per output token after the first, in seconds; math.nan for a single-token request."""
    ### BEGIN SOLUTION
    n = len(log["token_times_s"])
    if n < 2:
        return math.nan
    return (e2e_s(log) - ttft_s(log)) / (n - 1)
    ### END SOLUTION


def goodput_rps(logs: list[dict], slo_ttft_s: float, slo_tpot_s: float, duration_s: float) -> float:
    """Requests per second meeting both the TTFT and the TPOT SLO over `duration_s` seconds."""
    ### BEGIN SOLUTION
    good = 0
    for log in logs:
        tpot = tpot_s(log)
        if ttft_s(log) <= slo_ttft_s and (math.isnan(tpot) or tpot <= slo_tpot_s):
            good += 1
    return good / duration_s
    ### END SOLUTION

# %% tests id=test_ttft points=1
assert math.isclose(ttft_s(example), 0.4, rel_tol=1e-9)
### BEGIN HIDDEN TESTS
_rng = np.random.default_rng(11)


def _hidden_logs(num_logs):
    logs = []
    for _ in range(num_logs):
        arrival = float(_rng.uniform(0, 60))
        first = arrival + float(_rng.exponential(0.4))
        gaps = _rng.exponential(0.04, int(_rng.integers(0, 40)))
        logs.append({"arrival_s": arrival, "token_times_s": [first, *(first + np.cumsum(gaps)).tolist()]})
    return logs


def _record(log):
    t = log["token_times_s"]
    return metrics.RequestRecord(log["arrival_s"], t[0], t[-1], 1, len(t), tuple(t))

for _log in _hidden_logs(50):
    assert math.isclose(ttft_s(_log), metrics.ttft_s(_record(_log)), rel_tol=1e-9, abs_tol=1e-12), "TTFT differs"
### END HIDDEN TESTS

# %% tests id=test_tpot points=2
assert math.isclose(tpot_s(example), 0.06, rel_tol=1e-9)
assert math.isnan(tpot_s({"arrival_s": 0.0, "token_times_s": [0.5]}))
### BEGIN HIDDEN TESTS
_rng = np.random.default_rng(12)


def _hidden_logs(num_logs):
    logs = []
    for _ in range(num_logs):
        arrival = float(_rng.uniform(0, 60))
        first = arrival + float(_rng.exponential(0.4))
        gaps = _rng.exponential(0.04, int(_rng.integers(0, 40)))
        logs.append({"arrival_s": arrival, "token_times_s": [first, *(first + np.cumsum(gaps)).tolist()]})
    return logs


def _record(log):
    t = log["token_times_s"]
    return metrics.RequestRecord(log["arrival_s"], t[0], t[-1], 1, len(t), tuple(t))

for _log in _hidden_logs(50):
    _want = metrics.tpot_s(_record(_log))
    _got = tpot_s(_log)
    assert (math.isnan(_want) and math.isnan(_got)) or math.isclose(_got, _want, rel_tol=1e-9), "TPOT differs"
### END HIDDEN TESTS

# %% tests id=test_goodput points=2
_logs = [example, {"arrival_s": 0.0, "token_times_s": [3.0, 3.1]}, {"arrival_s": 1.0, "token_times_s": [1.2, 2.2]}]
assert math.isclose(goodput_rps(_logs, slo_ttft_s=1.0, slo_tpot_s=0.5, duration_s=10.0), 0.1)
assert goodput_rps([{"arrival_s": 0.0, "token_times_s": [0.5]}], 1.0, 0.1, 2.0) == 0.5, "no TPOT meets any TPOT SLO"
### BEGIN HIDDEN TESTS
_rng = np.random.default_rng(100)


def _hidden_logs(num_logs):
    logs = []
    for _ in range(num_logs):
        arrival = float(_rng.uniform(0, 60))
        first = arrival + float(_rng.exponential(0.4))
        gaps = _rng.exponential(0.04, int(_rng.integers(0, 40)))
        logs.append({"arrival_s": arrival, "token_times_s": [first, *(first + np.cumsum(gaps)).tolist()]})
    return logs


def _record(log):
    t = log["token_times_s"]
    return metrics.RequestRecord(log["arrival_s"], t[0], t[-1], 1, len(t), tuple(t))

for _ in range(3):
    _hidden = _hidden_logs(200)
    _slo = metrics.SLO(ttft_s=0.5, tpot_s=0.05)
    _want = metrics.goodput_rps([_record(x) for x in _hidden], _slo, duration=60.0)
    assert math.isclose(goodput_rps(_hidden, 0.5, 0.05, 60.0), _want, rel_tol=1e-9), "goodput differs"
### END HIDDEN TESTS

# %% tests id=test_goodput_at_slo points=1
# Exactly at the SLO meets it (times chosen exact in binary floating point): TTFT 0.5 s, TPOT 0.25 s.
assert goodput_rps([{"arrival_s": 2.0, "token_times_s": [2.5, 2.75, 3.0]}], 0.5, 1.0, 1.0) == 1.0, "TTFT == SLO meets it"
assert goodput_rps([{"arrival_s": 2.0, "token_times_s": [2.25, 2.5, 2.75]}], 1.0, 0.25, 1.0) == 1.0, "TPOT == SLO meets it"
### BEGIN HIDDEN TESTS
_rng = np.random.default_rng(13)
for _ in range(20):
    # arrival, TTFT and gaps on a 1/64 s grid, SLOs on the same grid: every subtraction is exact
    _slo_ttft, _slo_tpot = int(_rng.integers(1, 64)) / 64, int(_rng.integers(1, 16)) / 64
    _logs, _good = [], 0
    for _ in range(int(_rng.integers(1, 30))):
        _arrival = int(_rng.integers(0, 64 * 60)) / 64
        _ttft = _slo_ttft + int(_rng.integers(-1, 2)) / 64  # just under, at, or just over the SLO
        _gap = _slo_tpot + int(_rng.integers(-1, 2)) / 64 if _slo_tpot > 1 / 64 else _slo_tpot
        _num_gaps = int(_rng.integers(0, 5))
        _times = [_arrival + _ttft + _j * _gap for _j in range(_num_gaps + 1)]
        _logs.append({"arrival_s": _arrival, "token_times_s": _times})
        _good += _ttft <= _slo_ttft and (_num_gaps == 0 or _gap <= _slo_tpot)
    assert goodput_rps(_logs, _slo_ttft, _slo_tpot, 8.0) == _good / 8.0, "requests at an SLO boundary counted wrong"
### END HIDDEN TESTS

# %% [markdown]
# Check your functions on the request you timed in section 2: they must agree with `inferlab.metrics`.

# %%
measured_log = {"arrival_s": record.arrival_time_s, "token_times_s": list(record.token_times_s)}
print(f"TTFT {ttft_s(measured_log) * 1e3:.1f} ms (inferlab.metrics: {metrics.ttft_s(record) * 1e3:.1f} ms)")
print(f"TPOT {tpot_s(measured_log) * 1e3:.2f} ms (inferlab.metrics: {metrics.tpot_s(record) * 1e3:.2f} ms)")

# %% [markdown]
# ## 4. This machine's roofline
#
# Decode reads every weight once per step (and the KV cache of every sequence), but does only
# 2 FLOPs per weight per sequence: at small batch it is **memory-bound**. We measure the two
# ceilings: copy bandwidth (bytes/s) and dense matmul rate (FLOP/s).

# %%
mem_bw_bytes_s = measure_memory_bandwidth_bytes_s(num_bytes=pick(512 << 20, 64 << 20))
peak_flops = measure_matmul_flops(size=pick(2048, 512))
print(f"memory bandwidth ≈ {mem_bw_bytes_s / 1e9:.1f} GB/s, matmul ≈ {peak_flops / 1e9:.1f} GFLOP/s")
print(f"ridge point: {peak_flops / mem_bw_bytes_s:.1f} FLOP/byte")

# %% [markdown]
# The roofline itself: attainable FLOP/s = min(peak, arithmetic intensity × bandwidth), on log axes.
# Left of the ridge point a kernel is memory-bound, right of it compute-bound. A decode step of a
# model with `bytes_per_param` bytes per weight and batch b does 2·b FLOPs per weight read, so its
# intensity is 2·b / bytes_per_param (KV cache reads ignored): b = 1 in fp32 is 0.5 FLOP/byte, deep
# in the memory-bound region; a 128-token prefill is 64x more intense.

# %%
ridge = peak_flops / mem_bw_bytes_s
intensities = [2 ** e for e in range(-4, 13)]
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.loglog(intensities, [min(peak_flops, i * mem_bw_bytes_s) for i in intensities], "k-", label="this machine")
ax.axvline(ridge, color="grey", ls=":", label=f"ridge {ridge:.1f} FLOP/byte")
for label, batch in (("decode b=1", 1), ("decode b=16", 16), ("prefill 128 tokens", 128)):
    i = 2 * batch / 4  # fp32 weights: 4 bytes per parameter
    ax.plot(i, min(peak_flops, i * mem_bw_bytes_s), "o", label=f"{label} ({i:g} FLOP/byte)")
ax.set_xlabel("arithmetic intensity (FLOP/byte)"), ax.set_ylabel("attainable FLOP/s"), ax.legend(fontsize=7)
plt.show()

# %% [markdown]
# ## 5. A roofline estimate of decode throughput (graded)
#
# One decode step for `batch_size` sequences, each with `context_tokens` tokens in its KV cache:
# - bytes moved = weights (`num_params × bytes_per_param`) + KV cache read
#   (`batch_size × context_tokens × kv_bytes_per_token`);
# - FLOPs = `2 × num_params × batch_size`;
# - step time = the larger of bytes / bandwidth and FLOPs / peak;
# - throughput = `batch_size` tokens per step time.
#
# What this estimate leaves out, on purpose: the **attention** FLOPs (about 4 × layers × hidden ×
# context per token for QKᵀ and the weighted sum of V, small beside 2 × params until the context reaches
# thousands of tokens), activation traffic, and every fixed cost (kernel launches, Python, the
# scheduler). It is an upper bound on throughput, not a prediction.
#
# Worked example: prefill is compute-bound, 2 FLOPs per parameter per prompt token.
#
# *What you may use:* `math` and plain arithmetic; calling `inferlab.costmodel.roofline` scores zero here.

# %%
def roofline_prefill_s(num_params: float, num_tokens: int, peak_flops: float) -> float:
    """Lower bound on prefill time (s) of `num_tokens` tokens: 2·params·tokens / peak FLOP/s."""
    return 2.0 * num_params * num_tokens / peak_flops


print(f"Llama-2-7B, 128-token prompt, A100 (312 TFLOP/s bf16): {roofline_prefill_s(6.74e9, 128, 312e12) * 1e3:.2f} ms")

# %% solution id=roofline
def roofline_decode_tok_s(
    num_params: float,
    bytes_per_param: float,
    kv_bytes_per_token: float,
    context_tokens: int,
    batch_size: int,
    mem_bw_bytes_s: float,
    peak_flops: float,
) -> float:
    """Upper bound on decode throughput (output tokens/s) from the roofline model above."""
    ### BEGIN SOLUTION
    bytes_moved = num_params * bytes_per_param + batch_size * context_tokens * kv_bytes_per_token
    flops = 2.0 * num_params * batch_size
    step_s = max(bytes_moved / mem_bw_bytes_s, flops / peak_flops)
    return batch_size / step_s
    ### END SOLUTION

# %% tests id=test_roofline_memory points=2
# Llama-2-7B in fp16 on an A100-80GB (2.039 TB/s), batch 1, empty cache: ~151 tok/s.
_tok_s = roofline_decode_tok_s(6.74e9, 2, 0, 0, 1, 2.039e12, 312e12)
assert math.isclose(_tok_s, 2.039e12 / (6.74e9 * 2), rel_tol=1e-6), _tok_s
### BEGIN HIDDEN TESTS
# (name, params, bytes/param, KV bytes/token, context, batch, bandwidth B/s, peak FLOP/s)
_HIDDEN_SPECS = [
    ("llama-2-13b fp16 h100 b1 ctx2k", 13.0e9, 2, 819200, 2048, 1, 3.35e12, 989e12),
    ("llama-2-70b fp8 h200 b8 ctx4k", 69.0e9, 1, 163840, 4096, 8, 4.8e12, 1979e12),
    ("mistral-7b int4 l4 b4 ctx8k", 7.2e9, 0.5, 131072, 8192, 4, 0.3e12, 121e12),
    ("llama-3-8b bf16 a100 b2048 ctx512", 8.0e9, 2, 131072, 512, 2048, 2.039e12, 312e12),
    ("tiny fp32 cpu b512 ctx64", 2.7e6, 4, 32768, 64, 512, 25e9, 50e9),
]


def _reference(params, bpp, kvb, ctx, batch, bw, peak):
    step = max((params * bpp + batch * ctx * kvb) / bw, 2 * params * batch / peak)
    return batch / step


def _regime(params, bpp, kvb, ctx, batch, bw, peak):
    return "memory" if (params * bpp + batch * ctx * kvb) / bw >= 2 * params * batch / peak else "compute"


for _name, *_args in _HIDDEN_SPECS:
    if _regime(*_args) == "memory":
        assert math.isclose(roofline_decode_tok_s(*_args), _reference(*_args), rel_tol=1e-6), f"roofline wrong for a memory-bound case"
### END HIDDEN TESTS

# %% tests id=test_roofline_compute points=2
# At a large batch the same GPU becomes compute-bound.
_tok_s = roofline_decode_tok_s(6.74e9, 2, 0, 0, 4096, 2.039e12, 312e12)
assert math.isclose(_tok_s, 312e12 / (2 * 6.74e9), rel_tol=1e-6), _tok_s
### BEGIN HIDDEN TESTS
# (name, params, bytes/param, KV bytes/token, context, batch, bandwidth B/s, peak FLOP/s)
_HIDDEN_SPECS = [
    ("llama-2-13b fp16 h100 b1 ctx2k", 13.0e9, 2, 819200, 2048, 1, 3.35e12, 989e12),
    ("llama-2-70b fp8 h200 b8 ctx4k", 69.0e9, 1, 163840, 4096, 8, 4.8e12, 1979e12),
    ("mistral-7b int4 l4 b4 ctx8k", 7.2e9, 0.5, 131072, 8192, 4, 0.3e12, 121e12),
    ("llama-3-8b bf16 a100 b2048 ctx512", 8.0e9, 2, 131072, 512, 2048, 2.039e12, 312e12),
    ("tiny fp32 cpu b512 ctx64", 2.7e6, 4, 32768, 64, 512, 25e9, 50e9),
]


def _reference(params, bpp, kvb, ctx, batch, bw, peak):
    step = max((params * bpp + batch * ctx * kvb) / bw, 2 * params * batch / peak)
    return batch / step


def _regime(params, bpp, kvb, ctx, batch, bw, peak):
    return "memory" if (params * bpp + batch * ctx * kvb) / bw >= 2 * params * batch / peak else "compute"


for _name, *_args in _HIDDEN_SPECS:
    if _regime(*_args) == "compute":
        assert math.isclose(roofline_decode_tok_s(*_args), _reference(*_args), rel_tol=1e-6), f"roofline wrong for a compute-bound case"
### END HIDDEN TESTS

# %% [markdown]
# ## 6. Prediction against measurement
#
# Predict the tiny model's decode throughput on this machine from your roofline and the
# measured ceilings, then measure it at several batch sizes. On a CPU with a model this small
# the measurement sits far below the roofline: each step is dominated by fixed per-operator
# overhead (Python, kernel launches), not by bytes or FLOPs. That gap is why serving engines
# batch, fuse kernels and capture graphs, and it is what Lab 3 attacks.

# %%
if run_demo("roofline prediction against measured decode throughput (ungraded)"):
    cfg = model.config
    kv_bytes_per_token = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * 4  # K and V, fp32
    context = len(prompt)
    batch_sizes = pick([1, 2, 4, 8, 16, 32], [1, 4, 16])
    predicted, measured = [], []
    for batch in progress(batch_sizes, desc="decode batch sizes"):
        predicted.append(roofline_decode_tok_s(num_params, 4, kv_bytes_per_token, context, batch, mem_bw_bytes_s, peak_flops))
        timed = time_request(model, prompt, max_new_tokens=pick(32, 8), batch_size=batch)
        measured.append(batch / metrics.tpot_s(timed))

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog(batch_sizes, predicted, "o-", label="roofline prediction")
    ax.loglog(batch_sizes, measured, "s-", label="measured")
    ax.set_xlabel("decode batch size")
    ax.set_ylabel("output tokens/s")
    ax.set_title("Tiny model decode: roofline vs measured")
    ax.legend()
    plt.show()
    for b, p, m in zip(batch_sizes, predicted, measured):
        print(f"batch {b:>3}: predicted {p:>12,.0f} tok/s, measured {m:>8,.0f} tok/s ({m / p:.2%} of roofline)")

# %% [markdown]
# **Questions for your portfolio** (not autograded): at which batch size would this model
# become compute-bound on this machine according to the roofline? Why does the measurement
# grow almost linearly with batch size here? What would change on an H100 with Llama-2-7B?
