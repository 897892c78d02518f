r"""Reading answers out of text: gold answers, the final answer of a response, and normal forms.

Pure Python (no SymPy), so it runs in the caller before anything is sent to a worker process.

* **Gold answers** (:func:`parse_gold`): ``"\boxed{5}"``, ``"$5$"`` and ``5`` all give ``"5"``. A gold
  with several boxes (``\boxed{1} papers and \boxed{2} bins``) keeps every box; a list
  (``1, -2``, ``\{1, -2\}``) keeps its elements. Either is a *multi-part* gold, compared as a set.
  A comma is a list separator unless it is a thousands separator (``1,000``: digits, no space,
  groups of three), the reading math-verify uses.
* **Final answers** (:func:`final_answer`): see ``MathVerifier``'s docstring for the rules per protocol.
* **Normal forms** (:func:`normalize_answer`, :func:`clock_time`) for the fast path's string checks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from envs.core.parsing import boxed_spans, strip_reasoning

TRAINING, OPEN_RS = "agentr1", "open-rs"
PROTOCOLS = (TRAINING, OPEN_RS)
GOLD_FORMATS = ("any", "latex", "expr")
MAX_PARTS = 8  # a multi-part gold with more parts is compared as one expression only
_TAIL_CHARS = 2_000  # the final text math-verify reads when the answer is not boxed (training protocol)
_EVAL_CHARS = 20_000  # lighteval reads the whole response; this bounds the regex work on runaway outputs
_FINAL_ANCHOR = re.compile(r"final answer", re.IGNORECASE)
# What may stand between the boxes of one multi-part gold: "\boxed{1} papers and \boxed{2} bins".
_CONNECTIVE = re.compile(r"^\s*(?:,|;|&|and|or)\s*$", re.IGNORECASE)
# a gold may name what each box counts: "\boxed{1} papers and \boxed{2} bins"
_GOLD_CONNECTIVE = re.compile(r"^\s*(?:[A-Za-z]+\s+){0,2}(?:,|;|&|and|or)(?:\s+[A-Za-z]+){0,2}\s*$", re.IGNORECASE)
_DELIMITERS = re.compile(r"\$|\\[()\[\]]")
_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{?\s*$")
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")


@dataclass(frozen=True)
class GoldAnswer:
    """A gold answer: ``text`` is what math-verify compares; ``parts`` its elements when it is a list
    or several boxes (one element otherwise)."""

    text: str
    parts: tuple[str, ...]

    @property
    def multi_part(self) -> bool:
        return 1 < len(self.parts) <= MAX_PARTS


@dataclass(frozen=True)
class FinalAnswer:
    """What a response answers: ``text`` (one box's content, or raw text for math-verify's own
    extraction when ``source == "text"``), and ``parts`` (the last boxes, as many as a multi-part
    gold has, when the response gives them in separate boxes)."""

    text: str | None
    source: str  # "boxed", "text" (math-verify's extraction from raw text) or "none"
    parts: tuple[str, ...] = ()


def parse_gold(gold: Any) -> GoldAnswer:
    r"""The gold answer's text and parts; ``ValueError`` for values that are no answer at all."""
    if isinstance(gold, bool) or gold is None:
        raise ValueError(f"not a usable gold answer: {gold!r}")
    if isinstance(gold, (list, tuple)):
        if len(gold) != 1:
            raise ValueError(f"a gold answer list must have one element, got {len(gold)}")
        gold = gold[0]
    text = str(gold).strip()
    if "\\boxed" in text or "\\fbox" in text:
        spans = [(a, b) for a, b in boxed_spans(text) if text[a:b].strip()]
        boxes = [text[a:b].strip() for a, b in spans]
        gaps = [text[end + 1:start] for (_, end), (start, _) in zip(spans, spans[1:])]
        if len(boxes) > 1 and all(_joins(gap, text.lstrip()[:1] == "$", gold=True) for gap in gaps):
            return GoldAnswer(", ".join(boxes), tuple(boxes))
        if boxes:
            text = boxes[-1]  # boxes not joined as one answer: the last one, as math-verify reads it
    if len(text) >= 2 and text[0] == "$" and text[-1] == "$" and "$" not in text.strip("$"):
        text = text.strip("$").strip()
    return GoldAnswer(text, list_elements(text))


