"""The OpenAI API surface: request bodies -> typed, validated requests; errors in OpenAI's shape.

Flow: the server hands a decoded JSON body to `parse_completion` or `parse_chat`, which
check every field against `FIELDS` (one table: the accepted fields of each endpoint, their
JSON schema, published as /openapi.json by `openapi.py`) and return a `GenerationRequest`
(prompt ids + `SamplingParams` + streaming options). Anything wrong raises `ApiError`,
which carries the HTTP status and the offending field (`param`); `error_body` renders it
as OpenAI does: {"error": {"message", "type", "param", "code"}}.

Honoured: max_tokens (chat: also max_completion_tokens), temperature, top_p, top_k, seed,
stop (strings), stop_token_ids, ignore_eos, stream, stream_options.include_usage, n=1,
user. Refused with a 400 naming the field when set to anything but their neutral value:
n>1, best_of>1, logprobs, top_logprobs, echo, suffix, penalties, logit_bias. Unknown fields: 400.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from inferlab.engine import SamplingParams
from inferlab.engine.request import MAX_SEED
from inferlab.model import tokenizer
from inferlab.serving.chat import ROLES, ChatMessage, apply_chat_template

ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error", 413: "invalid_request_error",
               415: "invalid_request_error", 429: "rate_limit_exceeded", 500: "server_error", 503: "server_error"}
DEFAULT_MAX_TOKENS = 16  # OpenAI's default for completions


class ApiError(Exception):
    """An error answered to the client: HTTP `status`, the field at fault (`param`), extra headers."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.headers = status, message, param, headers or {}


def error_body(status: int, message: str, param: str | None = None) -> dict:
    """OpenAI's error object for any status."""
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "server_error" if status >= 500
                                                                  else "invalid_request_error"),
                      "param": param, "code": status}}


@dataclass(frozen=True)
class Limits:
    """What a request is checked against: the served model and the engine's capacity."""

    model_name: str
    vocab_size: int
    max_model_len: int
    max_kv_tokens: int
    ignore_unknown_fields: bool = False  # drop top-level fields it does not know (vLLM's default) instead of a 400


@dataclass(frozen=True)
class GenerationRequest:
    """A validated completion or chat request."""

    prompt_token_ids: list[int]
    params: SamplingParams
    stream: bool
    include_usage: bool
    is_chat: bool


# ---- the field table ---------------------------------------------------------------------------
_INT = {"type": "integer"}
_NUM = {"type": "number"}
_BOOL = {"type": "boolean"}
_STR = {"type": "string"}
_NULLABLE = {"nullable": True}
COMMON = {
    "model": _STR, "max_tokens": {**_INT, "minimum": 1, **_NULLABLE}, "temperature": {**_NUM, "minimum": 0},
    "top_p": {**_NUM, "exclusiveMinimum": 0, "maximum": 1}, "top_k": {**_INT, "minimum": -1},
    "seed": {**_INT, "minimum": 0, "maximum": MAX_SEED, **_NULLABLE},
    "stop": {"oneOf": [_STR, {"type": "array", "items": _STR}], **_NULLABLE},
    "stop_token_ids": {"type": "array", "items": {**_INT, "minimum": 0}}, "ignore_eos": _BOOL,
    "stream": _BOOL, "stream_options": {"type": "object", "properties": {"include_usage": _BOOL}, **_NULLABLE},
    "n": {**_INT, "enum": [1]}, "user": _STR,
    "presence_penalty": {**_NUM, "enum": [0]}, "frequency_penalty": {**_NUM, "enum": [0]},
    "repetition_penalty": {**_NUM, "enum": [1]}, "logit_bias": {"type": "object", "maxProperties": 0, **_NULLABLE},
}
COMPLETION_FIELDS = {
    **COMMON,
    "prompt": {"oneOf": [_STR, {"type": "array", "items": _INT}, {"type": "array", "maxItems": 1}]},
    "best_of": {**_INT, "enum": [1], **_NULLABLE}, "logprobs": {**_INT, "nullable": True, "enum": [None]},
    "echo": {**_BOOL, "enum": [False]}, "suffix": {**_STR, "nullable": True, "enum": [None]},
}
CHAT_FIELDS = {
    **COMMON,
    "messages": {"type": "array", "minItems": 1, "items": {"type": "object", "properties": {
        "role": {"type": "string", "enum": list(ROLES)}, "content": _STR, "name": _STR}}},
    "max_completion_tokens": {**_INT, "minimum": 1, **_NULLABLE}, "logprobs": {**_BOOL, "enum": [False]},
    "top_logprobs": {**_INT, "nullable": True, "enum": [None]},
}
REQUIRED = {"completions": ["prompt"], "chat": ["messages"]}


