"""Multi-turn rollouts through suite envs with a Hugging Face or vLLM generator (``vllm_engine``).

One episode is one token stream: the prompt in the tokenizer's chat format, then for each assistant
turn the model's own tokens (``action_mask`` 1) followed, if the episode goes on, by the end of the
turn and the env's observation rendered with the same chat template (``action_mask`` 0). The policy
loss and KL are computed only where ``action_mask`` is 1.

Every episode ends through the env: by its own final step, or, when the rollout stops it first (the
token budget ``max_episode_tokens`` runs out), through ``envs.end_unfinished(env, "budget")``, which
scores it as unfinished (a penalty below any finished answer) and reports its metrics. A cut can
therefore never pay more than answering.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from envs import end_unfinished
from envs.core.chat import continuation_text, encode, episode_prompt_ids
from envs.core.records import EpisodeRecord, EpisodeRecorder

logger = logging.getLogger(__name__)

_MARKER = "\u2063\u2063turn-end-probe\u2063\u2063"


@dataclass
class Sampling:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass
class Episode:
    """One rollout: its token stream, which tokens the model wrote, per-turn rewards and metrics."""

    group: int
    prompt_ids: list[int]
    tokens: list[int] = field(default_factory=list)  # everything after the prompt
    action_mask: list[int] = field(default_factory=list)  # 1: the model wrote this token
    token_turn: list[int] = field(default_factory=list)  # turn index of model tokens, -1 elsewhere
    turn_rewards: list[float] = field(default_factory=list)  # per turn; a cut adds its unfinished penalty last
    components: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    responses: list[str] = field(default_factory=list)
    item: dict[str, Any] = field(default_factory=dict)
    terminated: bool = False
    truncated: bool = False
    cut: bool = False  # stopped by ``max_episode_tokens``, then ended by ``envs.end_unfinished``
    done: bool = False
    log: EpisodeRecorder | None = None  # the episode as text, turn by turn (``record``)

    @property
    def reward(self) -> float:
        return float(sum(self.turn_rewards))

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.tokens)

    @property
    def model_tokens(self) -> int:
        return int(sum(self.action_mask))

    @property
    def env_error(self) -> bool:
        """An infrastructure fault (tool server down, verifier crash) touched this episode."""
        return float(self.metrics.get("env_error", 0.0)) > 0.0

    def turn_token_counts(self) -> list[int]:
        """Model tokens of each ``turn_rewards`` entry (0 for a cut's penalty entry, which has none)."""
        counts = [0] * len(self.turn_rewards)
        for m, t in zip(self.action_mask, self.token_turn, strict=True):
            if m and 0 <= t < len(counts):
                counts[t] += 1
        return counts

    def record(self, **fields: Any) -> EpisodeRecord:
        """The episode in the suite's record format (``envs.core.records``), with its model token count."""
        if self.log is None:
            raise ValueError("this episode was not recorded (it has no log)")
        return self.log.record(response_tokens=self.model_tokens, **fields)

    def append(self, ids: Sequence[int], *, model: bool, turn: int) -> None:
        self.tokens.extend(ids)
        self.action_mask.extend([1 if model else 0] * len(ids))
        self.token_turn.extend([turn if model else -1] * len(ids))


class Generator(Protocol):
    """Anything that continues token sequences: ``generate(prompts, budgets) -> new token ids``."""

    def generate(self, prompts: Sequence[Sequence[int]], budgets: Sequence[int], sampling: Sampling) -> list[list[int]]: ...


class ChatFormat:
    """What the tokenizer's chat template says about turns: stop tokens and the end-of-turn text."""

    def __init__(self, tokenizer: Any, *, include_tools: bool = True):
        self.tokenizer = tokenizer
        self.include_tools = include_tools
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": "x"}, {"role": "assistant", "content": _MARKER}], tokenize=False)
        at = rendered.rfind(_MARKER)
        self.turn_close = rendered[at + len(_MARKER):] if at >= 0 else ""
        stop: set[int] = set()
        eos = getattr(tokenizer, "eos_token_id", None)
        if isinstance(eos, int):
            stop.add(eos)
        close_ids = tokenizer(self.turn_close, add_special_tokens=False)["input_ids"] if self.turn_close else []
        if close_ids and close_ids[0] in set(getattr(tokenizer, "all_special_ids", [])):
            stop.add(close_ids[0])
        if not stop:
            raise ValueError("the tokenizer has no eos token and its template no special end-of-turn token")
        self.stop_ids = sorted(stop)
        self._special_close = close_ids[0] if close_ids and close_ids[0] in stop else None
        first = tokenizer.decode([self._special_close]) if self._special_close is not None else ""
        self._close_rest = self.turn_close[len(first):] if first and self.turn_close.startswith(first) else None

    def encode(self, text: str) -> list[int]:
        return encode(self.tokenizer, text)

    def turn_ids(self, text: str) -> list[int]:
        """The tokens a model writes for a whole turn ``text``: the text, then its end-of-turn token."""
        close = [self._special_close] if self._special_close is not None else [self.stop_ids[0]]
        return self.encode(text) + close

    def prompt_ids(self, info: Mapping[str, Any]) -> list[int]:
        return episode_prompt_ids(self.tokenizer, info, include_tools=self.include_tools)

    def continuation_ids(self, generated: Sequence[int], new_messages: Sequence[dict[str, str]]) -> list[int]:
        """Tokens after a model turn: the rest of its end-of-turn text, then the observation turn."""
        close = self.turn_close
        if generated and generated[-1] == self._special_close and self._close_rest is not None:
            close = self._close_rest  # the model already wrote the end-of-turn token
        return self.encode(close + continuation_text(self.tokenizer, new_messages))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)


