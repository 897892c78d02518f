"""What trainer adapters share: one episode's spec as a dataset label, prompt rows, and an env pool.

A trainer's dataset row must let a remote worker rebuild exactly the episode the row describes. An
``EpisodeSpec`` (env id, make-kwargs, the item with its ground truth, a reset seed) travels as a JSON
string, because trainers move labels through Arrow tables and Ray, where nested dicts with
per-row-varying fields do not survive. Workers turn it back into an episode with
``env.reset(seed=spec.seed, options={"item": spec.item})``.

Environments are costly to build (datasets, retrievers) and trainers create one agent per sample, so
``EnvPool`` keeps idle envs per (id, kwargs) and hands them out; ``reset`` makes a reused env clean.

The trainer CLIs (``python -m adapters.openrlhf | trl | verl``) share one way to pick an env's data
and recipe: ``add_episode_arguments`` (their common flags), ``resolve_make_kwargs`` (``--offline``
and ``--env-kwargs``), ``paper_recipe`` (which paper's recipe an env id trains with),
``training_make_kwargs`` / ``evaluation_make_kwargs`` (the recipe's data split) and ``prompt_count``.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym

logger = logging.getLogger(__name__)

LABEL_VERSION = 1

# Metrics every ``TextEnv`` reports when an episode ends (``TextEnv._episode_metrics``).
BASE_METRICS = ("acc", "format", "turns", "assistant_turns", "tool_calls", "failed_tool_calls", "invalid_actions",
                "truncated", "episode_reward")

Recipe = Literal["open-rs", "agent-r1-qa", "torl"]

# Env ids (lower-case fnmatch patterns) each paper's recipe is the default for: Open-RS trains small
# math models (on Math-v0's open-rs data; its paper reports AIME24, MATH-500, AMC23, Minerva and
# OlympiadBench; GSM8K is grade-school math), Agent-R1 multi-hop QA with search.
RECIPE_ENV_PATTERNS: dict[Recipe, tuple[str, ...]] = {
    "open-rs": ("agentr1/math-v*", "agentr1/math500-v*", "agentr1/aime24-v*", "agentr1/amc23-v*", "agentr1/minerva-v*",
                "agentr1/olympiadbench-v*", "agentr1/gsm8k-v*"),
    "agent-r1-qa": ("agentr1/hotpotqa-v*", "agentr1/2wikimultihopqa-v*", "agentr1/musique-v*"),
}
# ToRL's tool-integrated reasoning setting for the math envs (Li, Zou, Liu 2025, "ToRL: Scaling
# Tool-Integrated RL"; github.com/GAIR-NLP/ToRL, verl/workers/rollout/vllm_rollout/vllm_rollout_spmd.py):
# the model writes ```python blocks, each run alone (SandboxFusion, a 10 s request timeout) and answered
# with an ```output block holding at most 256 characters (the first and last 128) and, on an error,
# only its last line; at most C code calls per response (C = 3 in its trainer config; its 1.5B script
# sets 1); reward +1 / -1 on the boxed answer (envs.math.rewards preset "torl").
TORL_MAKE_KWARGS: dict[str, Any] = {
    "tools": ["python"],
    "reward_preset": "torl",
    "max_turns": 4,  # 3 code turns, then the answer
    "python": {"fenced": True, "persistent": False, "wall_s": 10.0, "max_output_chars": 256, "errors": "last_line",
               "preload": ["numpy", "sympy"]},  # [suite] imported once per sandbox: fresh calls that import them are fast
}
# The make-kwargs of a recipe's training and evaluation data, where the env takes them.
RECIPE_TRAIN_KWARGS: dict[str, dict[str, Any]] = {
    "agent-r1-qa": {"split": "train"},  # [Agent-R1] trains on the train split (the QA envs default to validation)
    "torl": TORL_MAKE_KWARGS,  # [ToRL] the python tool, its limits and rewards (chosen with --preset torl)
}
RECIPE_EVAL_KWARGS: dict[str, dict[str, Any]] = {
    "agent-r1-qa": {"split": "validation"},  # [Agent-R1] reports EM on the dev (validation) sets
}
DEFAULT_PROCEDURAL_PROMPTS = 4096  # training prompts written for an env that generates its items
# Each preset's default policy (``--model``): the model its paper trained, so the design's commands run
# as written (``python -m adapters.openrlhf --env math-v0``). Plain HF ids; ``--model`` picks another.
PRESET_MODELS: dict[str, str] = {
    "open-rs": "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",  # [Open-RS] the model of every Open-RS run
    "agent-r1-qa": "Qwen/Qwen2.5-1.5B-Instruct",  # [Agent-R1] the blog's HotpotQA run (the paper's tables: 3B)
    "small": "Qwen/Qwen2.5-0.5B-Instruct",  # [suite] procedural envs and smoke tests on a small GPU
    "torl": "Qwen/Qwen2.5-Math-1.5B",  # [ToRL] scripts/torl_1.5b.sh (its 7B runs: Qwen2.5-Math-7B)
}


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


EnvUrl = str | Sequence[str] | None


def make_env(env_id: str, make_kwargs: Mapping[str, Any] | None = None, *, env_url: EnvUrl = None) -> gym.Env:
    """Build a suite env by id or alias (``import envs`` registers them, plugins included).

    ``env_url``: env servers to play it on (``envs.make``'s rule: else ``$AGENTR1_ENV_URL``, else here).
    """
    import envs

    # No passive env checker: pooled envs are reused, and Gymnasium 1.4's checker crashes the first step
    # of an instance whose first reset raised (a bad item), as the env server found for its instances.
    return envs.make(env_id, env_url=env_url, disable_env_checker=True, **dict(make_kwargs or {}))


def _item_list(env: gym.Env) -> Any:
    """The env's item list (loading lazy data), or ``None`` for an env that generates its items."""
    return getattr(env.unwrapped, "items", None)


def is_procedural(env_id: str, make_kwargs: Mapping[str, Any] | None = None) -> bool:
    """Whether the env generates its items (no item list), so a prompt count must be chosen for it."""
    env = make_env(env_id, make_kwargs)
    try:
        return _item_list(env) is None
    finally:
        env.close()


def prompt_count(env_id: str, make_kwargs: Mapping[str, Any] | None, requested: int | None, *,
                 procedural_default: int = DEFAULT_PROCEDURAL_PROMPTS) -> int | None:
    """Prompts to write: ``requested``, else every item (``None``), else ``procedural_default`` for a generated env."""
    if requested is not None:
        return requested
    return procedural_default if is_procedural(env_id, make_kwargs) else None


def resolve_make_kwargs(env_id: str, env_kwargs: Mapping[str, Any] | None = None, *, offline: bool = False) -> dict[str, Any]:
    """An env's make-kwargs: its registered offline kwargs (``offline``: shipped data), then ``env_kwargs``.

    ``SystemExit`` when ``offline`` is asked of an env that ships no data (a CLI's usage error).
    """
    import envs

    env_id = envs.resolve_env_id(env_id)
    if env_kwargs is not None and not isinstance(env_kwargs, Mapping):
        raise SystemExit(f"--env-kwargs must be a JSON object, got {type(env_kwargs).__name__}")
    kwargs: dict[str, Any] = {}
    if offline:
        entry = next((e for e in envs.suite_envs() if e.env_id == env_id), None)
        if entry is None or entry.offline_kwargs is None:
            raise SystemExit(f"{env_id} has no offline mode (no shipped data); drop --offline and pass --env-kwargs")
        kwargs.update(entry.offline_kwargs)
    kwargs.update(env_kwargs or {})
    return kwargs


def paper_recipe(env_id: str) -> Recipe | None:
    """The paper recipe an env id or alias trains with by default (``RECIPE_ENV_PATTERNS``); ``None``: no paper's."""
    import envs

    try:
        env_id = envs.resolve_env_id(env_id)
    except gym.error.Error:  # an id not registered here may still name a paper's env
        pass
    key = env_id.lower()
    for recipe, patterns in RECIPE_ENV_PATTERNS.items():
        if any(fnmatch.fnmatch(key, pattern) for pattern in patterns):
            return recipe
    return None


def _accepted(env_id: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``kwargs`` the env's constructor takes (a recipe's split means nothing to an env without
    splits, nor to one whose declared ``splits`` lack it: arithmetic has train/test, no validation)."""
    from gymnasium.envs.registration import load_env_creator

    from envs.core.registry import accepted_kwargs

    spec = gym.registry.get(env_id)
    creator = load_env_creator(spec.entry_point) if spec is not None and isinstance(spec.entry_point, str) else None
    if not isinstance(creator, type):
        return dict(kwargs)
    names = set(accepted_kwargs(creator))
    splits = getattr(creator, "splits", None)
    return {k: v for k, v in kwargs.items() if k in names and not (k == "split" and splits and v not in splits)}


def training_make_kwargs(env_id: str, recipe: str | None, env_kwargs: Mapping[str, Any] | None = None, *,
                         offline: bool = False) -> dict[str, Any]:
    """Make-kwargs of a run's training rows: the recipe's training split, then ``resolve_make_kwargs``.

    So a QA run trains on ``train`` unless ``--env-kwargs`` names a split (the QA envs' own default
    is ``validation``, the split the papers report on).
    """
    import envs

    env_id = envs.resolve_env_id(env_id)
    return {**_accepted(env_id, RECIPE_TRAIN_KWARGS.get(recipe or "", {})),
            **resolve_make_kwargs(env_id, env_kwargs, offline=offline)}


def evaluation_make_kwargs(env_id: str, recipe: str | None, train_kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    """Make-kwargs of the recipe's evaluation data (QA: the validation split); ``None`` if it names none for this env."""
    import envs

    eval_kwargs = _accepted(envs.resolve_env_id(env_id), RECIPE_EVAL_KWARGS.get(recipe or "", {}))
    return {**train_kwargs, **eval_kwargs} if eval_kwargs else None


def add_episode_arguments(parser: argparse.ArgumentParser, trainer_name: str, *, presets: Iterable[str],
                          seed_help: str = "base reset seed of the episodes") -> argparse.ArgumentParser:
    """The flags every trainer CLI shares: which env, model and recipe, where to write, which data."""
    parser.add_argument("--env", required=True, help="env id or alias (python -m envs list)")
    defaults = "; ".join(f"{name}: {PRESET_MODELS[name]}" for name in sorted(presets) if name in PRESET_MODELS)
    parser.add_argument("--model", help=f"HF model id or local path of the policy, or a named model ('smollm2-135m': "
                                        f"SmolLM2-135M-Instruct from its PyPI wheel; 'tiny') (default: the preset's "
                                        f"paper model; {defaults})")
    parser.add_argument("--preset", choices=sorted(presets), help="training recipe (default: chosen from the env)")
    parser.add_argument("--output-dir", type=Path, help=f"where the run's data, config and logs go (default runs/{trainer_name}/<env>)")
    parser.add_argument("--env-kwargs", type=json.loads, default={},
                        help="JSON make-kwargs for the env (they win over the preset's split), e.g. '{\"split\": \"train\"}'")
    parser.add_argument("--offline", action="store_true", help="start from the env's registered offline kwargs (shipped data)")
    parser.add_argument("--env-url", default=None, metavar="URL[,URL...]",
                        help="env servers (python -m envs serve ENV ...) the rollout workers play on, comma-separated; "
                             "default $AGENTR1_ENV_URL, else envs run inside the workers")
    parser.add_argument("--num-prompts", type=int,
                        help=f"prompts to write (default: every item; {DEFAULT_PROCEDURAL_PROMPTS} for generated envs)")
    parser.add_argument("--seed", type=int, default=42, help=seed_help)
    return parser


def policy_model(model: str | None, preset: str) -> str:
    """``--model``, else the preset's model (``PRESET_MODELS``); logged, so a run's log names its policy."""
    if model:
        from baselines.models import resolve_model

        resolved = resolve_model(model)
        logger.info("model %s (--model)%s", model, f" at {resolved}" if resolved != model else "")
        return resolved
    if preset not in PRESET_MODELS:
        raise SystemExit(f"the {preset} preset names no model: pass --model")
    logger.info("model %s (the %s preset's default; --model picks another)", PRESET_MODELS[preset], preset)
    return PRESET_MODELS[preset]


def iter_episode_specs(env_id: str, make_kwargs: Mapping[str, Any] | None = None, *, count: int | None = None,
                       seed: int = 0, start: int = 0,
                       progress: bool = False) -> Iterator[tuple[EpisodeSpec, list[dict[str, str]]]]:
    """Yield ``(spec, messages)`` for ``count`` episodes of an env, item ``start`` onwards.

    Item-list envs (``env.items``) are walked in order (``count=None``: all of them); procedural envs
    are asked for item ``index=i``, which they generate deterministically, so ``count`` is required.
    ``messages`` is the chat-form prompt (``info["messages"]``) the trainer feeds the model.
    ``progress``: show a progress bar (on a terminal), for a command writing a dataset.
    """
    import envs
    from envs.core.cli import progress as progress_bar

    env_id = envs.resolve_env_id(env_id)
    make_kwargs = dict(make_kwargs or {})
    env = make_env(env_id, make_kwargs)
    try:
        items = _item_list(env)
        if items is not None:
            stop = len(items) if count is None else min(len(items), start + count)
        elif count is None:
            raise ValueError(f"{env_id} generates its items: say how many prompts to write (count)")
        else:
            stop = start + count
        for index in progress_bar(range(start, stop), enabled=progress, desc=f"{env_id} prompts", unit="prompt"):
            episode_seed = seed + index
            _, info = env.reset(seed=episode_seed, options={"index": index})
            yield EpisodeSpec(env_id, dict(info["item"]), make_kwargs, episode_seed), list(info["messages"])
    finally:
        env.close()


def episode_log_keys(env_id: str, make_kwargs: Mapping[str, Any] | None = None, *,
                     env_url: EnvUrl = None) -> tuple[list[str], list[str]]:
    """``(metric names, reward component names)`` an env reports, found by playing its demonstration.

    Trainers that stack per-sample logs into tensors (OpenRLHF) need the same keys on every sample, so
    adapters fix the key set up front: the base metrics, whatever the env adds on a finished
    episode, and every component that has a weight.
    """
    env = make_env(env_id, make_kwargs, env_url=env_url)
    try:
        env.reset(seed=0, options={"index": 0} if _item_list(env) is not None else None)
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
    build and step envs on worker threads. ``env_url``: the env servers an env is made on (``make_env``);
    envs made on other servers, or locally, are pooled apart.
    """

    def __init__(self, max_idle_per_key: int = 256):
        self.max_idle_per_key = max_idle_per_key
        self._idle: dict[str, list[gym.Env]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(env_id: str, make_kwargs: Mapping[str, Any], env_url: EnvUrl = None) -> str:
        from envs.core.registry import env_server_urls

        return "\x00".join([env_id, json.dumps(dict(make_kwargs), sort_keys=True, default=str), *env_server_urls(env_url)])

    def acquire(self, env_id: str, make_kwargs: Mapping[str, Any], *, env_url: EnvUrl = None) -> gym.Env:
        key = self.key(env_id, make_kwargs, env_url)
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                return idle.pop()
        return make_env(env_id, make_kwargs, env_url=env_url)

    def release(self, env_id: str, make_kwargs: Mapping[str, Any], env: gym.Env, *, env_url: EnvUrl = None) -> None:
        key = self.key(env_id, make_kwargs, env_url)
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
