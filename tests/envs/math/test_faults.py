"""Infrastructure failures during math verification are neutral and counted (``env_error``), never punished."""

import pytest

from envs.core.process_pool import Outcome
from envs.math.env import MathEnv
from envs.math.verify import ENV_ERROR, SYMBOLIC, MathVerifier, clear_caches

GOLD, RIGHT = "\\frac{1}{2}", "\\boxed{\\sin(\\pi/6)}"  # a pair the fast path leaves to the symbolic check


class _FailingPool:
    """A pool whose worker crashed twice (or that had no free worker): it returns infra outcomes."""

    closed = False

    def __init__(self, status: str):
        self.status, self.calls = status, 0

    def call(self, fn, *args, timeout=None):
        self.calls += 1
        return Outcome(self.status, error="worker died: EOFError", attempts=2)

    def map(self, fn, arg_tuples, timeout=None):
        return [self.call(fn, *t) for t in arg_tuples]


class _InProcessPool(_FailingPool):
    def call(self, fn, *args, timeout=None):
        self.calls += 1
        return Outcome("ok", fn(*args))


@pytest.mark.parametrize("status", ["crashed", "busy"])
def test_an_infrastructure_outcome_is_no_verdict_and_is_not_cached(status):
    clear_caches()
    verdict = MathVerifier(pool=_FailingPool(status)).verify(GOLD, RIGHT)
    assert verdict.method == ENV_ERROR and not verdict.correct and status in verdict.detail
    assert verdict.metrics()["verify_env_error"] == 1.0 and verdict.metrics()["verify_error"] == 0.0
    batch = MathVerifier(pool=_FailingPool(status)).verify_batch([(GOLD, RIGHT)] * 3)
    assert {v.method for v in batch} == {ENV_ERROR}
    healthy = _InProcessPool("ok")
    again = MathVerifier(pool=healthy).verify(GOLD, RIGHT)  # the failure was not cached as a verdict
    assert again.correct and again.method == SYMBOLIC and healthy.calls == 1


def test_the_env_scores_an_unverifiable_answer_as_neutral_and_says_so():
    clear_caches()
    items = [{"problem": "What is sin(pi/6)?", "answer": GOLD}]
    env = MathEnv(items=items, reward_preset="open-rs-cosine-format", verifier=MathVerifier(pool=_FailingPool("crashed")))
    env.reset(seed=0)
    response = f"<think>\nsin(pi/6) is one half.\n</think>\nSo {RIGHT}."
    _, reward, terminated, _, info = env.step(response)
    assert terminated and info["env_error"] is True
    assert info["metrics"]["env_error"] == 1.0 and info["verdict"]["method"] == ENV_ERROR
    components = info["reward_components"]
    assert components.get("cosine", 0.0) == 0.0  # a wrong answer would have been charged a negative cosine
    assert reward == pytest.approx(sum(components.values())) and reward >= 0.0

    wrong_env = MathEnv(items=items, reward_preset="open-rs-cosine-format", verifier=MathVerifier(pool=_InProcessPool("ok")))
    wrong_env.reset(seed=0)
    _, wrong_reward, *_, wrong_info = wrong_env.step("<think>\nHmm.\n</think>\nSo \\boxed{\\sin(\\pi/3)}.")
    assert wrong_info["metrics"]["env_error"] == 0.0 and wrong_info["env_error"] is False
    assert wrong_reward < reward  # infrastructure failure never scores like a wrong answer
