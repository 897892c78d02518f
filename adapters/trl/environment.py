"""TRL 1.16 ``GRPOTrainer(environment_factory=...)`` classes for any suite env.

``make_trl_environment(env_id, processing_class=tok, **make_kwargs)`` returns a zero-argument class
that TRL instantiates once per concurrent rollout and resets once per episode:

* ``reset(**row)`` rebuilds the episode from the row's ``EpisodeSpec`` label (column ``label``)
  and resets the suite env on that item; it returns ``None`` because the row's ``prompt`` already
  is the env's chat prompt.
* Each env tool becomes a public method with a signature, type hints and a Google-style docstring
  built from the tool's JSON schema (TRL turns them into the prompt's tool list). A call steps the
  env with that call in Hermes JSON form, so the env runs the tool and books its process rewards;
  a failed call raises, so TRL counts it in ``tools/failure_frequency`` and shows the error.
* The class attributes ``reward_funcs`` and ``reward_weights`` are what ``GRPOTrainer`` and
  ``GRPOConfig(reward_weights=...)`` take: one reward function per env reward component with a
  non-zero weight, returning the episode's *unweighted* total of that component, weighted by the
  env's own weight. TRL logs each as ``rewards/<component>/mean``; its weighted sum (TRL's
  ``reward``) is the env's episode reward. The first function also logs the episode metrics as
  ``env/<metric>`` through TRL's ``log_metric``.

What TRL decides, and how the env still scores it:

* TRL sums one scalar per rollout and gives every token of the rollout the same advantage: the
  env's per-turn process rewards (valid calls, retrieval hits, penalties) are summed into the
  episode reward, not credited per turn.
* TRL parses tool calls with the chat template's response parser (``add_response_schema``): for
  Qwen2.5/Qwen3 templates, Hermes ``<tool_call>{json}</tool_call>``. Text the parser does not read
  as a call (tag forms such as ``<search>q</search>`` or ``<calculator>``, malformed JSON) ends the
  rollout in TRL. The reward step then gives the final turn's raw text (decoded from the
  completion tokens, reasoning and all, not TRL's parsed ``content``) to the env, which parses it
  as it always does: a ``\\boxed{}``/``<answer>`` response is scored as the final answer, a
  tag-form or malformed call is run (or charged) as a tool turn and the episode is then ended as
  unfinished. Calls TRL rejected before they reached a method (unknown tool name, non-object
  arguments) are replayed to the env so it charges them.
* A rollout TRL cut (still calling tools at ``max_tool_calling_iterations`` or when a tool result
  would overflow ``max_completion_length``: reason ``max_turns``; a last turn without an EOS:
  ``budget``) is scored by ``envs.end_unfinished``.
* TRL executes the calls of one assistant turn one by one; each is its own env step, so a turn with
  k calls counts k env turns against the env's ``max_turns``.
"""

from __future__ import annotations

import inspect
import json
import keyword
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal

from adapters.episodes import EnvPool, EnvUrl, EpisodeSpec, make_env
from envs import end_unfinished
from envs.core.chat import continuation_text

logger = logging.getLogger(__name__)

LABEL_KEY = "label"
METRIC_PREFIX = "env/"
_POOL = EnvPool()
_JSON_TO_PYTHON: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool, "array": list,
                                    "object": dict}
_RESERVED = frozenset({"reset", "get_reward"})


class ToolCallFailed(RuntimeError):
    """A tool call the env ran and judged failed; TRL shows the message to the model as the result."""


class _Episode:
    """One rollout's episode: its spec and, once over, its result."""

    def __init__(self, spec: EpisodeSpec):
        self.spec = spec
        self.result: dict[str, Any] | None = None  # {"components": ..., "metrics": ..., "reward": ...}


