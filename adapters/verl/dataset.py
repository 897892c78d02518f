"""verl dataset rows (parquet): ``prompt`` (chat messages), ``agent_name`` and the ``EpisodeSpec`` label.

verl's ``RLHFDataset`` hands every column to the agent loop (``prompt`` as ``raw_prompt``); the
label rides in ``extra_info["agentr1"]`` as a JSON string (nested per-row fields do not survive
Arrow tables), next to the ``index`` verl reads there.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from adapters.episodes import iter_episode_specs
from envs.core.io import atomic_write_bytes

AGENT_NAME = "agentr1"  # the name registered in agent_loop.yaml / by AgentR1AgentLoop
LABEL_FIELD = "agentr1"


def verl_rows(env_id: str, make_kwargs: Mapping[str, Any] | None = None, *, count: int | None = None, seed: int = 0,
              start: int = 0, data_source: str | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """One row per episode of ``env_id`` (see the module docstring); ``progress``: a progress bar."""
    rows = []
    specs = iter_episode_specs(env_id, make_kwargs, count=count, seed=seed, start=start, progress=progress)
    for index, (spec, messages) in enumerate(specs):
        rows.append({"data_source": data_source or spec.env_id, "prompt": messages, "agent_name": AGENT_NAME,
                     "ability": "agent", "extra_info": {"index": start + index, LABEL_FIELD: spec.to_label()}})
    if not rows:
        raise ValueError(f"{env_id}: no prompts to write (count={count}, start={start})")
    return rows


def write_parquet(path: str | os.PathLike[str], rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``rows`` as a parquet file (atomically)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([dict(r) for r in rows]), buffer)
    return atomic_write_bytes(path, buffer.getvalue())
