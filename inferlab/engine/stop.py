"""The stop rule, written once: does a request end after its newest token, and why.

Called by `LLMEngine` after each sampled token. A request stops on EOS (unless
`ignore_eos`), on one of its `stop_token_ids`, on one of its `stop` strings (matched on the
UTF-8 bytes of the byte-level output, so a string spanning several tokens is found the step
its last byte arrives), or when it reaches its length limit.
"""

from __future__ import annotations

from inferlab.engine.request import FinishReason, Request

NUM_BYTE_TOKENS = 256  # ids below this are bytes in the kit's byte-level tokenizer; the rest are special


def output_bytes(token_ids: list[int]) -> bytes:
    """The bytes that byte-level token ids stand for (special tokens carry none)."""
    return bytes(t for t in token_ids if 0 <= t < NUM_BYTE_TOKENS)


def check_stop(req: Request, eos_token_id: int) -> tuple[FinishReason | None, int | str | None]:
    """(finish reason, stop reason) after `req`'s last output token; (None, None) to go on.

    The stop reason is the stop token id or stop string that matched (None for EOS and length).
    """
    sp, token = req.sampling_params, req.output_token_ids[-1]
    if token == eos_token_id and not sp.ignore_eos:
        return FinishReason.STOP, None
    if token in sp.stop_token_ids:
        return FinishReason.STOP, token
    if sp.stop and 0 <= token < NUM_BYTE_TOKENS:
        encoded = [s.encode("utf-8") for s in sp.stop]
        # specials add no bytes, so the last len(s) + a few tokens hold every byte a new match can use
        window = output_bytes(req.output_token_ids[-(max(map(len, encoded)) + 16):])
        for text, raw in zip(sp.stop, encoded):
            if window.endswith(raw):
                return FinishReason.STOP, text
    if req.num_tokens >= req.max_total_tokens:
        return FinishReason.LENGTH, None
    return None, None
