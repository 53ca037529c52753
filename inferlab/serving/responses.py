"""Response bodies in OpenAI's shapes: completions and chat, whole or as stream chunks.

Built by the server from a request's id, its text (from `detokenize.Detokenizer`), token
ids and finish; `token_ids` and `stop_reason` are vLLM's extra fields.
"""

from __future__ import annotations

import json

from inferlab.engine import FinishReason


def _reason(reason: FinishReason | None) -> str | None:
    return None if reason is None else reason.value


class ResponseBuilder:
    """Bodies for one request: `kind` is "completion" or "chat"."""

    def __init__(self, request_id: str, model: str, created: int, is_chat: bool, num_prompt_tokens: int) -> None:
        self.is_chat = is_chat
        self.base = {"id": request_id, "created": created, "model": model}
        self.num_prompt_tokens = num_prompt_tokens

    def usage(self, num_completion_tokens: int) -> dict:
        return {"prompt_tokens": self.num_prompt_tokens, "completion_tokens": num_completion_tokens,
                "total_tokens": self.num_prompt_tokens + num_completion_tokens}

    def whole(self, text: str, token_ids: list[int], reason: FinishReason | None,
              stop_reason: int | str | None) -> dict:
        """The non-streamed response."""
        if self.is_chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                      "finish_reason": _reason(reason), "stop_reason": stop_reason, "token_ids": token_ids}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "token_ids": token_ids, "logprobs": None,
                      "finish_reason": _reason(reason), "stop_reason": stop_reason}
            obj = "text_completion"
        return {**self.base, "object": obj, "choices": [choice], "usage": self.usage(len(token_ids))}

    def chunk(self, text: str, token_ids: list[int], reason: FinishReason | None = None,
              stop_reason: int | str | None = None, first: bool = False) -> bytes:
        """One SSE event with new text (chat: a delta; the first one also carries the role)."""
        if self.is_chat:
            delta = {"role": "assistant", "content": text} if first else {"content": text}
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": _reason(reason),
                      "stop_reason": stop_reason, "token_ids": token_ids}
            obj = "chat.completion.chunk"
        else:
            choice = {"index": 0, "text": text, "token_ids": token_ids, "logprobs": None,
                      "finish_reason": _reason(reason), "stop_reason": stop_reason}
            obj = "text_completion"
        return sse({**self.base, "object": obj, "choices": [choice]})

    def usage_chunk(self, num_completion_tokens: int) -> bytes:
        obj = "chat.completion.chunk" if self.is_chat else "text_completion"
        return sse({**self.base, "object": obj, "choices": [], "usage": self.usage(num_completion_tokens)})


def sse(payload: dict) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


SSE_DONE = b"data: [DONE]\n\n"
