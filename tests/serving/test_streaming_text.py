"""Streamed text joins exactly to the non-streamed text, for characters split across byte tokens.

The detokenizer is checked on random byte-level outputs (Hypothesis) against the tokenizer's
whole-text decode; the server is checked end to end with a scripted sampler emitting
multi-byte characters and stop strings, and with the model's own random bytes.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferlab.engine import EngineConfig, LLMEngine
from inferlab.engine.stop import output_bytes
from inferlab.model import tokenizer
from inferlab.serving.detokenize import Detokenizer, detokenize
from tests.serving.conftest import serve

pytestmark = pytest.mark.timeout(120)
BYTES = st.one_of(st.integers(0, 257), st.integers(0xC2, 0xF4), st.integers(0x80, 0xBF))  # leads, continuations


@settings(max_examples=300, deadline=None)
@given(ids=st.lists(BYTES, max_size=40), cuts=st.lists(st.integers(1, 5), max_size=40),
       stop=st.one_of(st.none(), st.text("aé€b", min_size=1, max_size=3)))
def test_chunks_join_to_the_whole_text(ids, cuts, stop):
    if stop is not None:  # the engine ends the output on the token completing the stop string's bytes
        k = next((k for k in range(1, len(ids) + 1) if output_bytes(ids[:k]).endswith(stop.encode())), len(ids))
        ids = ids[:k]
    d, parts, i = Detokenizer(() if stop is None else (stop,)), [], 0
    for n in cuts + [len(ids)]:
        part = d.add(ids[i:i + n])
        if stop is None:
            assert not part.endswith("\ufffd") or tokenizer.decode(ids[:i + n]).endswith("\ufffd")
        parts.append(part)
        i += n
    whole = tokenizer.decode(ids)
    end = whole.find(stop) if stop is not None and stop in whole else None
    parts.append(d.finish(stop if end is not None else None))
    assert "".join(parts) == (whole if end is None else whole[:end])
    assert detokenize(ids, stop if end is not None else None) == "".join(parts)


def test_a_character_split_over_tokens_is_never_sent_in_halves():
    d = Detokenizer()
    euro = list("€".encode())
    assert [d.add([t]) for t in euro] == ["", "", "€"] and d.finish() == ""


def _scripted(engine, text: str, monkeypatch):
    script = {}

    def sample(logits, requests):
        out = []
        for r in requests:
            it = script.setdefault(r.request_id, iter(text.encode()))
            out.append(next(it, tokenizer.EOS_ID))
        return out

    monkeypatch.setattr(engine.runner, "sample", sample)


@pytest.mark.parametrize("path, stop, expected", [
    ("/v1/completions", None, "héllo, wörld € 😀"),
    ("/v1/completions", "ö", "héllo, w"),
    ("/v1/chat/completions", ["xx", "€ 😀"], "héllo, wörld "),
])
def test_server_streamed_text_equals_whole_text(tiny, monkeypatch, path, stop, expected):
    engine = LLMEngine(tiny, EngineConfig(max_num_seqs=4, num_kv_blocks=64, max_model_len=256))
    _scripted(engine, "héllo, wörld € 😀", monkeypatch)
    body = {"max_tokens": 40, "stop": stop}
    body.update({"messages": [{"role": "user", "content": "hi"}]} if "chat" in path else {"prompt": "hi"})
    with serve(engine) as s:
        status, whole, _ = s.call("POST", path, body)
        events = s.stream(path, {**body, "stream": True})
    assert status == 200, whole
    choice = whole["choices"][0]
    text = choice["message"]["content"] if "chat" in path else choice["text"]
    assert text == expected and choice["finish_reason"] == "stop"
    assert choice["stop_reason"] == (None if stop is None else ("ö" if stop == "ö" else "€ 😀"))
    chunks = [e["choices"][0] for e in events[:-1]]
    streamed = "".join(c["delta"].get("content", "") if "chat" in path else c["text"] for c in chunks)
    assert streamed == text and "\ufffd" not in streamed and events[-1] == "[DONE]"


def test_random_model_bytes_stream_like_the_whole(served):
    for seed in range(4):
        body = {"prompt": "abc", "max_tokens": 48, "temperature": 3.0, "seed": seed, "ignore_eos": True}
        status, whole, _ = served.call("POST", "/v1/completions", body)
        events = served.stream("/v1/completions", {**body, "stream": True})
        assert status == 200
        ids = [t for e in events[:-1] for t in e["choices"][0]["token_ids"]]
        assert ids == whole["choices"][0]["token_ids"]  # same seed, same draw
        assert "".join(e["choices"][0]["text"] for e in events[:-1]) == whole["choices"][0]["text"] \
            == tokenizer.decode(ids)
