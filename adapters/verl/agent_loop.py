"""verl 0.9.1 agent loop over the suite's environments (``agent_name: agentr1``).

verl's ``AgentLoopWorker`` instantiates the loop named by each row's ``agent_name`` (from
``actor_rollout_ref.rollout.agent.agent_loop_config_path``, see ``adapters/verl/agent_loop.yaml``)
and awaits ``run(sampling_params, **row)`` once per sample. ``AgentR1AgentLoop.run`` rebuilds the
episode from the row's ``EpisodeSpec`` (``extra_info["agentr1"]``), resets the env on that item and
plays it turn by turn through ``server_manager.generate``: the model's tokens go into the response
with mask 1, the env's observations (its new chat messages, tokenised by verl's Continuous Token
builder, which handles each model family's turn boundaries) with mask 0.

* ``reward_score`` is the env's episode reward, so verl skips its reward loop; verl puts it on
  the last response token (one scalar per trajectory; the per-step rewards are in
  ``extra_fields["turn_scores"]``).
* ``extra_fields["reward_extra_info"]`` holds the episode metrics (``acc``, ``format``, ``turns``,
  ...) and the per-component sums (``reward/<component>``) under a fixed key set, because verl
  stacks the keys of the first sample across the batch; verl logs them with the validation metrics.
* Each turn may generate up to the remaining response budget, or ``max_tokens_per_turn`` when the
  loop's YAML entry sets it (Agent-R1: 1024); a turn cut by that cap is still a turn the env plays.
* A cut episode (the response budget ``rollout.response_length`` is spent, or verl's
  ``multi_turn.max_assistant_turns`` is reached) is ended with ``envs.end_unfinished`` (reasons
  ``budget`` / ``max_turns``).
* Per-turn samples (Agent-R1 v0.1's step-level MDP) are not possible with verl 0.9.1's loop API:
  ``AgentLoopWorker`` maps one row to exactly one ``AgentLoopOutput`` (``run`` returns one output,
  ``_postprocess`` stacks one per row). Agent-R1 v0.1 forked verl 0.7's workers to get them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from typing import Any
from uuid import uuid4

from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput, register
from verl.utils.profiler import simple_timer

from adapters.episodes import EnvPool, EnvUrl, EpisodeSpec, episode_log_keys
from adapters.verl.dataset import AGENT_NAME, LABEL_FIELD
from envs import end_unfinished

logger = logging.getLogger(__name__)

_POOL = EnvPool()
_LOG_KEYS: dict[str, tuple[list[str], list[str]]] = {}
_LOG_KEYS_LOCK = threading.Lock()


def reward_extra_keys(spec: EpisodeSpec, env_url: EnvUrl = None) -> tuple[list[str], list[str]]:
    """``(metric names, component names)`` logged for ``spec``'s env (cached per env, kwargs and servers)."""
    key = EnvPool.key(spec.env_id, spec.make_kwargs, env_url)
    with _LOG_KEYS_LOCK:
        cached = _LOG_KEYS.get(key)
    if cached is None:
        metrics, components = episode_log_keys(spec.env_id, spec.make_kwargs, env_url=env_url)
        cached = (list(dict.fromkeys([*metrics, "unfinished", "env_error"])), components)
        with _LOG_KEYS_LOCK:
            _LOG_KEYS[key] = cached
    return cached


def label_of(row: Mapping[str, Any]) -> Any:
    extra_info = row.get("extra_info") or {}
    label = extra_info.get(LABEL_FIELD) if isinstance(extra_info, Mapping) else None
    if label is None:
        raise ValueError(f"the row has no extra_info[{LABEL_FIELD!r}] episode label; write rows with adapters.verl.verl_rows")
    return label


