"""Plausible wrong answers to Lab 3; each must lose the points of the tests named."""

from roundtrip import Mutant

# The round trip grades these five (one autograded notebook each): one per exercise, and together they lose
# every test cell (must_lose lists each cell the mutant loses). The others are DEV_MUTANTS below.
MUTANTS = [
    Mutant(
        name="allocator-free-forgets-refcount",
        cell="allocator",
        old="            self.ref_counts[b] -= 1\n            if self.ref_counts[b] == 0:",
        new="            if self.ref_counts[b] == 1:",
        must_lose=("test_allocator_basic", "test_allocator_prefix", "test_scheduler_correct"),
    ),
    Mutant(
        name="ignores-token-budget",
        cell="scheduler",
        old="n = min(left, budget)",
        new="n = left",
        must_lose=("test_scheduler_budget", "test_scheduler_correct", "test_scheduler_fcfs",
                   "test_scheduler_decode_first", "test_scheduler_tests_pass"),
    ),
    # preempts the oldest running request instead of the most recently admitted
    Mutant(
        name="preempts-oldest",
        cell="scheduler",
        old="victim = self.running.pop()",
        new="victim = self.running.pop(0)",
        must_lose=("test_scheduler_preemption", "test_scheduler_fcfs", "test_scheduler_tests_pass"),
    ),
    # admits while len(running) <= max_num_seqs: one request too many runs at once
    Mutant(
        name="max-num-seqs-off-by-one",
        cell="scheduler",
        old="len(self.running) < self.config.max_num_seqs",
        new="len(self.running) <= self.config.max_num_seqs",
        must_lose=("test_scheduler_max_seqs", "test_scheduler_tests_pass"),
    ),
    # learners' regression tests that run the workload and assert nothing: they kill no faulty scheduler
    Mutant(name="scheduler-tests-assert-nothing", cell="scheduler_tests",
           old="SCHEDULER_TESTS = [test_never_more_than_max_num_seqs,",
           new="def test_runs(scheduler_cls):\n    run_workload(scheduler_cls, PagedBlockAllocator(64, 4), _small(), "
               "*random_workload(1, 3, 8, 2))\n\n\nSCHEDULER_TESTS = [test_runs]\n_unused = [test_never_more_than_max_num_seqs,",
           must_lose=("test_scheduler_tests_pass", "test_scheduler_tests_half", "test_scheduler_tests_most")),
]

