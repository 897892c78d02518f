r"""Reward components for math reasoning, and the Open-RS experiment presets.

Each component is a plain function of the response (and the verifier's verdict); the environment
weights and sums them (``envs.core.rewards``). Components:

* ``accuracy``: 1.0 if the verifier says the final answer equals the gold, else 0.0.
* ``format``: the structure of the response, in one of three modes:
  ``"open-rs"`` (as Open-RS shipped: ``"\n</think>\n"`` occurs exactly once; R1-distill chat
  templates open the ``<think>`` block in the prompt), ``"strict"`` (open-r1's
  ``^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$`` with its flags, ``re.match`` under
  ``DOTALL | MULTILINE``: anchored at the start, and ``$`` also matches before any newline, so a
  line break and more text may follow ``</answer>``; checked in linear time) and ``"think-boxed"``
  (one closed reasoning block, then a ``\boxed{}`` answer after it) and ``"boxed"`` (a non-empty
  ``\boxed{}`` answer; tool-integrated reasoning as ToRL trains it has no reasoning block).
* ``cosine``: length-scaled correctness (Open-RS experiment 3), see :func:`cosine_reward`.
* ``language``: the share of the response's letters written in the requested language's script,
  see :func:`language_share`; the paper's proposed fix for the language drift it observed.

Presets name the paper's configurations: ``"open-rs-accuracy-format"`` (experiments 1 and 2) and
``"open-rs-cosine-format"`` (experiment 3: format weight 1, cosine weight 2, English-only instruction
in the system prompt).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from envs.core.parsing import extract_last_boxed

FORMAT_MODES = ("open-rs", "strict", "think-boxed", "boxed")
_STRICT_OPEN, _STRICT_MIDDLE, _STRICT_CLOSE = "<think>\n", "\n</think>\n<answer>\n", "\n</answer>"


# ---------------------------------------------------------------------------- components
def accuracy_reward(correct: bool) -> float:
    """1.0 for a verified-correct final answer, else 0.0."""
    return 1.0 if correct else 0.0


def format_reward(response: str, mode: str = "open-rs") -> float:
    r"""1.0 if ``response`` has the structure ``mode`` asks for, else 0.0 (modes in the module doc)."""
    if mode == "open-rs":
        return 1.0 if response.count("\n</think>\n") == 1 else 0.0
    if mode == "strict":
        return 1.0 if _strict_match(response) else 0.0
    if mode == "think-boxed":
        if response.count("</think>") != 1 or response.count("<think>") > 1:
            return 0.0
        reasoning, _, answer = response.partition("</think>")
        if reasoning.count("<think>") == 1 and not reasoning.lstrip().startswith("<think>"):
            return 0.0  # text before the opening tag
        if not reasoning.replace("<think>", "").strip():
            return 0.0
        return 1.0 if extract_last_boxed(answer) else 0.0
    if mode == "boxed":
        return 1.0 if extract_last_boxed(response) else 0.0
    raise ValueError(f"unknown format mode {mode!r}; choose one of {', '.join(FORMAT_MODES)}")


def _strict_match(text: str) -> bool:
    r"""``re.match(r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$", text, re.DOTALL | re.MULTILINE)``
    (open-r1's format reward) without the regex, whose two lazy groups backtrack quadratically on
    responses that repeat the middle delimiter. The first middle delimiter after the opening leaves
    the most room for the answer, so it is the only one to try."""
    if not text.startswith(_STRICT_OPEN):
        return False
    middle = text.find(_STRICT_MIDDLE, len(_STRICT_OPEN))
    if middle < 0:
        return False
    close = text.find(_STRICT_CLOSE, middle + len(_STRICT_MIDDLE))
    while close >= 0:
        end = close + len(_STRICT_CLOSE)
        if end == len(text) or text[end] == "\n":  # "$" under MULTILINE
            return True
        close = text.find(_STRICT_CLOSE, close + 1)
    return False


@dataclass(frozen=True)
class CosineConfig:
    """Knobs of the cosine reward; defaults are Open-RS experiment 3 as shipped.

    A correct answer earns ``max_value_correct`` at length 0, falling to ``min_value_correct`` at
    ``max_length``; a wrong one earns ``min_value_wrong`` at length 0, falling to ``max_value_wrong``
    at ``max_length`` (open-r1's names; Open-RS set them to 0.0 and -0.5, open-r1's function
    defaults were -1.0 and -0.5). Lengths past ``max_length`` count as ``max_length``.
    """

    min_value_correct: float = 0.5
    max_value_correct: float = 1.0
    min_value_wrong: float = 0.0
    max_value_wrong: float = -0.5
    max_length: int = 3584

    def __post_init__(self) -> None:
        if self.max_length <= 0:
            raise ValueError(f"max_length must be > 0, got {self.max_length}")


def cosine_reward(correct: bool, length: float, config: CosineConfig = CosineConfig()) -> float:
    """``r = lo + 0.5 * (hi - lo) * (1 + cos(pi * min(L / L_max, 1)))``.

    ``hi`` is the value at length 0 and ``lo`` the value at ``L_max``: for a correct answer
    ``hi = max_value_correct, lo = min_value_correct``; for a wrong one ``hi = min_value_wrong,
    lo = max_value_wrong`` (so with the defaults a short wrong answer costs nothing and a long one
    -0.5). Unlike Open-RS, ``L / L_max`` is clipped, so the reward does not oscillate past ``L_max``.
    """
    if correct:
        at_zero, at_max = config.max_value_correct, config.min_value_correct
    else:
        at_zero, at_max = config.min_value_wrong, config.max_value_wrong
    progress = min(max(float(length), 0.0) / config.max_length, 1.0)
    return at_max + 0.5 * (at_zero - at_max) * (1.0 + math.cos(math.pi * progress))


# Scripts each language is written in (Unicode character-name prefixes). Greek is ignored for every
# language but Greek: its letters are the usual names of mathematical quantities.
LANGUAGE_SCRIPTS: dict[str, tuple[str, ...]] = {
    "en": ("LATIN",), "fr": ("LATIN",), "de": ("LATIN",), "es": ("LATIN",), "it": ("LATIN",),
    "pt": ("LATIN",), "nl": ("LATIN",), "vi": ("LATIN",), "id": ("LATIN",), "tr": ("LATIN",),
    "pl": ("LATIN",), "zh": ("CJK",), "ja": ("CJK", "HIRAGANA", "KATAKANA"), "ko": ("HANGUL", "CJK"),
    "ru": ("CYRILLIC",), "uk": ("CYRILLIC",), "ar": ("ARABIC",), "fa": ("ARABIC",), "he": ("HEBREW",),
    "hi": ("DEVANAGARI",), "th": ("THAI",), "el": ("GREEK",),
}
_MATH_OPENER = re.compile(r"\$|\\\[|\\\(|\\begin\{(\w+\*?)\}")
_MATH_END = re.compile(r"\\end\{(\w+\*?)\}")
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
_TAG = re.compile(r"</?[A-Za-z_][\w-]*>")


def _script(ch: str) -> str:
    try:
        return unicodedata.name(ch).split(" ", 1)[0]
    except ValueError:
        return "UNKNOWN"


def _strip_math(text: str) -> str:
    r"""Replace maths spans by a space, as ``re.sub(r"\$\$.*?\$\$|\$[^$]*\$|\\\[.*?\\\]|\\\(.*?\\\)|
    \\begin\{(\w+\*?)\}.*?\\end\{\1\}", " ", text, flags=re.DOTALL)`` would, in linear time.

    That regex rescans to the end of the text from every unclosed opener (a response of 30k
    ``\[`` took a minute). Here each closer is searched for once: the last position of every closer
    is known up front, so an opener with no closer after it is skipped without a search."""
    last = {"$$": text.rfind("$$"), "$": text.rfind("$"), "\\]": text.rfind("\\]"), "\\)": text.rfind("\\)")}
    last_end: dict[str, int] = {}
    for match in _MATH_END.finditer(text):
        last_end[match.group(1)] = match.start()
    out: list[str] = []
    kept = pos = 0
    while True:
        match = _MATH_OPENER.search(text, pos)
        if match is None:
            break
        start, opener, name = match.start(), match.group(), match.group(1)
        end = -1
        if opener == "$":
            if text.startswith("$$", start):
                if last["$$"] >= start + 2:
                    close = text.find("$$", start + 2)
                    end = close + 2 if close >= 0 else -1
                if end < 0:
                    end = start + 2  # "$$" is also an empty "$...$"
            elif last["$"] > start:
                end = text.find("$", start + 1) + 1
        elif name is not None:
            closer = f"\\end{{{name}}}"
            if last_end.get(name, -1) >= match.end():
                close = text.find(closer, match.end())
                end = close + len(closer) if close >= 0 else -1
        else:
            closer = "\\]" if opener == "\\[" else "\\)"
            if last[closer] >= match.end():
                end = text.find(closer, match.end()) + len(closer)
        if end < 0:
            pos = start + 1  # no span starts here; the next one may start inside this opener
            continue
        out.append(text[kept:start])
        out.append(" ")
        kept = pos = end
    out.append(text[kept:])
    return "".join(out)


def language_share(text: str, language: str = "en") -> float:
    """The share of ``text``'s letters written in ``language``'s script(s), in [0, 1].

    Maths (``$...$``, ``\\[...\\]``, environments), LaTeX commands and tags are removed first; then
    every remaining letter (Unicode category ``L*``) is classified by its script. Greek letters are
    ignored unless the language is Greek. A text without letters scores 1.0: nothing drifted.
    This catches the drift Open-RS reports (an English model slipping into Chinese) without a
    language-identification model; it cannot tell apart two languages that share a script.
    """
    scripts = LANGUAGE_SCRIPTS.get(language.lower())
    if scripts is None:
        raise ValueError(f"unknown language {language!r}; known: {', '.join(sorted(LANGUAGE_SCRIPTS))}")
    cleaned = _TAG.sub(" ", _LATEX_COMMAND.sub(" ", _strip_math(text)))
    total = matching = 0
    latin = "LATIN" in scripts
    for ch in cleaned:
        if ch.isascii():  # the common case, without a Unicode database lookup
            if ch.isalpha():
                total += 1
                matching += latin
            continue
        if not unicodedata.category(ch).startswith("L"):
            continue
        script = _script(ch)
        if script == "GREEK" and "GREEK" not in scripts:
            continue
        total += 1
        if script in scripts:
            matching += 1
    return 1.0 if total == 0 else matching / total


def language_reward(response: str, language: str = "en") -> float:
    """The ``language`` component: ``language_share`` of the whole response."""
    return language_share(response, language)


# ---------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class RewardPreset:
    """Component weights plus the settings that go with them."""

    name: str
    weights: Mapping[str, float]
    format_mode: str = "open-rs"
    language: str | None = None  # ask for this language in the system prompt (and measure it)
    description: str = ""
    cosine: CosineConfig = field(default_factory=CosineConfig)
    # Weights of the tool components (``envs.core.env.TOOL_REWARD_WEIGHTS``) when the env has tools.
    tool_weights: Mapping[str, float] = field(default_factory=dict)


COMPONENTS = ("accuracy", "format", "cosine", "language")

PRESETS: dict[str, RewardPreset] = {
    p.name: p
    for p in (
        RewardPreset("open-rs-accuracy-format", {"accuracy": 1.0, "format": 1.0},
                     description="Open-RS experiments 1-2: accuracy (math-verify) + format, equal weights"),
        RewardPreset("open-rs-cosine-format", {"format": 1.0, "cosine": 2.0}, language="en",
                     description="Open-RS experiment 3: format (weight 1) + cosine (weight 2), "
                                 "English-only system prompt"),
        RewardPreset("accuracy", {"accuracy": 1.0}, format_mode="think-boxed",
                     description="verified accuracy only (format is still measured, with weight 0)"),
        RewardPreset("think-boxed", {"accuracy": 1.0, "format": 0.2}, format_mode="think-boxed",
                     description="accuracy + a light think-then-box format bonus, for models outside the R1 family"),
        # ToRL (Li, Zou, Liu 2025; github.com/GAIR-NLP/ToRL, verl/utils/reward_score/math_verifier.py):
        # +1 for a correct boxed answer, -1 otherwise (= 2 * accuracy - 1: the same group-normalised GRPO
        # advantages as accuracy alone), no format or tool rewards; its optional -0.5 for code that
        # fails is off by default there too.
        RewardPreset("torl", {"accuracy": 1.0}, format_mode="boxed",
                     tool_weights={"tool_error": 0.0, "invalid_action": 0.0, "repeated_call": 0.0},
                     description="ToRL: correctness only (GRPO-equivalent to its +1/-1), no format or tool rewards"),
    )
}
DEFAULT_PRESET = "open-rs-accuracy-format"


def get_preset(name: str) -> RewardPreset:
    """The preset called ``name`` (see ``PRESETS``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown reward preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def preset_weights(preset: RewardPreset) -> dict[str, float]:
    """All four components with the preset's weights (0.0 for the ones it does not use), so users
    can turn any of them on through ``reward_weights``."""
    return {name: float(preset.weights.get(name, 0.0)) for name in COMPONENTS}


# ---------------------------------------------------------------------------- length
def response_length(response: str, tokenizer: Any | None = None) -> int:
    """Length in tokens when ``tokenizer`` is given (HF-style ``encode`` or a callable), else characters."""
    if tokenizer is None:
        return len(response)
    encode: Callable[..., Any] | None = getattr(tokenizer, "encode", None)
    if encode is not None:
        try:
            return len(encode(response, add_special_tokens=False))
        except TypeError:
            return len(encode(response))
    return len(tokenizer(response))
