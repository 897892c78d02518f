"""Faults: bad frames, vanishing clients, the session cap, idle reaping, dead and restarted servers, scale-out."""

from __future__ import annotations

import json
import signal
import socket
import time

import gymnasium as gym
import pytest
from websockets.sync.client import connect

from envs.remote import RemoteEnv, RemoteEnvError
from envs.server import wire

IDLE_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def server(module_server_factory):
    # Two worker processes: the cap and the reaper hold for the whole server.
    return module_server_factory("arithmetic", "--max-sessions", "3", "--idle-timeout", str(IDLE_TIMEOUT),
                                 "--processes", "2")


def raw_session(server):
    return connect(server.url.replace("http", "ws") + "/ws", max_size=None).__enter__()


def ask(ws, frame) -> dict:
    ws.send(frame if isinstance(frame, str | bytes) else json.dumps(frame))
    return json.loads(ws.recv(timeout=30))


def code(reply: dict) -> str | None:
    return reply["data"].get("code") if reply["type"] == "error" else None


def test_bad_frames_get_error_frames_and_the_session_survives(server):
    ws = raw_session(server)
    try:
        assert code(ask(ws, '{"type": "step", "data": {"message": "early"}}')) == wire.EXECUTION_ERROR
        assert code(ask(ws, {"type": "reset", "data": {"seed": -1}})) == wire.VALIDATION_ERROR
        assert code(ask(ws, {"type": "reset", "data": [1]})) == wire.VALIDATION_ERROR
        assert ask(ws, {"type": "reset", "data": {"seed": 0}})["type"] == "observation"
        bad = [
            ("not json", wire.INVALID_JSON),
            (b"\xff\xfe\x00", wire.INVALID_JSON),
            ("[" * 100_000, wire.INVALID_JSON),
            ("[1, 2]", wire.VALIDATION_ERROR),
            ('{"type": "dance"}', wire.UNKNOWN_TYPE),
            ('{"type": 5}', wire.UNKNOWN_TYPE),
            ('{"data": {}}', wire.UNKNOWN_TYPE),
            ({"type": "step", "data": {"text": "wrong field"}}, wire.VALIDATION_ERROR),
            ({"type": "step", "data": {"message": 5}}, wire.VALIDATION_ERROR),
            ({"type": "step", "data": "a string"}, wire.VALIDATION_ERROR),
            ({"type": "step", "data": {"message": "x", "extra": 1}}, wire.VALIDATION_ERROR),
            ({"type": "step", "data": {"message": "x" * (10 << 20)}}, wire.VALIDATION_ERROR),  # a 10 MB action
            ({"type": "mcp", "data": {"jsonrpc": "1.0"}}, None),  # JSON-RPC errors travel inside an mcp frame
        ]
        for frame, expected in bad:
            reply = ask(ws, frame)
            assert code(reply) == expected, (str(frame)[:60], reply)
        mcp = ask(ws, {"type": "mcp", "data": {"jsonrpc": "2.0", "id": 1, "method": "nope"}})
        assert mcp["type"] == "mcp" and mcp["data"]["error"]["code"] == -32601
        # The episode is intact: no bad frame counted as a step.
        assert ask(ws, {"type": "state"})["data"]["step_count"] == 0
        demo = ask(ws, {"type": wire.DEMONSTRATION})["data"]["actions"]
        final = ask(ws, {"type": "step", "data": {"message": demo[-1]}})["data"]
        assert final["done"] and final["observation"]["metrics"]["acc"] == 1.0
    finally:
        ws.close()
    assert server.active_sessions(expect=0) == 0
    assert server.get("/health")["status"] == "healthy"


def test_clients_vanishing_mid_episode_free_their_sessions(server):
    for in_flight in (False, True):
        ws = raw_session(server)
        ask(ws, {"type": "reset", "data": {"seed": 1}})
        assert server.active_sessions() == 1
        if in_flight:  # gone while the server is stepping
            ws.send(json.dumps({"type": "step", "data": {"message": "\\boxed{0}"}}))
        ws.socket.shutdown(socket.SHUT_RDWR)  # no close frame: the process died
        ws.socket.close()
        assert server.active_sessions(expect=0) == 0


