"""Fuzzing the API (bounded; `inferlab bench fuzz` runs the long version).

Bodies, headers and sizes drawn from the server's own /openapi.json (`inferlab.bench.fuzz`):
every answer is a 2xx or a JSON 4xx naming the field; afterwards the server is live and
ready and a fixed greedy request gives the same tokens as before.
"""

import time

import pytest

from inferlab.bench import fuzz
from inferlab.engine import EngineConfig, LLMEngine
from inferlab.serving.async_engine import AdmissionConfig
from tests.serving.conftest import serve

NUM_EXAMPLES = 200  # ~15 s here (2 loaded cores); the budget is 40 s


@pytest.mark.timeout(120)
def test_fuzzed_requests_get_2xx_or_a_json_4xx_naming_the_field(tiny):
    engine = LLMEngine(tiny, EngineConfig(max_num_seqs=8, num_kv_blocks=64, max_model_len=64,
                                          max_finished_requests=32, max_step_records=64))
    with serve(engine, admission=AdmissionConfig(max_waiting=16)) as s:
        before = fuzz.greedy_tokens(s.base)
        start = time.monotonic()
        result = fuzz.fuzz(s.base, NUM_EXAMPLES, seed=1)
        elapsed_s = time.monotonic() - start
        assert not result["problems"], "\n".join(result["problems"][:5])
        assert result["num_requests"] == NUM_EXAMPLES and 200 in result["statuses"] and 400 in result["statuses"]
        assert s.call("GET", "/health")[0] == 200 and s.call("GET", "/ready")[0] == 200
        assert fuzz.greedy_tokens(s.base) == before
        assert not engine.requests and engine.allocator.num_free_blocks() == 64
    print(f"fuzz: {NUM_EXAMPLES} requests in {elapsed_s:.1f} s, statuses {result['statuses']}")


@pytest.mark.parametrize("status, ctype, body, ok", [
    (200, "application/json", b'{"choices": []}', True),
    (200, "text/event-stream", b"data: {}\n\ndata: [DONE]\n\n", True),
    (200, "text/event-stream", b"data: {}\n\n", False),
    (400, "application/json", b'{"error": {"message": "m", "type": "t", "param": "n", "code": 400}}', True),
    (400, "application/json", b'{"error": {"message": "m", "type": "t", "param": null, "code": 400}}', False),
    (413, "text/plain", b"Request Entity Too Large", False),
    (500, "application/json", b'{"error": {"message": "m", "type": "t", "param": "x", "code": 500}}', False),
])
def test_the_fuzz_oracle_rejects_bad_answers(status, ctype, body, ok):
    assert (fuzz.check(status, ctype, body) is None) == ok