class SuiteEnvironment:
    """Base of the generated classes (``make_trl_environment``); TRL sees only ``reset`` and the tools."""

    env_id: ClassVar[str]
    make_kwargs: ClassVar[dict[str, Any]]
    tool_names: ClassVar[tuple[str, ...]]
    reward_funcs: ClassVar[list[Callable[..., list[float]]]]
    reward_weights: ClassVar[list[float]]
    metric_keys: ClassVar[tuple[str, ...]]
    env_url: ClassVar[EnvUrl] = None  # env servers the episodes are played on (``envs.make``'s rule)
    _tokenizer: ClassVar[Any]

    def __init__(self) -> None:
        self._env: Any = None
        self._env_key: str | None = None
        self._episode: _Episode | None = None
        self._lock = threading.Lock()

    def reset(self, **row: Any) -> str | None:
        """Pose the row's item (its ``label`` column holds the ``EpisodeSpec``)."""
        if LABEL_KEY not in row:
            raise ValueError(f"the dataset row has no {LABEL_KEY!r} column; write rows with adapters.trl.trl_rows")
        spec = EpisodeSpec.from_label(row[LABEL_KEY])
        key = EnvPool.key(spec.env_id, spec.make_kwargs, self.env_url)
        if key != self._env_key:
            self._release()
            self._env = _POOL.acquire(spec.env_id, spec.make_kwargs, env_url=self.env_url)
            self._env_key = key
        self._env.reset(seed=spec.seed, options={"item": spec.item})
        self._episode = _Episode(spec)
        return None

    # ------------------------------------------------------------------ tools
    def _call_tool(self, name: str, arguments: dict[str, Any]) -> str:
        episode = self._require_episode()
        with self._lock:
            if episode.result is not None:
                raise ToolCallFailed("the episode is over: no more tool calls")
            observation, _, terminated, truncated, info = self._env.step(_hermes_call(name, arguments))
            if terminated or truncated:
                episode.result = _result(info)
        records = info.get("tool_calls") or [{}]
        text = _tool_message(observation)
        if records[-1].get("status", "ok") != "ok":
            raise ToolCallFailed(text)
        return text

    # ------------------------------------------------------------------ scoring
    def _finish(self, messages: Sequence[Mapping[str, Any]], completion_ids: Sequence[int]) -> dict[str, Any]:
        """End the episode from TRL's view of the rollout (idempotent); return its result."""
        episode = self._require_episode()
        with self._lock:
            if episode.result is None:
                episode.result = self._score(list(messages), list(completion_ids))
        return episode.result

    def _score(self, messages: list[Mapping[str, Any]], completion_ids: list[int]) -> dict[str, Any]:
        env = self._env
        unseen = _calls_trl_rejected(messages, set(self.tool_names))
        if unseen:
            _, _, terminated, truncated, info = env.step("\n".join(_hermes_call(n, a) for n, a in unseen))
            if terminated or truncated:
                return _result(info)
        last = messages[-1] if messages else {}
        if last.get("role") == "assistant" and last.get("tool_calls"):
            return _result(end_unfinished(env, "max_turns")[1])
        if not _ends_turn(self._tokenizer, completion_ids):
            return _result(end_unfinished(env, "budget")[1])
        _, _, terminated, truncated, info = env.step(final_turn_text(self._tokenizer, completion_ids))
        if terminated or truncated:
            return _result(info)
        # The final text held a call TRL did not parse (a tag form, malformed JSON): the env ran or charged
        # it, and TRL gives the rollout no further turn.
        return _result(end_unfinished(env, "max_turns")[1])

    def _require_episode(self) -> _Episode:
        if self._episode is None or self._env is None:
            raise RuntimeError("reset() must be called before the episode's tools or rewards")
        return self._episode

    def _release(self) -> None:
        if self._env is not None and self._episode is not None:
            _POOL.release(self._episode.spec.env_id, self._episode.spec.make_kwargs, self._env, env_url=self.env_url)
        self._env = None


