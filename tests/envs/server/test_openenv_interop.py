"""OpenEnv 0.10.0's own client and validators against our server (skipped without the ``openenv`` extra)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import gymnasium as gym
import pytest

import envs

pytest.importorskip("openenv")
from openenv.cli._validation import validate_running_environment  # noqa: E402
from openenv.core.generic_client import GenericEnvClient  # noqa: E402
from openenv.validation.graders.runtime.basic import (  # noqa: E402
    ObservationSchemaGrader,
    RewardWellFormedGrader,
    StateContractGrader,
)
from openenv.validation.runtime.collector import collect_runtime_evidence  # noqa: E402
from openenv.validation.runtime.contracts import RuntimePlan  # noqa: E402
from openenv.validation.types import CheckStatus  # noqa: E402

OFFLINE = {e.env_id: dict(e.offline_kwargs) for e in envs.suite_envs() if e.offline_kwargs is not None}
SERVED = ("AgentR1/HotpotQA-v0", "AgentR1/Math-v0")


@pytest.fixture(scope="module")
def server(module_server_factory):
    return module_server_factory(*SERVED, "--offline")


def golden(env_id: str, index: int) -> tuple[list[str], list[float], dict]:
    """The local env's golden actions, rewards and final info for item ``index``."""
    env = gym.make(env_id, **OFFLINE[env_id])
    env.reset(seed=0, options={"index": index})
    actions = env.unwrapped.demonstration()
    steps = [env.step(a) for a in actions]
    env.close()
    return actions, [s[1] for s in steps], steps[-1][4]


@pytest.mark.parametrize("env_id", SERVED)
def test_openenv_generic_client_plays_a_full_episode(server, env_id):
    actions, rewards, final_info = golden(env_id, 1)
    # The first served env is the server's default; every hosted env is also its own base URL.
    url = server.url if env_id == SERVED[0] else f"{server.url}/envs/{env_id.split('/')[-1]}"
    with GenericEnvClient(base_url=url).sync() as client:
        result = client.reset(seed=0, index=1, episode_id="ep-1")
        assert not result.done and result.reward is None
        assert result.observation["messages"][-1]["role"] == "user" and result.observation["text"]
        got = []
        for action in actions:
            result = client.step({"message": action})
            got.append(result.reward)
            observation = result.observation
            assert isinstance(observation["reward_components"], dict)
            assert sum(observation["reward_components"].values()) == pytest.approx(result.reward)
        assert got == pytest.approx(rewards)
        assert result.done and observation["terminated"] and not observation["truncated"]
        assert observation["metrics"] == final_info["metrics"] and observation["metrics"]["acc"] == 1.0
        assert result.metadata["episode_reward_components"] == final_info["episode_reward_components"]
        state = client.state()
        assert state["episode_id"] == "ep-1" and state["step_count"] == len(actions)


def test_openenv_validate_runtime_probe_passes(server):
    report = validate_running_environment(server.url, timeout_s=10)
    failed = [c for c in report["criteria"] if not c["passed"]]
    assert report["passed"], json.dumps(failed, indent=1)
    assert report["mode"] == "simulation" and report["standard_profile"] == "openenv-http/1.x"


def test_openenv_runtime_graders_pass_on_a_recorded_episode(server):
    actions, _, _ = golden(SERVED[0], 0)
    plan = RuntimePlan.model_validate({"plan_schema_version": "1",
                                       "reset": {"episode_id": "ep-7", "seed": 0, "options": {"index": 0}},
                                       "actions": [{"message": a} for a in actions]})
    evidence = collect_runtime_evidence(server.url, plan, episode_timeout_s=60)
    assert evidence.failure_reason is None, evidence.failure_reason
    assert [e.operation for e in evidence.exchanges].count("step") == len(actions)
    subject = SimpleNamespace(runtime_evidence=evidence, manifest=SimpleNamespace(reward=SimpleNamespace(range=(-2.0, 2.0))))
    for grader in (RewardWellFormedGrader(), ObservationSchemaGrader(), StateContractGrader()):
        result = grader.run(subject)
        assert result.status is CheckStatus.PASS, (grader.check_id, result.evidence)


def test_openenv_client_sees_protocol_errors(server):
    with GenericEnvClient(base_url=server.url).sync() as client:
        with pytest.raises(RuntimeError, match="VALIDATION_ERROR"):
            client.step({"text": "wrong field"})
        with pytest.raises(RuntimeError, match="call reset before step"):
            client.step({"message": "too early"})
        assert client.reset(seed=1).observation["text"]  # the session survived both errors
