"""The engine records each request's events in order: queued, scheduled, (preempted, scheduled)*, first token,
finished; a preempted request is scheduled again before it finishes."""

import torch

from inferlab.engine import EngineConfig, LLMEngine, RequestEvent, SamplingParams
from inferlab.model import build_model

E = RequestEvent


def test_events_in_order_with_preemption():
    torch.manual_seed(0)
    config = EngineConfig(max_num_seqs=4, max_num_batched_tokens=256, num_kv_blocks=10, block_size=16,
                          max_model_len=128, enable_prefix_caching=False)
    engine = LLMEngine(build_model("tiny"), config)
    requests = engine.generate([[200 + 4 * j + i for j in range(40)] for i in range(4)],
                               SamplingParams(max_tokens=24, ignore_eos=True))
    assert sum(r.num_preemptions for r in requests) > 0, "the pool should force preemptions"
    for req in requests:
        kinds = [e for e, _ in req.events]
        times = [t for _, t in req.events]
        assert kinds[0] is E.QUEUED and kinds[-1] is E.FINISHED and times == sorted(times)
        assert kinds.count(E.FIRST_TOKEN) == 1 and kinds.count(E.PREEMPTED) == req.num_preemptions
        body = [k for k in kinds[1:-1] if k is not E.FIRST_TOKEN]
        assert body == [E.SCHEDULED] + [E.PREEMPTED, E.SCHEDULED] * req.num_preemptions, kinds
        assert req.event_time_s(E.FIRST_TOKEN) == req.token_times_s[0]
