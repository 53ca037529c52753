"""OpenAI's own Python client drives the server: completions and chat, streamed and not, and errors."""

import openai
import pytest

from inferlab.model import generate_greedy, tokenizer
from inferlab.serving.chat import ChatMessage, apply_chat_template

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=served.base + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_completions_plain_and_streamed(client, tiny):
    prompt = [10, 20, 30, 40]
    ref = generate_greedy(tiny, prompt, 6)
    r = client.completions.create(model="tiny", prompt=prompt, max_tokens=6, temperature=0,
                                  extra_body={"ignore_eos": True})
    assert r.choices[0].text == tokenizer.decode(ref) and r.usage.completion_tokens == 6
    chunks = list(client.completions.create(model="tiny", prompt=prompt, max_tokens=6, temperature=0, stream=True,
                                            stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == r.choices[0].text
    assert chunks[-1].usage.total_tokens == 10 and r.choices[0].finish_reason == "length"


def test_chat_plain_and_streamed(client, tiny):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]
    ids = tokenizer.encode(apply_chat_template([ChatMessage(**m) for m in messages]))
    ref = generate_greedy(tiny, ids, 8)
    r = client.chat.completions.create(model="tiny", messages=messages, max_tokens=8, temperature=0,
                                       extra_body={"ignore_eos": True})
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == tokenizer.decode(ref) and r.usage.prompt_tokens == len(ids)
    stream = client.chat.completions.create(model="tiny", messages=messages, max_completion_tokens=8, temperature=0,
                                            stream=True, extra_body={"ignore_eos": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == r.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "length"


def test_errors_reach_the_client_typed(client):
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model="tiny", prompt="hi", max_tokens=5, n=2)
    assert bad.value.body["param"] == "n"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "x"}])
