"""OpenRLHF 0.11.2 multi-turn agent API over the suite's environments.

OpenRLHF loads the file named by ``--train.agent_func_path`` inside every vLLM Ray actor and calls
``AgentExecutor().execute(prompt, label, sampling_params, max_length, hf_tokenizer, llm_engine)`` once
per sample. Its ``MultiTurnAgentExecutor`` keeps one token stream per episode: prompt, then for each
turn the model's action tokens (trained on) and the ``environment_feedback`` text we return
(tokenised with ``hf_tokenizer``, masked out of the loss).

What this module adds on top:

* ``AgentR1Instance`` (one per sample) rebuilds the episode from the dataset label
  (``EpisodeSpec``), resets our env with the label's item and steps it once per turn. Env work runs
  on a thread pool, never on vLLM's event loop.
* The feedback is the env's new messages in the *model's own chat format*
  (``envs.core.chat.continuation_text`` with the tokenizer OpenRLHF passes to ``execute``), preceded by
  whatever part of the assistant's end-of-turn marker the stream still lacks: vLLM keeps a stop
  token such as ``<|im_end|>`` in the action tokens (so only the template's trailing ``\\n`` is
  missing), while a turn cut by a stop string or the length limit lacks the whole marker. The
  executor records each engine output so the instance knows which case it is in.
* Rewards: OpenRLHF **sums the per-step rewards into one trajectory reward** placed on the last
  token (GRPO then normalises it within the prompt's group). Each step returns the env's step
  reward; the sum equals the env's episode reward. ``scores`` is the episode's ``acc`` (used by
  ``--algo.dynamic_filtering_enable``); ``extra_logs`` carries the episode metrics (``env/acc``, ...)
  and the per-component reward sums (``env/reward/<component>``), with the same keys on every
  sample because OpenRLHF stacks them into tensors.
* The prompt is the env's, rendered by ``envs.core.chat.episode_prompt`` with the env's tool
  schemas, exactly as the reference trainer and ``baselines.evaluate`` render it.
* The episode budget is ``--data.max_len`` tokens (prompt + all turns + observations). When
  ``MultiTurnAgentExecutor`` stops an episode for lack of budget (it never tells the agent), the
  executor ends it through ``envs.end_unfinished(env, "budget")``: the env scores it as unfinished
  (its penalty is added to the trajectory reward, its metrics logged, ``env/finished`` = 0), so
  running out the budget never pays more than answering. ``MultiTurnAgentExecutor`` alone would
  let every turn use the whole remaining budget; the engine wrapper caps each turn at
  ``--rollout.max_new_tokens`` when it is set (OpenRLHF also uses that value to cut the prompt to
  ``--data.max_len - --rollout.max_new_tokens`` tokens).
* Infrastructure faults (a tool server down, a verifier crash: the env's ``env_error`` metric, or an
  env call that raised or timed out here) are flagged as ``env/env_error`` = 1. OpenRLHF cannot drop
  one sample of a group, so with ``AgentConfig.drop_env_errors`` such an episode returns reward 0
  and a NaN score (``env/dropped`` = 1): with ``--algo.dynamic_filtering_enable`` and a range that
  holds every real score (``python -m adapters.openrlhf --drop-env-errors`` sets both) OpenRLHF
  discards the whole group and samples a fresh prompt instead. Without the option the episode
  keeps the env's reward, which never charges the fault itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextvars
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from openrlhf.utils.agent import AgentInstanceBase, MultiTurnAgentExecutor

from adapters.episodes import EnvPool, EpisodeSpec
from envs import end_unfinished
from envs.core.chat import continuation_text, episode_prompt

logger = logging.getLogger(__name__)

LOG_PREFIX = "env/"
_MARKER = "\u2063agentr1-turn-end\u2063"
_POOL = EnvPool()
_EXECUTOR: cf.ThreadPoolExecutor | None = None


def _env_executor() -> cf.ThreadPoolExecutor:
    """The worker threads that build, reset and step envs (``AGENTR1_ENV_THREADS``, default 32)."""
    global _EXECUTOR
    if _EXECUTOR is None:
        _EXECUTOR = cf.ThreadPoolExecutor(max_workers=int(os.environ.get("AGENTR1_ENV_THREADS", "32")),
                                          thread_name_prefix="agentr1-env")
    return _EXECUTOR


@dataclass(frozen=True)
class AgentConfig:
    """Settings a generated agent file fixes for a run.

    ``metric_keys`` and ``reward_components`` name every ``extra_logs`` entry (missing values log as
    0), so all samples carry the same keys. ``step_timeout`` bounds one env call in seconds.
    ``drop_env_errors``: an episode hit by an infrastructure fault returns reward 0 and a NaN score,
    which OpenRLHF's dynamic filtering drops with its group (see the module docstring).
    ``env_url``: the env servers (``python -m envs serve``) episodes are played on, a deployment
    setting (so here, not in the episode label); ``None`` follows ``$AGENTR1_ENV_URL``, else local envs.
    """

    metric_keys: Sequence[str] = ("acc", "format", "turns", "episode_reward")
    reward_components: Sequence[str] = ()
    step_timeout: float = 600.0
    drop_env_errors: bool = False
    env_url: str | tuple[str, ...] | None = None

    def log_keys(self) -> list[str]:
        keys = ([LOG_PREFIX + k for k in self.metric_keys] + [LOG_PREFIX + "reward/" + c for c in self.reward_components]
                + [LOG_PREFIX + "finished", LOG_PREFIX + "env_error", LOG_PREFIX + "dropped"])
        return list(dict.fromkeys(keys))


@dataclass
class _Rollout:
    """Per-sample state shared by the executor and its agent instance (via a context variable)."""

    config: AgentConfig
    tokenizer: Any
    turn_cap: int | None = None  # ``--rollout.max_new_tokens``: the most tokens one turn may generate
    last_output: Any = None
    instance: AgentR1Instance | None = None


_ROLLOUT: contextvars.ContextVar[_Rollout] = contextvars.ContextVar("agentr1_rollout")


class _RecordingEngine:
    """Wraps OpenRLHF's engine handle so the agent sees each turn's token ids and finish reason."""

    def __init__(self, engine: Any, rollout: _Rollout):
        self._engine = engine
        self._rollout = rollout

    async def generate(self, *args: Any, **kwargs: Any) -> Any:
        cap = self._rollout.turn_cap
        params = kwargs.get("sampling_params", args[1] if len(args) > 1 else None)
        if cap and params is not None and (getattr(params, "max_tokens", None) or cap + 1) > cap:
            # OpenRLHF hands each call its own copy of the params, so capping it in place is safe
            params.max_tokens = cap
        output = await self._engine.generate(*args, **kwargs)
        self._rollout.last_output = output
        return output

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


@dataclass(frozen=True)
class _TurnEnd:
    """How the chat template closes an assistant turn, e.g. ``"<|im_end|>\\n"``."""

    tail: str
    special_ids: frozenset[int] = field(default_factory=frozenset)


_TURN_ENDS: dict[tuple, _TurnEnd] = {}


def _tokenizer_key(tokenizer: Any) -> tuple:
    """A key that survives pickling: OpenRLHF ships a fresh tokenizer copy with every Ray call."""
    return (type(tokenizer).__name__, getattr(tokenizer, "name_or_path", ""), getattr(tokenizer, "chat_template", None),
            tuple(getattr(tokenizer, "all_special_tokens", None) or ()), len(tokenizer) if hasattr(tokenizer, "__len__") else 0)


def turn_end(tokenizer: Any) -> _TurnEnd:
    """The template's end-of-assistant-turn text, and the tokenizer's special token ids (cached)."""
    key = _tokenizer_key(tokenizer)
    cached = _TURN_ENDS.get(key)
    if cached is not None:
        return cached
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "x"}, {"role": "assistant", "content": _MARKER}],
                                             tokenize=False)
    idx = rendered.rfind(_MARKER)
    if idx < 0:
        raise ValueError("the chat template drops the assistant's content; cannot find where a turn ends")
    special = frozenset(int(i) for i in (getattr(tokenizer, "all_special_ids", None) or []))
    end = _TurnEnd(rendered[idx + len(_MARKER):], special)
    if len(_TURN_ENDS) < 64:
        _TURN_ENDS[key] = end
    return end


def missing_turn_end(tokenizer: Any, output: Any) -> str:
    """The part of the end-of-turn marker that the token stream lacks after the last action.

    When generation stopped on a special token whose text opens the template's marker, the stream
    already holds that token; otherwise (stop string, length limit, unknown) it lacks the marker.
    """
    end = turn_end(tokenizer)
    completion = output.outputs[0] if output is not None and getattr(output, "outputs", None) else None
    token_ids = list(getattr(completion, "token_ids", None) or []) if completion is not None else []
    if token_ids and getattr(completion, "finish_reason", None) == "stop" and int(token_ids[-1]) in end.special_ids:
        stop_text = tokenizer.decode([int(token_ids[-1])], skip_special_tokens=False)
        if stop_text and end.tail.startswith(stop_text):
            return end.tail[len(stop_text):]
    return end.tail


def _strip_special_suffix(text: str, tokenizer: Any) -> str:
    """Drop special-token text (an EOS) a backend left at the end of the action."""
    specials = [t for t in (getattr(tokenizer, "all_special_tokens", None) or []) if t]
    changed = True
    while changed:
        changed = False
        stripped = text.rstrip()
        for token in specials:
            if stripped.endswith(token):
                text, changed = stripped[: -len(token)], True
    return text


class AgentR1Instance(AgentInstanceBase):
    """One episode of a suite env, driven by OpenRLHF's multi-turn loop."""

    def __init__(self, *args: Any, **kwargs: Any):
        rollout = _ROLLOUT.get(None)
        if rollout is None:
            raise RuntimeError("AgentR1Instance must be created by AgentR1Executor.execute (it carries the tokenizer)")
        self._rollout = rollout
        rollout.instance = self
        self._spec: EpisodeSpec | None = None
        self._env: Any = None
        self._components: dict[str, float] = {}
        self._finished = False
        self._done = False  # the env ended the episode (final step or end_unfinished)
        self._env_error = False

    async def reset(self, states: dict, **kwargs: Any) -> dict:
        """Rebuild the episode from the label; the observation is the env's prompt in chat format."""
        spec = EpisodeSpec.from_label(states["label"])
        self._spec = spec
        self._env = await self._off_loop(_POOL.acquire, spec.env_id, spec.make_kwargs, env_url=self._rollout.config.env_url)
        _, info = await self._off_loop(self._env.reset, seed=spec.seed, options={"item": spec.item})
        prompt = await self._off_loop(episode_prompt, self._rollout.tokenizer, info)
        if isinstance(states.get("observation"), str) and states["observation"] != prompt:
            logger.debug("the dataset prompt differs from the env's; using the env's")
        return {"observation": prompt}

    async def step(self, states: dict, **kwargs: Any) -> dict:
        """Play one assistant turn; return OpenRLHF's step dict (tensor reward, feedback, done, logs)."""
        import torch

        tokenizer = self._rollout.tokenizer
        action = _strip_special_suffix(states["action_text"], tokenizer)
        try:
            feedback, reward, done, info = await asyncio.wait_for(
                self._off_loop(self._step_env, action, self._rollout.last_output), timeout=self._rollout.config.step_timeout)
        except Exception as exc:  # an env bug or timeout must not kill the rollout batch
            logger.warning("env %s failed on a step (%s: %s); ending the episode with reward 0",
                           self._spec.env_id if self._spec else "?", type(exc).__name__, exc)
            self._drop_env()
            self._env_error = True
            return {"rewards": torch.tensor(0.0), "scores": torch.tensor(0.0), "environment_feedback": "",
                    "done": True, "extra_logs": self._logs({}, finished=False)}
        metrics = info.get("metrics", {}) if done else {}
        if done:
            self._done = True
            self._env_error = self._env_error or float(metrics.get("env_error", 0.0)) > 0
            self.finish()
        return {
            "rewards": torch.tensor(float(reward)),
            "scores": torch.tensor(float(metrics.get("acc", 0.0))),
            "environment_feedback": feedback,
            "done": bool(done),
            "extra_logs": self._logs(metrics, finished=done),
        }

    async def settle(self, result: dict) -> None:
        """Finish OpenRLHF's result for this episode (edited in place) once the executor's loop is over.

        An episode the loop stopped (token budget) is ended by the env as unfinished and its score
        added; an episode hit by an infrastructure fault is marked for dropping when configured.
        """
        import torch

        if self._env is not None and not self._done and not self._finished:
            try:
                reward, info = await asyncio.wait_for(self._off_loop(self._end_unfinished),
                                                      timeout=self._rollout.config.step_timeout)
            except Exception as exc:
                logger.warning("env %s failed to end a cut episode (%s: %s)", self._spec.env_id if self._spec else "?",
                               type(exc).__name__, exc)
                self._drop_env()
                self._env_error = True
                result["extra_logs"] = self._logs({}, finished=False)
            else:
                metrics = info.get("metrics", {})
                self._done = True
                self._env_error = float(metrics.get("env_error", 0.0)) > 0
                self.finish()
                result["reward"] = float(result.get("reward") or 0.0) + float(reward)
                result["scores"] = torch.tensor(float(metrics.get("acc", 0.0)))
                result["extra_logs"] = self._logs(metrics, finished=False)
        if self._env_error:
            logs = dict(result.get("extra_logs") or self._logs({}, finished=False))
            logs[LOG_PREFIX + "env_error"] = 1.0
            if self._rollout.config.drop_env_errors:
                result["reward"] = 0.0
                result["scores"] = torch.tensor(math.nan)  # dynamic filtering drops the group
                logs[LOG_PREFIX + "dropped"] = 1.0
            result["extra_logs"] = logs

    def _end_unfinished(self) -> tuple[float, dict[str, Any]]:
        reward, info = end_unfinished(self._env, "budget")
        for name, value in info.get("reward_components", {}).items():
            self._components[name] = self._components.get(name, 0.0) + float(value)
        return float(reward), info

    def _step_env(self, action: str, output: Any) -> tuple[str, float, bool, dict[str, Any]]:
        """Step the env and render the feedback text (on a worker thread: templates cost CPU too)."""
        _, reward, terminated, truncated, info = self._env.step(action)
        for name, value in info.get("reward_components", {}).items():
            self._components[name] = self._components.get(name, 0.0) + float(value)
        done = bool(terminated or truncated)
        feedback = ""
        if not done:
            tokenizer = self._rollout.tokenizer
            feedback = missing_turn_end(tokenizer, output) + continuation_text(tokenizer, list(info.get("new_messages", [])))
        return feedback, float(reward), done, info

    def _logs(self, metrics: Mapping[str, float], *, finished: bool) -> dict[str, float]:
        config = self._rollout.config
        logs = {LOG_PREFIX + k: float(metrics.get(k, 0.0)) for k in config.metric_keys}
        logs.update({LOG_PREFIX + "reward/" + c: float(self._components.get(c, 0.0)) for c in config.reward_components})
        logs[LOG_PREFIX + "finished"] = float(finished)
        logs[LOG_PREFIX + "env_error"] = float(self._env_error)
        logs[LOG_PREFIX + "dropped"] = 0.0
        return logs

    async def _off_loop(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        return await loop.run_in_executor(_env_executor(), lambda: ctx.run(fn, *args, **kwargs))

    def finish(self) -> None:
        """Return the env to the pool (idempotent); the executor calls it when the rollout ends."""
        if self._env is not None and self._spec is not None and not self._finished:
            _POOL.release(self._spec.env_id, self._spec.make_kwargs, self._env, env_url=self._rollout.config.env_url)
        self._finished = True
        self._env = None

    def _drop_env(self) -> None:
        self._finished = True
        self._env = None  # state unknown after a failure: never reuse it


class AgentR1Executor(MultiTurnAgentExecutor):
    """``MultiTurnAgentExecutor`` over ``AgentR1Instance``; subclass it and set ``config`` per run."""

    config: AgentConfig = AgentConfig()

    def __init__(self) -> None:
        super().__init__(AgentR1Instance)

    async def execute(self, prompt: Any, label: Any, sampling_params: Any, max_length: int, hf_tokenizer: Any,
                      llm_engine: Any, images: Any = None) -> dict:
        # MultiTurnAgentExecutor overwrites ``max_tokens`` with the episode's remaining budget before every
        # turn; the value it starts with is ``--rollout.max_new_tokens``, which we keep as the per-turn cap
        cap = getattr(sampling_params, "max_tokens", None)
        rollout = _Rollout(config=self.config, tokenizer=hf_tokenizer, turn_cap=int(cap) if cap else None)
        token = _ROLLOUT.set(rollout)
        try:
            result = await super().execute(prompt, label, sampling_params, max_length, hf_tokenizer,
                                           _RecordingEngine(llm_engine, rollout), images=images)
            if rollout.instance is not None:
                await rollout.instance.settle(result)
            return result
        finally:
            _ROLLOUT.reset(token)
            if rollout.instance is not None:
                rollout.instance.finish()