def list_elements(text: str) -> tuple[str, ...]:
    r"""The elements of an unordered list (``1, -2`` or ``\{1, -2\}``), else ``(text,)``.

    Commas inside brackets, braces or ``\left..\right`` pairs do not split; tuples and intervals
    (``(1, 2)``, ``[1, 2)``) are one ordered answer, not a list. Thousands separators do not split.
    """
    inner = text.strip()
    if inner.startswith("\\{") and inner.endswith("\\}"):
        inner = inner[2:-2]
    elif inner.startswith("{") and inner.endswith("}") and _balanced(inner[1:-1]):
        inner = inner[1:-1]  # "{1,2,3}": LaTeX grouping around a list
    elif _THOUSANDS.match(inner) or "," not in inner:
        return (text,)
    parts: list[str] = []
    depth, start, i = 0, 0, 0
    while i < len(inner):
        ch = inner[i]
        if inner.startswith("\\{", i) or inner.startswith("\\}", i):
            depth += 1 if inner[i + 1] == "{" else -1
            i += 2
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
        i += 1
    parts.append(inner[start:])
    parts = [p.strip() for p in parts]
    if len(parts) < 2 or any(not p for p in parts) or depth != 0:
        return (text,)
    if any(_THOUSANDS.match(f"{a},{b}") and not b[:1].isspace() for a, b in _pairs(inner)):
        return (text,)  # "1,000, 2": a thousands separator inside a list is math-verify's call
    return tuple(parts)


def _joins(gap: str, in_maths: bool = False, gold: bool = False) -> bool:
    """Do two boxes form one answer? They do when joined by ``and``, ``or`` or a comma
    (``\boxed{1} papers and \boxed{2} bins``, ``\boxed{3} or \boxed{5}``), or, in a gold written as
    maths (``in_maths``), when no delimiter separates them (``$\boxed{a} + \boxed{b}$``, which
    math-verify reads as a set); ``\boxed{1} no no \boxed{2}`` is the last box, as math-verify reads it."""
    gap = _BOX_OPEN.sub("", gap)
    words = _SPACING.sub(" ", _DELIMITERS.sub(" ", flatten_text(gap)))
    if (_GOLD_CONNECTIVE if gold else _CONNECTIVE).match(words):
        return True
    return in_maths and not _DELIMITERS.search(gap)


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += (ch == "{") - (ch == "}")
        if depth < 0:
            return False
    return depth == 0


def _pairs(inner: str) -> list[tuple[str, str]]:
    """Adjacent digit groups around every comma (for the thousands-separator check)."""
    out = []
    for match in re.finditer(r"(\d+),(\s*\d+)", inner):
        out.append((match.group(1), match.group(2)))
    return out


def final_answer(response: str, gold: GoldAnswer, protocol: str = TRAINING,
                 require_boxed: bool = False) -> FinalAnswer:
    r"""The response's final answer under ``protocol`` (see ``MathVerifier``); with ``require_boxed``
    only a box is an answer."""
    if not isinstance(response, str) or not response.strip():
        return FinalAnswer(None, "none")
    if protocol == OPEN_RS:
        text = remove_reasoning_pairs(response)
    else:
        opened = response.rfind("<think>")
        if opened >= 0 and "</think>" not in response[opened:] and not boxed_spans(response[opened:]):
            return FinalAnswer(None, "none")  # cut off inside its reasoning: nothing was answered
        text = strip_reasoning(response)  # only what follows the reasoning is the answer
    spans = boxed_spans(text)
    boxes = [text[a:b].strip() for a, b in spans]
    if require_boxed and not boxes:
        return FinalAnswer(None, "none")
    if spans and protocol == TRAINING and not require_boxed:
        after = text[spans[-1][1] + 1:]
        anchor = _FINAL_ANCHOR.search(after)
        if anchor is not None and any(ch.isdigit() or ch == "\\" for ch in after[anchor.end():]):
            # "\boxed{255} ... so the final answer is $10,455$": the later statement is the answer
            return FinalAnswer(after[anchor.start():][:_TAIL_CHARS], "text")
    if boxes:
        group = 1  # the last box and the boxes joined to it ("\boxed{3} or \boxed{5}") answer together
        while group < len(spans) and _joins(text[spans[-group - 1][1] + 1:spans[-group][0]]):
            group += 1
        parts: tuple[str, ...] = ()
        if gold.multi_part and len(boxes) >= len(gold.parts):
            parts = tuple(boxes[-len(gold.parts):])
        whole = boxes[-1] if group == 1 else joined(boxes[-group:])
        return FinalAnswer(whole, "boxed", parts)
    tail = text[-_EVAL_CHARS:] if protocol == OPEN_RS else text.strip()[-_TAIL_CHARS:]
    return FinalAnswer(tail, "text") if tail.strip() else FinalAnswer(None, "none")


