"""Plausible wrong answers to Lab 2; each must lose the points of the tests named."""

from roundtrip import Mutant

MUTANTS = [
    # waits for the queue delay even when a preferred batch size is already queued
    Mutant(name="batcher-ignores-preferred", cell="batcher",
           old="fitting = [p for p in self.config.preferred_batch_sizes if p <= n]", new="fitting = []",
           must_lose=("test_batcher_rules", "test_batcher_sequences")),
    # the queue never fills: a burst queues without bound instead of being rejected
    Mutant(name="batcher-unbounded-queue", cell="batcher",
           old="if self.config.max_queue_size is not None and len(self.queue) >= self.config.max_queue_size:",
           new="if False:", must_lose=("test_batcher_queue",)),
    # the delay counted from the newest request: a steady trickle postpones the batch forever
    Mutant(name="batcher-newest-deadline", cell="batcher",
           old="return self.queue[0][1] + self.config.max_queue_delay_s if self.queue else None",
           new="return self.queue[-1][1] + self.config.max_queue_delay_s if self.queue else None",
           must_lose=("test_batcher_rules", "test_batcher_sequences")),
    # any rate meeting the SLO counts, even past the first miss
    Mutant(name="max-rate-not-monotone", cell="max_rate",
           old="        if not attained >= min_attainment:\n            break",
           new="        if not attained >= min_attainment:\n            continue", must_lose=("test_max_rate",)),
    # Kneedle without scaling: throughput (tokens/s) swamps latency (s), the knee is the last point
    Mutant(name="knee-unscaled", cell="knee", old="    return int(np.argmax(xs - ys))",
           new="    return int(np.argmax(x - y))", must_lose=("test_knee",)),
]

# Checked by `python grading/mutcheck.py lab2_frameworks` (in-process, no nbgrader), not by the round trip:
# each would cost one more autograded notebook in `make test`.
DEV_MUTANTS = [
    # the delay's end is exclusive: a batch due at exactly arrival + delay waits one more event
    Mutant(name="batcher-strict-delay", cell="batcher", old="elif now_s >= self.next_deadline_s():",
           new="elif now_s > self.next_deadline_s():", must_lose=("test_batcher_rules",)),
    # takes the whole queue past max_batch_size (the harness refuses the batch)
    Mutant(name="batcher-overfull-batch", cell="batcher", old="take = self.config.max_batch_size",
           new="take = n", must_lose=("test_batcher_rules", "test_batcher_sequences")),
    # largest preferred size ignored: the smallest one that fits
    Mutant(name="batcher-smallest-preferred", cell="batcher", old="take = max(fitting)", new="take = min(fitting)",
           must_lose=("test_batcher_rules", "test_batcher_sequences")),
    # attainment exactly at the threshold counted as a miss
    Mutant(name="max-rate-strict", cell="max_rate", old="if not attained >= min_attainment:",
           new="if not attained > min_attainment:", must_lose=("test_max_rate",)),
    # rates taken in the order given, not sorted
    Mutant(name="max-rate-unsorted", cell="max_rate", old="sorted(zip(rates_rps, attainments))",
           new="zip(rates_rps, attainments)", must_lose=("test_max_rate",)),
    # the point furthest above the diagonal
    Mutant(name="knee-wrong-side", cell="knee", old="    return int(np.argmax(xs - ys))",
           new="    return int(np.argmax(ys - xs))", must_lose=("test_knee",)),
]
