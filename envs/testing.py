"""The conformance kit: one call that checks an environment against the suite's contract.

Contributors run ``check_env_conformance("AgentR1/MyEnv-v0")`` in their env's test file. It checks:

* Gymnasium's own ``check_env`` (spaces, seeding, return types), its warnings counted as failures;
* the same seed gives the same episode, and ``reset`` leaves nothing from the previous episode;
* adversarial actions (empty, huge, binary junk, broken tags, unbalanced or deeply nested JSON,
  pathological maths) never raise, return well-formed, picklable results, and finish within a time bound;
* a model that keeps calling tools is stopped by ``max_turns`` (``truncated=True``);
* every reward (golden steps included) equals the sum of ``info["reward_components"]``; final steps
  report ``info["metrics"]``;
* ``demonstration()`` (the golden actions) ends the episode with ``acc == 1``;
* ``reset(options={"item": info["item"]})`` replays the episode exactly (adapters rely on it);
* the reward audit (``reward_audit``): every degenerate policy (tool spam at the per-turn maximum,
  repeated calls, never answering, a wrong answer after spam, answering without tags, empty turns,
  junk, stopping at a token budget via ``end_unfinished``) earns strictly less episode reward than
  the demonstration, and the demonstration padded with useless tool calls earns no more than it. An env
  with a ``python`` tool also plays python spam, an infinite loop in every turn, and printing the
  answer from code instead of computing it (``python_policies``).
"""

from __future__ import annotations

import inspect
import json
import math
import pickle
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
from gymnasium.utils.env_checker import check_env

from envs.core.parsing import parse_turn
from envs.core.records import EpisodeRecord, play_actions
from envs.core.registry import resolve_env_id
from envs.core.tools import Tool

ADVERSARIAL_ACTIONS: tuple[str, ...] = (
    "",
    " \n\t ",
    "x" * 1_000_000,
    bytes(range(256)).decode("latin-1") * 64,
    "\x00\x01\x02\ud800\udfff\ufffe",
    "<tool_call>",
    "<tool_call></tool_call>",
    "<tool_call>{\"name\": \"search\", \"arguments\": {\"query\": \"a\"</tool_call>",
    "<tool_call>" + "[" * 100_000 + "</tool_call>",
    "<tool_call>{\"name\": 5, \"arguments\": []}</tool_call>",
    "<tool_call>{\"name\": \"no_such_tool\", \"arguments\": {}}</tool_call>",
    "<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": \"9**9**9**9\"}}</tool_call>",
    "<tool_call>{\"name\": \"search\", \"arguments\": {\"query\": \"" + "q " * 20_000 + "\"}}</tool_call>",
    "<tool_call>" * 5_000,
    "<search></search><search>" + "z" * 10_000,
    "<answer></answer>",
    "<answer>" * 1000 + "</answer>" * 1000,
    "<think>" * 1000 + "</think>",
    "\\boxed{",
    "\\boxed{" * 10_000 + "}" * 10_000,
    "\\boxed{9^{9^{9^{9^{9}}}}}",
    "\\boxed{\\frac{1}{0}}",
    "\\boxed{" + "(" * 5000 + "1" + ")" * 5000 + "}",
    "\\boxed{x^{2}+" * 500 + "}" * 500,
    "The answer is \\boxed{\\sqrt{-1}} \\boxed{\\infty} \\boxed{\\text{\\}}}",
    "😀" * 50_000,
    "\\boxed{1e999999999}",
    "<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": \"1\", \"x\": " + "[" * 900 + "]" * 900 + "}}</tool_call>",
    "<tool_call></tool_call>" * 2_000,
)


class ConformanceError(AssertionError):
    """The env broke the contract; the message lists every failed check."""


@dataclass
class ConformanceReport:
    env_id: str
    checks: list[str] = field(default_factory=list)
    slowest_step_s: float = 0.0
    golden_return: float = 0.0
    audit: list[AuditRow] = field(default_factory=list)


