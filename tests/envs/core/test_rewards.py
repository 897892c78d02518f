"""The reward contract: process-reward bounds, unfinished episodes, infrastructure faults."""

import gymnasium as gym
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import envs
from envs.core.env import TextEnv
from envs.core.rewards import ProcessBudget, ProcessRule, RewardLedger
from envs.core.tools import INFRASTRUCTURE_STATUSES, Tool, ToolResult

CALL = '<tool_call>{"name": "calculator", "arguments": {"expression": "%s"}}</tool_call>'


def _arith(**kwargs):
    return gym.make("AgentR1/Arithmetic-v0", **kwargs)


# ---------------------------------------------------------------------------- ledger bounds
def test_a_process_kind_counts_once_per_turn_and_per_episode_limits_hold():
    rules = {"bonus": ProcessRule(), "once": ProcessRule(per_episode=1.0), "oops": ProcessRule()}
    budget = ProcessBudget(rules, cap=0.5, floor=-1.0)
    weights = {"bonus": 0.1, "once": 0.05, "oops": -0.1, "answer": 1.0}
    turn = RewardLedger(weights, budget)
    for _ in range(5):
        turn.add("bonus")
        turn.add("once")
        turn.add("oops")
    turn.add("answer", 3.0)  # outcome components are never bounded
    assert turn.as_dict() == pytest.approx({"bonus": 0.1, "once": 0.05, "oops": -0.1, "answer": 3.0})
    second = RewardLedger(weights, budget)
    second.add("bonus")
    second.add("once")  # its one unit per episode is spent
    assert second.as_dict() == pytest.approx({"bonus": 0.1})


def test_the_episode_cap_and_floor_bind():
    budget = ProcessBudget({"bonus": ProcessRule(), "oops": ProcessRule()}, cap=0.25, floor=-0.3)
    weights = {"bonus": 0.1, "oops": -0.2}
    totals = []
    for _ in range(4):
        ledger = RewardLedger(weights, budget)
        ledger.add("bonus")
        ledger.add("oops")
        totals.append(ledger.as_dict())
    assert [t.get("bonus", 0.0) for t in totals] == pytest.approx([0.1, 0.1, 0.05, 0.0])
    assert [t.get("oops", 0.0) for t in totals] == pytest.approx([-0.2, -0.1, 0.0, 0.0])
    assert budget.bonus_total == pytest.approx(0.25) and budget.penalty_total == pytest.approx(-0.3)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from(["a", "b", "p"]), st.floats(0, 5)), max_size=6), max_size=8),
       st.floats(0, 1), st.floats(0, 2))
def test_process_totals_never_leave_their_bounds(turns, cap, depth):
    rules = {"a": ProcessRule(), "b": ProcessRule(per_episode=1.0), "p": ProcessRule()}
    weights = {"a": 0.3, "b": 0.2, "p": -0.4}
    budget = ProcessBudget(rules, cap=cap, floor=-depth)
    for events in turns:
        ledger = RewardLedger(weights, budget)
        for name, value in events:
            ledger.add(name, value)
        per_kind = ledger.as_dict()
        assert all(abs(v) <= abs(weights[k]) + 1e-9 for k, v in per_kind.items())  # once per turn
    assert 0.0 <= budget.bonus_total <= cap + 1e-9
    assert -depth - 1e-9 <= budget.penalty_total <= 0.0
    assert budget.units.get("b", 0.0) <= 1.0


# ---------------------------------------------------------------------------- tool spam
def test_many_valid_calls_earn_one_bonus_per_episode():
    env = _arith(max_turns=4)
    env.reset(seed=0)
    rewards = [env.step("".join(CALL % f"{t}+{k}" for k in range(8)))[1] for t in range(3)]
    assert rewards == pytest.approx([0.05, 0.0, 0.0])


def test_spamming_until_out_of_turns_forfeits_the_bonus_and_pays_unfinished():
    env = _arith()
    env.reset(seed=0)
    total = 0.0
    for t in range(env.unwrapped.max_turns):
        _, reward, terminated, truncated, info = env.step("".join(CALL % f"{t}+{k}" for k in range(8)))
        total += reward
    assert truncated and not terminated
    assert info["end_reason"] == "max_turns"
    assert info["reward_components"]["process_forfeit"] == pytest.approx(-0.05)
    assert info["reward_components"]["unfinished"] == pytest.approx(-0.3)
    assert info["metrics"]["unfinished"] == 1.0 and info["metrics"]["episode_reward"] == pytest.approx(total)
    assert total == pytest.approx(-0.3)


