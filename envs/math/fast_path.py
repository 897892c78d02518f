r"""The verifier's fast path: verdicts settled in the caller, without SymPy, the way math-verify would.

Plain exact numbers, bracketed lists of numbers, times of day and equal normal forms; anything else
is left to math-verify (``None``). See :func:`fast_compare` for the rules and the deliberate
differences from math-verify.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from envs.math.answers import clock_time, normalize_answer, same_clock_time

EXACT, NUMERIC = "exact", "numeric"

_INT = r"-?(?:\d{1,3}(?:(?:,|\{,\})\d{3})+|\d+)"
_NUMBER = re.compile(rf"^{_INT}$|^-?\d*\.\d+$|^-?\d+\.$")
_SLASH = re.compile(rf"^({_INT})/(\d+)$")
_LATEX_FRAC = re.compile(r"^(-?)\\frac\{(-?\d+)\}\{(\d+)\}$")
_POWER = re.compile(r"^(-?)(\d{1,4})\^\{?(\d{1,2})\}?$")
_WORD = re.compile(r"^[A-Za-z]+$")
_STRUCT = re.compile(r"^(\\\{|\(|\[)(.*)(\\\}|\)|\])$")
_ASSIGNMENT = re.compile(r"^[A-Za-z](?:_\{?\w+\}?)?=")
_THOUSANDS_LIKE = re.compile(r"\d,\d{3}(?!\d)")
_INFINITY = {"\\infty": math.inf, "+\\infty": math.inf, "-\\infty": -math.inf}


@dataclass(frozen=True)
class _Fast:
    """What the fast path knows about one answer string."""

    norm: str
    number: tuple[Fraction, bool] | None  # (value, written with a decimal point)
    percent: bool
    structure: tuple[str, str, tuple] | None  # (open, close, elements) of a bracketed list of numbers
    clock: tuple[int, int, str] | None  # a time of day


@functools.lru_cache(maxsize=65_536)
def _analyse(text: str) -> _Fast:
    norm = normalize_answer(text)
    percent = norm.endswith("\\%") or norm.endswith("%")
    bare = norm[:-2] if norm.endswith("\\%") else norm[:-1] if norm.endswith("%") else norm
    return _Fast(norm, exact_number(bare), percent, _structure(norm), clock_time(text))


def _structure(norm: str) -> tuple[str, str, tuple] | None:
    if len(norm) > 200:
        return None
    match = _STRUCT.match(norm)
    if match:
        opening, inner, closing = match.groups()
    elif ";" in norm or "," in norm:
        opening, inner, closing = "\\{", norm, "\\}"  # a bare list: math-verify compares it as a set
    else:
        return None
    if any(c in inner for c in "()[]{}") or _THOUSANDS_LIKE.search(inner):
        return None  # nested, or "1,000" that may be a thousands separator: math-verify decides
    parts = re.split(r"[,;]", inner)
    if len(parts) < 2:
        return None
    values = []
    for part in parts:
        if part in _INFINITY:
            values.append((_INFINITY[part], False))
            continue
        number = exact_number(part)
        if number is None:
            return None
        values.append(number)
    return opening, closing, tuple(values)


def exact_number(text: str) -> tuple[Fraction, bool] | None:
    r"""``(value, is_decimal)`` for a plain number (``-1,234``, ``0.5``, ``3/4``, ``\frac{3}{4}``, ``10^3``), else ``None``."""
    if not text or len(text) > 64:
        return None
    try:
        if _NUMBER.match(text):
            return Fraction(text.replace("{,}", "").replace(",", "")), "." in text
        match = _SLASH.match(text)
        if match:
            num = int(match.group(1).replace("{,}", "").replace(",", ""))
            den = int(match.group(2))
            return (Fraction(num, den), False) if den else None
        match = _LATEX_FRAC.match(text)
        if match:
            den = int(match.group(3))
            if not den:
                return None
            value = Fraction(int(match.group(2)), den)
            return (-value if match.group(1) else value), False
        match = _POWER.match(text)
        if match:
            value = Fraction(int(match.group(2)) ** int(match.group(3)))  # -2^2 is -(2^2)
            return (-value if match.group(1) else value), False
    except (ValueError, ZeroDivisionError):
        return None
    return None


def fast_compare(gold: str, answer: str, float_rounding: int = 6) -> tuple[bool, str] | None:
    """``(correct, method)`` when a cheap check settles it the way math-verify would, else ``None``.

    * equal normal forms are equal (``EXACT``); so are two words that differ only in case
      (math-verify lower-cases ``\\text{}``);
    * a time of day (``4:30 p.m.``, ``\\text{4:30 p.m.}``) equals the same time and nothing else,
      whenever either side says a.m. or p.m. (``EXACT``; math-verify would read a ratio);
    * ``x = 5`` against a gold without ``=`` is read as ``5`` (math-verify compares the right side);
    * two exact numbers (no decimal point) are equal iff their values are (``NUMERIC``); a decimal
      that equals the gold's value is equal, a decimal that differs is left to math-verify, which
      rounds to ``float_rounding`` places (``1/3`` vs ``0.333333``), unless the gap is ten times
      the rounding step; ``50\\%`` equals ``50`` as in math-verify. A comma followed by a space is
      a list separator, so ``10, 100`` is no number at all (math-verify reads a list);
    * bracketed lists of numbers with the same brackets (tuples, intervals, ``\\{sets\\}``) are
      compared element by element (sets as sets); different brackets are left to math-verify.

    Anything else (expressions, units, matrices, mixed forms) returns ``None``. Deliberate
    differences from math-verify, each accepting only the same value: a time of day is not a ratio;
    a percentage gold also equals its value as a number (``25\\%`` and ``0.25``; math-verify drops
    the ``%`` and compares 25); a trailing period (``\\boxed{5.}``) is punctuation.
    """
    g, a = _analyse(gold), _analyse(answer)
    if g.norm and g.norm == a.norm:
        return True, EXACT
    if g.clock is not None and a.clock is not None and (g.clock[2] or a.clock[2]):
        return same_clock_time(g.clock, a.clock), EXACT
    if _WORD.match(g.norm) and _WORD.match(a.norm) and g.norm.lower() == a.norm.lower():
        return True, EXACT
    if a.number is None and "=" not in g.norm and not any(c in a.norm for c in ",;") and _ASSIGNMENT.match(a.norm):
        a = _analyse(a.norm.rsplit("=", 1)[1])
        if g.norm and g.norm == a.norm:
            return True, EXACT
    if g.number is not None and a.number is not None:
        (gv, g_dec), (av, a_dec) = g.number, a.number
        if gv == av:
            return True, NUMERIC
        if g.percent and not a.percent and av * 100 == gv:
            return True, NUMERIC  # 25% written as 0.25 or 1/4: the same value (math-verify drops the %)
        if g.percent != a.percent:
            return None
        if g_dec or a_dec:  # math-verify rounds to float_rounding places: only a clear gap is decisive
            return (False, NUMERIC) if abs(gv - av) > Fraction(1, 10 ** (float_rounding - 1)) else None
        return False, NUMERIC
    if g.structure is not None and a.structure is not None:
        return _compare_structures(g.structure, a.structure)
    return None


def fast_match_parts(gold_parts: Sequence[str], answer_parts: Sequence[str],
                     float_rounding: int = 6) -> tuple[bool, str] | None:
    """Multi-part answers as sets: ``(True, method)`` if the fast path pairs every part with an
    equal one, ``(False, method)`` if it settles every pair and finds no such pairing, else ``None``."""
    if len(gold_parts) != len(answer_parts):
        return False, NUMERIC
    table = [[fast_compare(g, a, float_rounding) for a in answer_parts] for g in gold_parts]
    known = [[None if v is None else v[0] for v in row] for row in table]
    if _perfect_matching([[v is True for v in row] for row in known]):
        return True, NUMERIC
    if any(v is None for row in known for v in row):
        return None
    return False, NUMERIC


def _perfect_matching(equal: list[list[bool]]) -> bool:
    """Can every row be paired with a distinct column it equals? (Small sizes: augmenting paths.)"""
    match_of_col: dict[int, int] = {}

    def place(row: int, seen: set[int]) -> bool:
        for col, ok in enumerate(equal[row]):
            if ok and col not in seen:
                seen.add(col)
                if col not in match_of_col or place(match_of_col[col], seen):
                    match_of_col[col] = row
                    return True
        return False

    return all(place(row, set()) for row in range(len(equal)))


def _compare_structures(gold: tuple[str, str, tuple], answer: tuple[str, str, tuple]) -> tuple[bool, str] | None:
    (g_open, g_close, g_vals), (a_open, a_close, a_vals) = gold, answer
    if (g_open, g_close) != (a_open, a_close):
        intervals = all(o in "([" and c in ")]" and len(v) == 2 and v[0][0] < v[1][0]
                        for o, c, v in (gold, answer))
        if intervals and [x for x, _ in g_vals] == [x for x, _ in a_vals]:
            return False, NUMERIC  # the same endpoints, one open where the other is closed
        return None
    decimals = any(d for _, d in g_vals) or any(d for _, d in a_vals)
    if g_open == "\\{":
        same = {v for v, _ in g_vals} == {v for v, _ in a_vals}
    else:
        same = len(g_vals) == len(a_vals) and all(gv == av for (gv, _), (av, _) in zip(g_vals, a_vals))
    if same:
        return True, NUMERIC
    return None if decimals else (False, NUMERIC)
