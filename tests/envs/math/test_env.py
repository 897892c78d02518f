"""The math environments: conformance on every id, metrics, presets, weights, tools, bad data."""

import math
import subprocess
import sys

import gymnasium as gym
import pytest

import envs  # noqa: F401 - registers the ids
from envs.core.data import DataError
from envs.core.registry import resolve_env_id, suite_envs
from envs.math import MATH_ENV_IDS
from envs.math.env import MathEnv
from envs.math.rewards import CosineConfig, cosine_reward
from envs.testing import check_env_conformance

FAST = {"verify_timeout": 1.5}  # keeps the pathological adversarial actions quick
ITEMS = [{"problem": "What is 6 * 7?", "answer": "42"}, {"problem": "Half of one?", "answer": "\\frac{1}{2}"}]


def _offline(env_id: str) -> dict:
    entry = next(e for e in suite_envs() if e.env_id == env_id)
    assert entry.offline_kwargs is not None, f"{env_id} has no offline mode"
    return dict(entry.offline_kwargs)


@pytest.mark.parametrize("env_id", MATH_ENV_IDS)
def test_conformance_offline(env_id):
    check_env_conformance(env_id, make_kwargs={**_offline(env_id), **FAST})


@pytest.mark.parametrize("kwargs", [
    {"tools": ("sympy",), "reward_preset": "open-rs-cosine-format"},
    {"reward_preset": "accuracy", "format_mode": "strict", "reward_weights": {"language": 0.1}},
])
def test_conformance_configurations(kwargs):
    check_env_conformance("AgentR1/Math-v0", make_kwargs={"dataset": "sample", **FAST, **kwargs})


def test_ids_and_aliases():
    assert resolve_env_id("math") == resolve_env_id("math-v0") == "AgentR1/Math-v0"
    for alias, env_id in [("math500-v0", "AgentR1/MATH500-v0"), ("aime24-v0", "AgentR1/AIME24-v0"),
                          ("amc23-v0", "AgentR1/AMC23-v0"), ("minerva-v0", "AgentR1/Minerva-v0"),
                          ("olympiadbench-v0", "AgentR1/OlympiadBench-v0"), ("gsm8k-v0", "AgentR1/GSM8K-v0")]:
        assert resolve_env_id(alias) == env_id
    assert gym.spec("AgentR1/Math-v0").kwargs == {"dataset": "open-rs"}
    assert MathEnv.recommended_sampling["temperature"] == 0.6 and MathEnv.recommended_sampling["top_p"] == 0.95


def test_importing_the_suite_stays_light():
    code = "import envs, sys; print(sorted(m for m in ('sympy', 'math_verify', 'torch', 'datasets') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _final(env: MathEnv, action: str, index: int = 0):
    env.reset(seed=0, options={"index": index})
    return env.step(action)


def test_metrics_and_accuracy_independent_of_format():
    env = MathEnv(items=ITEMS, **FAST)
    _, reward, terminated, truncated, info = _final(env, env.demonstration()[0] if env.reset(seed=0, options={"index": 0}) else "")
    m = info["metrics"]
    assert terminated and not truncated and reward == 2.0
    assert m["acc"] == 1.0 and m["format"] == 1.0 and m["cut_off"] == 0.0 and m["truncated"] == 0.0 and m["length"] > 0
    assert m["answer_found"] == 1.0 and m["verify_fast_path"] == 1.0
    assert info["verdict"]["method"] == "exact" and info["verdict"]["answer"] == "42"

    _, reward, *_, info = _final(env, "It is \\boxed{42}")  # right answer, no reasoning block
    assert info["metrics"]["acc"] == 1.0 and info["metrics"]["format"] == 0.0 and reward == 1.0

    _, reward, *_, info = _final(env, "Work.\n</think>\nIt is \\boxed{41}")
    assert info["metrics"]["acc"] == 0.0 and info["metrics"]["format"] == 1.0 and reward == 1.0
    assert info["reward_components"] == {"accuracy": 0.0, "format": 1.0}

    _, reward, *_, info = _final(env, "<think>\nLet me see, 6 * 7 is")
    assert info["metrics"]["cut_off"] == 1.0 and info["metrics"]["truncated"] == 0.0 and reward == 0.0

    _, reward, *_, info = _final(env, "\\boxed{\\dfrac{2}{4}}", index=1)
    assert info["metrics"]["acc"] == 1.0


def test_pathological_answer_scores_zero_in_bounded_time():
    import time

    env = MathEnv(items=ITEMS, verify_timeout=1.0)
    env.reset(seed=0)
    env.verifier.verify("1", "\\boxed{1}")  # warm the workers
    start = time.monotonic()
    _, reward, terminated, _, info = _final(env, "\\boxed{(x+1)^{10^{4}}}")
    assert time.monotonic() - start < 3.0
    assert terminated and reward == 0.0
    assert info["metrics"]["acc"] == 0.0 and info["metrics"]["verify_timeout"] == 1.0