@register(AGENT_NAME)
class AgentR1AgentLoop(AgentLoopBase):
    """One episode of a suite env per row (see the module docstring)."""

    def __init__(self, *args: Any, max_tokens_per_turn: int | None = None, env_url: EnvUrl = None, **kwargs: Any):
        kwargs.pop("tools", None)  # verl's own tool list: the env brings its tools
        super().__init__(*args, **kwargs)
        # Extra keys of the loop's entry in agent_loop.yaml arrive here (hydra.utils.instantiate passes them).
        self.max_tokens_per_turn = int(max_tokens_per_turn) if max_tokens_per_turn else None
        # The env servers episodes are played on (None: $AGENTR1_ENV_URL, else envs in this worker).
        self.env_url: EnvUrl = env_url if env_url is None or isinstance(env_url, str) else [str(u) for u in env_url]
        self.response_length = int(self.rollout_config.response_length)
        multi_turn = self.rollout_config.get("multi_turn", {}) or {}
        self.max_assistant_turns = multi_turn.get("max_assistant_turns") or None

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        spec = EpisodeSpec.from_label(label_of(kwargs))
        metric_keys, component_keys = await self._off_loop(reward_extra_keys, spec, self.env_url)
        env = await self._off_loop(_POOL.acquire, spec.env_id, spec.make_kwargs, env_url=self.env_url)
        try:
            output = await self._play(env, spec, sampling_params, metric_keys, component_keys)
        except BaseException:
            env.close()  # state unknown after a failure: never pooled again
            raise
        _POOL.release(spec.env_id, spec.make_kwargs, env, env_url=self.env_url)
        return output

    async def _play(self, env: Any, spec: EpisodeSpec, sampling_params: dict[str, Any], metric_keys: list[str],
                    component_keys: list[str]) -> AgentLoopOutput:
        timing: dict[str, float] = {}
        _, info = await self._off_loop(env.reset, seed=spec.seed, options={"item": spec.item})
        messages: list[dict[str, Any]] = [dict(m) for m in info["messages"]]
        runtime_ids = await self.ct_build_initial_tokens(messages)
        prompt_len = len(runtime_ids)
        mask: list[int] = []
        turn_scores: list[float] = []
        request_id = uuid4().hex
        assistant_turns = user_turns = 0
        final: dict[str, Any] | None = None
        while final is None:
            params = dict(sampling_params)
            params["max_tokens"] = self.response_length - len(mask)
            if self.max_tokens_per_turn:
                params["max_tokens"] = min(params["max_tokens"], self.max_tokens_per_turn)
            with simple_timer("generate_sequences", timing):
                output = await self.server_manager.generate(request_id=request_id, prompt_ids=runtime_ids,
                                                            sampling_params=params)
            assistant_turns += 1
            merged, mask, _ = await self.ct_merge_assistant_token(runtime_ids, list(output.token_ids), mask)
            runtime_ids = merged.token_ids
            text = self.tokenizer.decode(output.token_ids, skip_special_tokens=True)
            messages.append({"role": "assistant", "content": text})
            if not self._ended_turn(output.token_ids) and len(mask) >= self.response_length:
                final = await self._cut(env, "budget", turn_scores)
                break
            with simple_timer("tool_calls", timing):
                _, reward, terminated, truncated, info = await self._off_loop(env.step, text)
            turn_scores.append(float(reward))
            if terminated or truncated:
                final = info
                break
            if len(mask) >= self.response_length:
                final = await self._cut(env, "budget", turn_scores)
                break
            if self.max_assistant_turns and assistant_turns >= self.max_assistant_turns:
                final = await self._cut(env, "max_turns", turn_scores)
                break
            previous = list(messages)
            messages.extend(dict(m) for m in info.get("new_messages", []))
            merged, mask, _ = await self.ct_merge_context_msg(previous, messages, runtime_ids, mask)
            runtime_ids = merged.token_ids
            user_turns += 1
            if len(mask) >= self.response_length:
                final = await self._cut(env, "budget", turn_scores)
        return self._output(runtime_ids, prompt_len, mask, final, turn_scores, timing, metric_keys, component_keys,
                            user_turns + assistant_turns + 1)

    def _output(self, runtime_ids: list[int], prompt_len: int, mask: list[int], final: Mapping[str, Any],
                turn_scores: list[float], timing: dict[str, float], metric_keys: list[str], component_keys: list[str],
                num_turns: int) -> AgentLoopOutput:
        response_ids = runtime_ids[len(runtime_ids) - len(mask):] if mask else []
        prompt_ids = runtime_ids[: len(runtime_ids) - len(mask)]
        if len(prompt_ids) != prompt_len:
            logger.debug("the Continuous Token builder edited the prompt boundary (%d -> %d tokens)", prompt_len, len(prompt_ids))
        components = {k: float(v) for k, v in (final.get("episode_reward_components") or {}).items()}
        metrics = final.get("metrics") or {}
        extra = {k: float(metrics.get(k, 0.0)) for k in metric_keys}
        extra.update({f"reward/{c}": components.get(c, 0.0) for c in component_keys})
        return AgentLoopOutput(
            prompt_ids=prompt_ids,
            response_ids=response_ids[: self.response_length],
            response_mask=mask[: self.response_length],
            reward_score=float(sum(components.values())),
            num_turns=num_turns,
            metrics=timing,
            extra_fields={"reward_extra_info": extra, "turn_scores": turn_scores, "tool_rewards": [],
                          "end_reason": str(final.get("end_reason", "answer"))},
        )

    async def _cut(self, env: Any, reason: str, turn_scores: list[float]) -> dict[str, Any]:
        """End the episode unfinished (``envs.end_unfinished``); its reward joins the per-step scores."""
        reward, info = await self._off_loop(end_unfinished, env, reason)
        turn_scores.append(float(reward))
        return info

    def _ended_turn(self, token_ids: list[int]) -> bool:
        return bool(token_ids) and int(token_ids[-1]) in {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}

    async def _off_loop(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kwargs))
