"""One episode written down: the record every tool that saves episodes writes, and the viewer reads.

Three places save episodes, all in this one format:

* ``baselines.evaluate``: each sample of ``items.jsonl`` (one line per item, its ``samples`` list; a
  sample also keeps ``responses``, the model's turns, for the tools that read them);
* the GRPO trainer: a few episodes per logging step, one record per line of ``episodes.jsonl`` in
  the run directory (``GRPOConfig.sample_episodes``);
* the remote client (``AgentR1/Remote-v0``), when asked to record its sessions (``record_path=``
  or ``$AGENTR1_RECORD_SESSIONS``): one record per line.

A record is the prompt the env posed, then one ``TurnRecord`` per step: what the model wrote, what
the env answered, the step's reward and its named components, the tool calls the env parsed. A step
the model did not take (a trainer cut the episode at its token budget, ``envs.end_unfinished``)
is a turn whose ``action`` is ``None``, so the turns' rewards always add up to the episode's.
``EpisodeRecorder`` builds one from what ``reset`` and ``step`` return; ``read_episode_records``
reads every file kind above, including ``items.jsonl`` files written before this format (their
samples carry the model's responses but no observations).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envs.core.data import DataError

logger = logging.getLogger(__name__)

RECORD_VERSION = 1
RECORD_SESSIONS_VARIABLE = "AGENTR1_RECORD_SESSIONS"
# Longest item field a record keeps: the question and answers, not the retrieval contexts.
ITEM_FIELD_MAX_CHARS = 4000


@dataclass
class TurnRecord:
    """One step: the model's text (``None`` for the step that ended a cut episode) and the env's answer."""

    action: str | None
    observation: str = ""
    reward: float = 0.0
    reward_components: dict[str, float] = field(default_factory=dict)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {"name", "arguments", "status"}
    env_error: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "observation": self.observation, "reward": self.reward,
                "reward_components": dict(self.reward_components), "tool_calls": list(self.tool_calls),
                "env_error": self.env_error}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TurnRecord:
        action = data.get("action")
        return cls(action=None if action is None else str(action), observation=str(data.get("observation") or ""),
                   reward=float(data.get("reward", 0.0)), reward_components=_floats(data.get("reward_components")),
                   tool_calls=[dict(c) for c in data.get("tool_calls") or [] if isinstance(c, Mapping)],
                   env_error=bool(data.get("env_error", False)))


@dataclass
class EpisodeRecord:
    """A whole episode: prompt, turns, final metrics, and where it came from (``source``)."""

    prompt: list[dict[str, str]]
    turns: list[TurnRecord]
    metrics: dict[str, float] = field(default_factory=dict)
    end_reason: str | None = None  # "answer", "max_turns", "budget", "timeout", "env_server_lost", "abandoned"
    terminated: bool = False
    truncated: bool = False
    item: dict[str, Any] = field(default_factory=dict)
    # who wrote it: {"kind": "evaluate" | "train" | "remote", "env": ..., and e.g. "model", "index", "step"}
    source: dict[str, Any] = field(default_factory=dict)
    correct: bool | None = None  # the writer's verdict (evaluate: its success metric); None: read the metrics
    response_tokens: int | None = None

    @property
    def reward(self) -> float:
        return float(sum(t.reward for t in self.turns))

    @property
    def reward_components(self) -> dict[str, float]:
        """The episode's total of each component (the sum over its turns)."""
        totals: dict[str, float] = {}
        for turn in self.turns:
            for name, value in turn.reward_components.items():
                totals[name] = totals.get(name, 0.0) + value
        return totals

    @property
    def responses(self) -> list[str]:
        """What the model wrote, turn by turn."""
        return [t.action for t in self.turns if t.action is not None]

    @property
    def success(self) -> bool | None:
        """``correct`` if the writer judged it, else the env's ``em`` (QA) or ``acc`` metric; None if neither."""
        if self.correct is not None:
            return self.correct
        for name in ("em", "acc"):
            if name in self.metrics:
                return self.metrics[name] >= 1.0 - 1e-9
        return None

    @property
    def unfinished(self) -> bool:
        """Ended without a final answer: cut by a trainer, out of turns, or lost to the env server."""
        return self.end_reason not in (None, "answer") or self.metrics.get("unfinished", 0.0) > 0

    @property
    def env_error(self) -> bool:
        """An infrastructure fault touched the episode (never the model's doing)."""
        return self.metrics.get("env_error", 0.0) > 0 or any(t.env_error for t in self.turns)

    def to_dict(self) -> dict[str, Any]:
        return {"version": RECORD_VERSION, "source": dict(self.source), "item": dict(self.item),
                "prompt": [dict(m) for m in self.prompt], "turns": [t.to_dict() for t in self.turns],
                "reward": self.reward, "reward_components": self.reward_components, "metrics": dict(self.metrics),
                "end_reason": self.end_reason, "terminated": self.terminated, "truncated": self.truncated,
                "correct": self.correct, "response_tokens": self.response_tokens}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EpisodeRecord:
        """Read a record, or a sample of an ``items.jsonl`` written before this format (``responses``)."""
        if "turns" in data:
            turns = [TurnRecord.from_dict(t) for t in data["turns"]]
        elif "responses" in data:  # legacy evaluate sample: the model's turns, the episode's totals
            turns = [TurnRecord(action=str(r)) for r in data["responses"]]
            if turns:
                turns[-1].reward = float(data.get("reward", 0.0))
                turns[-1].reward_components = _floats(data.get("reward_components"))
        else:
            raise ValueError("an episode record needs 'turns' (or, from an old items.jsonl, 'responses')")
        metrics = _floats(data.get("metrics"))
        end_reason = data.get("end_reason")
        if end_reason is None and "turns" not in data and metrics:
            end_reason = "answer" if not metrics.get("unfinished") and not metrics.get("truncated") else "budget"
        correct = data.get("correct")
        tokens = data.get("response_tokens")
        return cls(prompt=[{"role": str(m.get("role", "")), "content": str(m.get("content", ""))}
                           for m in data.get("prompt") or [] if isinstance(m, Mapping)],
                   turns=turns, metrics=metrics, end_reason=None if end_reason is None else str(end_reason),
                   terminated=bool(data.get("terminated", end_reason == "answer")),
                   truncated=bool(data.get("truncated", end_reason not in (None, "answer"))),
                   item=dict(data.get("item") or {}), source=dict(data.get("source") or {}),
                   correct=None if correct is None else bool(correct), response_tokens=None if tokens is None else int(tokens))