def test_cosine_preset_follows_the_formula_with_a_tokenizer():
    class Words:
        def encode(self, text, add_special_tokens=False):
            return text.split()

    env = MathEnv(items=ITEMS, reward_preset="open-rs-cosine-format", tokenizer=Words(), cosine={"max_length": 20}, **FAST)
    obs, info = env.reset(seed=0, options={"index": 0})
    # Open-RS experiment 3 added its English-only instruction to the system prompt
    assert info["messages"][0]["role"] == "system" and "English only" in info["messages"][0]["content"]
    assert "English" not in obs
    custom = MathEnv(items=ITEMS, reward_preset="open-rs-cosine-format", system_prompt="Be brief.", **FAST)
    _, info = custom.reset(seed=0, options={"index": 0})
    assert info["messages"][0]["content"].startswith("Be brief.\n") and "English only" in info["messages"][0]["content"]
    _, info = MathEnv(items=ITEMS, **FAST).reset(seed=0, options={"index": 0})
    assert [m["role"] for m in info["messages"]] == ["user"]  # experiments 1-2: no system prompt
    action = "a b c d e\n</think>\n\\boxed{42}"
    _, reward, *_, info = _final(env, action)
    length = len(action.split())
    expected_cos = cosine_reward(True, length, CosineConfig(max_length=20))
    assert info["metrics"]["length"] == length
    assert reward == pytest.approx(1.0 + 2.0 * expected_cos)
    assert info["reward_components"]["cosine"] == pytest.approx(2.0 * expected_cos)
    long_wrong = " ".join(["w"] * 50) + "\n</think>\n\\boxed{0}"
    _, reward, *_ = _final(env, long_wrong)
    assert reward == pytest.approx(1.0 + 2.0 * -0.5)  # clipped at max_length


def test_reward_weights_override_and_validation():
    env = MathEnv(items=ITEMS, reward_weights={"format": 0.0, "language": 0.5}, **FAST)
    _, reward, *_, info = _final(env, "Reasoning.\n</think>\nDie Antwort ist \\boxed{42}")
    assert set(info["reward_components"]) == {"accuracy", "language"}
    assert reward == pytest.approx(1.0 + 0.5 * info["metrics"]["language"])
    with pytest.raises(ValueError):
        MathEnv(items=ITEMS, reward_weights={"nope": 1.0})
    with pytest.raises(ValueError):
        MathEnv(items=ITEMS, reward_preset="nope")
    with pytest.raises(ValueError):
        MathEnv(items=ITEMS, format_mode="nope")


def test_multi_turn_with_the_sympy_tool():
    env = MathEnv(items=ITEMS, tools=("sympy",), **FAST)
    obs, info = env.reset(seed=0, options={"index": 0})
    assert "sympy" in obs and info["tools"][0]["function"]["name"] == "sympy"
    call = '<tool_call>{"name": "sympy", "arguments": {"expression": "6*7"}}</tool_call>'
    obs, reward, terminated, truncated, info = env.step(call)
    assert "42" in obs and not terminated and reward == 0.0  # Open-RS pays no process reward by default
    obs, reward, terminated, _, info = env.step("<sympy>__import__('os')</sympy>")
    assert "not allowed" in obs or "Error" in obs
    _, reward, terminated, _, info = env.step("Checked.\n</think>\n\\boxed{42}")
    assert terminated and info["metrics"]["acc"] == 1.0 and info["metrics"]["tool_calls"] == 2.0


def test_bad_items_raise_data_errors_naming_row_and_field():
    with pytest.raises(DataError, match=r"row 1: .*'answer'"):
        MathEnv(items=[{"problem": "p", "answer": "1"}, {"problem": "q"}])
    env = MathEnv(items=ITEMS, **FAST)
    with pytest.raises(DataError, match="'problem'"):
        env.reset(options={"item": {"answer": "1"}})
    obs, _ = env.reset(options={"item": {"problem": "Custom?", "answer": "5"}})
    assert obs.startswith("Custom?")
    with pytest.raises(DataError, match="do not verify"):
        MathEnv(items=[{"problem": "p", "answer": "2"}, {"problem": "q", "answer": "9^{9^{9^{9}}}"}], validate=True)


def test_strict_format_demonstration():
    env = MathEnv(items=ITEMS, format_mode="strict", **FAST)
    env.reset(seed=1, options={"index": 1})
    _, reward, *_, info = env.step(env.demonstration()[0])
    assert info["metrics"]["format"] == 1.0 and info["metrics"]["acc"] == 1.0 and math.isclose(reward, 2.0)