def make_trl_environment(env_id: str, *, processing_class: Any, env_url: EnvUrl = None,
                         **make_kwargs: Any) -> type[SuiteEnvironment]:
    """The ``environment_factory`` class for ``env_id`` built with ``make_kwargs``.

    ``processing_class`` is the tokenizer the trainer uses (an object, or a name/path loaded with
    ``AutoTokenizer``): the final turn is decoded from the completion tokens with it. ``env_url``:
    env servers to play the episodes on (``envs.make``: else ``$AGENTR1_ENV_URL``, else local envs).
    """
    import envs

    env_id = envs.resolve_env_id(env_id)
    if isinstance(processing_class, str):
        from transformers import AutoTokenizer

        processing_class = AutoTokenizer.from_pretrained(processing_class)
    probe = make_env(env_id, make_kwargs, env_url=env_url)
    try:
        inner = probe.unwrapped
        tools = list(getattr(inner, "tools", {}).values())
        weights = {k: float(v) for k, v in sorted(getattr(inner, "reward_weights", {}).items()) if v != 0.0}
    finally:
        probe.close()
    from adapters.episodes import episode_log_keys

    metric_keys, _ = episode_log_keys(env_id, make_kwargs, env_url=env_url)
    namespace: dict[str, Any] = {
        "env_id": env_id, "make_kwargs": dict(make_kwargs), "env_url": env_url, "tool_names": tuple(t.name for t in tools),
        "metric_keys": tuple(dict.fromkeys([*metric_keys, "unfinished", "env_error"])), "_tokenizer": processing_class,
        "__doc__": f"TRL environment_factory class for {env_id} (generated by adapters.trl.make_trl_environment).",
    }
    for tool in tools:
        namespace[tool.name] = tool_method(tool.name, tool.description, tool.parameters)
    class_name = "".join(ch for ch in env_id.split("/")[-1].title() if ch.isalnum()) + "TRLEnvironment"
    cls = type(class_name, (SuiteEnvironment,), namespace)
    cls.reward_funcs = [_reward_function(cls, name, weight, log=(i == 0)) for i, (name, weight) in enumerate(weights.items())]
    cls.reward_weights = list(weights.values())
    return cls


def tool_method(name: str, description: str, parameters: Mapping[str, Any]) -> Callable[..., str]:
    """A method ``name(self, **arguments)`` whose signature, hints and docstring follow the JSON schema.

    The body accepts any keywords, so arguments that do not fit the schema still reach the env,
    which judges them (a Python signature would reject them before the env saw the call).
    """
    if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_") or name in _RESERVED:
        raise ValueError(f"tool name {name!r} cannot be a TRL tool method (a public identifier other than reset/get_reward)")
    props: Mapping[str, Any] = parameters.get("properties", {}) or {}
    required = [p for p in parameters.get("required", []) if p in props]
    optional = [p for p in props if p not in required]
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    annotations: dict[str, Any] = {}
    for arg in required + optional:
        if not arg.isidentifier() or keyword.iskeyword(arg):
            raise ValueError(f"tool {name!r}: argument {arg!r} is not a Python identifier")
        hint = _python_type(props[arg])
        if arg in optional:
            hint = hint | None
        annotations[arg] = hint
        params.append(inspect.Parameter(arg, inspect.Parameter.KEYWORD_ONLY, annotation=hint,
                                        default=inspect.Parameter.empty if arg in required else None))
    annotations["return"] = str

    def method(self: SuiteEnvironment, **arguments: Any) -> str:
        return self._call_tool(name, {k: v for k, v in arguments.items() if not (k in optional and v is None)})

    method.__name__ = method.__qualname__ = name
    method.__signature__ = inspect.Signature(params, return_annotation=str)  # type: ignore[attr-defined]
    method.__annotations__ = annotations
    method.__doc__ = google_docstring(description, {a: props[a] for a in required + optional})
    return method