def test_session_cap_refuses_with_capacity_reached_then_frees_slots(server):
    held = [RemoteEnv(server.url, env_id="arithmetic") for _ in range(3)]
    try:
        ws = raw_session(server)
        refusal = json.loads(ws.recv(timeout=10))
        assert code(refusal) == wire.CAPACITY_REACHED and refusal["data"]["max_sessions"] == 3
        ws.close()
        with pytest.raises(RemoteEnvError, match="at capacity"):
            RemoteEnv(server.url, env_id="arithmetic")
        held.pop().close()
        held.append(RemoteEnv(server.url, env_id="arithmetic"))  # a freed slot is usable at once
    finally:
        for env in held:
            env.close()
    assert server.active_sessions(expect=0) == 0


def test_idle_sessions_are_reaped_and_the_client_recovers(server):
    env = gym.make("AgentR1/Remote-v0", url=server.url, env_id="arithmetic")
    env.reset(seed=2)
    reaped_before = server.get("/agentr1/status")["reaped_sessions"]
    time.sleep(IDLE_TIMEOUT * 1.8)
    assert server.active_sessions(expect=0) == 0
    assert server.get("/agentr1/status")["reaped_sessions"] == reaped_before + 1
    obs, reward, terminated, truncated, info = env.step("\\boxed{1}")  # no exception: not the model's fault
    assert (obs, reward, terminated, truncated) == ("", 0.0, False, True)
    assert info["env_error"] is True and info["metrics"]["env_error"] == 1.0 and "idle" in info["error"]
    env.reset(seed=2)  # a new session
    *_, info = env.step(env.unwrapped.demonstration()[-1])
    assert info["metrics"]["acc"] == 1.0
    env.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_scale_out_failover_restart_and_graceful_shutdown(server_factory):
    port_a, port_b = _free_port(), _free_port()
    a = server_factory("arithmetic", "--processes", "2", port=port_a)  # its workers die with it
    b = server_factory("arithmetic", "--processes", "2", port=port_b)
    urls = [a.url, b.url]
    spread = [RemoteEnv(urls, env_id="arithmetic") for _ in range(4)]
    assert (a.active_sessions(), b.active_sessions()) == (2, 2)
    for env in spread:
        env.reset(seed=0)

    assert a.stop(signal.SIGKILL) is not None  # server A dies mid-episode
    on_a = [env for env in spread if env.url.endswith(f":{port_a}/ws")]
    for env in on_a:
        *_, truncated, info = env.step("\\boxed{3}")
        assert truncated and info["env_error"] is True
        env.reset(seed=0)  # fails over to B
        assert env.url.endswith(f":{port_b}/ws")
    assert b.active_sessions() == 4
    with pytest.raises(RemoteEnvError, match="no env server accepted"):
        RemoteEnv(a.url, env_id="arithmetic")  # one URL, nobody there: a clear error

    a = server_factory("arithmetic", port=port_a)  # restarted on the same port (nothing of the old one holds it)
    back = RemoteEnv(a.url, env_id="arithmetic")
    back.reset(seed=4)
    assert back.step(back.demonstration()[-1])[4]["metrics"]["acc"] == 1.0

    assert b.stop(signal.SIGTERM) == 0  # graceful: closes its sessions and exits cleanly
    assert "stopped by SIGTERM; closed 4 open session(s)" in b.output
    for env in spread:
        *_, truncated, info = env.step("\\boxed{3}")
        assert truncated and info["env_error"] is True
        env.reset(seed=1)  # all on A now
    assert a.active_sessions() == 5
    for env in [*spread, back]:
        env.close()
    assert a.active_sessions(expect=0) == 0
