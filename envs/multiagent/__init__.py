"""Multi-agent text environments with the PettingZoo API (they are PettingZoo envs, not Gymnasium ids).

``team_qa_env(...)`` / ``team_qa_parallel_env(...)`` build the team multi-hop QA game (a researcher
who searches and an answerer who cannot) in its turn-based (AEC) and simultaneous (parallel) forms;
see ``envs.multiagent.team_qa``. Importing this package stays light: PettingZoo loads on first use.
"""

from __future__ import annotations

from typing import Any


def team_qa_env(**kwargs: Any) -> Any:
    """The turn-based (AEC) team QA env; kwargs go to ``envs.multiagent.team_qa.TeamQAEnv``."""
    from envs.multiagent.team_qa import TeamQAEnv

    return TeamQAEnv(**kwargs)


def team_qa_parallel_env(**kwargs: Any) -> Any:
    """The simultaneous-move (parallel) team QA env; kwargs go to ``TeamQAParallelEnv``."""
    from envs.multiagent.team_qa import TeamQAParallelEnv

    return TeamQAParallelEnv(**kwargs)


__all__ = ["team_qa_env", "team_qa_parallel_env"]
