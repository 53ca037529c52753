"""Triton's dynamic batcher rule and the simulated-clock harness that grades lab 2's batchers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inferlab.metrics import knee_index, max_rate_meeting_slo
from inferlab.policies.batching import BatcherConfig, TritonDynamicBatcher
from inferlab.sim.batching import BatcherError, linear_service, run_batcher


def test_rule_order_preferred_delay_and_full_batch() -> None:
    b = TritonDynamicBatcher(BatcherConfig(max_batch_size=4, preferred_batch_sizes=(2, 3), max_queue_delay_s=1.0))
    assert b.poll(0.0) is None and b.next_deadline_s() is None
    b.offer("a", 0.0)
    assert b.poll(0.5) is None and b.next_deadline_s() == 1.0
    assert b.poll(1.0) == ["a"]  # at exactly arrival + delay
    for i in range(7):
        b.offer(i, 2.0)
    assert b.poll(2.0) == [0, 1, 2, 3]  # full batch first
    assert b.poll(2.0) == [4, 5, 6]  # then the largest preferred size that fits


def test_bounded_queue_rejects_and_harness_counts_rejections() -> None:
    cfg = BatcherConfig(max_batch_size=2, max_queue_delay_s=0.0, max_queue_size=3)
    run = run_batcher(TritonDynamicBatcher(cfg), [0.0] * 6, linear_service(1.0, 0.0), 2)
    assert run.rejected == [3, 4, 5]
    assert [b for _, b in run.batches] == [[0, 1], [2]]
    assert run.latency_s[:3] == [1.0, 1.0, 2.0] and math.isnan(run.latency_s[3])


def test_harness_waits_for_the_deadline_without_new_arrivals() -> None:
    cfg = BatcherConfig(max_batch_size=8, preferred_batch_sizes=(8,), max_queue_delay_s=0.25)
    run = run_batcher(TritonDynamicBatcher(cfg), [0.0, 0.1], linear_service(0.5, 0.0), 8)
    assert run.batches == [(0.25, [0, 1])]
    assert run.wait_s == [0.25, pytest.approx(0.15)]


def test_harness_refuses_broken_batchers() -> None:
    class Overfull(TritonDynamicBatcher):
        def poll(self, now_s):
            return [self.queue.popleft()[0] for _ in range(len(self.queue))] or None

    with pytest.raises(BatcherError, match="exceeds max_batch_size"):
        run_batcher(Overfull(BatcherConfig(max_batch_size=2)), [0.0] * 3, linear_service(1.0, 0.0), 2)

    class Stuck(TritonDynamicBatcher):
        def poll(self, now_s):
            return None

    with pytest.raises(BatcherError, match="poll\\(\\) returned no batch"):
        run_batcher(Stuck(BatcherConfig(max_batch_size=2)), [0.0], linear_service(1.0, 0.0), 2)


def test_config_errors_are_named() -> None:
    with pytest.raises(ValueError, match="preferred batch sizes"):
        BatcherConfig(max_batch_size=4, preferred_batch_sizes=(8,))
    with pytest.raises(ValueError, match="max_queue_size"):
        BatcherConfig(max_queue_size=0)


def test_waiting_raises_batch_size_at_moderate_load() -> None:
    arrivals = np.cumsum(np.random.default_rng(0).exponential(1 / 150, 300))
    svc = linear_service(0.010, 0.002)
    none = run_batcher(TritonDynamicBatcher(BatcherConfig(8, (), 0.0)), arrivals, svc, 8)
    wait = run_batcher(TritonDynamicBatcher(BatcherConfig(8, (4, 8), 0.020)), arrivals, svc, 8)
    assert wait.mean_batch_size > none.mean_batch_size


def test_sweep_functions() -> None:
    assert max_rate_meeting_slo([8, 1, 4, 2], [0.95, 1.0, 0.9, 1.0]) == 8
    assert max_rate_meeting_slo([1, 2, 4], [1.0, 0.5, 1.0]) == 1
    assert max_rate_meeting_slo([1, 2], [0.1, 1.0]) == 0.0
    assert knee_index([10, 20, 38, 45, 47], [0.1, 0.11, 0.15, 0.5, 1.5]) == 2
    with pytest.raises(ValueError):
        knee_index([1, 2], [1, 2])
    with pytest.raises(ValueError):
        max_rate_meeting_slo([1, 2], [1.0])
