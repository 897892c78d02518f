"""Suite envs through skyrl-gym's own registry and ``make``, stepped like SkyRL's generator does."""

from __future__ import annotations

import importlib
import threading

import pytest

skyrl_gym = pytest.importorskip("skyrl_gym")

import envs  # noqa: E402
from adapters import skyrl_gym as adapter  # noqa: E402
from adapters.episodes import EpisodeSpec, make_env  # noqa: E402
from skyrl_gym.envs.base_text_env import BaseTextEnv  # noqa: E402


def _demo(row):
    spec = EpisodeSpec.from_label(row["extra_info"]["agentr1"])
    env = make_env(spec.env_id, spec.make_kwargs)
    env.reset(seed=spec.seed, options={"item": spec.item})
    actions = env.unwrapped.demonstration()
    env.close()
    return actions


def test_every_suite_env_is_registered_under_agentr1_ids():
    ids = adapter.register_skyrl_envs()
    assert "agentr1.arithmetic-v0" in ids
    assert {adapter.skyrl_id(e.env_id) for e in envs.suite_envs()} <= set(skyrl_gym.registry)


def test_registration_is_idempotent_across_reimport_and_threads():
    importlib.reload(adapter)  # a Ray worker importing the module again
    errors = []

    def register():
        try:
            adapter.register_skyrl_envs()
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=register) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_a_foreign_env_under_our_id_is_refused():
    skyrl_gym.register(id="agentr1.clash-test", entry_point="skyrl_gym.envs.gsm8k.env:GSM8kEnv")
    try:
        original = adapter.skyrl_id
        adapter.skyrl_id = lambda env_id: "agentr1.clash-test"
        with pytest.raises(ValueError, match="already taken"):
            adapter.register_skyrl_envs()
    finally:
        adapter.skyrl_id = original
        skyrl_gym.envs.deregister("agentr1.clash-test")


def test_make_and_play_demonstrations_with_per_turn_rewards():
    rows = adapter.skyrl_rows("arithmetic-v0", count=3, seed=7)
    for row in rows:
        env = skyrl_gym.make(row["env_class"], env_config={}, extras=row)
        assert isinstance(env, BaseTextEnv)
        conversation, meta = env.init(row["prompt"])
        assert conversation == row["prompt"] and meta["tools"]
        rewards = []
        for action in _demo(row):
            out = env.step(action)
            rewards.append(out["reward"])
            if out["done"]:
                break
            assert out["observations"] and out["observations"][0]["role"] in ("user", "tool")
            assert "<tool_response>" in out["observations"][0]["content"]
            conversation += [{"role": "assistant", "content": action}, *out["observations"]]
        assert out["done"] and out["observations"] == []
        assert rewards == pytest.approx([0.05, 1.1])  # process reward, then answer + format
        metrics = env.get_metrics()
        assert metrics["acc"] == 1.0 and metrics["reward/answer"] == 1.0
        assert out["metadata"]["metrics"]["acc"] == 1.0
        env.close()


def test_env_config_adds_make_kwargs():
    row = adapter.skyrl_rows("arithmetic-v0", count=1)[0]
    env = skyrl_gym.make(row["env_class"], env_config={"max_turns": 1}, extras=row)
    env.init(row["prompt"])
    out = env.step('<tool_call>{"name": "calculator", "arguments": {"expression": "1+1"}}</tool_call>')
    assert out["done"] and out["metadata"]["truncated"]  # one turn allowed: a tool turn ends the episode
    env.close()


def test_adversarial_actions_never_raise():
    row = adapter.skyrl_rows("arithmetic-v0", count=1)[0]
    for action in ["", "\x00" * 10, "<tool_call>", "<tool_call>{\"name\": 5}</tool_call>", "\\boxed{", "🙂" * 1000]:
        env = skyrl_gym.make(row["env_class"], extras=row)
        env.init(row["prompt"])
        out = env.step(action)
        assert isinstance(out["reward"], float) and isinstance(out["done"], bool)
        env.close()


def test_rows_without_a_label_are_refused():
    with pytest.raises(ValueError, match="agentr1"):
        skyrl_gym.make("agentr1.arithmetic-v0", extras={"prompt": []})
    row = adapter.skyrl_rows("arithmetic-v0", count=1)[0]
    other = [e for e in envs.suite_envs() if e.env_id != "AgentR1/Arithmetic-v0"]
    if other:
        with pytest.raises(ValueError, match="row is for"):
            skyrl_gym.make(adapter.skyrl_id(other[0].env_id), extras=row)


OFFLINE_ENVS = [e for e in envs.suite_envs() if e.offline_kwargs is not None]


@pytest.mark.parametrize("entry", OFFLINE_ENVS, ids=[e.env_id for e in OFFLINE_ENVS])
def test_every_offline_env_plays_through_skyrl(entry):
    kwargs = dict(entry.offline_kwargs)
    probe = make_env(entry.env_id, kwargs)
    count = 2 if getattr(probe.unwrapped, "items", None) is None else min(2, len(probe.unwrapped.items))
    probe.close()
    for row in adapter.skyrl_rows(entry.env_id, kwargs, count=count):
        env = skyrl_gym.make(row["env_class"], env_config={}, extras=row)
        env.init(row["prompt"])
        total = 0.0
        for action in _demo(row):
            out = env.step(action)
            total += out["reward"]
            if out["done"]:
                break
        assert out["done"] and env.get_metrics()["acc"] == 1.0
        assert total == pytest.approx(env.get_metrics()["episode_reward"])
        env.close()
