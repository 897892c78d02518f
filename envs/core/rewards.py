"""Rewards as sums of named components, with the bounds that keep process rewards from being farmed.

Each step's reward is ``sum(weight[name] * value)`` over the components the step produced; the
weighted values go to ``info["reward_components"]`` so trainers can log (and re-weight) each part.

Components come in two kinds:

* **outcome** components score the end of an episode (the final answer, or ``unfinished``);
* **process** components score events along the way (a valid tool call, a retrieval hit, a
  malformed call). An env names them in ``process_rules``, and the ledger enforces, whatever the
  model does:

  1. each process kind counts at most ``ProcessRule.per_turn`` units (default 1) in one turn, so
     many calls in one turn earn no more than one;
  2. a kind may also be limited per episode (``ProcessRule.per_episode``; ``tool_call_valid`` pays
     once per episode: it teaches the call syntax, and paying it per call is what made tool spam
     beat solving);
  3. the episode's positive process rewards add up to at most ``cap``, and its penalties to at
     least ``floor``. ``TextEnv`` sets ``cap`` below the outcome margin (the least a correct answer
     earns over a wrong one with valid format), so no amount of process reward can turn a wrong
     answer into a better episode than a right one, and ``floor`` to minus the margin, so
     penalties keep counting after the first few yet never outweigh the outcome.

An episode that ends without a final answer (out of turns, cut by a token budget, timed out)
forfeits its positive process rewards (``process_forfeit``) and pays ``unfinished``; see
``TextEnv.end_unfinished``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Share of the outcome margin that the episode's process rewards may reach (see ``TextEnv``).
PROCESS_CAP_SHARE = 0.2
# The ``unfinished`` penalty is ``-(process cap + UNFINISHED_MARGIN_SHARE * outcome margin)``.
UNFINISHED_MARGIN_SHARE = 0.1
# Components every env has; their weights are set by ``TextEnv`` from the outcome margin.
UNFINISHED, PROCESS_FORFEIT = "unfinished", "process_forfeit"
_EPS = 1e-9


def resolve_weights(defaults: Mapping[str, float], overrides: Mapping[str, float] | None) -> dict[str, float]:
    """Merge user weights into an env's defaults; an unknown component name is an error."""
    weights = dict(defaults)
    for name, value in (overrides or {}).items():
        if name not in weights:
            raise ValueError(f"unknown reward component {name!r}; this env has: {', '.join(sorted(weights))}")
        weights[name] = float(value)
    return weights


@dataclass(frozen=True)
class ProcessRule:
    """How much of one process component a turn and an episode may count (in units of its weight)."""

    per_turn: float = 1.0
    per_episode: float | None = None


@dataclass
class ProcessBudget:
    """One episode's process-reward accounting, shared by the ledgers of its steps."""

    rules: Mapping[str, ProcessRule]
    cap: float
    floor: float = 0.0
    bonus_total: float = 0.0  # weighted positive process reward paid so far (<= cap)
    penalty_total: float = 0.0  # weighted negative process reward charged so far (>= floor)
    units: dict[str, float] = field(default_factory=dict)  # units counted per kind this episode
    clipped: float = 0.0  # weighted process reward the bounds withheld (for logs)

    def admit(self, name: str, weight: float, value: float, turn_units: float) -> tuple[float, float]:
        """The weighted reward this event may pay and the units it uses, after every bound."""
        rule = self.rules[name]
        units = max(0.0, min(float(value), rule.per_turn - turn_units))
        if rule.per_episode is not None:
            units = max(0.0, min(units, rule.per_episode - self.units.get(name, 0.0)))
        weighted = weight * units
        if weighted > 0:
            room = self.cap - self.bonus_total
            if weighted > room + _EPS:  # the tolerance keeps float noise from shaving exact weights
                weighted = max(room, 0.0)
            self.bonus_total += weighted
        elif weighted < 0:
            room = self.floor - self.penalty_total
            if weighted < room - _EPS:
                weighted = min(room, 0.0)
            self.penalty_total += weighted
        self.clipped += weight * float(value) - weighted
        self.units[name] = self.units.get(name, 0.0) + units
        return weighted, units


class RewardLedger:
    """The weighted reward components of one step (one turn), bounded by the episode's ``budget``."""

    def __init__(self, weights: Mapping[str, float], budget: ProcessBudget | None = None):
        self._weights = weights
        self._budget = budget
        self._values: dict[str, float] = {}
        self._turn_units: dict[str, float] = {}

    def add(self, name: str, value: float = 1.0) -> None:
        """Add ``weight[name] * value`` to component ``name`` (process components within their bounds)."""
        if name not in self._weights:
            raise KeyError(f"reward component {name!r} has no weight; declare it in default_reward_weights")
        weight = self._weights[name]
        if self._budget is not None and name in self._budget.rules:
            weighted, units = self._budget.admit(name, weight, value, self._turn_units.get(name, 0.0))
            self._turn_units[name] = self._turn_units.get(name, 0.0) + units
            if weighted == 0.0 and name not in self._values:
                return  # fully withheld: no component to report
        else:
            weighted = weight * float(value)
        self._values[name] = self._values.get(name, 0.0) + weighted

    @property
    def total(self) -> float:
        return float(sum(self._values.values()))

    def as_dict(self) -> dict[str, float]:
        return dict(self._values)
