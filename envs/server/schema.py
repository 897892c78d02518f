"""Pydantic models of the wire types: they validate step data and publish ``/schema``.

They have the fields of OpenEnv 0.10.0's ``Action`` / ``Observation`` / ``State`` base models
(``metadata``; ``done``, ``reward``, ``metadata``; ``episode_id``, ``step_count``) plus a text
env's own, so OpenEnv's typed clients and its schema checks read them as their own.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TextAction(BaseModel):
    """One assistant turn: the model's text."""

    model_config = ConfigDict(extra="forbid")

    message: str = Field(description="the model's whole turn (reasoning, tool calls, final answer)")
    metadata: dict[str, Any] = Field(default_factory=dict, description="ignored by the env")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str


class TextObservation(BaseModel):
    """What the env returns on reset and on every step."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="the prompt (reset) or the tool results (step); empty after the final answer")
    messages: list[ChatMessage] = Field(default_factory=list,
                                        description="chat messages this turn added (reset: system and user prompt)")
    reward_components: dict[str, float] = Field(default_factory=dict,
                                                description="the step's named reward components; reward is their sum")
    metrics: dict[str, float] | None = Field(default=None, description="episode metrics, on the final step only")
    terminated: bool = Field(default=False, description="Gymnasium: the episode reached a terminal state")
    truncated: bool = Field(default=False, description="Gymnasium: the episode was cut (turn limit)")
    done: bool = Field(default=False, description="terminated or truncated (OpenEnv's one flag)")
    reward: bool | int | float | None = Field(default=None, description="the step's total reward (None on reset)")
    metadata: dict[str, Any] = Field(default_factory=dict, description="the env's Gymnasium info dict")


class EpisodeState(BaseModel):
    """A session's episode: OpenEnv's ``State`` fields plus the env id and the Gymnasium flags."""

    model_config = ConfigDict(extra="allow")

    episode_id: str | None = None
    step_count: int = Field(default=0, ge=0)
    env_id: str = ""
    terminated: bool = False
    truncated: bool = False
    episode_reward: float = 0.0
    session_id: str | None = Field(default=None, description="w<worker>-<uuid>: the worker process holding it")


def schemas() -> dict[str, Any]:
    """The ``/schema`` body: action, observation, state JSON schemas."""
    return {"action": TextAction.model_json_schema(), "observation": TextObservation.model_json_schema(),
            "state": EpisodeState.model_json_schema()}
