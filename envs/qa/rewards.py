"""The multi-hop QA reward rules, shared by the QA envs and team QA (one scorer, one reward table).

* Outcome (Agent-R1): ``outcome = score if format == 1 else format - 1``, where ``score`` is EM,
  F1 or cover-EM (``outcome_metric``) and ``format`` is the mean of two checks: the answer is well
  presented (one non-empty ``<answer>`` block after any reasoning, no tool call in it; with
  ``require_think`` also a ``<think>`` block) and every tool call in the episode was well formed.
  An episode without an answer fails the first check: its outcome is ``0.5 * tools_ok - 1``.
* Process components (bounded by ``envs.core.rewards``): ``tool_call_valid`` (the episode's first
  search that ran and was new), ``retrieval_hit`` (the share of the gold supporting titles a search
  retrieved for the first time; all of them pay the weight once), ``repeated_query`` (the same
  query up to case, punctuation and spacing), and the core's ``invalid_action``, ``tool_error``
  and ``repeated_call``.
* Metrics: ``acc`` is cover-EM (the normalised gold occurs in the normalised answer; the ``acc``
  Agent-R1 and Search-R1 log), ``em`` and ``f1`` the official HotpotQA metrics.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from envs.core.parsing import count_think_blocks, extract_tag, strip_reasoning
from envs.core.rewards import ProcessRule
from envs.qa.scoring import answer_scores

OUTCOME_METRICS = ("em", "f1", "acc")

# The QA reward table (process weights follow Agent-R1's code: -0.1 unparsable call, -0.05 failed call).
QA_REWARD_WEIGHTS: dict[str, float] = {
    "outcome": 1.0,
    "format": 0.0,  # reported as a component; weight 0 because the outcome already gates on it
    "retrieval_hit": 0.1,
    "repeated_query": -0.05,
}
QA_PROCESS_RULES: dict[str, ProcessRule] = {
    "retrieval_hit": ProcessRule(per_episode=1.0),
    "repeated_query": ProcessRule(),
}


def norm_title(title: str) -> str:
    return " ".join(title.casefold().split())


def norm_query(query: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", query.casefold()).split())


def presented_answer(response: str | None, *, require_think: bool = False) -> tuple[bool, str | None]:
    """``(well presented, answer text)`` for a final response (``None``: the episode has none)."""
    if response is None:
        return False, None
    body = strip_reasoning(response)
    answer = extract_tag(body, "answer")
    ok = (answer is not None and bool(answer) and body.count("<answer>") == 1 and body.count("</answer>") == 1
          and "<tool_call>" not in body)
    if require_think and count_think_blocks(response) < 1:
        ok = False
    return ok, answer


@dataclass(frozen=True)
class QAScore:
    """One scored final response: the outcome component's value, ``format`` and the answer metrics."""

    outcome: float
    format: float
    scores: dict[str, float]  # em, f1, acc (cover-EM)
    answered: bool

    def metrics(self) -> dict[str, float]:
        return {**self.scores, "format": self.format, "answered": float(self.answered)}


def score_answer(response: str | None, golds: Iterable[str], *, tools_ok: bool, outcome_metric: str = "em",
                 require_think: bool = False) -> QAScore:
    """Agent-R1's gated outcome for ``response`` (``None`` for an episode that ended without one)."""
    if outcome_metric not in OUTCOME_METRICS:
        raise ValueError(f"outcome_metric must be one of {OUTCOME_METRICS}, got {outcome_metric!r}")
    answer_ok, answer = presented_answer(response, require_think=require_think)
    fmt = 0.5 * float(answer_ok) + 0.5 * float(tools_ok)
    scores = answer_scores(answer, list(golds))
    outcome = scores[outcome_metric] if fmt == 1.0 else fmt - 1.0
    return QAScore(outcome, fmt, scores, answer is not None)


def new_gold_share(found_titles: Iterable[str], gold_titles: Iterable[str], retrieved: set[str]) -> float:
    """The share of ``gold_titles`` among ``found_titles`` not already in ``retrieved`` (which it updates)."""
    gold = {norm_title(t) for t in gold_titles}
    found = {norm_title(t) for t in found_titles}
    new_hits = (found & gold) - retrieved
    retrieved |= found
    return len(new_hits) / len(gold) if gold else 0.0
