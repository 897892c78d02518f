"""The syntax warm-up: demonstrations on training items, loss on the protocol's markup only."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from baselines.warmup import demonstration_examples, syntax_mask, warm_up  # noqa: E402
from envs.arithmetic.env import problem_split  # noqa: E402

CALCULATOR = {"digits": 2, "num_operations": 2, "calculator": True}


def _targets(tokenizer, example) -> str:
    return "".join(tokenizer.decode([t]) for t, m in zip(example.ids, example.loss_mask, strict=True) if m)


def test_syntax_mask_covers_markup_and_not_content(tiny_tokenizer):
    text = '<search>Kesh Press</search>'
    ids, mask = syntax_mask(tiny_tokenizer, text)
    targets = "".join(tiny_tokenizer.decode([t]) for t, m in zip(ids, mask, strict=True) if m)
    content = "".join(tiny_tokenizer.decode([t]) for t, m in zip(ids, mask, strict=True) if not m)
    assert "search" in targets and "Kesh" not in targets and "Kesh" in content


def test_demonstrations_teach_where_markup_goes_not_the_answers(tiny_tokenizer):
    examples = demonstration_examples("AgentR1/Arithmetic-v0", {**CALCULATOR, "split": "train"}, tiny_tokenizer, 12)
    assert len(examples) == 12
    for example in examples:
        assert problem_split(example.item["problem"], 0.2) == "train"  # training items only
        targets = _targets(tiny_tokenizer, example)
        for markup in ("<tool_call>", "</tool_call>", "\\boxed{", "calculator"):
            assert markup in targets, (markup, targets)
        assert example.item["answer"] not in targets  # the answer is context, never a target
        assert sum(example.loss_mask) < len(example.ids) / 3


def test_warm_up_saves_a_model_and_reuses_it(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "warm"
    summary = warm_up(str(tiny_model_dir), "AgentR1/Arithmetic-v0", CALCULATOR, out, steps=3, batch_size=4,
                      examples=8, dtype="float32")
    assert len(summary["loss"]) == 3 and summary["examples"] == 8
    assert json.loads((out / "warmup.json").read_text())["steps"] == 3
    AutoModelForCausalLM.from_pretrained(out)  # a normal HF directory
    assert warm_up(str(tiny_model_dir), "AgentR1/Arithmetic-v0", CALCULATOR, out, steps=99) == summary  # reused


def test_target_only_projection_gives_the_full_models_loss(tiny_model_dir):
    """The warm-up projects only target positions onto the vocabulary: same loss as the model's own."""
    import torch
    from transformers import AutoModelForCausalLM

    from baselines.warmup import _target_loss

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.randint(5, 300, (3, 12), generator=torch.Generator().manual_seed(0))
    attention = torch.ones_like(ids)
    labels = ids.clone()
    labels[:, :6] = -100
    attention[0, 9:], labels[0, 9:] = 0, -100  # a right-padded row
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=attention, labels=labels).loss
        assert torch.allclose(_target_loss(model, ids, attention, labels), expected, atol=1e-6)


def test_calls_option_trains_whole_calls_but_never_the_answer(tiny_tokenizer):
    examples = demonstration_examples("AgentR1/Arithmetic-v0", {**CALCULATOR, "split": "train"}, tiny_tokenizer, 12,
                                      calls=True)
    for example in examples:
        targets = _targets(tiny_tokenizer, example)
        assert example.item["expression"] in targets  # the call's argument is a target now
        if example.item["answer"] not in example.item["expression"]:
            assert example.item["answer"] not in targets  # the answer still is not
