"""The syntax warm-up: demonstrations on training items, loss on the protocol's markup only."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


def test_prose_option_trains_how_a_turn_starts_never_its_numbers(tiny_tokenizer):
    examples = demonstration_examples("AgentR1/Arithmetic-v0", {**CALCULATOR, "split": "train"}, tiny_tokenizer, 12,
                                      calls=True, prose=True)
    for example in examples:
        targets = _targets(tiny_tokenizer, example)
        assert "The answer is" in targets and "\\boxed{" in targets
        assert example.item["expression"] in targets  # the calls stay whole targets
        final = targets[targets.rindex("The answer is"):]
        assert not any(ch.isdigit() for ch in final), final  # the answer is never one


@pytest.mark.parametrize("text, taught, never", [
    ("The answer is \\boxed{42}.", ["The answer is", "\\boxed{"], ["42"]),
    ("So <answer>Kesh Press</answer>", ["So", "<answer>", "</answer>"], ["Kesh", "Press"]),
    ("Add 17 and 5: <calculator>17 + 5</calculator>", ["Add", "<calculator>17 + 5</calculator>"], ["and 5"]),
])
def test_syntax_mask_with_exclusions(tiny_tokenizer, text, taught, never):
    from baselines.warmup import ANSWER_CONTENT, CALL_SPANS

    ids, mask = syntax_mask(tiny_tokenizer, text, (r"(?s).+",), ANSWER_CONTENT, CALL_SPANS)
    # a target token's text, and a blank where a token is context
    shown = "".join(tiny_tokenizer.decode([t]) if m else "\x00" for t, m in zip(ids, mask, strict=True))
    for piece in taught:
        assert piece in shown, (piece, shown)
    for piece in never:
        assert piece not in shown, (piece, shown)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.from_regex(r"[A-Za-z]{1,8}", fullmatch=True), st.integers(0, 10**6).map(str),
                          st.sampled_from([" ", ".", ",", "\\boxed{", "}", "<answer>", "</answer>"])), max_size=30))
def test_prose_targets_never_hold_a_digit_outside_calls(tiny_tokenizer, pieces):
    from baselines.warmup import ANSWER_CONTENT

    text = "".join(pieces)
    ids, mask = syntax_mask(tiny_tokenizer, text, (r"(?s).+",), ANSWER_CONTENT)
    assert not any(ch.isdigit() for t, m in zip(ids, mask, strict=True) if m for ch in tiny_tokenizer.decode([t]))
