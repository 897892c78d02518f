"""Answer metrics exactly as the official HotpotQA evaluation (``hotpot_evaluate_v1.py``) defines them.

* ``normalize_answer``: lower-case, drop ASCII punctuation (``string.punctuation``; other Unicode
  punctuation stays), replace the whole words ``a``/``an``/``the`` by a space, collapse whitespace.
  The steps run in that order, so ``"U.S."`` becomes ``"us"`` and ``"the-end"`` becomes ``"theend"``.
* ``exact_match``: the normalised strings are equal.
* ``f1``: token F1 over whitespace tokens of the normalised strings; when either side normalises to
  ``yes``, ``no`` or ``noanswer`` and the two differ, F1 is 0; no common token gives 0.
* ``cover_exact_match``: the normalised gold is a substring of the normalised prediction (the
  ``acc`` that Agent-R1 and Search-R1 log). An answer that normalises to nothing never covers.

Each ``*_multi`` function takes the maximum over a list of gold aliases.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_SPECIAL = ("yes", "no", "noanswer")


def normalize_answer(text: str) -> str:
    """The official normalisation (see the module docstring)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    """1.0 if the normalised strings are equal."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_precision_recall(prediction: str, gold: str) -> tuple[float, float, float]:
    """Official token F1, precision and recall (with the yes/no/noanswer rule)."""
    pred, ref = normalize_answer(prediction), normalize_answer(gold)
    if (pred in _SPECIAL or ref in _SPECIAL) and pred != ref:
        return 0.0, 0.0, 0.0
    pred_tokens, ref_tokens = pred.split(), ref.split()
    common = Counter(pred_tokens) & Counter(ref_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0, 0.0, 0.0
    precision = same / len(pred_tokens)
    recall = same / len(ref_tokens)
    return 2 * precision * recall / (precision + recall), precision, recall


def f1(prediction: str, gold: str) -> float:
    """Official token F1."""
    return f1_precision_recall(prediction, gold)[0]


def cover_exact_match(prediction: str, gold: str) -> float:
    """1.0 if the normalised gold occurs in the normalised prediction (Agent-R1's ``acc``)."""
    ref = normalize_answer(gold)
    if not ref:
        return 0.0
    return float(ref in normalize_answer(prediction))


def _best(fn, prediction: str, golds: Iterable[str]) -> float:  # noqa: ANN001 - a metric function
    return max((fn(prediction, g) for g in golds), default=0.0)


def exact_match_multi(prediction: str, golds: Iterable[str]) -> float:
    """Best EM over gold aliases."""
    return _best(exact_match, prediction, golds)


def f1_multi(prediction: str, golds: Iterable[str]) -> float:
    """Best F1 over gold aliases."""
    return _best(f1, prediction, golds)


def cover_exact_match_multi(prediction: str, golds: Iterable[str]) -> float:
    """Best cover-EM over gold aliases."""
    return _best(cover_exact_match, prediction, golds)


def answer_scores(prediction: str | None, golds: Iterable[str]) -> dict[str, float]:
    """``em``, ``f1`` and ``acc`` (cover-EM) of ``prediction`` against every alias; zeros for no answer."""
    golds = [g for g in golds if isinstance(g, str)]
    if prediction is None:
        return {"em": 0.0, "f1": 0.0, "acc": 0.0}
    return {"em": exact_match_multi(prediction, golds), "f1": f1_multi(prediction, golds),
            "acc": cover_exact_match_multi(prediction, golds)}
