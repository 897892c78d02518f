"""The tiny Qwen2 model and tokenizer: loadable by the Auto classes, ChatML-like, cached."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")

from baselines.tiny import SPECIAL_TOKENS, TinySpec, build_tiny_model  # noqa: E402
from envs.core.chat import continuation_text  # noqa: E402


def test_auto_classes_load_a_qwen2_model(tiny_model_dir, tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.model_type == "qwen2"
    assert model.config.vocab_size == len(tiny_tokenizer)
    assert tiny_tokenizer.eos_token == "<|im_end|>" and tiny_tokenizer.pad_token == "<|endoftext|>"
    assert sum(p.numel() for p in model.parameters()) < 500_000


@pytest.mark.parametrize("text", ["Ada has 3 apples.\nThe answer is \\boxed{7}.", "  spaces\tand tabs ",
                                  "Zürich → 東京 ✓"])
def test_tokenizer_round_trips_text(tiny_tokenizer, text):
    ids = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tiny_tokenizer.decode(ids) == text


def test_tokenizer_learned_the_projects_text(tiny_tokenizer):
    # trained on the arithmetic prompts: common words are single tokens, not bytes
    assert len(tiny_tokenizer(" apples", add_special_tokens=False)["input_ids"]) == 1
    assert all(tiny_tokenizer.convert_tokens_to_ids(t) is not None for t in SPECIAL_TOKENS)


def test_chat_template_is_chatml_like(tiny_tokenizer):
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    text = tiny_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    cont = continuation_text(tiny_tokenizer, [{"role": "user", "content": "obs"}])
    assert cont == "<|im_start|>user\nobs<|im_end|>\n<|im_start|>assistant\n"
    tools = [{"name": "search", "parameters": {"type": "object"}}]
    with_tools = tiny_tokenizer.apply_chat_template(messages, tools=tools, tokenize=False)
    assert with_tools.startswith("<|im_start|>system\nS\n\nTools:\n") and '"name": "search"' in with_tools


def test_build_is_cached_and_keyed_by_spec(tiny_model_dir, tmp_path):
    from envs.core.io import default_cache_dir

    assert build_tiny_model() == tiny_model_dir
    assert tiny_model_dir.parent == default_cache_dir()
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["hidden_size"] == TinySpec().hidden_size
    small = TinySpec(vocab_size=300, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                     num_key_value_heads=1, corpus_items=20, pretrain_steps=0)
    path = build_tiny_model(tmp_path, small)
    assert path.parent == tmp_path and path != tiny_model_dir
    assert json.loads((path / "config.json").read_text())["hidden_size"] == 32
    assert build_tiny_model(tmp_path, small) == path
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp build dirs left
