"""The server's answer to each bad input: the status, the field it names, OpenAI's error shape.

`CASES` is also the table in the README's "Serving behaviour" section. Every answer must be
a JSON error object {"error": {"message", "type", "param", "code"}}, and the server stays live.
"""

import pytest

P = [1, 2, 3]
CASES = [  # (name, path, body or raw bytes, headers, status, param)
    ("empty prompt", "/v1/completions", {"prompt": ""}, None, 400, "prompt"),
    ("no prompt", "/v1/completions", {"max_tokens": 3}, None, 400, "prompt"),
    ("token id outside the vocabulary", "/v1/completions", {"prompt": [1, 99999]}, None, 400, "prompt"),
    ("prompt as long as the context", "/v1/completions", {"prompt": [5] * 512}, None, 400, "prompt"),
    ("prompt + max_tokens beyond the context", "/v1/completions", {"prompt": [5] * 500, "max_tokens": 20}, None,
     400, "max_tokens"),
    ("max_tokens far beyond the context", "/v1/completions", {"prompt": P, "max_tokens": 10**9}, None, 400,
     "max_tokens"),
    ("max_tokens 0", "/v1/completions", {"prompt": P, "max_tokens": 0}, None, 400, "max_tokens"),
    ("max_tokens a string", "/v1/completions", {"prompt": P, "max_tokens": "3"}, None, 400, "max_tokens"),
    ("max_tokens a boolean", "/v1/completions", {"prompt": P, "max_tokens": True}, None, 400, "max_tokens"),
    ("prompt with a lone surrogate", "/v1/completions", b'{"prompt": "a\\ud800"}', None, 400, "prompt"),
    ("stop with a lone surrogate", "/v1/completions", b'{"prompt": "a", "stop": ["\\udc00"]}', None, 400, "stop"),
    ("chat content with a lone surrogate", "/v1/chat/completions",
     b'{"messages": [{"role": "user", "content": "\\ud800"}]}', None, 400, "messages[0].content"),
    ("temperature negative", "/v1/completions", {"prompt": P, "temperature": -1}, None, 400, "temperature"),
    ("temperature NaN", "/v1/completions", b'{"prompt": [1, 2], "temperature": NaN}', None, 400, "temperature"),
    ("temperature Infinity", "/v1/completions", b'{"prompt": [1, 2], "temperature": Infinity}', None, 400,
     "temperature"),
    ("temperature 1e999", "/v1/completions", b'{"prompt": [1, 2], "temperature": 1e999}', None, 400, "temperature"),
    ("top_p 0", "/v1/completions", {"prompt": P, "top_p": 0}, None, 400, "top_p"),
    ("top_p 1.5", "/v1/completions", {"prompt": P, "top_p": 1.5}, None, 400, "top_p"),
    ("top_k -2", "/v1/completions", {"prompt": P, "top_k": -2}, None, 400, "top_k"),
    ("seed negative", "/v1/completions", {"prompt": P, "seed": -1}, None, 400, "seed"),
    ("seed 2**63", "/v1/completions", {"prompt": P, "seed": 2**63}, None, 400, "seed"),
    ("stop an empty string", "/v1/completions", {"prompt": P, "stop": ""}, None, 400, "stop"),
    ("stop a number", "/v1/completions", {"prompt": P, "stop": [1]}, None, 400, "stop"),
    ("stop_token_ids outside the vocabulary", "/v1/completions", {"prompt": P, "stop_token_ids": [999]}, None, 400,
     "stop_token_ids"),
    ("n 2", "/v1/completions", {"prompt": P, "n": 2}, None, 400, "n"),
    ("best_of 2", "/v1/completions", {"prompt": P, "best_of": 2}, None, 400, "best_of"),
    ("logprobs 1", "/v1/completions", {"prompt": P, "logprobs": 1}, None, 400, "logprobs"),
    ("echo true", "/v1/completions", {"prompt": P, "echo": True}, None, 400, "echo"),
    ("suffix", "/v1/completions", {"prompt": P, "suffix": "x"}, None, 400, "suffix"),
    ("presence_penalty 0.5", "/v1/completions", {"prompt": P, "presence_penalty": 0.5}, None, 400,
     "presence_penalty"),
    ("logit_bias", "/v1/completions", {"prompt": P, "logit_bias": {"1": 5}}, None, 400, "logit_bias"),
    ("stream_options without stream", "/v1/completions", {"prompt": P, "stream_options": {"include_usage": True}},
     None, 400, "stream_options"),
    ("unknown field", "/v1/completions", {"prompt": P, "frobnicate": 1}, None, 400, "frobnicate"),
    ("unknown model", "/v1/completions", {"prompt": P, "model": "gpt-4"}, None, 404, "model"),
    ("body a list", "/v1/completions", [1, 2], None, 400, "body"),
    ("body not JSON", "/v1/completions", b"{prompt: 1", None, 400, "body"),
    ("nesting 100000 deep", "/v1/completions", b"[" * 100_000, None, 400, "body"),
    ("no messages", "/v1/chat/completions", {"messages": []}, None, 400, "messages"),
    ("unknown role", "/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}, None, 400,
     "messages[0].role"),
    ("content a number", "/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]}, None, 400,
     "messages[0].content"),
    ("chat logprobs", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "logprobs": True},
     None, 400, "logprobs"),
    ("Content-Type text/plain", "/v1/completions", b'{"prompt": [1]}', {"Content-Type": "text/plain"}, 415,
     "Content-Type"),
    ("unknown charset", "/v1/completions", b'{"prompt": [1]}', {"Content-Type": "application/json; charset=klingon"},
     415, "Content-Type"),
    ("body of 10 MB", "/v1/completions", b'{"prompt": "' + b"a" * 10_000_000 + b'"}',
     {"Content-Type": "application/json"}, 413, "body"),
    ("unknown route", "/v1/nothing", {}, None, 404, None),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name, path, body, headers, status, param", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_a_json_error_naming_the_field(served, name, path, body, headers, status, param):
    raw = body if isinstance(body, bytes) else None
    headers = headers or ({"Content-Type": "application/json"} if raw is not None else None)
    code, answer, _ = served.call("POST", path, None if raw is not None else body, data=raw, headers=headers)
    assert code == status, answer
    assert isinstance(answer, dict) and set(answer) == {"error"}, answer
    err = answer["error"]
    assert err["param"] == param and err["code"] == status and err["message"] and err["type"], err
    assert served.call("GET", "/health")[0] == 200


def test_wrong_method_is_405_in_openai_shape(served):
    code, answer, headers = served.call("GET", "/v1/completions")
    assert code == 405 and answer["error"]["code"] == 405 and "POST" in headers["Allow"]


def test_readme_table_lists_every_case():
    from pathlib import Path
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    missing = [c[0] for c in CASES if f"| {c[0]} |" not in readme]
    assert not missing, f"README's 'Serving behaviour' table lacks {missing}"