class EpisodeRecorder:
    """Builds an ``EpisodeRecord`` from what ``reset`` and each ``step`` returned.

    ``messages`` overrides the prompt (a baseline that poses the item its own way records what the
    model really saw).
    """

    def __init__(self, reset_info: Mapping[str, Any], *, messages: Sequence[Mapping[str, str]] | None = None,
                 source: Mapping[str, Any] | None = None):
        chosen = reset_info.get("messages", []) if messages is None else messages
        self.prompt = [{"role": str(m["role"]), "content": str(m["content"])} for m in chosen]
        self.item = printable_item(reset_info.get("item") or {})
        self.source = dict(source or {})
        self.turns: list[TurnRecord] = []
        self.metrics: dict[str, float] = {}
        self.end_reason: str | None = None
        self.terminated = self.truncated = False

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated

    def step(self, action: str | None, observation: str, reward: float, terminated: bool, truncated: bool,
             info: Mapping[str, Any]) -> None:
        """Add one step (``action=None``: the step ``end_unfinished`` took for a cut episode)."""
        self.turns.append(TurnRecord(
            action=action, observation=str(observation or ""), reward=float(reward),
            reward_components=_floats(info.get("reward_components")),
            tool_calls=[_jsonable(dict(c)) for c in info.get("tool_calls") or [] if isinstance(c, Mapping)],
            env_error=bool(info.get("env_error", False))))
        if "metrics" in info:
            self.metrics = _floats(info["metrics"])
        if info.get("end_reason") is not None:
            self.end_reason = str(info["end_reason"])
        self.terminated, self.truncated = self.terminated or bool(terminated), self.truncated or bool(truncated)

    def record(self, **fields: Any) -> EpisodeRecord:
        """The episode so far; ``fields`` set ``correct``, ``response_tokens`` or add to ``source``."""
        source = {**self.source, **dict(fields.pop("source", {}) or {})}
        end_reason = self.end_reason if self.done else "abandoned"
        return EpisodeRecord(prompt=[dict(m) for m in self.prompt], turns=list(self.turns), metrics=dict(self.metrics),
                             end_reason=end_reason, terminated=self.terminated, truncated=self.truncated,
                             item=dict(self.item), source=source, **fields)


