"""Chat-template glue shared by trainers: the text that continues a conversation after a turn.

Trainers that keep one token stream per episode (OpenRLHF's agent API, the bundled GRPO trainer)
must append each observation in the model's own chat format and open the next assistant turn. The
template comes from the tokenizer; nothing here hard-codes a model's special strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class ChatTemplater(Protocol):
    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


_ANCHOR = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]


def continuation_text(tokenizer: ChatTemplater, new_messages: Sequence[dict[str, str]]) -> str:
    """Template text for ``new_messages`` (tool/user turns) followed by the next assistant header.

    Rendered against a fixed anchor conversation and taken as the suffix, so templates that rewrite
    earlier turns (dropping old reasoning, say) cannot shift it. The text starts right after the
    assistant's end-of-turn marker as the template writes it.
    """
    before = tokenizer.apply_chat_template(list(_ANCHOR), tokenize=False)
    after = tokenizer.apply_chat_template(list(_ANCHOR) + list(new_messages), tokenize=False, add_generation_prompt=True)
    if not after.startswith(before):
        raise ValueError("the chat template does not extend a conversation by appending; cannot render a continuation")
    return after[len(before):]


def prompt_text(tokenizer: ChatTemplater, messages: Sequence[dict[str, str]], tools: Sequence[dict] | None = None) -> str:
    """The prompt of an episode in the tokenizer's chat format, ready for the first assistant turn."""
    kwargs: dict[str, Any] = {"tokenize": False, "add_generation_prompt": True}
    if tools:
        kwargs["tools"] = list(tools)
    return tokenizer.apply_chat_template(list(messages), **kwargs)
