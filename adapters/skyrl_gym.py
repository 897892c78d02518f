"""skyrl-gym adapter: every suite env as a ``BaseTextEnv``, registered as ``agentr1.<alias>``.

SkyRL's trainer builds one env per trajectory inside its Ray workers with
``skyrl_gym.make(env_class, env_config=<config section>, extras=<dataset row>)``. Importing this module
registers every suite env (idempotently: ``skyrl_gym.register`` raises on a duplicate id, so a
re-import in a worker, or a second call, is a no-op), so put ``import adapters.skyrl_gym`` in the
entry point that SkyRL runs in its workers.

A dataset row carries the episode in ``extra_info["agentr1"]`` (an ``EpisodeSpec`` label; write rows
with ``skyrl_rows``); ``env_config`` entries are extra make-kwargs (a retriever URL, say) and win over
the label's. Observations are the env's new chat messages, rewards are per turn (SkyRL keeps them per
turn), and ``metadata`` carries the step's reward components and, at the end, the episode metrics.

Prompts: SkyRL's generator renders ``init``'s messages itself with
``tokenizer.apply_chat_template(messages, add_generation_prompt=True)``, without the env's tool
schemas. Give its tokenizer ``skyrl_chat_template(tokenizer, env_id)`` (the model's template with the
schemas baked in, via ``envs.core.chat.template_with_tools``) and its prompts are token for token
the ones the reference trainer, ``baselines.evaluate`` and the OpenRLHF agent use.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import skyrl_gym
from skyrl_gym.envs.base_text_env import BaseTextEnv, BaseTextEnvStepOutput

from adapters.episodes import EnvPool, EpisodeSpec, iter_episode_specs, make_env
from envs.core.chat import template_with_tools

PREFIX = "agentr1."
ENTRY_POINT = "adapters.skyrl_gym:AgentR1TextEnv"
_POOL = EnvPool()
_LOCK = threading.Lock()


def _plain(config: Any) -> dict[str, Any]:
    """``env_config`` as a plain dict (SkyRL hands over an OmegaConf ``DictConfig``)."""
    if config is None:
        return {}
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(config):
            return dict(OmegaConf.to_container(config, resolve=True))
    except ImportError:
        pass
    return dict(config)


def _label_of(extras: Mapping[str, Any]) -> Any:
    extra_info = extras.get("extra_info") or {}
    if isinstance(extra_info, Mapping) and extra_info.get("agentr1") is not None:
        return extra_info["agentr1"]
    return extras.get("agentr1")


class AgentR1TextEnv(BaseTextEnv):
    """One trajectory of a suite env (``env_id``), built from a SkyRL dataset row."""

    def __init__(self, env_config: Any = None, extras: Mapping[str, Any] | None = None, *, env_id: str):
        super().__init__()
        extras = dict(extras or {})
        label = _label_of(extras)
        if label is None:
            raise ValueError(f"{PREFIX}: the dataset row has no extra_info['agentr1'] episode label; "
                             "write rows with adapters.skyrl_gym.skyrl_rows")
        spec = EpisodeSpec.from_label(label)
        import envs

        if envs.resolve_env_id(spec.env_id) != envs.resolve_env_id(env_id):
            raise ValueError(f"row is for {spec.env_id} but the env class is for {env_id}")
        self.episode = spec  # not ``self.spec``: skyrl_gym.make overwrites that with its EnvSpec
        self.make_kwargs = {**spec.make_kwargs, **_plain(env_config)}
        self.env = _POOL.acquire(spec.env_id, self.make_kwargs)
        self.max_turns = int(getattr(self.env.unwrapped, "max_turns", 1))
        self._metrics: dict[str, float] = {}
        self._components: dict[str, float] = {}
        self._closed = False

    def init(self, prompt: list[dict[str, str]]) -> tuple[list[dict[str, str]], dict[str, Any]]:
        """Reset on the row's item; the env's own chat prompt replaces the row's copy."""
        _, info = self.env.reset(seed=self.episode.seed, options={"item": self.episode.item})
        self.turns = 0
        return list(info["messages"]), {"env_id": self.episode.env_id, "tools": info.get("tools", []),
                                        "max_turns": self.max_turns}

    def step(self, action: str) -> BaseTextEnvStepOutput:
        self.turns += 1
        _, reward, terminated, truncated, info = self.env.step(action)
        components = info.get("reward_components", {})
        for name, value in components.items():
            self._components[name] = self._components.get(name, 0.0) + float(value)
        done = bool(terminated or truncated)
        metadata: dict[str, Any] = {"reward_components": dict(components), "turn": info.get("turn", self.turns),
                                    "terminated": bool(terminated), "truncated": bool(truncated)}
        if "tool_calls" in info:
            metadata["tool_calls"] = info["tool_calls"]
        if done:
            self._metrics = {k: float(v) for k, v in info.get("metrics", {}).items()}
            metadata["metrics"] = dict(self._metrics)
        return BaseTextEnvStepOutput(observations=[] if done else list(info.get("new_messages", [])),
                                     reward=float(reward), done=done, metadata=metadata)

    def get_metrics(self) -> dict[str, Any]:
        """The episode's metrics (acc, format, turns, ...) and per-component reward sums."""
        return {**self._metrics, **{f"reward/{k}": v for k, v in self._components.items()}}

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _POOL.release(self.episode.env_id, self.make_kwargs, self.env)


