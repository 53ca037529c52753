"""The OpenAI-compatible server and the load generator, end to end on a free port."""

import asyncio
import json

import aiohttp
import pytest

from inferlab.model import generate_greedy
from inferlab.serving import loadgen


@pytest.fixture(scope="module")
def server(served, tiny):
    return served.base, tiny


def _call(method, url, body=None):
    async def go():
        async with aiohttp.ClientSession() as s:
            async with s.request(method, url, json=body) as r:
                return r.status, await r.text()
    return asyncio.run(go())


@pytest.mark.timeout(60)
def test_routes_and_greedy_completion(server):
    base, model = server
    assert _call("GET", base + "/health")[0] == 200
    status, text = _call("GET", base + "/v1/models")
    assert status == 200 and json.loads(text)["data"][0]["id"] == "tiny"
    prompt = [10, 20, 30, 40]
    status, text = _call("POST", base + "/v1/completions",
                         {"model": "tiny", "prompt": prompt, "max_tokens": 6, "temperature": 0, "ignore_eos": True})
    assert status == 200, text
    body = json.loads(text)
    assert body["choices"][0]["token_ids"] == generate_greedy(model, prompt, 6)
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}
    status, text = _call("POST", base + "/v1/completions", {"prompt": "hi", "max_tokens": 2, "temperature": 0})
    assert status == 200 and json.loads(text)["usage"]["prompt_tokens"] == 2


@pytest.mark.timeout(60)
@pytest.mark.parametrize("body, field", [
    ({"prompt": "", "max_tokens": 3}, "prompt"),
    ({"prompt": [1, 2], "max_tokens": 0}, "max_tokens"),
    ({"prompt": [1, 2], "max_tokens": "3"}, "max_tokens"),
    ({"prompt": [1, 2], "temperature": -1}, "temperature"),
    ({"prompt": [1, 99999]}, "prompt"),
    ({"prompt": list(range(200)) * 3}, "prompt"),
    ({"max_tokens": 3}, "prompt"),
])
def test_bad_requests_get_400_naming_the_field(server, body, field):
    base, _ = server
    status, text = _call("POST", base + "/v1/completions", body)
    assert status == 400, text
    err = json.loads(text)["error"]
    assert err["param"] == field and err["message"]
    assert _call("GET", base + "/health")[0] == 200


@pytest.mark.timeout(60)
def test_streaming_sse(server):
    base, model = server

    async def go():
        async with aiohttp.ClientSession() as s:
            body = {"prompt": [1, 2, 3], "max_tokens": 5, "temperature": 0, "stream": True, "ignore_eos": True,
                    "stream_options": {"include_usage": True}}
            async with s.post(base + "/v1/completions", json=body) as r:
                assert r.headers["Content-Type"].startswith("text/event-stream")
                return [line.decode().strip() for line in [x async for x in r.content] if line.strip()]

    lines = asyncio.run(go())
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[5:]) for line in lines[:-1]]
    tokens = [t for e in events if e["choices"] for t in e["choices"][0]["token_ids"]]
    assert tokens == generate_greedy(model, [1, 2, 3], 5)
    assert events[-2]["choices"][0]["finish_reason"] == "length" and events[-1]["usage"]["completion_tokens"] == 5


@pytest.mark.timeout(90)
def test_loadgen_against_the_server(server, capsys):
    base, _ = server
    rc = loadgen.main(["--base-url", base, "--num-requests", "8", "--rate", "20", "--max-prompt-tokens", "64",
                       "--max-output-tokens", "16", "--seed", "1"])
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert rc == 0 and result["num_ok"] == 8 and result["num_failed"] == 0 and result["model"] == "tiny"
    summary = result["summary"]
    assert summary["num_requests"] == 8 and summary["ttft_s"]["p50"] > 0 and summary["output_throughput_tok_s"] > 0
    assert "TTFT" in "\n".join(out)
