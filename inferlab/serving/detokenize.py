"""Incremental detokenization for streaming: text that concatenates exactly to the whole.

The kit's tokenizer is byte-level, so one character can span several tokens. A
`Detokenizer` takes tokens as they arrive and releases only text that cannot change:
an incomplete UTF-8 sequence at the end is held back (a streamed chunk never carries half a
character as U+FFFD), and so is a tail that could still grow into one of the request's stop
strings (vLLM never shows a stop string). `finish` flushes the rest, cut before the stop
string that ended the request. The server builds the non-streamed text with the same
class, so streamed chunks always join to the non-streamed text.
"""

from __future__ import annotations

import codecs
from typing import Sequence

from inferlab.engine.stop import NUM_BYTE_TOKENS


class Detokenizer:
    """Token ids in, stable text out.

    Args:
        stop: the request's stop strings (held back while they may be forming, cut at the end).
    """

    def __init__(self, stop: Sequence[str] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = tuple(stop)
        self._text = ""  # decoded so far (complete characters only)
        self._num_sent = 0  # characters of _text already released

    def add(self, token_ids: Sequence[int]) -> str:
        """Decode new tokens; returns the text that is now final (maybe "")."""
        self._text += self._decoder.decode(bytes(t for t in token_ids if 0 <= t < NUM_BYTE_TOKENS))
        end = len(self._text) - self._held_for_stop()
        return self._release(end)

    def finish(self, stop_string: str | None = None) -> str:
        """Flush everything left; with the stop string that ended the request, cut before it."""
        self._text += self._decoder.decode(b"", final=True)
        end = len(self._text)
        if stop_string is not None:
            at = self._text.find(stop_string, max(0, self._num_sent - len(stop_string)))
            if at >= 0:
                end = at
        return self._release(max(end, self._num_sent))

    @property
    def text(self) -> str:
        """All text released so far."""
        return self._text[:self._num_sent]

    def _held_for_stop(self) -> int:
        """Length of the longest tail of the text that is a prefix of a stop string (or the whole
        string: the engine ends the request on that token, and `finish` cuts it)."""
        longest = 0
        for s in self._stop:
            for n in range(min(len(s), len(self._text)), longest, -1):
                if self._text.endswith(s[:n]):
                    longest = n
                    break
        return longest

    def _release(self, end: int) -> str:
        end = max(end, self._num_sent)
        out = self._text[self._num_sent:end]
        self._num_sent = end
        return out


def detokenize(token_ids: Sequence[int], stop_string: str | None = None) -> str:
    """The whole text of a finished output (what the non-streamed response carries)."""
    d = Detokenizer(() if stop_string is None else (stop_string,))
    d.add(token_ids)
    d.finish(stop_string)
    return d.text
