"""The one chat-rendering path: every trainer and adapter turns an episode into text here.

An episode's prompt is ``info["messages"]`` plus the env's tool schemas (``info["tools"]``), rendered
with the tokenizer's own chat template (tools passed as the template's ``tools`` argument, the way
Qwen2.5 / Hermes-style templates expect them) and tokenised without extra special tokens. The
reference trainer, ``baselines.evaluate``, the OpenRLHF agent and the SkyRL wrapper all call
``episode_prompt`` / ``encode``; trainers that keep one token stream per episode append each
observation with ``continuation_text``. A trainer that renders messages itself without a ``tools``
argument (SkyRL's generator) gets the same text from a template with the schemas baked in
(``template_with_tools``). Nothing here hard-codes a model's special strings.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
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


def template_kwargs(tools: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
    """Keyword arguments that hand tool schemas to ``apply_chat_template`` (none when there are no tools)."""
    return {"tools": [dict(t) for t in tools]} if tools else {}


def prompt_text(tokenizer: ChatTemplater, messages: Sequence[dict[str, str]], tools: Sequence[dict] | None = None) -> str:
    """The prompt of an episode in the tokenizer's chat format, ready for the first assistant turn."""
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True,
                                         **template_kwargs(tools))


def episode_prompt(tokenizer: ChatTemplater, info: Mapping[str, Any], *, include_tools: bool = True) -> str:
    """The prompt text of the episode whose ``reset`` returned ``info`` (its messages and tool schemas)."""
    return prompt_text(tokenizer, info["messages"], info.get("tools") if include_tools else None)


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of rendered chat text: the template already wrote every special token it wants."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def episode_prompt_ids(tokenizer: Any, info: Mapping[str, Any], *, include_tools: bool = True) -> list[int]:
    return encode(tokenizer, episode_prompt(tokenizer, info, include_tools=include_tools))


def _jinja_literal(value: Any) -> str:
    """``value`` (JSON data) as a Jinja expression that evaluates back to it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("tool schemas must be JSON data (no NaN or infinity)")
        return repr(value)
    if isinstance(value, str):
        # JSON's escapes (\\, \", \n, ...) are Python's, which Jinja's lexer decodes; non-ASCII text stays
        # literal (Jinja re-escapes and decodes it losslessly, where JSON's \ud83d surrogate pairs would break)
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_jinja_literal(str(k))}: {_jinja_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_jinja_literal(v) for v in value) + "]"
    raise TypeError(f"tool schemas must be JSON data, got {type(value).__name__}")


def template_with_tools(chat_template: str, tools: Sequence[Mapping[str, Any]] | None) -> str:
    """A chat template that renders ``tools`` whenever the caller passes none.

    For trainers that call ``apply_chat_template(messages)`` themselves (SkyRL's generator): set the
    tokenizer's ``chat_template`` to this and its prompts equal ``episode_prompt``'s, tool block
    included. A caller that does pass ``tools`` still wins.
    """
    if not tools:
        return chat_template
    baked = _jinja_literal(template_kwargs(tools)["tools"])
    return "{%- if not tools %}{%- set tools = " + baked + " %}{%- endif %}" + chat_template