def env_tool_schemas(env_id: str, make_kwargs: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The tool schemas an env announces in ``reset``'s ``info["tools"]``."""
    env = make_env(env_id, make_kwargs)
    try:
        options = {"index": 0} if getattr(env.unwrapped, "items", None) is not None else None
        _, info = env.reset(seed=0, options=options)
        return list(info.get("tools", []))
    finally:
        env.close()


def skyrl_chat_template(tokenizer: Any, env_id: str, make_kwargs: Mapping[str, Any] | None = None) -> str:
    """``tokenizer``'s chat template with ``env_id``'s tool schemas baked in, for SkyRL's generator.

    Set ``tokenizer.chat_template`` to it (or save the tokenizer with it and point SkyRL's model
    path at that copy): SkyRL then renders the prompt exactly as ``envs.core.chat.episode_prompt``.
    """
    return template_with_tools(tokenizer.chat_template, env_tool_schemas(env_id, make_kwargs))


def skyrl_id(env_id: str) -> str:
    """``AgentR1/Math-v0`` -> ``agentr1.math-v0`` (the env's first alias, else its lower-cased name)."""
    import envs

    env_id = envs.resolve_env_id(env_id)
    entry = next((e for e in envs.suite_envs() if e.env_id == env_id), None)
    name = entry.aliases[0] if entry is not None and entry.aliases else env_id.split("/")[-1].lower()
    return PREFIX + name


def register_skyrl_envs() -> list[str]:
    """Register every suite env (plugins included) with skyrl-gym; safe to call any number of times."""
    import envs

    ids = []
    with _LOCK:
        for entry in envs.suite_envs():
            sid = skyrl_id(entry.env_id)
            existing = skyrl_gym.registry.get(sid)
            if existing is None:
                skyrl_gym.register(id=sid, entry_point=ENTRY_POINT, kwargs={"env_id": entry.env_id})
            elif existing.entry_point != ENTRY_POINT or existing.kwargs.get("env_id") != entry.env_id:
                raise ValueError(f"skyrl-gym id {sid} is already taken by {existing.entry_point}")
            ids.append(sid)
    return ids


def skyrl_rows(env_id: str, make_kwargs: Mapping[str, Any] | None = None, *, count: int | None = None, seed: int = 0,
               start: int = 0) -> list[dict[str, Any]]:
    """SkyRL dataset rows (``prompt``, ``env_class``, ``reward_spec``, ``extra_info``) for ``count`` episodes."""
    sid = skyrl_id(env_id)
    rows = []
    for spec, messages in iter_episode_specs(env_id, make_kwargs, count=count, seed=seed, start=start):
        answer = spec.item.get("answer")
        rows.append({"data_source": sid[len(PREFIX):], "prompt": messages, "env_class": sid,
                     "reward_spec": {"method": "rule", "ground_truth": answer if isinstance(answer, str) else None},
                     "extra_info": {"agentr1": spec.to_label()}})
    return rows


register_skyrl_envs()