def google_docstring(description: str, properties: Mapping[str, Mapping[str, Any]]) -> str:
    """A Google-style docstring (what ``transformers.utils.get_json_schema`` parses)."""
    lines = [" ".join(description.split()) or "Run the tool.", ""]
    if properties:
        lines.append("Args:")
        for arg, schema in properties.items():
            text = " ".join(str(schema.get("description") or schema.get("title") or arg).split())
            lines.append(f"    {arg}: {text}")
        lines.append("")
    lines += ["Returns:", "    The tool's result."]
    return "\n".join(lines)


def _python_type(schema: Mapping[str, Any]) -> Any:
    if schema.get("enum"):
        return Literal[tuple(schema["enum"])]  # type: ignore[misc]
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [_JSON_TO_PYTHON[k] for k in kind if k in _JSON_TO_PYTHON]
        if not kinds:
            return str
        hint = kinds[0]
        for extra in kinds[1:]:
            hint = hint | extra
        return hint
    if kind == "array" and isinstance(schema.get("items"), Mapping):
        return list[_python_type(schema["items"])]  # type: ignore[misc]
    return _JSON_TO_PYTHON.get(kind, str)


def _reward_function(cls: type[SuiteEnvironment], component: str, weight: float, *, log: bool) -> Callable[..., list[float]]:
    """TRL reward function: the episode's unweighted total of ``component`` for each rollout."""

    def reward(completions: list, completion_ids: list, environments: list | None = None, log_metric: Any = None,
               **_: Any) -> list[float | None]:
        if environments is None:
            raise RuntimeError("TRL passed no environments: use this reward function with environment_factory")
        values: list[float | None] = []
        results = []
        for env, messages, ids in zip(environments, completions, completion_ids, strict=True):
            if not isinstance(env, cls):
                values.append(None)  # another environment's rollout (dict environment_factory)
                continue
            result = env._finish(messages, ids)
            results.append(result)
            values.append(result["components"].get(component, 0.0) / weight)
        if log:
            _log_metrics(log_metric, cls.metric_keys, results)
        return values

    reward.__name__ = reward.__qualname__ = component
    return reward


def plain_reward_functions(env_id: str, *, env_url: EnvUrl = None,
                           **make_kwargs: Any) -> tuple[list[Callable[..., list[float]]], list[float]]:
    """``(reward_funcs, reward_weights)`` that score single-turn completions without an environment class.

    For chat templates TRL refuses with ``environment_factory`` (they render no tool calls, e.g.
    DeepSeek-R1-Distill's, the Open-RS model): each completion is the final answer of the episode
    its row's label describes. The first function steps a pooled env per completion; the others
    reuse its results for the same batch. ``env_url`` as in ``make_trl_environment``.
    """
    import envs
    from adapters.episodes import episode_log_keys

    env_id = envs.resolve_env_id(env_id)
    probe = make_env(env_id, make_kwargs, env_url=env_url)
    try:
        weights = {k: float(v) for k, v in sorted(getattr(probe.unwrapped, "reward_weights", {}).items()) if v != 0.0}
    finally:
        probe.close()
    metric_keys = tuple(dict.fromkeys([*episode_log_keys(env_id, make_kwargs, env_url=env_url)[0], "unfinished", "env_error"]))
    last: dict[str, Any] = {"batch": None, "results": []}
    lock = threading.Lock()

    def score(completions: list, labels: list) -> list[dict[str, Any]]:
        with lock:
            if last["batch"] is completions:
                return last["results"]
            results = []
            for completion, label in zip(completions, labels, strict=True):
                spec = EpisodeSpec.from_label(label)
                env = _POOL.acquire(spec.env_id, spec.make_kwargs, env_url=env_url)
                env.reset(seed=spec.seed, options={"item": spec.item})
                text = completion[-1]["content"] if isinstance(completion, list) else str(completion)
                _, _, terminated, truncated, info = env.step(text)
                if not (terminated or truncated):  # a tool call in a run without tools: no further turn
                    info = end_unfinished(env, "max_turns")[1]
                _POOL.release(spec.env_id, spec.make_kwargs, env, env_url=env_url)
                results.append(_result(info))
            last["batch"], last["results"] = completions, results
            return results

    def make(component: str, weight: float, log: bool) -> Callable[..., list[float]]:
        def reward(completions: list, log_metric: Any = None, **columns: Any) -> list[float]:
            if LABEL_KEY not in columns:
                raise ValueError(f"the dataset has no {LABEL_KEY!r} column; write rows with adapters.trl.trl_rows")
            results = score(completions, columns[LABEL_KEY])
            if log:
                _log_metrics(log_metric, metric_keys, results)
            return [r["components"].get(component, 0.0) / weight for r in results]

        reward.__name__ = reward.__qualname__ = component
        return reward

    return [make(c, w, i == 0) for i, (c, w) in enumerate(weights.items())], list(weights.values())


