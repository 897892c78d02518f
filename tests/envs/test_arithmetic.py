from fractions import Fraction

import gymnasium as gym
import pytest

import envs  # noqa: F401
from envs.arithmetic.env import _as_number
from envs.testing import ConformanceError, check_env_conformance
from envs.tools.calculator import evaluate_expression


@pytest.mark.parametrize("kwargs", [{}, {"calculator": False}, {"digits": 1, "num_operations": 1, "operations": "+"},
                                    {"digits": 4, "num_operations": 5, "style": "expression"}])
def test_conformance(kwargs):
    report = check_env_conformance("AgentR1/Arithmetic-v0", make_kwargs=kwargs)
    assert "golden answer" in report.checks and report.slowest_step_s < 5


def test_conformance_kit_catches_a_broken_env():
    from envs.arithmetic.env import ArithmeticEnv

    class LeakyEnv(ArithmeticEnv):
        """Keeps a counter across episodes, so the same seed gives different episodes."""
        calls = 0

        def build_prompt(self, item):
            LeakyEnv.calls += 1
            return f"{LeakyEnv.calls}: " + super().build_prompt(item)

    with pytest.raises(ConformanceError, match="determinism"):
        check_env_conformance(lambda: LeakyEnv(), run_gymnasium_checker=False)


@pytest.mark.parametrize("digits, ops", [(1, 1), (2, 3), (3, 5)])
def test_generated_answers_match_their_expressions(digits, ops):
    env = gym.make("AgentR1/Arithmetic-v0", digits=digits, num_operations=ops).unwrapped
    for index in range(30):
        item = env.reset(options={"index": index})[1]["item"]
        assert evaluate_expression(item["expression"]) == int(item["answer"])
        assert int(item["answer"]) >= 0
        assert item["question"].count(".") >= ops + 1


def test_items_by_index_are_fixed_and_dataset_seed_changes_them():
    a = gym.make("AgentR1/Arithmetic-v0").unwrapped
    b = gym.make("AgentR1/Arithmetic-v0").unwrapped
    c = gym.make("AgentR1/Arithmetic-v0", dataset_seed=1).unwrapped
    items_a = [a.reset(options={"index": i})[1]["item"] for i in range(10)]
    assert items_a == [b.reset(seed=i * 7, options={"index": i})[1]["item"] for i in range(10)]
    assert items_a != [c.reset(options={"index": i})[1]["item"] for i in range(10)]


def test_difficulty_knobs_are_validated():
    for bad in ({"digits": 0}, {"num_operations": 11}, {"operations": "/"}, {"style": "poem"}):
        with pytest.raises(ValueError):
            gym.make("AgentR1/Arithmetic-v0", **bad)


@pytest.mark.parametrize("text, value", [("42", 42), ("1,234", 1234), ("x = 7", 7), ("\\$12", 12), ("3/4", Fraction(3, 4)),
                                         ("\\frac{3}{4}", Fraction(3, 4)), ("-5.50", Fraction(-11, 2)), ("seven", None)])
def test_answer_parsing(text, value):
    assert _as_number(text) == value


def test_calculator_off_means_single_turn():
    env = gym.make("AgentR1/Arithmetic-v0", calculator=False)
    obs, info = env.reset(seed=0)
    assert "calculator" not in obs and info["tools"] == []
    _, _, terminated, _, _ = env.step("<calculator>1+1</calculator>")
    assert terminated


@pytest.mark.parametrize("text", ["1e99999999", "1e5", "2E3", "1" * 101, "1_000", "0x10"])
def test_answer_parsing_refuses_exponents_and_long_numbers(text):
    # Fraction("1e99999999") builds a 100-million-digit integer: a model could hang the env.
    assert _as_number(text) is None


def test_boxed_huge_exponent_is_scored_quickly():
    import time

    env = gym.make("AgentR1/Arithmetic-v0", calculator=False)
    env.reset(seed=0)
    start = time.perf_counter()
    _, reward, terminated, _, info = env.step("\\boxed{1e999999999}")
    assert terminated and info["metrics"]["acc"] == 0.0 and time.perf_counter() - start < 1


def _kit_failures(env_class, **kwargs) -> str:
    with pytest.raises(ConformanceError) as raised:
        check_env_conformance(lambda: env_class(calculator=False), **kwargs)
    return str(raised.value)


def test_conformance_kit_catches_an_env_that_ignores_the_seed():
    import numpy as np

    from envs.arithmetic.env import ArithmeticEnv

    class SeedlessEnv(ArithmeticEnv):
        def _draw_item(self, options):
            return self.generate(np.random.default_rng(0))

    message = _kit_failures(SeedlessEnv, run_gymnasium_checker=False)
    assert "determinism" in message and "does not seed item selection" in message


def test_conformance_kit_checks_rewards_on_the_golden_path():
    from envs.arithmetic.env import ArithmeticEnv

    class BonusEnv(ArithmeticEnv):
        """Adds an unreported bonus to correct answers: reward != sum of components."""

        def step(self, action):
            obs, reward, terminated, truncated, info = super().step(action)
            if terminated and info["metrics"]["acc"] == 1.0:
                reward += 1.0
            return obs, reward, terminated, truncated, info

    message = _kit_failures(BonusEnv, run_gymnasium_checker=False)
    assert "golden answer" in message and "sum of components" in message
    assert "adversarial" not in message


def test_conformance_kit_counts_gymnasium_warnings_as_failures():
    from envs.arithmetic.env import ArithmeticEnv

    class AlwaysSeededEnv(ArithmeticEnv):
        """``reset()`` with no seed always gives the same episode (gymnasium's checker only warns)."""

        def reset(self, *, seed=0, options=None):
            return super().reset(seed=seed, options=options)

    message = _kit_failures(AlwaysSeededEnv)
    assert "gymnasium.check_env" in message and "default seed argument in reset should be `None`" in message
