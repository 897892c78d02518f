"""``TextEnv``: the Gymnasium contract for text-in, text-out agent environments.

One episode is one task item (a problem, a question). Each ``step`` takes one assistant turn:

* a turn with tool calls runs them, and the tool results become the next observation;
* a turn without tool calls is the final response, which the env scores and which ends the episode
  (``terminated=True``);
* running out of ``max_turns`` after a tool turn ends it with ``truncated=True``, scored as
  *unfinished*; a trainer that cuts an episode itself (token budget, timeout) ends it the same way
  with ``end_unfinished(env, reason)``.

Subclasses supply the data (``_draw_item``), the prompt (``build_prompt``), the scoring of the final
response (``score_final``) and a golden action sequence (``demonstration``). Every step's reward is a
sum of named components (``info["reward_components"]``); the final step adds ``info["metrics"]``.

The reward design every env inherits (``envs.core.rewards`` has the mechanics):

* process rewards are bounded: each kind at most once per turn, ``tool_call_valid`` once per
  episode, the episode's bonuses at most ``process_cap`` and its penalties at least ``-margin``.
  ``margin`` is the *outcome margin* (``outcome_margin()``: the least a correct answer earns over a
  wrong one with valid format) and the cap stays below it, so tool use can never make a wrong
  answer beat a right one;
* an unfinished episode forfeits its positive process rewards and pays ``unfinished`` (by default
  ``-(process_cap + 0.1 * margin)``), so ``unfinished < wrong answer with valid format < correct``;
* a tool result with an infrastructure status (``envs.core.tools.INFRASTRUCTURE_STATUSES``) is never
  charged to the model; it is counted in the ``env_error`` metric.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym

from envs.core.data import DataError, DataSource
from envs.core.parsing import ParsedTurn, ToolCall, parse_turn
from envs.core.rewards import (
    PROCESS_FORFEIT,
    UNFINISHED,
    ProcessBudget,
    ProcessRule,
    RewardLedger,
    resolve_weights,
    reward_bounds,
)
from envs.core.shared import SharedValues
from envs.core.spaces import UnicodeText
from envs.core.tools import Tool, ToolResult, run_tool

logger = logging.getLogger(__name__)

Item = dict[str, Any]

# Longest prompt or observation an env may return. It bounds AsyncVectorEnv's shared memory
# (4 bytes per character per env), so it is generous but not unlimited.
OBSERVATION_MAX_CHARS = 1 << 18

# Components every tool-using env has; subclasses extend ``default_reward_weights``.
TOOL_REWARD_WEIGHTS: dict[str, float] = {
    "tool_call_valid": 0.05,  # the episode's first call that ran and was not a repeat
    "invalid_action": -0.1,  # a tool call that could not be parsed (Agent-R1: -0.1)
    "tool_error": -0.05,  # unknown tool, bad arguments, error, timeout (Agent-R1: -0.05)
    "repeated_call": -0.05,  # the same call (name and arguments) made again in the episode
}
# All four are process components: at most once per turn; a valid call pays once per episode (it
# teaches the call syntax; paying per call made tool spam the best policy).
TOOL_PROCESS_RULES: dict[str, ProcessRule] = {
    "tool_call_valid": ProcessRule(per_episode=1.0),
    "invalid_action": ProcessRule(),
    "tool_error": ProcessRule(),
    "repeated_call": ProcessRule(),
}
UNFINISHED_REASONS = ("max_turns", "budget", "timeout")
FENCE_HINT = "Close a code block with ``` on a line of its own."


@dataclass
class EpisodeState:
    """Everything one episode accumulates; replaced wholesale on ``reset``."""

    item: Item
    messages: list[dict[str, str]]
    turn: int = 0
    tool_turns: int = 0
    tool_calls: int = 0
    failed_tool_calls: int = 0
    invalid_actions: int = 0
    seen_calls: set[str] = field(default_factory=set)
    component_totals: dict[str, float] = field(default_factory=dict)
    budget: ProcessBudget = field(default_factory=lambda: ProcessBudget({}, 0.0))
    env_errors: int = 0
    done: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class TextEnv(gym.Env[str, str]):
    """Base class for the suite's environments (see the module docstring for the turn rules)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "human"], "render_fps": 1}
    default_reward_weights: ClassVar[dict[str, float]] = {}
    # Which of the env's own components are process rewards (the tool ones are added with tools).
    process_rules: ClassVar[dict[str, ProcessRule]] = {}
    default_system_prompt: ClassVar[str | None] = None

    def __init__(
        self,
        *,
        tools: Sequence[Tool] = (),
        max_turns: int = 1,
        reward_weights: Mapping[str, float] | None = None,
        system_prompt: str | None = None,
        max_action_chars: int = 65_536,
        max_observation_chars: int = 8_000,
        render_mode: str | None = None,
        process_cap: float | None = None,
    ):
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.tools: dict[str, Tool] = {t.name: t for t in tools}
        self.tag_tools = {t.name: t.tag_argument for t in tools if t.tag_argument}
        self.fence_tools = {t.name: t.fence_argument for t in tools if t.fence_argument}
        self.max_turns = int(max_turns)
        weights = dict(self.default_reward_weights)
        rules = dict(self.process_rules)
        if self.tools:
            weights = {**TOOL_REWARD_WEIGHTS, **weights}
            rules = {**TOOL_PROCESS_RULES, **rules}
        weights = {**weights, UNFINISHED: 0.0, PROCESS_FORFEIT: 1.0}
        self.reward_weights = resolve_weights(weights, reward_weights)
        self.active_process_rules = {k: v for k, v in rules.items() if k in self.reward_weights}
        self._set_reward_bounds(process_cap, set(reward_weights or ()))
        self.system_prompt = self.default_system_prompt if system_prompt is None else system_prompt
        self.max_action_chars = int(max_action_chars)
        self.max_observation_chars = int(max_observation_chars)
        self.render_mode = render_mode
        # Room for the longest tool observation (``max_observation_chars`` plus the truncation note).
        self.observation_space = UnicodeText(max_length=max(OBSERVATION_MAX_CHARS, self.max_observation_chars + 64))
        self.action_space = UnicodeText(max_length=max(1 << 20, self.max_action_chars))
        self._state: EpisodeState | None = None

    def _set_reward_bounds(self, process_cap: float | None, overridden: set[str]) -> None:
        """Derive ``process_cap`` and the ``unfinished`` penalty from the outcome margin (module doc)."""
        margin = float(self.outcome_margin())
        try:
            cap, unfinished = reward_bounds(margin, process_cap)
        except ValueError as exc:
            raise ValueError(f"{type(self).__name__}: {exc}") from None
        self.outcome_margin_value = margin
        self.process_cap = cap
        if UNFINISHED not in overridden:
            self.reward_weights[UNFINISHED] = unfinished

    # ------------------------------------------------------------------ subclass hooks
    def _draw_item(self, options: Mapping[str, Any]) -> Item:
        """Pick this episode's item from ``options`` (``index`` / ``item``) or ``self.np_random``."""
        raise NotImplementedError

    def build_prompt(self, item: Item) -> str:
        """The user message that poses ``item``."""
        raise NotImplementedError

    def score_final(self, item: Item, response: str, ledger: RewardLedger) -> dict[str, float]:
        """Score the final response: add outcome components to ``ledger``; return episode metrics."""
        raise NotImplementedError

    def score_unfinished(self, item: Item, ledger: RewardLedger) -> dict[str, float]:
        """The outcome of an episode that ended without a final response (before the ``unfinished``
        penalty, which the core adds): never more than a finished answer with valid format earns."""
        return {"acc": 0.0, "format": 0.0}

    def outcome_margin(self) -> float:
        """The least a correct final answer earns over a wrong one with valid format, under the env's
        current weights. ``process_cap`` and the ``unfinished`` penalty are set from it; override it
        when the outcome is not one weight-1 correctness component."""
        return 1.0

    def on_tool_result(self, call: ToolCall, result: ToolResult, ledger: RewardLedger) -> None:
        """Turn a tool's report into process-reward components (override to add e.g. retrieval hits).

        Results with an infrastructure status never arrive here (see ``on_infrastructure_fault``)."""
        ledger.add("tool_call_valid" if result.ok else "tool_error")

    def on_infrastructure_fault(self, call: ToolCall, result: ToolResult) -> None:
        """A tool failed for a reason that is not the model's (``result.infra``); it is never charged."""

    def demonstration(self) -> list[str]:
        """A golden action sequence for the current episode (uses the ground truth)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ Gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        self._release_tools()
        item = self._draw_item(options or {})
        prompt = self.build_prompt(item)
        if not self.observation_space.contains(prompt):
            # AsyncVectorEnv would silently cut it to fit its shared memory; refuse instead.
            raise DataError(f"{type(self).__name__}: the prompt has {len(prompt)} characters, more than the "
                            f"observation space's {self.observation_space.max_length}")
        messages = ([{"role": "system", "content": self.system_prompt}] if self.system_prompt else [])
        messages.append({"role": "user", "content": prompt})
        self._state = EpisodeState(item=item, messages=[dict(m) for m in messages],
                                   budget=ProcessBudget(self.active_process_rules, self.process_cap,
                                                        floor=-self.outcome_margin_value))
        info = {
            "messages": messages,  # the caller's copy: editing it cannot change the env's transcript
            "item": dict(item),
            "tools": [t.schema() for t in self.tools.values()],
            "max_turns": self.max_turns,
        }
        if self.render_mode == "human":
            self.render()
        return prompt, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        state = self._state
        if state is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if state.done:
            raise gym.error.ResetNeeded("the episode is over; call reset() before step()")
        text = coerce_action(action, self.max_action_chars)
        state.turn += 1
        state.messages.append({"role": "assistant", "content": text})
        ledger = RewardLedger(self.reward_weights, state.budget)
        env_errors_before = state.env_errors
        turn = (parse_turn(text, tag_tools=self.tag_tools, json_tools=bool(self.tools), fence_tools=self.fence_tools)
                if self.tools else None)
        info: dict[str, Any] = {"turn": state.turn}
        observation = ""
        terminated = truncated = False
        metrics: dict[str, float] | None = None
        end_reason = "answer"
        if turn is not None and turn.attempted_tool_use:
            observation, info["tool_calls"] = self._run_tool_turn(turn, ledger)
            state.messages.append({"role": "user", "content": observation})
            info["new_messages"] = [{"role": "user", "content": observation}]
            if state.turn >= self.max_turns:
                truncated, end_reason = True, "max_turns"
                metrics = self._score_unfinished_episode(ledger)
        else:
            terminated = True
            metrics = self.score_final(state.item, text, ledger)
            info["new_messages"] = []
        info["env_error"] = state.env_errors > env_errors_before
        self._settle_step(ledger, info, metrics, truncated, end_reason)
        return observation, ledger.total, terminated, truncated, info

    def end_unfinished(self, reason: str = "budget") -> tuple[float, dict[str, Any]]:
        """End the running episode without a final answer; return ``(reward, info)`` as a last step would.

        Trainers call it when they cut an episode themselves: ``"budget"`` (the token budget ran
        out), ``"timeout"`` (a step deadline passed), ``"max_turns"`` (their own turn limit). The
        episode is scored as unfinished: the env's no-answer outcome, its positive process rewards
        forfeited (``process_forfeit``) and the ``unfinished`` penalty; ``info["metrics"]`` has
        ``unfinished=1.0`` and ``truncated=1.0``, ``info["end_reason"]`` the reason.
        """
        state = self._state
        if state is None:
            raise gym.error.ResetNeeded("call reset() before end_unfinished()")
        if state.done:
            raise gym.error.ResetNeeded("the episode is over; call reset() before end_unfinished()")
        if reason not in UNFINISHED_REASONS:
            raise ValueError(f"reason must be one of {UNFINISHED_REASONS}, got {reason!r}")
        ledger = RewardLedger(self.reward_weights, state.budget)
        metrics = self._score_unfinished_episode(ledger)
        info: dict[str, Any] = {"turn": state.turn, "new_messages": [], "env_error": False}
        self._settle_step(ledger, info, metrics, True, reason)
        return ledger.total, info

    def render(self) -> str | None:
        return render_text(self.transcript(), self.render_mode)

    def close(self) -> None:
        self._release_tools(closing=True)
        super().close()

    def _release_tools(self, closing: bool = False) -> None:
        """Let tools drop what they hold for an episode (``Tool.release``: a sandbox's processes and
        files), or, when the env closes, everything (``Tool.close``)."""
        for spec in self.tools.values():
            hook = spec.close if closing else spec.release
            if hook is not None:
                try:
                    hook()
                except Exception:  # best effort: it must not break reset, step or close
                    logger.warning("releasing tool %s failed", spec.name, exc_info=True)

    # ------------------------------------------------------------------ helpers
    def _score_unfinished_episode(self, ledger: RewardLedger) -> dict[str, float]:
        state = self._state
        assert state is not None
        metrics = dict(self.score_unfinished(state.item, ledger))
        if state.budget.bonus_total > 0:
            ledger.add(PROCESS_FORFEIT, -state.budget.bonus_total)
        ledger.add(UNFINISHED)
        metrics["unfinished"] = 1.0
        return metrics

    def _settle_step(self, ledger: RewardLedger, info: dict[str, Any], metrics: Mapping[str, float] | None,
                     truncated: bool, end_reason: str) -> None:
        """Book the step's components; on the last step, close the episode and report its metrics."""
        state = self._state
        assert state is not None
        for name, value in ledger.as_dict().items():
            state.component_totals[name] = state.component_totals.get(name, 0.0) + value
        info["reward_components"] = ledger.as_dict()
        if metrics is not None:
            state.done = True
            self._release_tools()
            info["metrics"] = self._episode_metrics(metrics, truncated)
            info["episode_reward_components"] = dict(state.component_totals)
            info["end_reason"] = end_reason
        if self.render_mode == "human":
            self.render()

    @property
    def item(self) -> Item:
        """The current episode's item (ground truth included)."""
        if self._state is None:
            raise gym.error.ResetNeeded("call reset() first")
        return self._state.item

    def transcript(self) -> str:
        """The episode so far as readable text."""
        if self._state is None:
            return ""
        return format_transcript(self._state.messages)

    def _run_tool_turn(self, turn: ParsedTurn, ledger: RewardLedger) -> tuple[str, list[dict[str, Any]]]:
        state = self._state
        assert state is not None
        state.tool_turns += 1
        parts: list[str] = []
        records: list[dict[str, Any]] = []
        for error in turn.errors:
            state.invalid_actions += 1
            ledger.add("invalid_action")
            hint = (FENCE_HINT if error.kind == "unclosed_fence"
                    else 'Call a tool as <tool_call>{"name": ..., "arguments": {...}}</tool_call>.')
            result = ToolResult(f"Error: {error.message}. {hint}", ok=False, status=error.kind)
            parts.append(self.format_tool_result(ToolCall("", {}, raw=error.raw, form="invalid"), result))
            records.append({"name": None, "arguments": None, "status": error.kind})
        for call in turn.tool_calls:
            state.tool_calls += 1
            key = call.key()
            if key in state.seen_calls:
                ledger.add("repeated_call")
                result = ToolResult("Error: you already made this exact call; its result is above.", ok=False, status="repeated")
            else:
                result = run_tool(self.tools, call)
                if result.infra:  # not the model's fault: no charge, and trying again is no repeat
                    state.env_errors += 1
                    self.on_infrastructure_fault(call, result)
                else:
                    state.seen_calls.add(key)
                    self.on_tool_result(call, result, ledger)
            if not result.ok and not result.infra:
                state.failed_tool_calls += 1
            parts.append(self.format_tool_result(call, result))
            record: dict[str, Any] = {"name": call.name, "arguments": call.arguments, "status": result.status}
            if result.metadata:  # what the tool reports beyond its text (a sandbox says what it isolates)
                record["metadata"] = dict(result.metadata)
            records.append(record)
        observation = "\n".join(parts)
        if len(observation) > self.max_observation_chars:
            observation = observation[: self.max_observation_chars] + "\n[observation truncated]"
        return observation, records

    def format_tool_result(self, call: ToolCall, result: ToolResult) -> str:
        """How one tool result reads in the next observation: Hermes ``<tool_response>`` by default,
        an ```` ```output ```` block for a fenced code call (ToRL's convention).

        Unparsable calls arrive here too, as ``call.form == "invalid"`` with an error result.
        """
        if call.form == "fence":
            return f"```output\n{result.content}\n```"
        return f"<tool_response>\n{result.content}\n</tool_response>"

    def _episode_metrics(self, metrics: Mapping[str, float], truncated: bool) -> dict[str, float]:
        state = self._state
        assert state is not None
        out = {
            "acc": 0.0,
            "format": 0.0,
            "turns": float(state.tool_turns),
            "assistant_turns": float(state.turn),
            "tool_calls": float(state.tool_calls),
            "failed_tool_calls": float(state.failed_tool_calls),
            "invalid_actions": float(state.invalid_actions),
            "truncated": float(truncated),
            "unfinished": 0.0,
            "env_error": float(state.env_errors),
            "process_reward": float(state.budget.bonus_total + state.budget.penalty_total),
            "episode_reward": float(sum(state.component_totals.values())),
        }
        out.update({k: float(v) for k, v in metrics.items()})
        return out


