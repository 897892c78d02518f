"""The TextEnv contract, exercised through the Arithmetic env and a minimal subclass."""

import math
from typing import Any

import gymnasium as gym
import pytest

import envs  # noqa: F401  (registers the ids)
from envs.core.data import DataError
from envs.core.env import ItemListEnv
from envs.core.rewards import RewardLedger, resolve_weights


class EchoEnv(ItemListEnv):
    """Answer with the item's word; the smallest possible env."""

    default_reward_weights = {"answer": 1.0}

    def prepare_item(self, item, *, source, row):
        if "word" not in item:
            raise DataError(f"{source}: row {row}: missing field 'word'")
        return item

    def build_prompt(self, item):
        return f"Say {item['word']}"

    def score_final(self, item, response, ledger: RewardLedger) -> dict[str, Any]:
        ledger.add("answer", float(response.strip() == item["word"]))
        return {"acc": float(response.strip() == item["word"])}

    def demonstration(self):
        return [self.item["word"]]


def _arith(**kwargs):
    return gym.make("AgentR1/Arithmetic-v0", **kwargs)


def test_reset_returns_prompt_and_chat_form():
    env = _arith()
    obs, info = env.reset(seed=3)
    assert isinstance(obs, str) and "\\boxed" in obs
    assert [m["role"] for m in info["messages"]] == ["system", "user"]
    assert info["messages"][-1]["content"] == obs
    assert info["tools"][0]["function"]["name"] == "calculator"
    assert set(info["item"]) >= {"question", "answer"}


def test_full_multi_turn_episode_with_calculator():
    env = _arith()
    env.reset(seed=0)
    answer = env.unwrapped.item["answer"]
    expression = env.unwrapped.item["expression"]
    obs, reward, terminated, truncated, info = env.step(f"<calculator>{expression}</calculator>")
    assert obs == f"<tool_response>\n{answer}\n</tool_response>"
    assert (reward, terminated, truncated) == (pytest.approx(0.05), False, False)
    assert info["new_messages"] == [{"role": "user", "content": obs}]
    obs, reward, terminated, truncated, info = env.step(f"<think>done</think>So \\boxed{{{answer}}}")
    assert terminated and not truncated and obs == ""
    assert info["reward_components"] == {"answer": 1.0, "format": pytest.approx(0.1)}
    assert info["metrics"]["acc"] == 1.0 and info["metrics"]["turns"] == 1.0
    assert info["episode_reward_components"] == {"tool_call_valid": 0.05, "answer": 1.0, "format": pytest.approx(0.1)}


def test_wrong_answer_and_missing_answer():
    env = _arith(calculator=False)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step("\\boxed{-1}")
    assert terminated and reward == pytest.approx(0.1) and info["metrics"]["acc"] == 0.0
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step("I don't know")
    assert terminated and reward == 0.0 and info["metrics"]["format"] == 0.0


def test_max_turns_truncates_and_step_after_end_needs_reset():
    env = _arith(max_turns=2)
    env.reset(seed=0)
    assert env.step("<calculator>1+1</calculator>")[3] is False
    _, _, terminated, truncated, info = env.step("<calculator>2+2</calculator>")
    assert truncated and not terminated and info["metrics"]["truncated"] == 1.0
    with pytest.raises(gym.error.ResetNeeded):
        env.unwrapped.step("more")


def test_step_before_reset_is_a_clear_error():
    env = _arith().unwrapped
    with pytest.raises(gym.error.ResetNeeded):
        env.step("hi")


def test_penalties_are_named_components():
    env = _arith(max_turns=6)
    env.reset(seed=0)
    assert env.step('<tool_call>{"name": "calculator"</tool_call>')[4]["reward_components"] == {"invalid_action": -0.1}
    assert env.step('<tool_call>{"name": "nope", "arguments": {}}</tool_call>')[4]["reward_components"] == {"tool_error": -0.05}
    assert env.step("<calculator>1/0</calculator>")[4]["reward_components"] == {"tool_error": -0.05}
    env.step("<calculator>2+2</calculator>")
    _, reward, *_ , info = env.step("<calculator>2+2</calculator>")
    assert info["reward_components"] == {"repeated_call": -0.05} and reward == -0.05


def test_reward_weights_are_configurable_and_checked():
    env = _arith(calculator=False, reward_weights={"answer": 2.0, "format": 0.0})
    env.reset(seed=1)
    _, reward, *_ = env.step(env.unwrapped.demonstration()[-1])
    assert reward == 2.0
    with pytest.raises(ValueError, match="unknown reward component 'speed'"):
        _arith(reward_weights={"speed": 1.0})
    assert resolve_weights({"a": 1.0}, None) == {"a": 1.0}


def test_options_index_and_item():
    env = _arith()
    by_index = [env.reset(options={"index": 5})[1]["item"] for _ in range(2)]
    assert by_index[0] == by_index[1]
    assert env.reset(seed=99, options={"index": 5})[1]["item"] == by_index[0]
    obs, info = env.reset(options={"item": {"question": "What is 2 + 2?", "answer": "4"}})
    assert obs.startswith("What is 2 + 2?") and info["item"]["answer"] == "4"
    with pytest.raises(DataError, match="answer"):
        env.reset(options={"item": {"question": "What?"}})


