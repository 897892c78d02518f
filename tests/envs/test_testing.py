"""The conformance kit's reward audit and item-replay check catch the envs they exist for."""

import pytest

import envs  # noqa: F401 - registers the ids
from envs.arithmetic.env import ArithmeticEnv
from envs.core.tools import ToolResult
from envs.testing import ConformanceError, check_env_conformance, degenerate_policies, reward_audit, tool_call_text


class FarmableEnv(ArithmeticEnv):
    """Pays an ``effort`` bonus for every calculator call and forgets to declare it a process
    reward, so nothing bounds it: the mistake the audit exists to catch."""

    default_reward_weights = {**ArithmeticEnv.default_reward_weights, "effort": 0.1}

    def on_tool_result(self, call, result: ToolResult, ledger) -> None:
        super().on_tool_result(call, result, ledger)
        if result.ok:
            ledger.add("effort")


class ItemIgnoringEnv(ArithmeticEnv):
    """Draws a fresh problem even when ``reset(options={"item": ...})`` names one."""

    def _draw_item(self, options):
        return super()._draw_item({k: v for k, v in options.items() if k != "item"})


def test_the_audit_catches_a_farmable_env():
    with pytest.raises(ConformanceError, match="reward audit") as caught:
        check_env_conformance(lambda: FarmableEnv(), run_gymnasium_checker=False)
    assert "'tool spam'" in str(caught.value)
    rows = {r.policy: r for r in reward_audit(lambda: FarmableEnv())}
    assert rows["tool spam"].episode_reward > rows["tool spam"].golden_reward


def test_the_kit_catches_an_env_that_ignores_the_item_option():
    with pytest.raises(ConformanceError, match="item replay"):
        check_env_conformance(lambda: ItemIgnoringEnv(), run_gymnasium_checker=False)


def test_the_audit_table_for_arithmetic_with_its_calculator():
    rows = {r.policy: r for r in reward_audit("AgentR1/Arithmetic-v0", seeds=(0, 1))}
    assert {"tool spam", "repeated call", "never answering", "empty turns", "answer without tags", "wrong answer",
            "tool spam, then wrong answer", "budget cut before the answer", "budget cut after spam",
            "demo padded (same turn)", "demo padded (extra turns)"} <= set(rows)
    assert all(r.ok for r in rows.values())
    # The numbers, fixed: spam that never answers earned 1.60 against the demonstration's 1.15.
    assert rows["tool spam"].episode_reward == pytest.approx(-0.3) and rows["tool spam"].golden_reward == pytest.approx(1.15)
    assert rows["tool spam"].unfinished and not rows["wrong answer"].unfinished
    assert rows["budget cut after spam"].episode_reward < rows["wrong answer"].episode_reward < rows["wrong answer"].golden_reward
    assert rows["demo padded (extra turns)"].margin == pytest.approx(0.0)


def test_degenerate_plans_spam_at_the_per_turn_maximum_with_distinct_calls():
    env = ArithmeticEnv()
    env.reset(seed=0)
    plans = degenerate_policies(env)
    spam = plans["tool spam"].actions
    assert len(spam) == env.max_turns and all(turn.count("<tool_call>") == 8 for turn in spam)
    assert len({call for turn in spam for call in turn.split("</tool_call>")}) > 8 * env.max_turns - 1
    assert plans["demo padded (same turn)"].may_tie and not plans["tool spam"].may_tie
    single = ArithmeticEnv(calculator=False)
    single.reset(seed=0)
    actions = [p.actions for p in degenerate_policies(single).values()]
    assert len(actions) == len({tuple(a) for a in actions})  # one-turn envs play each distinct plan once


def test_tool_call_text_fills_required_arguments_by_type():
    from envs.core.tools import Tool

    t = Tool("t", "", {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
                       "required": ["a", "b"]}, fn=str)
    assert tool_call_text(t, 3) == '<tool_call>{"name": "t", "arguments": {"a": 3, "b": "3 + 1"}}</tool_call>'
