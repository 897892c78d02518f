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


ONE_DIGIT_SUMS = {"digits": 1, "num_operations": 1, "operations": "+", "calculator": False, "style": "expression"}


def _problems(split, n=300, **kwargs):
    env = gym.make("AgentR1/Arithmetic-v0", split=split, **kwargs).unwrapped
    return {env.reset(options={"index": i})[1]["item"]["problem"] for i in range(n)}


@pytest.mark.parametrize("kwargs", [ONE_DIGIT_SUMS, {"digits": 2, "num_operations": 1, "operations": "+-"}, {}])
def test_train_and_test_problems_never_overlap(kwargs):
    train, test = _problems("train", test_fraction=0.5, **kwargs), _problems("test", test_fraction=0.5, **kwargs)
    assert train and test and not train & test


def test_commuted_sums_are_one_problem():
    from envs.arithmetic.env import canonical_problem

    assert canonical_problem(5, [("+", 3)], "5 + 3") == canonical_problem(3, [("+", 5)], "3 + 5") == "3 + 5"
    assert canonical_problem(9, [("-", 4)], "9 - 4") == "9 - 4"  # differences keep their order
    # held out means held out both ways round: no test sum appears commuted in training
    train = _problems("train", test_fraction=0.5, **ONE_DIGIT_SUMS)
    test_expressions = set()
    env = gym.make("AgentR1/Arithmetic-v0", split="test", test_fraction=0.5, **ONE_DIGIT_SUMS).unwrapped
    for i in range(200):
        item = env.reset(options={"index": i})[1]["item"]
        test_expressions.add(item["expression"])
    assert not {" + ".join(reversed(e.split(" + "))) for e in test_expressions} & train


def test_split_does_not_depend_on_seeds():
    """Every run and seed agrees on which problems are held out, whatever ``dataset_seed`` says."""
    env = gym.make("AgentR1/Arithmetic-v0", split="test", dataset_seed=7, **ONE_DIGIT_SUMS).unwrapped
    other = gym.make("AgentR1/Arithmetic-v0", split="train", dataset_seed=3, **ONE_DIGIT_SUMS).unwrapped
    seen = {env.reset(seed=s)[1]["item"]["problem"] for s in range(200)}
    assert not seen & {other.reset(seed=s)[1]["item"]["problem"] for s in range(200)}
    first = gym.make("AgentR1/Arithmetic-v0", split="test", **ONE_DIGIT_SUMS).unwrapped.reset(options={"index": 5})[1]
    again = gym.make("AgentR1/Arithmetic-v0", split="test", **ONE_DIGIT_SUMS).unwrapped.reset(options={"index": 5})[1]
    assert first["item"] == again["item"]


def test_test_fraction_sets_the_held_out_share():
    from envs.arithmetic.env import problem_split

    problems = [f"{a} + {b}" for a in range(10, 100) for b in range(a, 100)]
    share = sum(problem_split(p, 0.2) == "test" for p in problems) / len(problems)
    assert 0.18 < share < 0.22


def test_no_split_keeps_the_item_stream():
    """``split=None`` draws exactly the items it drew before splits existed (recorded from that version)."""
    item = gym.make("AgentR1/Arithmetic-v0").unwrapped.reset(options={"index": 0})[1]["item"]
    assert (item["question"], item["answer"], item["expression"]) == (
        "Kofi has 56 shells. Kofi gets 13 more. A friend gives Kofi 25 more. How many shells are there at the end?",
        "94", "(56 + 13) + 25")
    item = gym.make("AgentR1/Arithmetic-v0", **ONE_DIGIT_SUMS).unwrapped.reset(options={"index": 3})[1]["item"]
    assert (item["question"], item["answer"], item["problem"]) == ("Compute 9 + 7.", "16", "7 + 9")


@pytest.mark.parametrize("bad", [{"split": "validation"}, {"test_fraction": 0.0}, {"test_fraction": 1.0}])
def test_bad_split_arguments_are_refused(bad):
    with pytest.raises(ValueError, match="split|test_fraction"):
        gym.make("AgentR1/Arithmetic-v0", **bad)


@pytest.mark.parametrize("reply, fmt", [("So \\boxed{number}.", 0.0), ("\\boxed{12}", 1.0), ("\\boxed{ 7 }", 1.0),
                                        ("\\boxed{twelve}", 0.0), ("The answer is 12.", 0.0)])
def test_format_pays_only_for_a_boxed_number(reply, fmt):
    """The prompt says ``\\boxed{number}``; a model that copies it has not answered and earns no format."""
    env = gym.make("AgentR1/Arithmetic-v0", calculator=False, digits=1, num_operations=1).unwrapped
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(reply)
    assert terminated and info["metrics"]["format"] == fmt
    assert info["reward_components"]["format"] == pytest.approx(0.1 * fmt)


@pytest.mark.parametrize("template, correct", [
    ("\\boxed{987654321} \\boxed{ANS}", False),  # every candidate boxed, the right one last
    ("\\boxed{ANS} \\boxed{987654321}", False),
    ("3 + 4 = \\boxed{7} and \\boxed{ANS}", False),
    ("\\boxed{ANS}, so again \\boxed{ANS}", True),  # the same number twice is one answer
    ("\\boxed{number}: \\boxed{ANS}", True),  # a copied placeholder is not a second number
    ("\\boxed{\\boxed{ANS}}", True),  # a nested box is one answer
])
def test_boxes_that_disagree_are_a_hedge_not_an_answer(template, correct):
    """One answer: a reply that boxes several numbers earns neither the answer nor the format (a SmolLM2-135M
    GRPO seed learned to box every candidate so that the last box was sometimes right)."""
    env = gym.make("AgentR1/Arithmetic-v0", calculator=False, digits=1, num_operations=1).unwrapped
    _, info = env.reset(seed=0)
    demo_reward = sum(env.step(a)[1] for a in env.demonstration())
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(template.replace("ANS", info["item"]["answer"]))
    assert terminated and info["metrics"]["acc"] == float(correct) and info["metrics"]["format"] == float(correct)
    assert (reward == pytest.approx(demo_reward)) if correct else (reward < demo_reward - 0.5)