# Checked by `python grading/mutcheck.py lab3_batching` (in-process, no nbgrader), not by the round trip:
# each would cost one more autograded notebook in `make test` (see grading/requirements.md).
DEV_MUTANTS = [
    Mutant(
        name="leaks-blocks",
        cell="scheduler",
        old="""            self.waiting.remove(request)
        self.allocator.free(request.block_table)""",
        new="""            self.waiting.remove(request)""",
        must_lose=("test_scheduler_correct",),
    ),
    Mutant(
        name="never-preempts",
        cell="scheduler",
        old="""            while not self.allocator.append_slots(req.block_table, req.num_tokens):""",
        new="""            while not self.allocator.append_slots(req.block_table, req.num_tokens) and False:""",
        must_lose=("test_scheduler_preemption",),
    ),
    Mutant(
        name="reorders-requests",
        cell="scheduler",
        old="req = self.waiting[0]",
        new="req = self.waiting[-1]",
        must_lose=("test_scheduler_fcfs",),
    ),
    Mutant(
        name="no-prefix-sharing",
        cell="allocator",
        old="            if key not in self.block_of:\n                break",
        new="            break",
        must_lose=("test_allocator_prefix",),
    ),
    # prefill chunks before decodes: a long prompt's chunk takes the budget and running requests stall
    Mutant(
        name="prefill-before-decode",
        cell="scheduler",
        old="""        for req in list(self.running):
            if budget == 0:
                break
            if req not in self.running or req.num_tokens - req.num_computed_tokens != 1:
                continue
            while not self.allocator.append_slots(req.block_table, req.num_tokens):
                victim = self.running.pop()
                self.allocator.free(victim.block_table)
                victim.num_computed_tokens, victim.status = 0, RequestStatus.PREEMPTED
                self.waiting.appendleft(victim)
                out.preempted.append(victim)
                if victim is req:
                    break
            if req in self.running:
                out.chunks.append(ScheduledChunk(req, 1))
                budget -= 1
        for req in self.running:
            left = req.num_tokens - req.num_computed_tokens
            if left > 1 and budget > 0:
                n = min(left, budget)
                out.chunks.append(ScheduledChunk(req, n))
                budget -= n
""",
        new="""        for req in self.running:
            left = req.num_tokens - req.num_computed_tokens
            if left > 1 and budget > 0:
                n = min(left, budget)
                out.chunks.append(ScheduledChunk(req, n))
                budget -= n
        for req in list(self.running):
            if budget == 0:
                break
            if req not in self.running or req.num_tokens - req.num_computed_tokens != 1:
                continue
            while not self.allocator.append_slots(req.block_table, req.num_tokens):
                victim = self.running.pop()
                self.allocator.free(victim.block_table)
                victim.num_computed_tokens, victim.status = 0, RequestStatus.PREEMPTED
                self.waiting.appendleft(victim)
                out.preempted.append(victim)
                if victim is req:
                    break
            if req in self.running:
                out.chunks.append(ScheduledChunk(req, 1))
                budget -= 1
""",
        must_lose=("test_scheduler_decode_first",),
    ),
    # requeues the victim at the back: later arrivals overtake it
    Mutant(
        name="preempted-to-back",
        cell="scheduler",
        old="self.waiting.appendleft(victim)",
        new="self.waiting.append(victim)",
        must_lose=("test_scheduler_fcfs",),
    ),
    # takes the shared blocks but recomputes them: num_computed_tokens = 0 instead of the cached tokens
    Mutant(
        name="recomputes-cached-prefix",
        cell="scheduler",
        old="req.block_table, req.num_computed_tokens = allocation",
        new="req.block_table, req.num_computed_tokens = allocation[0], 0",
        must_lose=("test_scheduler_correct",),
    ),
    # one test only (the seat limit): it kills one fault of six
    Mutant(name="scheduler-tests-one-rule", cell="scheduler_tests",
           old="SCHEDULER_TESTS = [test_never_more_than_max_num_seqs,",
           new="SCHEDULER_TESTS = [test_never_more_than_max_num_seqs]\n_unused = [test_never_more_than_max_num_seqs,",
           must_lose=("test_scheduler_tests_half", "test_scheduler_tests_most")),
    # off by one: a prompt of whole blocks gets its last block from the cache (nothing left to compute)
    Mutant(name="serves-last-block-from-cache", cell="allocator", old="range((len(token_ids) - 1) // bs)",
           new="range(len(token_ids) // bs)", must_lose=("test_allocator_prefix",)),
    # caches blocks whose tokens are not computed yet
    Mutant(name="caches-uncomputed-blocks", cell="allocator", old="min(num_computed_tokens // bs, len(block_table))",
           new="min(len(token_ids) // bs, len(block_table))", must_lose=("test_allocator_prefix",)),
    # caches the partly filled last block: its key never matches once it is full
    Mutant(name="caches-partial-blocks", cell="allocator", old="min(num_computed_tokens // bs, len(block_table))",
           new="min(-(-num_computed_tokens // bs), len(block_table))", must_lose=("test_allocator_prefix",)),
    # evicts the most recently freed block first (a stack, not LRU)
    Mutant(name="evicts-most-recently-freed", cell="allocator", old="self.free_blocks.popitem(last=False)",
           new="self.free_blocks.popitem(last=True)", must_lose=("test_allocator_prefix",)),
    # every freed block to the front: cached blocks are handed out before never-cached ones
    Mutant(name="cached-blocks-handed-out-first", cell="allocator",
           old="                if b not in self.key_of:\n                    self.free_blocks.move_to_end(b, last=False)",
           new="                self.free_blocks.move_to_end(b, last=False)", must_lose=("test_allocator_prefix",)),
    Mutant(name="ignores-max-num-seqs", cell="scheduler", old=" and len(self.running) < self.config.max_num_seqs",
           new="", must_lose=("test_scheduler_max_seqs",)),
    # a test tied to one workload's exact schedule: fails on a correct scheduler
    Mutant(name="scheduler-tests-too-strict", cell="scheduler_tests",
           old="    assert max(row[\"num_running\"] for row in engine.schedule_log) <= 2",
           new="    assert max(row[\"num_running\"] for row in engine.schedule_log) <= 1",
           must_lose=("test_scheduler_tests_pass", "test_scheduler_tests_half", "test_scheduler_tests_most")),
]
