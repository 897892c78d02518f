"""Reward components: format modes, the cosine formula at its edges, the language share, presets."""

import math
import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from envs.math.rewards import (
    COMPONENTS,
    PRESETS,
    _strip_math,
    CosineConfig,
    accuracy_reward,
    cosine_reward,
    format_reward,
    get_preset,
    language_share,
    preset_weights,
    response_length,
)

R1 = "Let me think.\n2 + 2 = 4.\n</think>\n\nThe answer is $\\boxed{4}$."


def test_accuracy():
    assert accuracy_reward(True) == 1.0 and accuracy_reward(False) == 0.0


@pytest.mark.parametrize(("text", "expected"), [
    (R1, 1.0),
    ("<think>\nx\n</think>\nanswer", 1.0),
    ("no reasoning at all \\boxed{4}", 0.0),
    ("a\n</think>\nb\n</think>\nc", 0.0),  # exactly once
    ("a</think>b", 0.0),  # the newlines are part of the shipped check
])
def test_format_open_rs_as_shipped(text, expected):
    assert format_reward(text, "open-rs") == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("<think>\nreason\n</think>\n<answer>\n4\n</answer>", 1.0),
    # open-r1 calls re.match(pattern, text, re.DOTALL | re.MULTILINE): "$" matches before a newline
    ("<think>\nreason\n</think>\n<answer>\n4\n</answer>\n", 1.0),
    ("<think>\nreason\n</think>\n<answer>\n4\n</answer>\nmore text", 1.0),
    ("<think>\nreason\n</think>\n<answer>\n4\n</answer>x", 0.0),
    ("<think>\nreason\n</think>\n<answer>\n4\n</answer>x\n</answer>", 1.0),
    ("<think>\n</think>\n<answer>\n4\n</answer>", 0.0),  # the opening's newline is not the middle's
    ("<think>\nr\n</think>\n<answer>\n</answer>", 0.0),

    ("<think>reason</think><answer>4</answer>", 0.0),
    ("Sure! <think>\nreason\n</think>\n<answer>\n4\n</answer>", 0.0),
])
def test_format_strict_open_r1(text, expected):
    assert format_reward(text, "strict") == expected
    assert bool(re.match(OPEN_R1_FORMAT, text, re.DOTALL | re.MULTILINE)) == bool(expected)


OPEN_R1_FORMAT = r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$"
_STRICT_PIECES = ["<think>\n", "\n</think>\n<answer>\n", "\n</answer>", "\n", "x", "</answer>", "<answer>\n"]


@given(st.lists(st.sampled_from(_STRICT_PIECES), max_size=10))
def test_format_strict_agrees_with_open_r1s_regex(pieces):
    text = "".join(pieces)
    assert format_reward(text, "strict") == float(bool(re.match(OPEN_R1_FORMAT, text, re.DOTALL | re.MULTILINE)))


MATH_SPANS = r"\$\$.*?\$\$|\$[^$]*\$|\\\[.*?\\\]|\\\(.*?\\\)|\\begin\{(\w+\*?)\}.*?\\end\{\1\}"
_MATH_PIECES = ["$", "$$", "\\[", "\\]", "\\(", "\\)", "\\begin{a}", "\\end{a}", "\\begin{b*}", "\\end{b*}",
                "\\begin{", "x", "\\", "}", "\n", "答"]


@given(st.lists(st.sampled_from(_MATH_PIECES), max_size=14))
def test_maths_removal_agrees_with_the_span_regex(pieces):
    text = "".join(pieces)
    assert _strip_math(text) == re.sub(MATH_SPANS, " ", text, flags=re.DOTALL)


@pytest.mark.parametrize("text", [
    "\\[" * 32_768, "\\(" * 32_768, "\\begin{a}" * 7_000, "\\end{a}" * 3_000 + "\\begin{a}" * 3_000, "$$a" * 20_000,
    "<think>\n" + "\n</think>\n<answer>\n" * 3_400, "<think>\n" + "\n</think>\n<answer>\n\n</answer>x" * 2_000,
])
def test_rewards_are_linear_on_adversarial_64k_responses(text):
    # the regexes these replace took 5-60 s on such inputs (lazy groups rescanning to the end)
    started = time.perf_counter()
    language_share(text, "en")
    for mode in ("open-rs", "strict", "think-boxed"):
        format_reward(text, mode)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(("text", "expected"), [
    (R1, 1.0),
    ("<think>\nreason\n</think>\n\\boxed{4}", 1.0),
    ("<think>\n\n</think>\n\\boxed{4}", 0.0),  # empty reasoning
    ("<think>\nreason \\boxed{4}\n</think>\nso 4", 0.0),  # box only inside the reasoning
    ("reason\n</think>\nfirst</think> \\boxed{4}", 0.0),
    ("preamble <think>reason</think> \\boxed{4}", 0.0),
])
def test_format_think_boxed(text, expected):
    assert format_reward(text, "think-boxed") == expected


