"""One simulated serving replica: continuous batching driven by a step-time model.

Floor 2 of inferlab, used by `sim/cluster.py`. A replica mirrors the engine's
scheduler at iteration level:

- admission: FCFS from its waiting queue while fewer than `max_num_seqs` run and the
  KV cache can reserve the request's prompt + output tokens (reserved up front, so a
  running request is never preempted for memory);
- each step: every decoding sequence gets one token, and the rest of the token budget
  (`max_num_batched_tokens`) goes to prompt chunks, FCFS (chunked prefill); a request
  whose last prompt chunk ran gets its first token at the end of that step;
- between events the replica fast-forwards: a run of decode-only steps up to the next
  completion or the next time it is asked about costs O(1) (`StepTimeModel.decode_run_s`);
- the K/V input of a step is the tokens held, or, for a step-time model with
  `decode_padding` (an engine whose decode attention pads, like inferlab's CPU runner),
  the K/V slots that attention reads: decoding sequences sorted by context, grouped,
  each group padded to its longest. A fast-forwarded run starts from the exact padded
  count and grows it by one slot per sequence per step (block rounding ignored inside a run).

Time is lazy: `advance(t)` runs every step that *starts* before `t`, so a request added
at `t` joins at the first step boundary at or after `t`, as in a real engine loop.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable

from inferlab.ints import cdiv
from inferlab.limits import BatchLimits
from inferlab.sim.steptime import StepTimeModel


@dataclass(frozen=True)
class ReplicaConfig(BatchLimits):
    """Scheduler limits of one replica (`BatchLimits`, shared with the engine's `EngineConfig`)."""

    num_prefix_cache_blocks: int = 0  # prefix cache (LRU of prompt blocks); 0: none

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_prefix_cache_blocks < 0:
            raise ValueError("ReplicaConfig.num_prefix_cache_blocks must be >= 0")


class SimRequest:
    """A request inside the simulator (mutable, slotted for speed)."""

    __slots__ = ("index", "arrival_time_s", "num_prompt_tokens", "num_output_tokens",
                 "num_prefilled", "first_token_time_s", "finish_step", "num_requeues", "context_key",
                 "block_hashes", "session_key", "tenant", "num_cached_tokens")

    def __init__(self, index: int, arrival_time_s: float, num_prompt_tokens: int, num_output_tokens: int,
                 block_hashes: tuple[int, ...] = (), session_key: str | None = None, tenant: str = "default") -> None:
        self.index = index
        self.arrival_time_s = arrival_time_s
        self.num_prompt_tokens = num_prompt_tokens
        self.num_output_tokens = num_output_tokens
        self.num_prefilled = 0
        self.first_token_time_s = math.nan
        self.finish_step = 0
        self.num_requeues = 0
        self.context_key = 0  # context length while decoding = context_key + the replica's decode-step count
        self.block_hashes, self.session_key, self.tenant = block_hashes, session_key, tenant
        self.num_cached_tokens = 0  # prompt tokens found in the replica's prefix cache at admission

    def reset(self) -> None:
        """Forget progress (its replica went away): it starts over elsewhere."""
        self.num_prefilled = self.num_cached_tokens = 0
        self.first_token_time_s = math.nan
        self.num_requeues += 1


# called with (request, finish_time_s) when a request's last token is produced
OnFinish = Callable[[SimRequest, float], None]


class Replica:
    """Iteration-level model of one engine replica; see the module docstring."""

    def __init__(self, replica_id: int, step_model: StepTimeModel, config: ReplicaConfig, start_time_s: float,
                 on_finish: OnFinish) -> None:
        self.replica_id = replica_id
        self.step_model = step_model
        self.config = config
        self.now_s = start_time_s
        self.on_finish = on_finish
        self.waiting: deque[SimRequest] = deque()
        self.prefilling: deque[SimRequest] = deque()
        self.decoding: list[tuple[int, int, SimRequest]] = []  # heap of (finish_step, index, request)
        self.num_decode_steps = 0
        self.num_kv_reserved = 0  # tokens reserved for admitted requests (prompt + output)
        self.num_kv_tokens = 0  # tokens actually in the cache (step-time input)
        self.decode_keys: list[int] = []  # sorted context keys of decoding requests (decode padding only)
        self.num_steps = 0
        self.busy_s = 0.0  # time spent in steps
        self.budget_busy_s = 0.0  # time spent in steps, weighted by the share of the token budget used
        self.prefix_cache: OrderedDict[int, None] = OrderedDict()  # block hash -> None, least recent first
        self.num_prompt_blocks = self.num_hit_blocks = 0

    # ------------------------------------------------------------------ views
    @property
    def num_outstanding(self) -> int:
        return len(self.waiting) + len(self.prefilling) + len(self.decoding)

    @property
    def num_running(self) -> int:
        return len(self.prefilling) + len(self.decoding)

    @property
    def num_waiting_for_first_token(self) -> int:
        return len(self.waiting) + len(self.prefilling)

    @property
    def num_pending_prefill_tokens(self) -> int:
        """Prompt tokens queued here whose prefill has not run (cached blocks excluded once admitted)."""
        return sum(r.num_prompt_tokens - r.num_prefilled for r in self.waiting) + \
            sum(r.num_prompt_tokens - r.num_prefilled for r in self.prefilling)

    @property
    def kv_utilization(self) -> float:
        return self.num_kv_reserved / self.step_model.max_kv_tokens

    # ------------------------------------------------------------------ input
    def add(self, request: SimRequest) -> None:
        """Queue a request; it runs from the first step starting at or after `now_s`."""
        need = request.num_prompt_tokens + request.num_output_tokens
        if need > self.step_model.max_kv_tokens:
            raise ValueError(f"request {request.index}: prompt + output = {need} tokens exceeds the replica's "
                             f"KV capacity max_kv_tokens={self.step_model.max_kv_tokens}")
        self.waiting.append(request)

    def evict_all(self) -> list[SimRequest]:
        """Remove every request (replica lost); each is reset to start over."""
        out = list(self.waiting) + list(self.prefilling) + [entry[2] for entry in self.decoding]
        self.waiting.clear()
        self.prefilling.clear()
        self.decoding.clear()
        self.decode_keys.clear()
        self.num_kv_reserved = self.num_kv_tokens = 0
        for request in out:
            request.reset()
        return out

    # ------------------------------------------------------------------ time
    def _admit(self) -> None:
        cap, max_seqs = self.step_model.max_kv_tokens, self.config.max_num_seqs
        waiting, prefilling = self.waiting, self.prefilling
        while waiting and len(prefilling) + len(self.decoding) < max_seqs:
            request = waiting[0]
            need = request.num_prompt_tokens + request.num_output_tokens
            if self.num_kv_reserved + need > cap:
                break
            waiting.popleft()
            self.num_kv_reserved += need
            if self.config.num_prefix_cache_blocks and request.block_hashes:
                self._match_prefix(request)
            prefilling.append(request)

    def _match_prefix(self, request: SimRequest) -> None:
        """Skip the prompt's leading blocks found in the cache (never its last token), then remember them all."""
        cache, hashes = self.prefix_cache, request.block_hashes
        num = 0
        while num < len(hashes) and hashes[num] in cache:
            num += 1
        cached = min(num * self.config.block_size, request.num_prompt_tokens - 1)
        request.num_cached_tokens = request.num_prefilled = cached
        self.num_kv_tokens += cached
        self.num_prompt_blocks += len(hashes)
        self.num_hit_blocks += num
        for h in hashes:
            cache[h] = None
            cache.move_to_end(h)
        while len(cache) > self.config.num_prefix_cache_blocks:
            cache.popitem(last=False)

    def _kv_input(self) -> int:
        """The step-time model's K/V input for the next step (see the module docstring)."""
        padding = self.step_model.decode_padding
        if padding is None:
            return self.num_kv_tokens
        keys, step, group, block = self.decode_keys, self.num_decode_steps, padding.group_size, padding.block_size
        total = 0
        for start in range(0, len(keys), group):
            last = min(start + group, len(keys))
            total += (last - start) * (cdiv(keys[last - 1] + step, block) * block)
        return total

    def _finish(self, request: SimRequest, time_s: float) -> None:
        if self.step_model.decode_padding is not None and request.num_output_tokens > 1:
            keys = self.decode_keys
            del keys[bisect.bisect_left(keys, request.context_key)]
        self.num_kv_reserved -= request.num_prompt_tokens + request.num_output_tokens
        self.num_kv_tokens -= request.num_prompt_tokens + request.num_output_tokens - 1
        self.on_finish(request, time_s)

    def _mixed_step(self) -> None:
        """One step with prompt chunks (and every decoding sequence)."""
        num_decode = len(self.decoding)
        budget = self.config.max_num_batched_tokens - num_decode
        num_prefill = 0
        done: list[SimRequest] = []
        for request in self.prefilling:
            if budget <= 0:
                break
            chunk = min(request.num_prompt_tokens - request.num_prefilled, budget)
            request.num_prefilled += chunk
            budget -= chunk
            num_prefill += chunk
            if request.num_prefilled == request.num_prompt_tokens:
                done.append(request)
        dt = self.step_model.step_s(num_prefill, num_decode, self._kv_input())
        self.now_s += dt
        self.busy_s += dt
        self.budget_busy_s += dt * (num_prefill + num_decode) / self.config.max_num_batched_tokens
        self.num_steps += 1
        self.num_kv_tokens += num_prefill + num_decode
        if num_decode:
            self.num_decode_steps += 1
        for request in done:
            self.prefilling.popleft()  # done requests are the leading ones (FCFS chunks)
            request.first_token_time_s = self.now_s
            if request.num_output_tokens == 1:
                self._finish(request, self.now_s)
            else:
                request.finish_step = self.num_decode_steps + request.num_output_tokens - 1
                heapq.heappush(self.decoding, (request.finish_step, request.index, request))
                if self.step_model.decode_padding is not None:
                    # context at decode step k: prompt + tokens so far = prompt + 1 + (k - first decode step)
                    request.context_key = request.num_prompt_tokens + 1 - self.num_decode_steps
                    bisect.insort(self.decode_keys, request.context_key)
        self._pop_finished()

    def _pop_finished(self) -> None:
        decoding, step = self.decoding, self.num_decode_steps
        while decoding and decoding[0][0] <= step:
            self._finish(heapq.heappop(decoding)[2], self.now_s)

    def advance(self, until_s: float) -> None:
        """Run every step that starts before `until_s` (math.inf: until the replica is empty)."""
        step_model = self.step_model
        while self.now_s < until_s:
            if self.waiting:
                self._admit()
            if self.prefilling:
                self._mixed_step()
                continue
            decoding = self.decoding
            if not decoding:
                if until_s != math.inf:
                    self.now_s = until_s
                return
            num_decode = len(decoding)
            num_steps = decoding[0][0] - self.num_decode_steps
            kv = self._kv_input()
            if until_s != math.inf:
                num_steps, dt = step_model.decode_run_until(num_decode, kv, until_s - self.now_s, num_steps)
            else:
                dt = step_model.decode_run_s(num_decode, kv, num_steps)
            self.now_s += dt
            self.busy_s += dt
            self.budget_busy_s += dt * num_decode / self.config.max_num_batched_tokens
            self.num_steps += num_steps
            self.num_decode_steps += num_steps
            self.num_kv_tokens += num_decode * num_steps
            self._pop_finished()