def check_env_conformance(
    env: str | Callable[[], gym.Env],
    *,
    make_kwargs: dict[str, Any] | None = None,
    seeds: Sequence[int] = (0, 1),
    adversarial_actions: Sequence[str] = ADVERSARIAL_ACTIONS,
    max_step_seconds: float = 20.0,
    run_gymnasium_checker: bool = True,
) -> ConformanceReport:
    """Run every check on ``env`` (an id/alias, or a zero-argument factory); raise ``ConformanceError``."""
    env_id, factory = _factory(env, make_kwargs)
    report = ConformanceReport(env_id)
    failures: list[str] = []

    def check(name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
            report.checks.append(name)
        except Exception as exc:  # collect every failure, then report them together
            failures.append(f"{name}: {type(exc).__name__}: {exc}")

    if run_gymnasium_checker:
        check("gymnasium.check_env", lambda: _gymnasium_check(factory))
    check("determinism", lambda: _check_determinism(factory, seeds))
    check("reset leaves no state", lambda: _check_no_state_leak(factory, seeds))
    check("adversarial actions", lambda: _check_adversarial(factory, seeds[0], adversarial_actions, max_step_seconds, report))
    check("max_turns truncates", lambda: _check_truncation(factory, seeds[0], max_step_seconds))
    check("golden answer", lambda: _check_golden(factory, seeds, max_step_seconds, report))
    check("item replay", lambda: _check_item_replay(factory, seeds))
    check("reward audit", lambda: _check_audit(factory, seeds[:1], adversarial_actions[:6], report))
    if failures:
        raise ConformanceError(f"{env_id} failed {len(failures)} check(s):\n  " + "\n  ".join(failures))
    return report


# ---------------------------------------------------------------------------- checks
def _gymnasium_check(factory: Callable[[], gym.Env]) -> None:
    env = factory()
    try:
        # Gymnasium reports many contract breaks (observation outside its space, wrong reward type,
        # non-deterministic reset) only as warnings; here they are failures.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()
    complaints = [str(w.message) for w in caught if "WARN:" in str(w.message)]
    _require(not complaints, "gymnasium's checker warned: " + " | ".join(complaints))


def _play(env: gym.Env, seed: int, actions: Sequence[str], options: dict | None = None, *,
          max_step_seconds: float | None = None, what: str = "") -> list[tuple]:
    """Reset and play ``actions``; with ``max_step_seconds``, check every step's result as well."""
    obs, info = env.reset(seed=seed, options=options)
    trace: list[tuple] = [("reset", obs, _comparable(info))]
    for i, action in enumerate(actions):
        start = time.perf_counter()
        result = env.step(action)
        if max_step_seconds is not None:
            _check_step_result(env, result, time.perf_counter() - start, max_step_seconds, f"{what} step {i + 1}")
        obs, reward, terminated, truncated, info = result
        trace.append((obs, reward, terminated, truncated, _comparable(info)))
        if terminated or truncated:
            break
    return trace


def _comparable(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if k in ("item", "messages", "reward_components", "metrics", "new_messages")}


def _check_determinism(factory: Callable[[], gym.Env], seeds: Sequence[int]) -> None:
    for seed in seeds:
        first, second = factory(), factory()
        try:
            first.reset(seed=seed)
            actions = first.unwrapped.demonstration()
            a = _play(first, seed, actions)
            b = _play(second, seed, actions)
        finally:
            first.close()
            second.close()
        _require(a == b, f"seed {seed}: two fresh envs played the same actions differently")
    env = factory()
    try:
        items = {repr(env.reset(seed=s)[1].get("item")) for s in range(8)}
    finally:
        env.close()
    # Only an env with a one-item dataset may pose the same item for every seed.
    _require(len(items) > 1 or len(getattr(env.unwrapped, "items", ())) == 1,
             "eight different seeds all gave the same item: reset(seed=...) does not seed item selection")


def _check_no_state_leak(factory: Callable[[], gym.Env], seeds: Sequence[int]) -> None:
    used, fresh = factory(), factory()
    try:
        used.reset(seed=seeds[0])
        for action in ("<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": \"1+1\"}}</tool_call>",
                       "<search>first</search>", "<tool_call>{bad json</tool_call>"):
            _, _, terminated, truncated, _ = used.step(action)
            if terminated or truncated:
                break
        seed = seeds[-1]
        fresh.reset(seed=seed)
        actions = fresh.unwrapped.demonstration()
        _require(_play(used, seed, actions) == _play(fresh, seed, actions),
                 "an env reused after a partial episode behaves differently from a fresh one")
    finally:
        used.close()
        fresh.close()


def _check_step_result(env: gym.Env, result: tuple, elapsed: float, max_seconds: float, what: str) -> None:
    obs, reward, terminated, truncated, info = result
    _require(isinstance(obs, str) and env.observation_space.contains(obs), f"{what}: observation is not a str in the space")
    _require(isinstance(reward, float) and math.isfinite(reward), f"{what}: reward {reward!r} is not a finite float")
    _require(isinstance(terminated, bool) and isinstance(truncated, bool), f"{what}: terminated/truncated must be bool")
    try:  # AsyncVectorEnv pickles every info from its workers
        pickle.dumps(info)
    except Exception as exc:
        raise AssertionError(f"{what}: info cannot be pickled ({type(exc).__name__}: {exc})") from None
    components = info.get("reward_components")
    _require(isinstance(components, dict) and all(isinstance(v, float) for v in components.values()),
             f"{what}: info['reward_components'] must be a dict of floats")
    _require(math.isclose(reward, sum(components.values()), abs_tol=1e-9),
             f"{what}: reward {reward} != sum of components {components}")
    if terminated or truncated:
        metrics = info.get("metrics")
        _require(isinstance(metrics, dict) and {"acc", "format", "turns"} <= set(metrics),
                 f"{what}: the final step must report info['metrics'] with acc, format, turns")
        _require(all(isinstance(v, float) and math.isfinite(v) for v in metrics.values()), f"{what}: metrics must be finite floats")
    _require(elapsed <= max_seconds, f"{what}: step took {elapsed:.1f}s (limit {max_seconds}s)")


def _check_adversarial(factory: Callable[[], gym.Env], seed: int, actions: Sequence[str], max_seconds: float,
                       report: ConformanceReport) -> None:
    env = factory()
    try:
        for i, action in enumerate(actions):
            env.reset(seed=seed)
            for repeat in range(2):
                start = time.perf_counter()
                result = env.step(action)
                elapsed = time.perf_counter() - start
                report.slowest_step_s = max(report.slowest_step_s, elapsed)
                _check_step_result(env, result, elapsed, max_seconds, f"adversarial action #{i} (step {repeat + 1})")
                if result[2] or result[3]:
                    break
    finally:
        env.close()


def _check_truncation(factory: Callable[[], gym.Env], seed: int, max_seconds: float) -> None:
    env = factory()
    try:
        env.reset(seed=seed)
        base = env.unwrapped
        if not getattr(base, "tools", None):
            return
        max_turns = base.max_turns
        for turn in range(1, max_turns + 1):
            start = time.perf_counter()
            result = env.step("<tool_call>{\"name\": \"__missing__\", \"arguments\": {\"n\": %d}}</tool_call>" % turn)
            _check_step_result(env, result, time.perf_counter() - start, max_seconds, f"tool turn {turn}")
            _require(not result[2], f"tool turn {turn} terminated the episode")
            if result[3]:
                _require(turn == max_turns, f"truncated at turn {turn}, expected {max_turns}")
                return
        raise AssertionError(f"{max_turns} tool turns did not truncate the episode")
    finally:
        env.close()


def _check_golden(factory: Callable[[], gym.Env], seeds: Sequence[int], max_seconds: float,
                  report: ConformanceReport) -> None:
    env = factory()
    try:
        for seed in seeds:
            env.reset(seed=seed)
            trace = _play(env, seed, env.unwrapped.demonstration(), max_step_seconds=max_seconds, what=f"seed {seed}: golden")
            last = trace[-1]
            _require(last[2] is True and last[3] is False, f"seed {seed}: the demonstration did not end the episode (terminated)")
            metrics = last[4]["metrics"]
            _require(metrics["acc"] == 1.0, f"seed {seed}: the demonstration scored acc={metrics['acc']}")
            report.golden_return = sum(step[1] for step in trace[1:])
    finally:
        env.close()


def _check_item_replay(factory: Callable[[], gym.Env], seeds: Sequence[int]) -> None:
    """``reset(options={"item": info["item"]})`` under another seed must replay the episode exactly."""
    env = factory()
    try:
        for seed in seeds:
            _, info = env.reset(seed=seed)
            item = info["item"]
            actions = env.unwrapped.demonstration()
            original = _play(env, seed, actions)
            # A seed that would pose a different item, so an env that ignores the option shows it.
            other = next((s for s in range(seed + 1, seed + 33) if repr(env.reset(seed=s)[1]["item"]) != repr(item)),
                         seed + 1)
            env.reset(seed=other, options={"item": item})
            _require(env.unwrapped.demonstration() == actions,
                     f"seed {seed}: the replayed item gives a different demonstration")
            replayed = _play(env, other, actions, options={"item": item})
            _require(replayed == original, f"seed {seed}: reset(options={{'item': info['item']}}) did not replay the "
                                           "episode (different prompt, item, rewards or metrics)")
    finally:
        env.close()


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


# ---------------------------------------------------------------------------- the reward audit
@dataclass(frozen=True)
class AuditRow:
    """One policy's episode reward against the demonstration's on the same item."""

    policy: str
    seed: int
    episode_reward: float
    golden_reward: float
    may_tie: bool = False  # padded demonstrations may equal the golden reward; degenerate policies may not
    unfinished: bool = False  # the episode ended without a final answer (out of turns, or cut)
    acc: float = 0.0

    @property
    def margin(self) -> float:
        return self.golden_reward - self.episode_reward

    @property
    def ok(self) -> bool:
        return self.margin >= -1e-9 if self.may_tie else self.margin > 1e-9


@dataclass(frozen=True)
class Plan:
    """A policy's actions for one episode; if they run out first, the episode is cut at a budget."""

    actions: list[str]
    may_tie: bool = False


PADDING_CALLS = 3  # useless calls added to the demonstration


def _calls_per_turn() -> int:
    """The most tool calls one turn may hold (``parse_turn``'s limit): spam at the maximum."""
    return int(inspect.signature(parse_turn).parameters["max_calls"].default)


def _argument_value(schema: dict[str, Any], n: int) -> Any:
    kind = schema.get("type")
    if kind == "integer":
        return n
    if kind == "number":
        return n + 0.5
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return {}
    return f"{n} + 1"  # a string every built-in tool accepts: an expression, or a query that finds nothing


def tool_call_text(tool: Tool, n: int) -> str:
    """A well-formed call of ``tool`` whose arguments depend on ``n`` (distinct ``n``: distinct calls)."""
    props: dict[str, Any] = tool.parameters.get("properties", {})
    names = list(tool.parameters.get("required") or list(props)[:1])
    arguments = {name: _argument_value(props.get(name, {}), n) for name in names}
    return "<tool_call>" + json.dumps({"name": tool.name, "arguments": arguments}) + "</tool_call>"


def _gold_strings(item: dict[str, Any]) -> list[str]:
    golds = [item.get("answer"), *(item.get("answers") or ())]
    return [g for g in golds if isinstance(g, str) and g.strip()]


def degenerate_policies(base: Any, adversarial: Sequence[str] = ADVERSARIAL_ACTIONS[:6]) -> dict[str, Plan]:
    """The policies the audit plays on ``base``'s current episode (its item is already drawn).

    Every plan but the padded demonstrations must earn strictly less than ``base.demonstration()``.
    """
    demo = list(base.demonstration())
    tools: list[Tool] = list(getattr(base, "tools", {}).values())
    turns = int(base.max_turns)
    per_turn = _calls_per_turn()
    counter = iter(range(10, 10**9))

    # Without tools, "tool" turns still write calls (of a calculator the env does not have): text a
    # model trained elsewhere would emit, which must end the episode as a poor final answer.
    callable_tools = tools or [Tool("calculator", "", {"type": "object", "properties": {"expression": {"type": "string"}},
                                                       "required": ["expression"]}, fn=str)]

    def spam_turn() -> str:
        return "".join(tool_call_text(callable_tools[i % len(callable_tools)], next(counter)) for i in range(per_turn))

    def single_call() -> str:
        return tool_call_text(callable_tools[0], next(counter))

    golds = _gold_strings(base.item)
    final = demo[-1]
    gold = next((g for g in golds if g in final), None)
    wrong = final.replace(gold, "987654321") if gold is not None else None
    plans: dict[str, Plan] = {
        "tool spam": Plan([spam_turn() for _ in range(turns)]),
        "repeated call": Plan([tool_call_text(callable_tools[0], 1)] * turns),
        "never answering": Plan([single_call() for _ in range(turns)]),
        "empty turns": Plan([""] * (turns + 1)),
        "budget cut before the answer": Plan(demo[:-1]),
        "budget cut after spam": Plan([spam_turn() for _ in range(turns - 1)]),
    }
    if golds:
        plans["answer without tags"] = Plan([golds[0]])
    if wrong is not None:
        plans["wrong answer"] = Plan([*demo[:-1], wrong])
        plans["tool spam, then wrong answer"] = Plan([*(spam_turn() for _ in range(turns - 1)), wrong])
    for i, action in enumerate(adversarial):
        plans[f"junk #{i} {action[:12]!r}"] = Plan([action] * (turns + 1))
    python = getattr(base, "tools", {}).get("python")
    if python is not None:
        plans.update(python_policies(python, turns, per_turn, counter, golds[0] if golds else None, final))
    if tools:
        useless = [single_call() for _ in range(PADDING_CALLS)]
        if len(demo) > 1:  # the demonstration's first tool turn makes three more calls
            padded = list(demo)
            padded[0] = padded[0] + "\n" + "".join(useless)
            plans["demo padded (same turn)"] = Plan(padded, may_tie=True)
        room = min(PADDING_CALLS, turns - len(demo))
        if room > 0:
            plans["demo padded (extra turns)"] = Plan([*demo[:-1], *useless[:room], final], may_tie=True)
    unique: dict[str, Plan] = {}
    for name, plan in plans.items():  # a one-turn env makes some plans the same; play each once
        if all(plan.actions != other.actions for other in unique.values()):
            unique[name] = plan
    return unique


GOLDEN = "golden"  # the demonstration's name among the audit's episodes


def python_policies(python: Tool, turns: int, per_turn: int, counter: Iterator[int], gold: str | None,
                    final: str) -> dict[str, Plan]:
    """The ways to farm a python tool: spam, infinite loops, and printing the answer instead of computing it."""

    def code_turn(code: str) -> str:
        if python.fence_argument:  # the form a ToRL-style model writes
            return f"```python\n{code}\n```"
        return "<tool_call>" + json.dumps({"name": python.name, "arguments": {"code": code}}) + "</tool_call>"

    plans = {
        "python spam": Plan(["\n".join(code_turn(f"print({next(counter)})") for _ in range(per_turn))
                             for _ in range(turns)]),
        "python infinite loop": Plan([code_turn(f"n = {next(counter)}\nwhile True:\n    n += 1") for _ in range(turns)]),
    }
    if gold is not None:
        printed = "The answer is \\boxed{" + gold + "}"
        plans["python prints the answer, never answers"] = Plan([code_turn(f"print({printed!r})"),
                                                                 "The answer is in the output above."])
        plans["python prints the answer, then answers"] = Plan([code_turn(f"print({gold!r})"), final], may_tie=True)
    return plans


def audit_episodes(env: str | Callable[[], gym.Env], *, make_kwargs: dict[str, Any] | None = None,
                   seeds: Sequence[int] = (0,), adversarial: Sequence[str] = ADVERSARIAL_ACTIONS[:6]
                   ) -> Iterator[tuple[int, str, Plan, EpisodeRecord]]:
    """The reward audit's episodes as records: on each seed's item the demonstration (``GOLDEN``), then
    every degenerate policy; yields ``(seed, policy, plan, record)``. A plan whose actions run out
    before the episode ends is cut at a budget (``play_actions``)."""
    env_id, factory = _factory(env, make_kwargs)
    instance = factory()
    try:
        for seed in seeds:
            _, info = instance.reset(seed=seed)
            options = {"item": info["item"]}
            base = instance.unwrapped
            plans = {GOLDEN: Plan(list(base.demonstration())), **degenerate_policies(base, adversarial)}
            for name, plan in plans.items():
                source = {"kind": "audit", "env": env_id, "seed": seed, "policy": name}
                yield seed, name, plan, play_actions(instance, plan.actions, seed=seed, options=options, source=source)
    finally:
        instance.close()


def reward_audit(env: str | Callable[[], gym.Env], *, make_kwargs: dict[str, Any] | None = None,
                 seeds: Sequence[int] = (0,), adversarial: Sequence[str] = ADVERSARIAL_ACTIONS[:6]) -> list[AuditRow]:
    """Play every degenerate policy against the demonstration on each seed's item; one row per (policy, seed)."""
    rows: list[AuditRow] = []
    golden = 0.0
    for seed, name, plan, record in audit_episodes(env, make_kwargs=make_kwargs, seeds=seeds, adversarial=adversarial):
        if name == GOLDEN:
            golden = record.reward
            continue
        rows.append(AuditRow(name, seed, record.reward, golden, plan.may_tie,
                             unfinished=record.metrics.get("unfinished") == 1.0, acc=float(record.metrics.get("acc", 0.0))))
    return rows


def check_reward_audit(env: str | Callable[[], gym.Env], *, make_kwargs: dict[str, Any] | None = None,
                       seeds: Sequence[int] = (0,)) -> list[AuditRow]:
    """Only the reward audit of ``check_env_conformance``; raise ``ConformanceError`` on a failure."""
    env_id, factory = _factory(env, make_kwargs)
    report = ConformanceReport(env_id)
    try:
        _check_audit(factory, seeds, ADVERSARIAL_ACTIONS[:6], report)
    except AssertionError as exc:
        raise ConformanceError(f"{env_id} failed the reward audit: {exc}") from None
    return report.audit


def check_item_replay(env: str | Callable[[], gym.Env], *, make_kwargs: dict[str, Any] | None = None,
                      seeds: Sequence[int] = (0,)) -> None:
    """Only the item-replay check of ``check_env_conformance``; raise ``ConformanceError`` on a failure."""
    env_id, factory = _factory(env, make_kwargs)
    try:
        _check_item_replay(factory, seeds)
    except AssertionError as exc:
        raise ConformanceError(f"{env_id} failed item replay: {exc}") from None


def _check_audit(factory: Callable[[], gym.Env], seeds: Sequence[int], adversarial: Sequence[str],
                 report: ConformanceReport) -> None:
    report.audit = reward_audit(factory, seeds=seeds, adversarial=adversarial)
    bad = [f"seed {r.seed}: {r.policy!r} earned {r.episode_reward:.4f} {'>' if r.may_tie else '>='} golden "
           f"{r.golden_reward:.4f}" for r in report.audit if not r.ok]
    # unfinished < a finished wrong answer with valid format (the demonstration's, gold replaced)
    for wrong in (r for r in report.audit if r.policy == "wrong answer" and r.acc == 0.0 and not r.unfinished):
        bad += [f"seed {r.seed}: {r.policy!r} ended unfinished with {r.episode_reward:.4f} >= a wrong answer's "
                f"{wrong.episode_reward:.4f}" for r in report.audit
                if r.seed == wrong.seed and r.unfinished and r.episode_reward >= wrong.episode_reward - 1e-9]
    _require(not bad, "; ".join(bad))


def _factory(env: str | Callable[[], gym.Env], make_kwargs: dict[str, Any] | None) -> tuple[str, Callable[[], gym.Env]]:
    if isinstance(env, str):
        env_id = resolve_env_id(env)
        kwargs = dict(make_kwargs or {})

        def factory() -> gym.Env:
            return gym.make(env_id, **kwargs)

        return env_id, factory
    return getattr(env, "__name__", "env"), env
