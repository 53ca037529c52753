"""The chat template: OpenAI chat messages -> one prompt string for the kit's models.

The kit's models are random-init Llamas with a byte-level tokenizer and no chat training,
so any fixed template is as good as another; this one is ChatML-like and written once here
(`CHAT_TEMPLATE` is the same template in Jinja, for a `tokenizer_config.json`).
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("system", "user", "assistant")
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


@dataclass(frozen=True)
class ChatMessage:
    """One message; `role` in ROLES, `content` the plain text."""

    role: str
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {self.role!r}")
        if not isinstance(self.content, str):
            raise ValueError("content must be a string")


def apply_chat_template(messages: list[ChatMessage], add_generation_prompt: bool = True) -> str:
    """The prompt text for `messages` (what `CHAT_TEMPLATE` renders)."""
    text = "".join(f"<|{m.role}|>\n{m.content}\n" for m in messages)
    return text + ("<|assistant|>\n" if add_generation_prompt else "")
