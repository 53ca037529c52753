"""Plausible wrong answers to Lab 3; each must lose the points of the tests named."""

from roundtrip import Mutant

MUTANTS = [
    Mutant(
        name="ignores-token-budget",
        cell="scheduler",
        old="n = min(left, budget)",
        new="n = left",
        must_lose=("test_scheduler_budget",),
    ),
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
    Mutant(
        name="allocator-free-forgets-refcount",
        cell="allocator",
        old="            self.ref_counts[b] -= 1\n            if self.ref_counts[b] == 0:",
        new="            if self.ref_counts[b] == 1:",
        must_lose=("test_allocator_basic",),
    ),
]
