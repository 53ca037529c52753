"""A byte-level tokenizer in the `tokenizers` JSON format.

Ids 0-255 are the 256 byte values (through GPT-2's byte-to-unicode map, so any text
round-trips), 256 is `<s>` and 257 is `</s>`; there are no merges, so one byte is
one token. Saved as tokenizer.json + tokenizer_config.json, loadable by
`transformers.AutoTokenizer` and vLLM.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

BOS, EOS = "<s>", "</s>"
BOS_ID, EOS_ID = 256, 257


def build_tokenizer() -> Tokenizer:
    """The byte-level tokenizer: 256 byte tokens + BOS + EOS."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    byte_chars = sorted(alphabet, key=lambda ch: _byte_of(ch))
    vocab = {ch: i for i, ch in enumerate(byte_chars)}
    vocab[BOS], vocab[EOS] = BOS_ID, EOS_ID
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([BOS, EOS])
    return tok


def _byte_of(ch: str) -> int:
    """Inverse of GPT-2's bytes_to_unicode for one character."""
    code = ord(ch)
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    if code in printable:
        return code
    others = [b for b in range(256) if b not in printable]
    return others[code - 256]


def save_tokenizer(directory: Path) -> None:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json."""
    build_tokenizer().save(str(directory / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "model_max_length": 1_000_000,
        "clean_up_tokenization_spaces": False,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (directory / "special_tokens_map.json").write_text(json.dumps({"bos_token": BOS, "eos_token": EOS}, indent=2))


def encode(text: str) -> list[int]:
    """Text -> token ids (one per UTF-8 byte)."""
    return list(text.encode("utf-8"))


def decode(ids: list[int]) -> str:
    """Token ids -> text; special and out-of-byte-range ids are dropped."""
    return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")