def run_episodes(generator: Generator, chat: ChatFormat, envs: Sequence[Any], resets: Sequence[Mapping[str, Any]],
                 groups: Sequence[int], sampling: Sampling, max_episode_tokens: int) -> list[Episode]:
    """Play ``len(resets)`` episodes to the end, batching every active episode's turn together.

    ``envs[i]`` plays episode ``i`` after ``envs[i].reset(**resets[i])``.
    """
    if len(envs) < len(resets):
        raise ValueError(f"{len(resets)} episodes need as many envs, got {len(envs)}")
    episodes: list[Episode] = []
    for i, reset_kwargs in enumerate(resets):
        _, info = envs[i].reset(**reset_kwargs)
        episodes.append(Episode(group=int(groups[i]), prompt_ids=chat.prompt_ids(info), item=dict(info.get("item", {})),
                                log=EpisodeRecorder(info)))
    turn = 0
    active = list(range(len(episodes)))
    while active:
        budgets = {i: min(sampling.max_new_tokens, max_episode_tokens - episodes[i].length) for i in active}
        for i in [i for i in active if budgets[i] <= 0]:
            _finish_cut(episodes[i], envs[i])
        active = [i for i in active if not episodes[i].done]
        if not active:
            break
        outputs = generator.generate([episodes[i].prompt_ids + episodes[i].tokens for i in active],
                                     [budgets[i] for i in active], sampling)
        still = []
        for i, out in zip(active, outputs, strict=True):
            ep = episodes[i]
            ep.append(out, model=True, turn=turn)
            text = chat.decode(out)
            ep.responses.append(text)
            obs, reward, terminated, truncated, info = envs[i].step(text)
            _record(ep, reward, info, action=text, observation=obs, terminated=terminated, truncated=truncated)
            if terminated or truncated:
                ep.terminated, ep.truncated, ep.done = bool(terminated), bool(truncated), True
                continue
            ep.append(chat.continuation_ids(out, info.get("new_messages", [])), model=False, turn=turn)
            if ep.length >= max_episode_tokens:
                _finish_cut(ep, envs[i])
            else:
                still.append(i)
        active = still
        turn += 1
    return episodes


