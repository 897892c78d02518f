"""The conformance kit: one call that checks an environment against the suite's contract.

Contributors run ``check_env_conformance("AgentR1/MyEnv-v0")`` in their env's test file. It checks:

* Gymnasium's own ``check_env`` (spaces, seeding, return types), its warnings counted as failures;
* the same seed gives the same episode, and ``reset`` leaves nothing from the previous episode;
* adversarial actions (empty, huge, binary junk, broken tags, unbalanced or deeply nested JSON,
  pathological maths) never raise, return well-formed, picklable results, and finish within a time bound;
* a model that keeps calling tools is stopped by ``max_turns`` (``truncated=True``);
* every reward (golden steps included) equals the sum of ``info["reward_components"]``; final steps
  report ``info["metrics"]``;
* ``demonstration()`` (the golden actions) ends the episode with ``acc == 1`` and the highest return.
"""

from __future__ import annotations

import math
import pickle
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
from gymnasium.utils.env_checker import check_env

from envs.core.registry import resolve_env_id

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
    if isinstance(env, str):
        env_id = resolve_env_id(env)
        kwargs = dict(make_kwargs or {})

        def factory() -> gym.Env:
            return gym.make(env_id, **kwargs)
    else:
        env_id, factory = getattr(env, "__name__", "env"), env
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
    check("golden answer", lambda: _check_golden(factory, seeds, adversarial_actions[:6], max_step_seconds, report))
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


def _check_golden(factory: Callable[[], gym.Env], seeds: Sequence[int], junk: Sequence[str], max_seconds: float,
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
            golden = sum(step[1] for step in trace[1:])
            report.golden_return = golden
            for action in junk:
                played = _play(env, seed, [action] * (env.unwrapped.max_turns + 1), max_step_seconds=max_seconds,
                               what=f"seed {seed}: junk {action[:30]!r}")
                other = sum(step[1] for step in played[1:])
                _require(golden > other, f"seed {seed}: junk action {action[:30]!r} earned {other} >= golden {golden}")
    finally:
        env.close()


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)
