"""Faults through the server: one request's fault, the loop's failure and death, disconnects, admission.

Each test runs its own server (`serve`) on the tiny model and injects the fault where a real
one would come from (the sampler, the scheduler the loop calls); disconnects are real
sockets closed mid-request.
"""

import asyncio
import socket
import time

import aiohttp
import pytest

from inferlab.engine import EngineConfig, LLMEngine
from inferlab.model import generate_greedy
from inferlab.serving.async_engine import AdmissionConfig
from tests.serving.conftest import serve

CONFIG = EngineConfig(max_num_seqs=4, max_num_batched_tokens=128, block_size=8, num_kv_blocks=128, max_model_len=512,
                      max_finished_requests=64, max_step_records=64)
pytestmark = pytest.mark.timeout(90)


def _wait(predicate, timeout_s=20.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            if predicate():
                return True
        except RuntimeError:  # the engine thread changed a dict while we read it
            pass
        time.sleep(0.01)
    return False


def test_a_sampling_fault_fails_that_request_only(tiny, monkeypatch):
    engine = LLMEngine(tiny, CONFIG)
    real = engine.runner.sample

    def sample(logits, requests):
        if any(r.prompt_token_ids == [66, 66] for r in requests):
            raise RuntimeError("injected sampler fault")
        return real(logits, requests)

    monkeypatch.setattr(engine.runner, "sample", sample)
    with serve(engine) as s:
        async def both():
            async with aiohttp.ClientSession() as c:
                bodies = [{"prompt": [66, 66], "max_tokens": 8, "temperature": 0},
                          {"prompt": [1, 2, 3], "max_tokens": 8, "temperature": 0, "ignore_eos": True}]
                rs = await asyncio.gather(*[c.post(s.base + "/v1/completions", json=b) for b in bodies])
                return [(r.status, await r.json()) for r in rs]

        (bad_status, bad), (ok_status, ok) = asyncio.run(both())
        assert bad_status == 500 and "injected sampler fault" in bad["error"]["message"], bad
        assert ok_status == 200 and ok["choices"][0]["token_ids"] == generate_greedy(tiny, [1, 2, 3], 8)
        assert s.call("GET", "/health")[0] == 200 and s.call("GET", "/ready")[0] == 200


def test_loop_failure_errors_in_flight_requests_then_recovers_or_reports_dead(tiny, monkeypatch):
    engine = LLMEngine(tiny, CONFIG)
    real = engine.scheduler.schedule
    fail = {"on": True}

    def schedule():
        if fail["on"]:
            raise RuntimeError("injected loop fault")
        return real()

    monkeypatch.setattr(engine.scheduler, "schedule", schedule)
    with serve(engine, admission=AdmissionConfig(max_loop_failures=2)) as s:
        status, body, _ = s.call("POST", "/v1/completions", {"prompt": [1, 2], "max_tokens": 4}, timeout_s=20)
        assert status == 500 and "injected loop fault" in body["error"]["message"]
        assert s.call("GET", "/health")[0] == 200  # one failure: the loop went on
        fail["on"] = False
        status, body, _ = s.call("POST", "/v1/completions", {"prompt": [1, 2], "max_tokens": 4, "temperature": 0})
        assert status == 200 and body["choices"][0]["token_ids"] == generate_greedy(tiny, [1, 2], 4)
        fail["on"] = True
        for _ in range(2):  # two failures in a row: the loop gives up
            assert s.call("POST", "/v1/completions", {"prompt": [3], "max_tokens": 4}, timeout_s=20)[0] in (500, 503)
        assert _wait(lambda: not s.async_engine.is_alive)
        for path in ("/health", "/ready"):
            status, body, _ = s.call("GET", path)
            assert status == 503 and "injected loop fault" in body["error"]["message"]
        status, body, _ = s.call("POST", "/v1/completions", {"prompt": [1], "max_tokens": 2}, timeout_s=10)
        assert status == 503 and body["error"]["code"] == 503  # answered at once, not left hanging
        assert s.call("GET", "/stats")[1]["num_loop_failures"] == 3


def _raw_post(base: str, body: bytes) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    return sock


@pytest.mark.parametrize("stream", [False, True])
def test_disconnect_aborts_within_a_step_and_frees_blocks(tiny, stream):
    engine = LLMEngine(tiny, CONFIG)
    with serve(engine) as s:
        body = b'{"prompt": [1, 2, 3], "max_tokens": 400, "ignore_eos": true, "stream": %s}' % (
            b"true" if stream else b"false")
        sock = _raw_post(s.base, body)
        assert _wait(lambda: any(r.num_output_tokens > 20 for r in engine.requests.values()))
        disconnected_s = time.perf_counter()  # the engine's clock
        sock.close()
        assert _wait(lambda: s.call("GET", "/stats")[1]["num_disconnect_aborts"] == 1)
        (req,) = engine.finished
        late = sum(1 for t in req.token_times_s if t > disconnected_s)
        assert req.finish_reason.value == "abort" and req.num_output_tokens < 400
        print(f"disconnect (stream={stream}): {late} tokens generated after the client left")
        assert late <= 3, f"{late} tokens generated after the client left"  # one step in flight, plus slack
        stats = s.call("GET", "/stats")[1]
        assert stats["num_aborted"] == 1 and stats["num_running"] == stats["num_waiting"] == 0
        assert stats["num_free_kv_blocks"] == CONFIG.num_kv_blocks


def test_admission_answers_429_with_retry_after(tiny):
    config = EngineConfig(max_num_seqs=1, max_num_batched_tokens=128, block_size=8, num_kv_blocks=128,
                          max_model_len=512)
    engine = LLMEngine(tiny, config)
    step = engine.step
    engine.step = lambda: (time.sleep(0.01), step())[1]  # 480 tokens last ~5 s however fast the machine is
    with serve(engine, admission=AdmissionConfig(max_waiting=1, max_waiting_tokens=100, retry_after_s=2)) as s:
        long_body = b'{"prompt": [1, 2, 3], "max_tokens": 480, "ignore_eos": true}'
        running = _raw_post(s.base, long_body)
        assert _wait(lambda: any(r.num_output_tokens for r in engine.requests.values()))
        waiting = _raw_post(s.base, long_body)
        assert _wait(lambda: s.call("GET", "/stats")[1]["num_waiting"] == 1)
        status, body, headers = s.call("POST", "/v1/completions", {"prompt": [4, 5], "max_tokens": 2})
        assert status == 429 and headers["Retry-After"] == "2" and "max-waiting" in body["error"]["message"]
        assert body["error"]["type"] == "rate_limit_exceeded" and s.call("GET", "/ready")[0] == 503
        assert s.call("GET", "/health")[0] == 200  # overloaded is not dead
        running.close()
        waiting.close()
        assert _wait(lambda: not engine.requests)
        assert s.call("GET", "/ready")[0] == 200
        status, body, _ = s.call("POST", "/v1/completions", {"prompt": [7] * 101, "max_tokens": 2})
        assert status == 429 and "max-waiting-tokens" in body["error"]["message"]  # one prompt over the token bound


def test_a_crash_in_a_handler_is_a_json_500_and_the_server_goes_on(served, monkeypatch):
    import inferlab.serving.server as server

    monkeypatch.setattr(server, "parse_completion", lambda body, limits: 1 / 0)
    status, body, _ = served.call("POST", "/v1/completions", {"prompt": "x"})
    assert status == 500 and body["error"]["type"] == "server_error" and "ZeroDivisionError" in body["error"]["message"]
    monkeypatch.undo()
    assert served.call("GET", "/health")[0] == 200
    assert served.call("POST", "/v1/completions", {"prompt": "x", "max_tokens": 2})[0] == 200