def _record(ep: Episode, reward: float, info: Mapping[str, Any], *, action: str | None, observation: str = "",
            terminated: bool = False, truncated: bool = False) -> None:
    """Add one step's (or the cut's: ``action=None``) reward, components and, at the end, the episode metrics."""
    if ep.log is not None:
        ep.log.step(action, observation, reward, terminated, truncated, info)
    ep.turn_rewards.append(float(reward))
    for name, value in info.get("reward_components", {}).items():
        ep.components[name] = ep.components.get(name, 0.0) + float(value)
    if "metrics" in info:
        ep.metrics = {k: float(v) for k, v in info["metrics"].items() if _is_number(v)}


def _finish_cut(ep: Episode, env: Any) -> None:
    """The token budget ran out before the env ended the episode: the env scores it as unfinished."""
    reward, info = end_unfinished(env, "budget")
    _record(ep, reward, info, action=None, truncated=True)
    ep.done = ep.cut = ep.truncated = True


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float)


# --------------------------------------------------------------------------- HF transformers
class HFGenerator:
    """Batched sampling with ``model.generate`` (CPU or GPU); reads the live training weights."""

    def __init__(self, model: Any, tokenizer: Any, stop_ids: Sequence[int], *, batch_size: int = 64):
        self.model = model
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
        self.stop_ids = list(stop_ids)
        self.batch_size = batch_size

    def generate(self, prompts: Sequence[Sequence[int]], budgets: Sequence[int], sampling: Sampling) -> list[list[int]]:
        import torch

        results: list[list[int]] = []
        module = getattr(self.model, "module", self.model)
        device = next(module.parameters()).device
        was_training = module.training
        module.eval()
        try:
            for start in range(0, len(prompts), self.batch_size):
                chunk = prompts[start:start + self.batch_size]
                chunk_budgets = budgets[start:start + self.batch_size]
                width = max(len(p) for p in chunk)
                ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, p in enumerate(chunk):
                    ids[row, width - len(p):] = torch.tensor(p, dtype=torch.long)
                    mask[row, width - len(p):] = 1
                # Every sampling knob is set explicitly: generate() would otherwise fill unset ones from the
                # checkpoint's generation_config (e.g. a repetition penalty), and the rollouts would no
                # longer come from the distribution whose log-probs the trainer computes.
                kwargs: dict[str, Any] = dict(max_new_tokens=max(chunk_budgets), eos_token_id=self.stop_ids,
                                              pad_token_id=self.pad_id, repetition_penalty=1.0,
                                              no_repeat_ngram_size=0, min_p=0.0, typical_p=1.0)
                if sampling.greedy:
                    kwargs.update(do_sample=False, temperature=1.0, top_p=1.0, top_k=0)
                else:
                    kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p,
                                  top_k=sampling.top_k)
                with torch.no_grad():
                    out = module.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
                for row, budget in enumerate(chunk_budgets):
                    results.append(_trim(out[row, width:].tolist(), self.stop_ids, budget))
        finally:
            module.train(was_training)
        return results


def _trim(ids: list[int], stop_ids: Sequence[int], budget: int) -> list[int]:
    """Cut at the first stop token (kept) or at ``budget`` tokens; generate pads finished rows."""
    stops = set(stop_ids)
    for pos, tok in enumerate(ids[:budget]):
        if tok in stops:
            return ids[: pos + 1]
    return ids[:budget]


# --------------------------------------------------------------------------- vLLM
def __getattr__(name: str) -> Any:
    """``VLLMGenerator`` lives in ``baselines.grpo.vllm_engine``; imported on first use (vLLM is heavy)."""
    if name == "VLLMGenerator":
        from baselines.grpo.vllm_engine import VLLMGenerator

        return VLLMGenerator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
