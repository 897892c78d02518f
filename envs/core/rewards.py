"""Rewards as sums of named components.

Each step's reward is ``sum(weight[name] * value)`` over the components the step produced; the
weighted values go to ``info["reward_components"]`` so trainers can log (and re-weight) each part.
"""

from __future__ import annotations

from collections.abc import Mapping


def resolve_weights(defaults: Mapping[str, float], overrides: Mapping[str, float] | None) -> dict[str, float]:
    """Merge user weights into an env's defaults; an unknown component name is an error."""
    weights = dict(defaults)
    for name, value in (overrides or {}).items():
        if name not in weights:
            raise ValueError(f"unknown reward component {name!r}; this env has: {', '.join(sorted(weights))}")
        weights[name] = float(value)
    return weights


class RewardLedger:
    """The weighted reward components of one step."""

    def __init__(self, weights: Mapping[str, float]):
        self._weights = weights
        self._values: dict[str, float] = {}

    def add(self, name: str, value: float = 1.0) -> None:
        """Add ``weight[name] * value`` to component ``name`` (components add up within a step)."""
        if name not in self._weights:
            raise KeyError(f"reward component {name!r} has no weight; declare it in default_reward_weights")
        weighted = self._weights[name] * float(value)
        self._values[name] = self._values.get(name, 0.0) + weighted

    @property
    def total(self) -> float:
        return float(sum(self._values.values()))

    def as_dict(self) -> dict[str, float]:
        return dict(self._values)