def test_item_list_env_selection_and_errors():
    env = EchoEnv(items=[{"word": "alpha"}, {"word": "beta"}])
    assert env.reset(options={"index": 1})[0] == "Say beta"
    assert env.reset(options={"index": -1})[0] == "Say beta"
    with pytest.raises(IndexError):
        env.reset(options={"index": 2})
    seen = {env.reset(seed=s)[0] for s in range(20)}
    assert seen == {"Say alpha", "Say beta"}
    with pytest.raises(DataError, match="row 1: missing field 'word'"):
        EchoEnv(items=[{"word": "a"}, {"w": "b"}])
    with pytest.raises(DataError, match="empty"):
        EchoEnv(items=[])


def test_non_string_actions_are_coerced():
    env = EchoEnv(items=[{"word": "alpha"}])
    for action in (b"alpha", None, 12, b"\xff\xfe"):
        env.reset(seed=0)
        obs, reward, terminated, truncated, info = env.step(action)
        assert terminated and math.isfinite(reward)
    env.reset(seed=0)
    assert env.step(b"alpha")[1] == 1.0


def test_render_ansi_shows_the_transcript():
    env = _arith(render_mode="ansi")
    env.reset(seed=0)
    env.step("<calculator>1+1</calculator>")
    text = env.render()
    assert "[assistant] <calculator>1+1</calculator>" in text and "[user] <tool_response>" in text


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_envs_carry_unicode_text(mode):
    vec = gym.make_vec("AgentR1/Arithmetic-v0", num_envs=3, vectorization_mode=mode)
    try:
        obs, info = vec.reset(seed=0)
        assert isinstance(obs, tuple) and len(obs) == 3 and all("\\boxed" in o for o in obs)
        obs, reward, terminated, truncated, info = vec.step(("<calculator>6 × 7</calculator>", "\\boxed{0} 中文🙂", "<tool_call>{</tool_call>"))
        assert obs[0] == "<tool_response>\n42\n</tool_response>"
        assert list(terminated) == [False, True, False]
        assert reward[2] == pytest.approx(-0.1)
        assert "Error: tool call is not valid JSON" in obs[2]
        # next-step autoreset: the finished env starts a new episode, the others continue
        obs, *_ = vec.step(("\\boxed{1}", "ignored", "\\boxed{2}"))
        assert "\\boxed" in obs[1] and obs[0] == "" and obs[2] == ""
    finally:
        vec.close()


def test_reset_same_seed_same_obs_across_processes_and_vector_modes():
    sync = gym.make_vec("AgentR1/Arithmetic-v0", num_envs=2, vectorization_mode="sync")
    asyn = gym.make_vec("AgentR1/Arithmetic-v0", num_envs=2, vectorization_mode="async")
    try:
        assert sync.reset(seed=7)[0] == asyn.reset(seed=7)[0]
    finally:
        sync.close()
        asyn.close()


def test_one_turn_of_many_broken_calls_has_a_bounded_penalty():
    env = _arith(max_turns=4)
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step("<tool_call></tool_call>" * 2000)
    assert not (terminated or truncated)
    # Each penalty kind counts once per turn, however many broken calls the turn holds.
    assert info["reward_components"] == {"invalid_action": pytest.approx(-0.1)} and len(info["tool_calls"]) == 8


def test_step_info_survives_pickling_for_async_workers():
    import pickle

    env = _arith()
    env.reset(seed=0)
    deep = "[" * 900 + "]" * 900
    *_, info = env.step('<tool_call>{"name": "calculator", "arguments": {"expression": "1", "x": %s}}</tool_call>' % deep)
    assert info["tool_calls"] == [{"name": None, "arguments": None, "status": "bad_arguments"}]
    pickle.dumps(info)


def test_editing_reset_info_does_not_change_the_transcript():
    env = _arith(render_mode="ansi")
    _, info = env.reset(seed=0)
    info["messages"][-1]["content"] = "tampered"
    assert "tampered" not in env.render()


def test_observation_space_fits_every_observation_and_long_prompts_are_refused():
    env = EchoEnv(items=[{"word": "w" * 300_000}], max_observation_chars=400_000)
    assert env.observation_space.max_length >= 400_000 + len("\n[observation truncated]")
    small = EchoEnv(items=[{"word": "w" * 300_000}])
    with pytest.raises(DataError, match="prompt has 300004 characters"):
        small.reset(seed=0)


def test_same_step_autoreset_reports_the_final_observation_and_info():
    from gymnasium.vector import AutoresetMode

    vec = gym.make_vec("AgentR1/Arithmetic-v0", num_envs=2, vectorization_mode="sync",
                       vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
    try:
        vec.reset(seed=0)
        obs, reward, terminated, truncated, info = vec.step(("\\boxed{1}", "<calculator>1+2</calculator>"))
        assert list(terminated) == [True, False]
        assert "\\boxed" in obs[0] and obs[1] == "<tool_response>\n3\n</tool_response>"
        assert info["_final_obs"].tolist() == [True, False] and info["final_obs"][0] == ""
        assert info["final_info"]["metrics"]["acc"][0] == 0.0 and info["final_info"]["_metrics"].tolist() == [True, False]
    finally:
        vec.close()