class ItemListEnv(TextEnv):
    """A ``TextEnv`` over a list of items (a dataset split), loaded lazily and shared.

    ``reset(options={"index": i})`` picks item ``i``; ``reset(options={"item": {...}})`` poses an
    explicit item (validated by ``prepare_item``); otherwise ``self.np_random`` draws one.

    The items come from ``items`` (checked at once) or from ``data``, a ``DataSource`` that is read
    only when a reset needs the list (an index or a random draw), never for an explicit item, and
    never at construction: adapters that pose every item build envs that do no I/O. The loaded
    list is shared by every instance in the process whose source has the same key and whose
    ``prepare_item`` is the same (``SHARED_ITEMS``), so building many envs costs one load.
    """

    def __init__(self, items: Sequence[Mapping[str, Any]] | None = None, *, data: DataSource | None = None,
                 **kwargs: Any):
        super().__init__(**kwargs)
        if items is None and data is None:
            raise ValueError(f"{type(self).__name__} needs items or a data source")
        self._data_source = data
        self._items: tuple[Item, ...] | None = None
        if items is not None:
            prepared = tuple(self.prepare_item(dict(it), source="items", row=i) for i, it in enumerate(items))
            if not prepared:
                raise DataError(f"{type(self).__name__}: items is empty")
            self._items = prepared

    @property
    def items(self) -> Sequence[Item]:
        """Every item of the dataset (loaded on first use; shared between instances: do not mutate)."""
        if self._items is None:
            source = self._data_source
            assert source is not None
            key = (type(self).prepare_item, *source.cache_key())
            self._items = SHARED_ITEMS.get(key, lambda: self._load_items(source))
        return self._items

    @property
    def items_loaded(self) -> bool:
        """Whether this instance holds its item list (it was given, or a reset needed it)."""
        return self._items is not None

    def _load_items(self, source: DataSource) -> tuple[Item, ...]:
        records = source.load()
        prepared = tuple(self.prepare_item(dict(r), source=source.name, row=i) for i, r in enumerate(records))
        if not prepared:
            raise DataError(f"{source.name}: the dataset is empty")
        logger.info("loaded %d items from %s", len(prepared), source.name)
        return prepared

    def prepare_item(self, item: Item, *, source: str, row: int | str | None) -> Item:
        """Check and normalise one item; raise ``DataError`` at ``locate(source, row)`` naming the field."""
        return item

    def _draw_item(self, options: Mapping[str, Any]) -> Item:
        if options.get("item") is not None:
            if not isinstance(options["item"], Mapping):
                raise DataError("reset(options={'item': ...}) needs a mapping")
            return self.prepare_item(dict(options["item"]), source="options['item']", row=None)
        items = self.items
        if options.get("index") is not None:
            index = int(options["index"])
            if not -len(items) <= index < len(items):
                raise IndexError(f"index {index} is out of range for {len(items)} items")
            return copy.deepcopy(items[index])  # the list is shared: the episode gets its own copy
        return copy.deepcopy(items[int(self.np_random.integers(len(items)))])


