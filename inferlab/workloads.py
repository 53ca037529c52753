"""Workloads for routing and shaping: prefix-sharing sessions and multi-tenant traffic.

Floor 1 of inferlab, beside `traces.py`: generators return `TraceRequest`s (with
`block_hashes`, `session_key`, `tenant` filled in) for the simulator, and the prompts'
token ids for a real server, so the same requests run in both.

- `prefix_sharing_workload`: sessions arrive as a Poisson process; each picks one of a few
  shared system prompts (Zipf-skewed with `skew` > 0) and sends `turns` requests, each a
  think time after the last one's arrival; a turn's prompt is the system prompt, the whole
  history (earlier user messages and answers) and a new user message, so later turns
  share their first blocks with earlier ones. The defaults give a block hit ceiling (the
  share of prompt blocks an infinite cache would hold, `block_hit_ceiling`) near the
  36.6% measured on the Mooncake trace (Qin et al., FAST '25). `SESSION_REUSE` reaches a
  similar ceiling (~0.38) with the reuse in multi-turn histories instead of in a few system
  prompts: every replica soon holds a few shared system prompts whatever the router does, so
  under the defaults load-only routing already hits ~3/4 of the ceiling; a session's history
  is warm on one replica only, which is what prefix-aware routing can win.
- `multi_tenant_workload`: independent Poisson streams, one per tenant, merged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np

from inferlab.policies.route import DEFAULT_BLOCK_SIZE, prompt_block_hashes
from inferlab.traces import LengthDist, TraceRequest, synthesize

MOONCAKE_BLOCK_HIT_CEILING = 0.366  # Mooncake trace: share of blocks reused (infinite cache)


@dataclass(frozen=True)
class PrefixWorkloadConfig:
    """Shape of a prefix-sharing workload (token counts; times in seconds)."""

    num_system_prompts: int = 8
    system_prompt_tokens: int = 48
    mean_turns: float = 1.4
    user_tokens: tuple[int, int] = (64, 192)  # uniform range of a new user message
    output_tokens: tuple[int, int] = (8, 32)  # uniform range of an answer
    mean_think_s: float = 5.0
    skew: float = 0.0  # Zipf exponent over system prompts (0: uniform)
    max_prompt_tokens: int = 448
    vocab_size: int = 256
    block_size: int = DEFAULT_BLOCK_SIZE

    def __post_init__(self) -> None:
        if self.num_system_prompts < 1 or self.mean_turns < 1 or self.mean_think_s < 0:
            raise ValueError("num_system_prompts >= 1, mean_turns >= 1 and mean_think_s >= 0 are required")
        if self.max_prompt_tokens < self.system_prompt_tokens + self.user_tokens[1]:
            raise ValueError(f"max_prompt_tokens={self.max_prompt_tokens} cannot hold a system prompt "
                             f"({self.system_prompt_tokens}) and a user message (up to {self.user_tokens[1]})")


SESSION_REUSE = PrefixWorkloadConfig(num_system_prompts=32, system_prompt_tokens=16, mean_turns=2.0,
                                     user_tokens=(16, 160), output_tokens=(8, 32))


def prefix_sharing_workload(num_requests: int, rate_rps: float, rng: np.random.Generator,
                            config: PrefixWorkloadConfig | None = None) -> tuple[list[TraceRequest], list[list[int]]]:
    """(trace sorted by arrival, prompt token ids per request); see the module docstring."""
    cfg = config or PrefixWorkloadConfig()
    if num_requests < 1 or not rate_rps > 0:
        raise ValueError(f"num_requests must be >= 1 and rate_rps > 0, got {num_requests}, {rate_rps}")
    systems = [rng.integers(0, cfg.vocab_size, cfg.system_prompt_tokens).tolist()
               for _ in range(cfg.num_system_prompts)]
    weights = 1.0 / np.arange(1, cfg.num_system_prompts + 1) ** cfg.skew
    weights /= weights.sum()
    events: list[tuple[float, int, list[int], int]] = []  # (arrival, session, prompt, output)
    session, start = 0, 0.0
    while len(events) < 2 * num_requests:
        start += rng.exponential(cfg.mean_turns / rate_rps)
        history = list(systems[rng.choice(cfg.num_system_prompts, p=weights)])
        t = start
        for _ in range(rng.geometric(1.0 / cfg.mean_turns)):
            history += rng.integers(0, cfg.vocab_size, rng.integers(*cfg.user_tokens, endpoint=True)).tolist()
            if len(history) > cfg.max_prompt_tokens:
                break
            output = int(rng.integers(*cfg.output_tokens, endpoint=True))
            events.append((t, session, list(history), output))
            history += rng.integers(0, cfg.vocab_size, output).tolist()  # the answer joins the history
            t += rng.exponential(cfg.mean_think_s)
        session += 1
    events.sort(key=lambda e: e[0])
    events = events[:num_requests]
    t0 = events[0][0]
    trace = [TraceRequest(t - t0, len(p), out, prompt_block_hashes(p, cfg.block_size), f"s{sid}")
             for t, sid, p, out in events]
    return trace, [p for _, _, p, _ in events]


def block_hit_ceiling(trace: Sequence[TraceRequest]) -> float:
    """Share of prompt blocks already seen earlier in the trace (what an infinite shared cache would hit)."""
    seen: set[int] = set()
    num = hits = 0
    for r in trace:
        for h in r.block_hashes:
            num += 1
            hits += h in seen
            seen.add(h)
    return hits / num if num else 0.0


def multi_tenant_workload(rates_rps: Mapping[str, float], num_requests_per_tenant: Mapping[str, int],
                          prompt: LengthDist, output: LengthDist, rng: np.random.Generator) -> list[TraceRequest]:
    """Independent Poisson streams, one per tenant (its `tenant` field set), merged by arrival time."""
    out: list[TraceRequest] = []
    for tenant, rate in rates_rps.items():
        n = num_requests_per_tenant[tenant]
        if not rate > 0 or n < 1:
            raise ValueError(f"tenant {tenant!r}: rate must be > 0 and at least one request, got {rate}, {n}")
        arrivals = np.cumsum(rng.exponential(1.0 / rate, n))
        out += [replace(r, arrival_time_s=float(t), tenant=tenant)
                for r, t in zip(synthesize(arrivals, prompt, output, rng), arrivals)]
    return sorted(out, key=lambda r: r.arrival_time_s)