def test_format_unknown_mode():
    with pytest.raises(ValueError):
        format_reward("x", "nope")


def _formula(lo: float, hi: float, length: float, max_len: float) -> float:
    return lo + 0.5 * (hi - lo) * (1 + math.cos(math.pi * min(length / max_len, 1.0)))


def test_cosine_edges_match_the_formula():
    cfg = CosineConfig()  # Open-RS as shipped: correct 0.5..1.0, wrong 0.0..-0.5, L_max 3584
    assert cosine_reward(True, 0, cfg) == pytest.approx(1.0)
    assert cosine_reward(True, cfg.max_length, cfg) == pytest.approx(0.5)
    assert cosine_reward(True, cfg.max_length / 2, cfg) == pytest.approx(0.75)
    assert cosine_reward(False, 0, cfg) == pytest.approx(0.0)
    assert cosine_reward(False, cfg.max_length, cfg) == pytest.approx(-0.5)
    assert cosine_reward(False, cfg.max_length / 2, cfg) == pytest.approx(-0.25)
    for length in (0, 1, 100, 1000, 3583):
        assert cosine_reward(True, length, cfg) == pytest.approx(_formula(0.5, 1.0, length, 3584))
        assert cosine_reward(False, length, cfg) == pytest.approx(_formula(-0.5, 0.0, length, 3584))


def test_cosine_is_clipped_past_max_length():
    cfg = CosineConfig(max_length=100)
    for length in (100, 150, 200, 10_000):  # unclipped, cos would swing back up at 2 * L_max
        assert cosine_reward(True, length, cfg) == pytest.approx(0.5)
        assert cosine_reward(False, length, cfg) == pytest.approx(-0.5)


def test_cosine_knobs():
    cfg = CosineConfig(min_value_correct=0.2, max_value_correct=2.0, min_value_wrong=-1.0, max_value_wrong=-0.5, max_length=10)
    assert cosine_reward(True, 0, cfg) == pytest.approx(2.0)
    assert cosine_reward(True, 10, cfg) == pytest.approx(0.2)
    assert cosine_reward(False, 0, cfg) == pytest.approx(-1.0)  # open-r1's function defaults
    assert cosine_reward(False, 10, cfg) == pytest.approx(-0.5)
    with pytest.raises(ValueError):
        CosineConfig(max_length=0)


@given(length=st.floats(min_value=0, max_value=1e7, allow_nan=False), correct=st.booleans())
def test_cosine_is_monotone_and_bounded(length, correct):
    cfg = CosineConfig(max_length=1000)
    value = cosine_reward(correct, length, cfg)
    lo, hi = (0.5, 1.0) if correct else (-0.5, 0.0)
    assert lo - 1e-9 <= value <= hi + 1e-9
    assert cosine_reward(correct, length + 10, cfg) <= value + 1e-12


def test_response_length_counts_tokens_with_a_tokenizer():
    class Whitespace:
        def encode(self, text, add_special_tokens=False):
            return text.split()

    assert response_length("one two three") == len("one two three")
    assert response_length("one two three", Whitespace()) == 3
    assert response_length("a b", lambda text: [1, 2, 3, 4]) == 4


def test_language_share():
    assert language_share("The answer is four.", "en") == 1.0
    assert language_share("答案是四", "en") == 0.0
    assert language_share("The answer 答案 is", "en") == pytest.approx(11 / 13)
    assert language_share("答案是四", "zh") == 1.0
    # maths, LaTeX commands, tags and Greek letters are not language
    assert language_share("<think>Let $\\alpha = \\frac{\\pi}{2}$ and α = β</think> so", "en") == 1.0
    assert language_share("$x^2$ = 4", "en") == 1.0  # no letters outside maths: nothing drifted
    assert language_share("Ответ четыре", "ru") == 1.0
    with pytest.raises(ValueError):
        language_share("x", "xx")


@given(st.text(max_size=200))
def test_language_share_is_a_share(text):
    assert 0.0 <= language_share(text, "en") <= 1.0


def test_presets():
    exp12 = get_preset("open-rs-accuracy-format")
    assert dict(exp12.weights) == {"accuracy": 1.0, "format": 1.0} and exp12.format_mode == "open-rs"
    exp3 = get_preset("open-rs-cosine-format")
    assert dict(exp3.weights) == {"format": 1.0, "cosine": 2.0} and exp3.language == "en"
    assert preset_weights(exp3) == {"accuracy": 0.0, "format": 1.0, "cosine": 2.0, "language": 0.0}
    assert all(set(preset_weights(p)) == set(COMPONENTS) for p in PRESETS.values())
    with pytest.raises(ValueError):
        get_preset("nope")