def remove_reasoning_pairs(text: str, start_tag: str = "<think>", end_tag: str = "</think>") -> str:
    """Drop every ``<think>...</think>`` pair, as lighteval does before scoring (an unpaired tag stays)."""
    while True:
        start = text.find(start_tag)
        if start < 0:
            return text
        end = text.find(end_tag, start)
        if end < 0:
            return text
        text = text[:start] + text[end + len(end_tag):]


# ---------------------------------------------------------------------------- normal forms
_SPACING = re.compile(r"\\[!,;:> ]|\\(?:q?quad|displaystyle|left|right)(?![A-Za-z])|\\mathrm\{\s*\}|\\\$|~|\$")
_LIST_COMMA = re.compile(r",(?:\\!)?(?:\s|\\[,;: ]|~)+")  # "1,\!000" is a thousands separator
_DIGIT_GAP = re.compile(r"(?<=\d)(?:\s|\\[,;: ]|~)+(?=\d)")
_FRAC_CMD = re.compile(r"\\[dt]frac")
_COMPACT_FRAC = re.compile(r"\\frac(\d)(\d)")
_DEGREES = re.compile(r"\^\s*\{?\\circ\}?|°")
_TEXT_CMD = re.compile(r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?:(a|p)\.?m\.?)?$", re.IGNORECASE)


def flatten_text(text: str) -> str:
    r"""Unwrap ``\text{...}``-style commands (innermost first): ``4:30 \text{ p.m.}`` -> ``4:30  p.m.``."""
    for _ in range(4):
        unwrapped = _TEXT_CMD.sub(lambda m: m.group(1), text)
        if unwrapped == text:
            break
        text = unwrapped
    return text


def normalize_answer(text: str) -> str:
    r"""A light, meaning-preserving normal form for string comparison.

    Spacing commands, ``\dfrac``, degrees, dollar signs and ``\text{}`` wrappers go; a comma followed
    by a space becomes ``;`` (a list separator), so ``10, 100`` never reads as ``10,100`` (ten
    thousand one hundred), and a space between two digits stays (as ``·``): ``2 3`` is not ``23``.
    """
    text = _LIST_COMMA.sub(";", text)
    text = _DIGIT_GAP.sub("\u00b7", text)  # "2 3" is not 23 (math-verify reads a product): keep the gap
    text = flatten_text(text)
    text = _SPACING.sub("", text)
    text = _FRAC_CMD.sub(r"\\frac", text)
    text = _COMPACT_FRAC.sub(r"\\frac{\1}{\2}", text)
    text = _DEGREES.sub("", text)
    return re.sub(r"\s+", "", text).rstrip(".")


def clock_time(text: str) -> tuple[int, int, str] | None:
    r"""``(hour, minute, "a"|"p"|"")`` for a time of day (``4:30 p.m.``, ``\text{4:30 pm}``), else ``None``."""
    match = _CLOCK.match(normalize_answer(text))
    if match is None:
        return None
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 24 or minute > 59:
        return None
    return hour, minute, (match.group(3) or "").lower()


def same_clock_time(a: tuple[int, int, str], b: tuple[int, int, str]) -> bool:
    """Are two times of day the same? ``4:30 p.m.`` equals ``16:30`` and (no a.m./p.m. given) ``4:30``."""
    def minutes(t: tuple[int, int, str]) -> int:
        hour, minute, half = t
        if half:
            hour = hour % 12 + (12 if half == "p" else 0)
        return hour * 60 + minute

    if a[2] and b[2]:
        return minutes(a) == minutes(b)
    if a[1] != b[1]:
        return False
    return minutes(a) == minutes(b) or a[0] % 12 == b[0] % 12


def joined(parts: Sequence[str]) -> str:
    """Several answers as one list, the way math-verify reads a list."""
    return ", ".join(parts)