# ---- parsing ------------------------------------------------------------------------------------
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _bad(param: str, message: str) -> ApiError:
    return ApiError(400, message, param)


def _field(body: dict, name: str, ok: Callable[[Any], bool], want: str, default: Any = None) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if not ok(value):
        raise _bad(name, f"'{name}' must be {want}, got {json_repr(value)}")
    return value


def _refuse(body: dict, name: str, neutral: tuple, what: str) -> None:
    value = body.get(name)
    if value is not None and not any(value == n and type(value) is type(n) for n in neutral):
        raise _bad(name, f"'{name}' is not supported by this server ({what}); got {json_repr(value)}")


def json_repr(value: Any, max_chars: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= max_chars else text[:max_chars] + "..."


def _utf8(text: str, param: str) -> str:
    """`text` if it encodes to UTF-8 (JSON can carry lone surrogates, which cannot be tokenized)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(param, f"'{param}' contains a lone UTF-16 surrogate, which is not text") from None
    return text


def _check_fields(body: Any, allowed: dict, ignore_unknown: bool = False) -> dict:
    if not isinstance(body, dict):
        raise _bad("body", f"the request body must be a JSON object, got {type(body).__name__}")
    if ignore_unknown:  # vLLM logs and ignores them; routers such as vllm-router add their own (no_stop_trim)
        return {k: v for k, v in body.items() if k in allowed}
    for name in body:
        if name not in allowed:
            raise _bad(name, f"unknown field '{json_repr(name, 40)}'")
    return body


def _sampling(body: dict, limits: Limits, prompt_field: str, num_prompt_tokens: int, max_tokens_field: str,
              ) -> tuple[SamplingParams, bool, bool]:
    _refuse(body, "n", (1,), "n must be 1: one choice per request")
    _refuse(body, "presence_penalty", (0, 0.0), "penalties must be 0")
    _refuse(body, "frequency_penalty", (0, 0.0), "penalties must be 0")
    _refuse(body, "repetition_penalty", (1, 1.0), "repetition_penalty must be 1")
    if body.get("logit_bias") not in (None, {}):
        raise _bad("logit_bias", "'logit_bias' is not supported by this server")
    _field(body, "model", lambda v: isinstance(v, str), "a string")
    _field(body, "user", lambda v: isinstance(v, str), "a string")
    if body.get("model") not in (None, limits.model_name):
        raise ApiError(404, f"the model '{json_repr(body['model'], 80)}' does not exist; this server serves "
                            f"'{limits.model_name}'", "model")
    max_tokens = _field(body, max_tokens_field, lambda v: _is_int(v) and v >= 1, "an integer >= 1", DEFAULT_MAX_TOKENS)
    if num_prompt_tokens >= limits.max_model_len:
        raise _bad(prompt_field, f"the prompt has {num_prompt_tokens} tokens; this model's maximum context length "
                                 f"is {limits.max_model_len} tokens")
    if num_prompt_tokens + max_tokens > limits.max_model_len:
        raise _bad(max_tokens_field, f"this model's maximum context length is {limits.max_model_len} tokens; you "
                                     f"requested {num_prompt_tokens + max_tokens} ({num_prompt_tokens} in the prompt, "
                                     f"{max_tokens} in the completion)")
    if num_prompt_tokens + max_tokens > limits.max_kv_tokens:
        raise _bad(max_tokens_field, f"the request needs {num_prompt_tokens + max_tokens} KV slots; the server's "
                                     f"pool holds {limits.max_kv_tokens}")
    finite = "a finite number"
    temperature = _field(body, "temperature", lambda v: _is_num(v) and math.isfinite(v) and v >= 0,
                         f"{finite} >= 0", 1.0)
    top_p = _field(body, "top_p", lambda v: _is_num(v) and math.isfinite(v) and 0 < v <= 1, "a number in (0, 1]", 1.0)
    top_k = _field(body, "top_k", lambda v: _is_int(v) and v >= -1, "an integer >= 1, or -1 / 0 for all", 0)
    seed = _field(body, "seed", lambda v: _is_int(v) and 0 <= v <= MAX_SEED, "an integer in [0, 2**63 - 1]")
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else stop if stop is not None else []
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise _bad("stop", f"'stop' must be a non-empty string or a list of them, got {json_repr(body.get('stop'))}")
    stop = [_utf8(s, "stop") for s in stop]
    stop_ids = _field(body, "stop_token_ids", lambda v: isinstance(v, list) and all(
        _is_int(t) and 0 <= t < limits.vocab_size for t in v), f"a list of token ids in [0, {limits.vocab_size})", [])
    ignore_eos = _field(body, "ignore_eos", lambda v: isinstance(v, bool), "a boolean", False)
    stream = _field(body, "stream", lambda v: isinstance(v, bool), "a boolean", False)
    options = _field(body, "stream_options", lambda v: isinstance(v, dict), "an object", {})
    if options and not stream:
        raise _bad("stream_options", "'stream_options' can only be set when 'stream' is true")
    for key in options:
        if key != "include_usage":
            raise _bad("stream_options", f"unknown stream option '{json_repr(key, 40)}'")
    include_usage = _field(options, "include_usage", lambda v: isinstance(v, bool), "a boolean", False)
    params = SamplingParams(max_tokens=max_tokens, temperature=float(temperature), top_p=float(top_p), top_k=top_k,
                            ignore_eos=ignore_eos, stop_token_ids=tuple(stop_ids), stop=tuple(stop), seed=seed)
    return params, stream, include_usage


def parse_completion(body: Any, limits: Limits) -> GenerationRequest:
    """POST /v1/completions body -> GenerationRequest. Raises ApiError."""
    body = _check_fields(body, COMPLETION_FIELDS, limits.ignore_unknown_fields)
    _refuse(body, "best_of", (1,), "best_of must be 1")
    _refuse(body, "logprobs", (), "logprobs are not returned")
    _refuse(body, "echo", (False,), "echo must be false")
    _refuse(body, "suffix", (), "suffix is not supported")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        ids = tokenizer.encode(_utf8(prompt, "prompt"))
    elif isinstance(prompt, list) and all(_is_int(t) for t in prompt):
        ids = list(prompt)
        if any(not 0 <= t < limits.vocab_size for t in ids):
            raise _bad("prompt", f"prompt token ids must be in [0, {limits.vocab_size})")
    else:
        raise _bad("prompt", "'prompt' must be a string or a list of token ids (one prompt per request)")
    if not ids:
        raise _bad("prompt", "'prompt' is empty")
    params, stream, include_usage = _sampling(body, limits, "prompt", len(ids), "max_tokens")
    return GenerationRequest(ids, params, stream, include_usage, is_chat=False)


def parse_chat(body: Any, limits: Limits) -> GenerationRequest:
    """POST /v1/chat/completions body -> GenerationRequest (prompt through the chat template). Raises ApiError."""
    body = _check_fields(body, CHAT_FIELDS, limits.ignore_unknown_fields)
    _refuse(body, "logprobs", (False,), "logprobs are not returned")
    _refuse(body, "top_logprobs", (), "logprobs are not returned")
    if body.get("max_tokens") is not None and body.get("max_completion_tokens") is not None:
        raise _bad("max_completion_tokens", "set 'max_tokens' or 'max_completion_tokens', not both")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "'messages' must be a non-empty list of {role, content} objects")
    parsed = [_message(m, i) for i, m in enumerate(messages)]
    ids = tokenizer.encode(apply_chat_template(parsed))
    field = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    params, stream, include_usage = _sampling(body, limits, "messages", len(ids), field)
    return GenerationRequest(ids, params, stream, include_usage, is_chat=True)


def _message(m: Any, i: int) -> ChatMessage:
    where = f"messages[{i}]"
    if not isinstance(m, dict):
        raise _bad(where, f"'{where}' must be an object with 'role' and 'content'")
    for key in m:
        if key not in ("role", "content", "name"):
            raise _bad(f"{where}.{json_repr(key, 40)}", f"unknown field '{json_repr(key, 40)}' in {where}")
    if m.get("role") not in ROLES:
        raise _bad(f"{where}.role", f"'{where}.role' must be one of {list(ROLES)}, got {json_repr(m.get('role'))}")
    content = m.get("content")
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" and isinstance(
            p.get("text"), str) and set(p) <= {"type", "text"} for p in content):
        content = "".join(p["text"] for p in content)
    if not isinstance(content, str):
        raise _bad(f"{where}.content", f"'{where}.content' must be a string or a list of text parts")
    _utf8(content, f"{where}.content")
    if "name" in m and not isinstance(m["name"], str):
        raise _bad(f"{where}.name", f"'{where}.name' must be a string")
    return ChatMessage(m["role"], content)