def _log_metrics(log_metric: Any, keys: Sequence[str], results: Sequence[Mapping[str, Any]]) -> None:
    if log_metric is None or not results:
        return
    for key in keys:
        log_metric(METRIC_PREFIX + key, sum(r["metrics"].get(key, 0.0) for r in results) / len(results))
    log_metric(METRIC_PREFIX + "reward", sum(r["reward"] for r in results) / len(results))


def _result(info: Mapping[str, Any]) -> dict[str, Any]:
    components = {k: float(v) for k, v in (info.get("episode_reward_components") or {}).items()}
    return {"components": components, "metrics": dict(info.get("metrics") or {}), "reward": float(sum(components.values())),
            "end_reason": info.get("end_reason", "answer")}


def _hermes_call(name: str, arguments: Any) -> str:
    payload = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False, default=str)
    return f"<tool_call>{payload}</tool_call>"


def _tool_message(observation: str) -> str:
    """The observation as a tool message: the chat template adds Hermes' ``<tool_response>`` itself."""
    opening, closing = "<tool_response>\n", "\n</tool_response>"
    inner = observation[len(opening):-len(closing)] if observation.startswith(opening) and observation.endswith(closing) else None
    if inner is not None and opening not in inner:
        return inner
    return observation


def _calls_trl_rejected(messages: Sequence[Mapping[str, Any]], tool_names: set[str]) -> list[tuple[str, Any]]:
    """Calls TRL parsed and answered itself without calling a method (unknown name, non-object arguments)."""
    rejected = []
    for i, message in enumerate(messages):
        executed = i + 1 < len(messages) and messages[i + 1].get("role") == "tool"
        if message.get("role") != "assistant" or not executed:
            continue
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            name, arguments = str(function.get("name", "")), function.get("arguments")
            if call.get("type") != "function" or name not in tool_names or not isinstance(arguments, Mapping):
                rejected.append((name, arguments))
    return rejected


def _special_texts(tokenizer: Any) -> list[str]:
    return [t for t in (getattr(tokenizer, "all_special_tokens", None) or []) if t]


def _ends_turn(tokenizer: Any, completion_ids: Sequence[int]) -> bool:
    """Did generation stop on an end-of-sequence token (TRL's own "not truncated" test)?"""
    if not completion_ids:
        return False
    stops = {getattr(tokenizer, "eos_token_id", None), getattr(tokenizer, "pad_token_id", None)}
    return int(completion_ids[-1]) in stops - {None}


def final_turn_text(tokenizer: Any, completion_ids: Sequence[int]) -> str:
    """The last assistant turn's raw text: after the last assistant header, without trailing special tokens."""
    text = tokenizer.decode(list(completion_ids), skip_special_tokens=False)
    header = continuation_text(tokenizer, [])
    at = text.rfind(header) if header else -1
    if at >= 0:
        text = text[at + len(header):]
    specials = _special_texts(tokenizer)
    changed = True
    while changed:
        changed = False
        for token in specials:
            if text.endswith(token):
                text, changed = text[: -len(token)], True
    return text
