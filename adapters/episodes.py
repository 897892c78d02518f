"""What trainer adapters share: one episode's spec as a dataset label, prompt rows, and an env pool.

A trainer's dataset row must let a remote worker rebuild exactly the episode the row describes. An
``EpisodeSpec`` (env id, make-kwargs, the item with its ground truth, a reset seed) travels as a JSON
string, because trainers move labels through Arrow tables and Ray, where nested dicts with
per-row-varying fields do not survive. Workers turn it back into an episode with
``env.reset(seed=spec.seed, options={"item": spec.item})``.

Environments are costly to build (datasets, retrievers) and trainers create one agent per sample, so
``EnvPool`` keeps idle envs per (id, kwargs) and hands them out; ``reset`` makes a reused env clean.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

logger = logging.getLogger(__name__)

LABEL_VERSION = 1

# Metrics every ``TextEnv`` reports when an episode ends (``TextEnv._episode_metrics``).
BASE_METRICS = ("acc", "format", "turns", "assistant_turns", "tool_calls", "failed_tool_calls", "invalid_actions",
                "truncated", "episode_reward")


@dataclass(frozen=True)
class EpisodeSpec:
    """Everything a worker needs to replay one episode: which env, built how, on which item."""

    env_id: str
    item: dict[str, Any]
    make_kwargs: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None

    def to_label(self) -> str:
        """The spec as a JSON string (the dataset's label column)."""
        payload = {"v": LABEL_VERSION, "env_id": self.env_id, "make_kwargs": self.make_kwargs, "item": self.item,
                   "seed": self.seed}
        try:
            return json.dumps(payload, ensure_ascii=False, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{self.env_id}: the item or make-kwargs are not JSON-serialisable ({exc}); "
                             "a dataset label must survive a JSON round trip") from exc

    @classmethod
    def from_label(cls, label: str | Mapping[str, Any]) -> EpisodeSpec:
        """Parse a label written by ``to_label`` (or its already-decoded dict)."""
        if isinstance(label, str | bytes):
            try:
                payload = json.loads(label)
            except json.JSONDecodeError as exc:
                raise ValueError(f"label is not JSON ({exc.msg}); it must come from EpisodeSpec.to_label: {label[:200]!r}") from exc
        else:
            payload = dict(label)
        if not isinstance(payload, dict):
            raise ValueError(f"label must be a JSON object, got {type(payload).__name__}")
        version = payload.get("v", LABEL_VERSION)
        if version != LABEL_VERSION:
            raise ValueError(f"label version {version} is not supported (this code reads version {LABEL_VERSION})")
        missing = [k for k in ("env_id", "item") if k not in payload]
        if missing:
            raise ValueError(f"label lacks {', '.join(missing)}: {str(payload)[:200]}")
        if not isinstance(payload["item"], dict):
            raise ValueError("label field 'item' must be an object")
        seed = payload.get("seed")
        return cls(env_id=str(payload["env_id"]), item=payload["item"], make_kwargs=dict(payload.get("make_kwargs") or {}),
                   seed=None if seed is None else int(seed))


def make_env(env_id: str, make_kwargs: Mapping[str, Any] | None = None) -> gym.Env:
    """Build a suite env by id or alias (``import envs`` registers them, plugins included)."""
    import envs

    return envs.make(env_id, disable_env_checker=True, **dict(make_kwargs or {}))


def iter_episode_specs(env_id: str, make_kwargs: Mapping[str, Any] | None = None, *, count: int | None = None,
                       seed: int = 0, start: int = 0) -> Iterator[tuple[EpisodeSpec, list[dict[str, str]]]]:
    """Yield ``(spec, messages)`` for ``count`` episodes of an env, item ``start`` onwards.

    Item-list envs (``env.items``) are walked in order (``count=None``: all of them); procedural envs
    are asked for item ``index=i``, which they generate deterministically, so ``count`` is required.
    ``messages`` is the chat-form prompt (``info["messages"]``) the trainer feeds the model.
    """
    import envs

    env_id = envs.resolve_env_id(env_id)
    make_kwargs = dict(make_kwargs or {})
    env = make_env(env_id, make_kwargs)
    try:
        items = getattr(env.unwrapped, "items", None)
        if items is not None:
            stop = len(items) if count is None else min(len(items), start + count)
        elif count is None:
            raise ValueError(f"{env_id} generates its items: say how many prompts to write (count)")
        else:
            stop = start + count
        for index in range(start, stop):
            episode_seed = seed + index
            _, info = env.reset(seed=episode_seed, options={"index": index})
            yield EpisodeSpec(env_id, dict(info["item"]), make_kwargs, episode_seed), list(info["messages"])
    finally:
        env.close()


def episode_log_keys(env_id: str, make_kwargs: Mapping[str, Any] | None = None) -> tuple[list[str], list[str]]:
    """``(metric names, reward component names)`` an env reports, found by playing its demonstration.

    Trainers that stack per-sample logs into tensors (OpenRLHF) need the same keys on every sample, so
    adapters fix the key set up front: the base metrics, whatever the env adds on a finished
    episode, and every component that has a weight.
    """
    env = make_env(env_id, make_kwargs)
    try:
        env.reset(seed=0, options={"index": 0} if getattr(env.unwrapped, "items", None) is not None else None)
        metrics: dict[str, float] = {}
        for action in env.unwrapped.demonstration():
            _, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                metrics = info.get("metrics", {})
                break
        names = list(BASE_METRICS) + sorted(k for k in metrics if k not in BASE_METRICS)
        components = sorted(getattr(env.unwrapped, "reward_weights", {}))
        return names, components
    finally:
        env.close()


class EnvPool:
    """Idle environments per (env id, make-kwargs), shared by the agents of one worker process.

    ``acquire`` hands out an idle env or builds one; ``release`` returns it. Thread-safe: adapters
    build and step envs on worker threads.
    """

    def __init__(self, max_idle_per_key: int = 256):
        self.max_idle_per_key = max_idle_per_key
        self._idle: dict[str, list[gym.Env]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(env_id: str, make_kwargs: Mapping[str, Any]) -> str:
        return env_id + "\x00" + json.dumps(dict(make_kwargs), sort_keys=True, default=str)

    def acquire(self, env_id: str, make_kwargs: Mapping[str, Any]) -> gym.Env:
        key = self.key(env_id, make_kwargs)
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                return idle.pop()
        return make_env(env_id, make_kwargs)

    def release(self, env_id: str, make_kwargs: Mapping[str, Any], env: gym.Env) -> None:
        key = self.key(env_id, make_kwargs)
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self.max_idle_per_key:
                idle.append(env)
                return
        env.close()

    def close(self) -> None:
        with self._lock:
            envs_ = [e for idle in self._idle.values() for e in idle]
            self._idle.clear()
        for env in envs_:
            try:
                env.close()
            except Exception:  # closing is best effort
                logger.warning("closing a pooled env failed", exc_info=True)