# ---------------------------------------------------------------------------- end_unfinished
def test_end_unfinished_scores_below_a_wrong_answer_with_valid_format():
    env = _arith()
    env.reset(seed=0)
    env.step(CALL % "1+1")
    reward, info = envs.end_unfinished(env, "budget")  # through the wrappers gym.make adds
    assert info["end_reason"] == "budget" and info["turn"] == 1
    assert info["metrics"]["unfinished"] == 1.0 and info["metrics"]["truncated"] == 1.0
    assert info["metrics"]["acc"] == 0.0 and info["metrics"]["env_error"] == 0.0
    assert info["reward_components"] == pytest.approx({"process_forfeit": -0.05, "unfinished": -0.3})
    assert info["episode_reward_components"] == pytest.approx({"tool_call_valid": 0.05, "process_forfeit": -0.05,
                                                               "unfinished": -0.3})
    unfinished = 0.05 + reward
    env.reset(seed=0)
    wrong = env.step(CALL % "1+1")[1] + env.step("\\boxed{-12345}")[1]
    env.reset(seed=0)
    right = sum(env.step(a)[1] for a in env.unwrapped.demonstration())
    assert unfinished < wrong < right
    assert (unfinished, wrong, right) == pytest.approx((-0.3, 0.15, 1.15))


@pytest.mark.parametrize("reason", ["budget", "timeout", "max_turns"])
def test_end_unfinished_before_any_step_and_then_needs_reset(reason):
    env = _arith()
    env.reset(seed=1)
    reward, info = env.unwrapped.end_unfinished(reason)
    assert reward == pytest.approx(-0.3) and info["turn"] == 0 and info["end_reason"] == reason
    with pytest.raises(gym.error.ResetNeeded):
        env.unwrapped.end_unfinished(reason)
    with pytest.raises(gym.error.ResetNeeded):
        env.step("\\boxed{1}")


def test_end_unfinished_refuses_a_finished_or_unstarted_episode_and_unknown_reasons():
    env = _arith(calculator=False)
    with pytest.raises(gym.error.ResetNeeded):
        envs.end_unfinished(env)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="reason"):
        envs.end_unfinished(env, "bored")
    env.step("\\boxed{1}")
    with pytest.raises(gym.error.ResetNeeded):
        envs.end_unfinished(env)
    with pytest.raises(TypeError):
        envs.end_unfinished(object())


def test_reward_bounds_follow_the_outcome_margin_and_are_validated():
    base = _arith().unwrapped
    assert base.process_cap == pytest.approx(0.2) and base.reward_weights["unfinished"] == pytest.approx(-0.3)
    doubled = _arith(reward_weights={"answer": 2.0}).unwrapped
    assert doubled.process_cap == pytest.approx(0.4) and doubled.reward_weights["unfinished"] == pytest.approx(-0.6)
    custom = _arith(process_cap=0.0, reward_weights={"unfinished": -1.0}).unwrapped
    assert custom.process_cap == 0.0 and custom.reward_weights["unfinished"] == -1.0
    with pytest.raises(ValueError, match="process_cap"):
        _arith(process_cap=1.0)
    with pytest.raises(ValueError, match="margin"):
        _arith(reward_weights={"answer": 0.0})


# ---------------------------------------------------------------------------- infrastructure faults
class FlakyEnv(TextEnv):
    """One tool whose results are scripted; answers are scored by a single ``answer`` component."""

    default_reward_weights = {"answer": 1.0}

    def __init__(self, statuses):
        self.statuses = list(statuses)
        flaky = Tool("flaky", "scripted", {"type": "object", "properties": {"q": {"type": "string"}}}, fn=self._run)
        super().__init__(tools=[flaky], max_turns=6)

    def _run(self, q: str = "") -> ToolResult:
        status = self.statuses.pop(0)
        return ToolResult(f"status {status}", ok=status == "ok", status=status)

    def _draw_item(self, options):
        return {"word": "yes"}

    def build_prompt(self, item):
        return "Say yes."

    def score_final(self, item, response, ledger):
        ledger.add("answer", float(response.strip() == "yes"))
        return {"acc": float(response.strip() == "yes")}

    def demonstration(self):
        return ["yes"]


@pytest.mark.parametrize("status", sorted(INFRASTRUCTURE_STATUSES))
def test_an_infrastructure_fault_is_never_charged_and_is_counted(status):
    assert ToolResult("x", ok=False, status=status).infra and not ToolResult("x", ok=False, status="error").infra
    env = FlakyEnv([status, status, "ok"])
    env.reset(seed=0)
    call = '<tool_call>{"name": "flaky", "arguments": {"q": "a"}}</tool_call>'
    _, reward, _, _, info = env.step(call)
    assert reward == 0.0 and info["reward_components"] == {} and info["env_error"] is True
    _, reward, _, _, info = env.step(call)  # the same call again is a retry, not a repeat
    assert reward == 0.0 and info["env_error"] is True
    _, reward, _, _, info = env.step(call)
    assert info["reward_components"] == {"tool_call_valid": pytest.approx(0.05)} and info["env_error"] is False
    _, _, terminated, _, info = env.step("yes")
    assert terminated and info["metrics"]["env_error"] == 2.0 and info["metrics"]["failed_tool_calls"] == 0.0


def test_a_model_fault_is_still_charged():
    env = FlakyEnv(["error"])
    env.reset(seed=0)
    _, reward, _, _, info = env.step('<tool_call>{"name": "flaky", "arguments": {"q": "a"}}</tool_call>')
    assert info["reward_components"] == {"tool_error": pytest.approx(-0.05)} and info["env_error"] is False
    _, _, _, _, info = env.step("yes")
    assert info["metrics"]["env_error"] == 0.0 and info["metrics"]["failed_tool_calls"] == 1.0
