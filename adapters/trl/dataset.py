"""Prompt rows for TRL: the env's chat prompt (``prompt``) and the ``EpisodeSpec`` label (``label``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.episodes import iter_episode_specs
from adapters.trl.environment import LABEL_KEY


def trl_rows(env_id: str, make_kwargs: Mapping[str, Any] | None = None, *, count: int | None = None, seed: int = 0,
             start: int = 0, progress: bool = False) -> list[dict[str, Any]]:
    """One row per episode; ``datasets.Dataset.from_list(rows)`` is a ``GRPOTrainer`` train_dataset.

    TRL renders ``prompt`` with the chat template (and the env class's tools) and passes the whole
    row to the environment's ``reset``, which replays the label. ``progress``: a progress bar.
    """
    specs = iter_episode_specs(env_id, make_kwargs, count=count, seed=seed, start=start, progress=progress)
    rows = [{"prompt": messages, LABEL_KEY: spec.to_label()} for spec, messages in specs]
    if not rows:
        raise ValueError(f"{env_id}: no prompts to write (count={count}, start={start})")
    return rows
