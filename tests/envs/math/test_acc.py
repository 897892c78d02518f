"""``acc`` is the verifier's verdict alone (every format mode) and follows Open-RS on the benchmark ids."""

import gymnasium as gym
import pytest

import envs  # noqa: F401 - registers the ids
from envs.core.registry import suite_envs
from envs.math.env import MathEnv
from envs.math.rewards import FORMAT_MODES

ITEM = {"problem": "What is 2 + 3?", "answer": "5"}


def _final_metrics(env, response: str) -> dict:
    env.reset(seed=0, options={"item": dict(ITEM)})
    *_, info = env.step(response)
    return info["metrics"]


@pytest.mark.parametrize("format_mode", FORMAT_MODES)
@pytest.mark.parametrize("eval_protocol", [None, "latex", "expr"])
def test_acc_does_not_depend_on_the_format(format_mode, eval_protocol):
    env = MathEnv(items=[ITEM], format_mode=format_mode, eval_protocol=eval_protocol, verify_timeout=3.0)
    assert _final_metrics(env, "The final answer is $5$.")["acc"] == 1.0
    assert _final_metrics(env, "The final answer is $6$.")["acc"] == 0.0
    assert _final_metrics(env, "<think>\nso \\boxed{5}\n</think>\n\n\\boxed{5}")["acc"] == 1.0


@pytest.mark.parametrize(("name", "gold_format"), [("MATH500", "latex"), ("AIME24", "expr"), ("AMC23", "expr"),
                                                   ("Minerva", "latex"), ("OlympiadBench", "latex")])
def test_benchmark_ids_score_with_the_open_rs_protocol(name, gold_format):
    env_id = f"AgentR1/{name}-v0"
    offline = next(e.offline_kwargs for e in suite_envs() if e.env_id == env_id)
    env = gym.make(env_id, **offline)
    verifier = env.unwrapped.verifier
    assert (verifier.protocol, verifier.gold_format, verifier.float_rounding) == ("open-rs", gold_format, 5)
    late = "\\boxed{255}, and then the final answer is $10,455$."
    env.reset(seed=0, options={"item": {"problem": "p", "answer": "255"}})
    assert env.step(late)[4]["metrics"]["acc"] == 1.0  # lighteval: a box wins over any later statement
    env.close()


def test_training_id_reads_the_last_word():
    env = MathEnv(items=[{"problem": "p", "answer": "10455"}], verify_timeout=3.0)
    env.reset(seed=0, options={"index": 0})
    assert env.step("\\boxed{255}, and then the final answer is $10,455$.")[4]["metrics"]["acc"] == 1.0