# The loaded item lists, one per (prepare_item, data source key, file versions) in this process.
SHARED_ITEMS: SharedValues[tuple[Item, ...]] = SharedValues()


def end_unfinished(env: gym.Env, reason: str = "budget") -> tuple[float, dict[str, Any]]:
    """``TextEnv.end_unfinished`` through any Gymnasium wrappers (it acts on ``env.unwrapped``).

    Duck-typed, so envs that follow the contract without subclassing ``TextEnv`` (``RemoteEnv``)
    take part.
    """
    base = getattr(env, "unwrapped", env)
    if not callable(getattr(base, "end_unfinished", None)):
        raise TypeError(f"end_unfinished needs an env with an end_unfinished method, got {type(base).__name__}")
    return base.end_unfinished(reason)


def format_transcript(messages: Sequence[Mapping[str, Any]]) -> str:
    """An episode's messages as readable text, one ``[role] content`` block each (local and remote envs)."""
    return "\n".join(f"[{m['role']}] {m['content']}" for m in messages)


def render_text(text: str, render_mode: str | None) -> str | None:
    """Gymnasium's text render: ``"human"`` prints and returns None, any other mode returns the text."""
    if render_mode == "human":
        print(text)  # noqa: T201 - rendering to the terminal is this mode's purpose
        return None
    return text


def coerce_action(action: Any, max_chars: int) -> str:
    """Make any action a ``str`` of bounded length: bytes are decoded leniently, NULs dropped."""
    if isinstance(action, bytes | bytearray):
        action = bytes(action).decode("utf-8", errors="replace")
    elif not isinstance(action, str):
        action = "" if action is None else str(action)
    if "\x00" in action:
        action = action.replace("\x00", "")
    return action[:max_chars]
