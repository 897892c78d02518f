"""envs.core.chat: tool schemas passed to the template, or baked into it, render the same text."""

from __future__ import annotations

import pytest

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from envs.core.chat import episode_prompt, prompt_text, template_with_tools  # noqa: E402

TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTools:\n{% for t in tools %}{{ t | tojson }}\n{% endfor %}<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TOOLS = [{"type": "function", "function": {
    "name": "search", "description": 'Say "hi" \\ back\nnewline, caf\u00e9, \U0001f600, {% raw %}',
    "parameters": {"type": "object", "properties": {"q": {"type": "string", "minLength": 1, "default": None}},
                   "required": ["q"], "additionalProperties": False, "x": 0.5}}}]
MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(["hello world"], trainer=trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|im_start|>", "<|im_end|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", chat_template=TEMPLATE)


def test_baked_tools_render_like_passed_tools(tokenizer):
    passed = prompt_text(tokenizer, MESSAGES, TOOLS)
    assert '"search"' in passed
    baked = template_with_tools(tokenizer.chat_template, TOOLS)
    rendered = tokenizer.apply_chat_template(MESSAGES, chat_template=baked, tokenize=False, add_generation_prompt=True)
    assert rendered == passed
    # an explicit tools argument still wins, and no tools leaves the template as it was
    other = [{"type": "function", "function": {"name": "calc", "parameters": {}}}]
    assert tokenizer.apply_chat_template(MESSAGES, chat_template=baked, tools=other, tokenize=False,
                                         add_generation_prompt=True) == prompt_text(tokenizer, MESSAGES, other)
    assert template_with_tools(TEMPLATE, []) == TEMPLATE


def test_episode_prompt_uses_the_info_tools(tokenizer):
    info = {"messages": MESSAGES, "tools": TOOLS}
    assert episode_prompt(tokenizer, info) == prompt_text(tokenizer, MESSAGES, TOOLS)
    assert episode_prompt(tokenizer, info, include_tools=False) == prompt_text(tokenizer, MESSAGES)
    assert episode_prompt(tokenizer, {"messages": MESSAGES, "tools": []}) == prompt_text(tokenizer, MESSAGES)