def play_actions(env: Any, actions: Sequence[str], *, seed: int | None = None,
                 options: Mapping[str, Any] | None = None, source: Mapping[str, Any] | None = None) -> EpisodeRecord:
    """Play scripted ``actions`` from ``env.reset(seed, options)`` and return the episode's record.

    If the actions run out before the episode ends, it is cut as a trainer's token budget would
    cut it (``envs.end_unfinished(env, "budget")``). Demos, the reward audit and tests use it.
    """
    from envs.core.env import end_unfinished

    _, info = env.reset(seed=seed, options=dict(options) if options is not None else None)
    recorder = EpisodeRecorder(info, source=source)
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        recorder.step(action, obs, reward, terminated, truncated, info)
        if recorder.done:
            return recorder.record()
    reward, info = end_unfinished(env, "budget")
    recorder.step(None, "", reward, False, True, info)
    return recorder.record()


def printable_item(item: Mapping[str, Any], max_chars: int = ITEM_FIELD_MAX_CHARS) -> dict[str, Any]:
    """The item's short scalar fields and string lists (question, answers, ...), not its contexts."""
    out = {}
    for key, value in item.items():
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            pass
        elif not isinstance(value, str | int | float | bool):
            continue
        if len(json.dumps(value, ensure_ascii=False)) <= max_chars:
            out[str(key)] = value
    return out


_APPEND_LOCK = threading.Lock()


def json_line(data: Any) -> str:
    """``data`` as one JSONL line, UTF-8 as is; a line with a lone surrogate (junk a model can emit,
    which UTF-8 cannot hold) is written with ``\\uXXXX`` escapes instead, so it reads back unchanged."""
    line = json.dumps(data, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(data, ensure_ascii=True)
    return line + "\n"


def append_episode_records(path: str | os.PathLike[str], records: Sequence[EpisodeRecord | Mapping[str, Any]]) -> Path:
    """Append records to a JSONL file, one line each, in one write under a lock (threads and, where
    ``fcntl`` exists, processes), so concurrent writers never interleave lines."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json_line(r.to_dict() if isinstance(r, EpisodeRecord) else r) for r in records)
    if not text:
        return path
    with _APPEND_LOCK, open(path, "a", encoding="utf-8") as fh:
        try:
            import fcntl
        except ImportError:  # Windows: the thread lock only
            fcntl = None  # type: ignore[assignment]
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            fh.write(text)
            fh.flush()
        finally:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return path


def read_episode_records(path: str | os.PathLike[str]) -> Iterator[EpisodeRecord]:
    """Every episode in a JSONL file of records, or of ``baselines.evaluate`` items (``items.jsonl``).

    An evaluate item's samples get ``source`` fields ``kind="evaluate"``, ``index`` and ``sample``,
    and the item's own fields. A line that is not JSON (a crash mid-write leaves one at the end) is
    skipped with a warning; a JSON line that is no record raises ``DataError`` at ``path:LINE``.
    """
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError as exc:
                logger.warning("%s:%d: skipped a line that is not JSON (%s)", path, number, exc)
                continue
            try:
                yield from _episodes_of(data)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                raise DataError(f"{path}:{number}: not an episode record or evaluate item: {exc}") from None


def _episodes_of(data: Any) -> Iterator[EpisodeRecord]:
    if not isinstance(data, Mapping):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    if "samples" not in data:
        yield EpisodeRecord.from_dict(data)
        return
    for number, sample in enumerate(data["samples"]):
        record = EpisodeRecord.from_dict(sample)
        record.item = record.item or dict(data.get("item") or {})
        record.source = {"kind": "evaluate", "index": data.get("index"), "sample": number, **record.source}
        if "success_metric" in data:
            record.source.setdefault("success_metric", data["success_metric"])
        yield record


def _floats(values: Any) -> dict[str, float]:
    if not isinstance(values, Mapping):
        return {}
    return {str(k): float(v) for k, v in values.items() if isinstance(v, int | float)}


def _jsonable(value: Any) -> Any:
    """``value`` if JSON can hold it, else its ``repr`` (tool arguments come from model text)."""
    try:
        json.dumps(value, ensure_ascii=False)
        return value
    except (TypeError, ValueError):
        return repr(value)
