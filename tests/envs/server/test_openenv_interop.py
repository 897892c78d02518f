"""OpenEnv 0.10.0's own clients and validators against our server (skipped without the ``openenv`` extra).

The server runs two worker processes, so OpenEnv's MCP session flow (one HTTP request opens the
session, a WebSocket and more HTTP requests on other connections use it) crosses workers.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import gymnasium as gym
import pytest

import envs
from envs.core.parsing import parse_turn
from envs.core.tools import run_tool

pytest.importorskip("openenv")
from openenv.cli._validation import validate_running_environment  # noqa: E402
from openenv.core.generic_client import GenericEnvClient  # noqa: E402
from openenv.core.mcp_client import MCPToolClient  # noqa: E402
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
    return module_server_factory(*SERVED, "--offline", "--processes", "2")


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


def test_openenv_mcp_tool_client_lists_and_calls_a_suite_envs_tools(server):
    """MCPToolClient's production mode: openenv/session/create, a WebSocket attached by session id, tool calls."""
    env_id = SERVED[0]
    local = gym.make(env_id, **OFFLINE[env_id])
    local.reset(seed=0, options={"index": 1})
    call = parse_turn(local.unwrapped.demonstration()[0]).tool_calls[0]  # the golden first search
    expected = run_tool(local.unwrapped.tools, call).content
    local.close()
    assert "Glass Orchard" in expected
    for _ in range(6):  # six sessions: their HTTP and WebSocket connections land on either worker
        with MCPToolClient(base_url=server.url).sync() as client:
            session_id = client._production_session_id
            assert [t.name for t in client.list_tools()] == ["search"]
            assert client.list_tools()[0].input_schema["properties"]["query"]["type"] == "string"
            result = client.reset(seed=0, index=1)  # over the WebSocket, on the session's env instance
            assert "Glass Orchard" in result.observation.messages[-1]["content"]
            assert client.call_tool("search", **call.arguments) == expected
            assert client.state().step_count == 0  # a tool call is not a step
            status = server.get("/agentr1/status")
            assert status["active_sessions"] == 1
            owner = int(session_id.split("-")[0][1:])
            assert status["workers"][owner]["sessions"] == 1  # it lives in the worker that opened it
            with pytest.raises(RuntimeError, match="Tool not found"):
                client.call_tool("no_such_tool")
        assert server.active_sessions(expect=0) == 0  # close: the WebSocket detaches, then the session closes
    assert server.get("/health")["status"] == "healthy"


def test_mcp_sessions_over_raw_json_rpc(server):
    """The session methods' edge cases, as OpenEnv's server answers them."""
    create = {"jsonrpc": "2.0", "id": 1, "method": "openenv/session/create"}
    session_id = server.post("/envs/Math-v0/mcp", create)["result"]["session_id"]
    assert server.post("/mcp", {"jsonrpc": "2.0", "id": 2, "method": "tools/list",
                                "params": {"session_id": session_id}})["result"]["tools"] == []
    unknown = server.post("/mcp", {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                                   "params": {"session_id": "w0-nope", "name": "search"}})
    assert unknown["error"]["code"] == -32602 and "Unknown session_id" in unknown["error"]["message"]
    no_id = server.post("/mcp", {"jsonrpc": "2.0", "id": 4, "method": "openenv/session/close"})
    assert no_id["error"]["code"] == -32602
    closed = server.post("/mcp", {"jsonrpc": "2.0", "id": 5, "method": "openenv/session/close",
                                  "params": {"session_id": session_id}})
    assert closed["result"] == {"session_id": session_id, "closed": True}
    again = server.post("/mcp", {"jsonrpc": "2.0", "id": 6, "method": "openenv/session/close",
                                 "params": {"session_id": session_id}})
    assert "Unknown session_id" in again["error"]["message"]
    assert server.active_sessions(expect=0) == 0
