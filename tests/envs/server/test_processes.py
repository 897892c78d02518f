"""``serve --processes 2``: one port, one session cap, one /health, sessions that stay where they were opened."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from envs.server import wire

CAP = 24


@pytest.fixture(scope="module")
def server(module_server_factory):
    return module_server_factory("arithmetic", "hotpotqa", "--offline", "--processes", "2", "--max-sessions", str(CAP),
                                 "--idle-timeout", "30", "--pool-ttl", "1")


def open_session(server, query: str = "") -> tuple:
    """A raw WebSocket session (a fresh TCP connection, so the kernel picks its worker) and its id."""
    ws = connect(server.url.replace("http", "ws") + "/ws" + query, max_size=None).__enter__()
    reply = ask(ws, {"type": "state"})
    return ws, reply["data"].get("session_id") if reply["type"] == "state" else reply


def ask(ws, frame: dict) -> dict:
    try:
        ws.send(json.dumps(frame))
    except ConnectionClosed:
        pass  # a refused session sends its error frame, then closes: read the frame
    return json.loads(ws.recv(timeout=30))


def rpc(server, method: str, path: str = "/envs/HotpotQA-v0/mcp", **params) -> dict:
    """One JSON-RPC request on a fresh HTTP connection (urllib opens one per request)."""
    return server.post(path, {"jsonrpc": "2.0", "id": 1, "method": method, "params": params})


def owner(session_id: str) -> int:
    return int(session_id.split("-")[0][1:])


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def gone(pid: int) -> bool:
    """Whether every thread of ``pid`` has exited (its sockets are closed only then; a zombie is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            zombie = "\nState:\tZ" in status.read()
        return zombie and len(os.listdir(f"/proc/{pid}/task")) <= 1
    except FileNotFoundError:
        return True


def test_health_reports_every_worker(server):
    health = server.get("/health")
    assert health["status"] == "healthy"
    pids = [w["pid"] for w in health["workers"]]
    assert [w["worker"] for w in health["workers"]] == [0, 1] and len(set(pids)) == 2
    assert server.proc.pid not in pids and all(w["alive"] for w in health["workers"])
    status = server.get("/agentr1/status")
    assert status["processes"] == 2 and status["max_sessions"] == CAP


def test_the_session_cap_holds_for_the_whole_server(server):
    sessions = [open_session(server) for _ in range(CAP)]
    try:
        per_worker = [sum(owner(sid) == i for _, sid in sessions) for i in (0, 1)]
        assert all(per_worker), per_worker  # the kernel spread them (all on one worker: odds 2**-23)
        status = server.get("/agentr1/status")
        assert status["active_sessions"] == CAP
        assert [w["sessions"] for w in status["workers"]] == per_worker
        for _ in range(4):  # whichever worker a new connection reaches, the server is full
            ws, refusal = open_session(server)
            assert refusal["data"]["code"] == wire.CAPACITY_REACHED and refusal["data"]["max_sessions"] == CAP
            ws.close()
        for ws, sid in sessions:  # each session plays on in its own worker
            assert ask(ws, {"type": "reset", "data": {"seed": 3}})["type"] == "observation"
            assert ask(ws, {"type": "state"})["data"]["session_id"] == sid
        sessions.pop()[0].close()
        assert server.active_sessions(expect=CAP - 1) == CAP - 1
        sessions.append(open_session(server))  # the freed slot is usable from either worker
    finally:
        for ws, _ in sessions:
            ws.close()
    assert server.active_sessions(expect=0) == 0


def test_mcp_sessions_stay_in_the_worker_that_opened_them(server):
    ids = [rpc(server, "openenv/session/create")["result"]["session_id"] for _ in range(4)]
    assert {owner(i) for i in ids} <= {0, 1}
    for k, session_id in enumerate(ids):
        # Four WebSocket attachments and sixteen tool calls on fresh connections: most reach the other
        # worker, which relays them to the owner (all on the owner: odds 2**-20 per session).
        for attempt in range(4):
            ws, attached_id = open_session(server, f"?session_id={session_id}")
            assert attached_id == session_id
            if attempt == 0:  # the search tool is set up by the first reset
                assert ask(ws, {"type": "reset", "data": {"seed": 1, "episode_id": f"ep-{k}"}})["type"] == "observation"
            assert ask(ws, {"type": "state"})["data"]["episode_id"] == f"ep-{k}"  # the same env, each time
            ws.close()
        results = {json.dumps(rpc(server, "tools/call", name="search", arguments={"query": "opera composer"},
                                  session_id=session_id)["result"]) for _ in range(16)}
        assert len(results) == 1 and '"isError": false' in results.pop()
    status = server.get("/agentr1/status")
    assert [w["sessions"] for w in status["workers"]] == [sum(owner(i) == w for i in ids) for w in (0, 1)]
    for session_id in ids:
        assert rpc(server, "openenv/session/close", session_id=session_id)["result"]["closed"] is True
    assert server.active_sessions(expect=0) == 0


def test_a_burst_of_sessions_leaves_no_instances_pooled(server):
    sessions = [open_session(server) for _ in range(20)]
    for ws, _ in sessions:
        ask(ws, {"type": "reset", "data": {"seed": 0}})
        ws.close()
    assert server.active_sessions(expect=0) == 0
    assert wait_for(lambda: server.get("/agentr1/status")["idle_instances"] >= 20, 5)  # pooled for reuse...
    assert wait_for(lambda: server.get("/agentr1/status")["idle_instances"] == 0, 15)  # ...then closed (ttl 1 s)


def test_a_dead_worker_is_restarted_and_the_supervisors_death_takes_every_worker(server_factory):
    server = server_factory("arithmetic", "--processes", "2", "--max-sessions", "8")
    sessions = [open_session(server) for _ in range(8)]
    victim = max((0, 1), key=lambda i: sum(owner(sid) == i for _, sid in sessions))
    lost = sum(owner(sid) == victim for _, sid in sessions)
    pid = server.get("/health")["workers"][victim]["pid"]
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: gone(pid))  # connections reaching its socket while it dies are reset
    assert server.active_sessions(expect=8 - lost) == 8 - lost  # the dead worker's slots are free again
    for ws, sid in sessions:
        if owner(sid) == victim:
            with pytest.raises(ConnectionClosed):
                ask(ws, {"type": "state"})
    health = wait_for(lambda: (h := server.get("/health"))["status"] == "healthy" and h, 30)
    assert health["workers"][victim]["restarts"] == 1 and health["workers"][victim]["pid"] != pid
    for ws, _ in sessions:
        ws.close()
    assert server.active_sessions(expect=0) == 0
    fresh = [open_session(server) for _ in range(8)]  # the whole cap again, on both workers
    assert all(isinstance(sid, str) for _, sid in fresh)
    for ws, _ in fresh:
        ws.close()

    pids = [w["pid"] for w in server.get("/health")["workers"]]
    server.stop(signal.SIGKILL)  # the supervisor dies; the kernel kills its workers
    assert wait_for(lambda: all(gone(p) for p in pids), 10)
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url + "/health", timeout=2)


def test_a_second_server_on_a_taken_port_is_refused(server, capsys):
    """SO_REUSEPORT would let it join the running server's port and take half its connections."""
    from envs.__main__ import main

    port = server.url.rsplit(":", 1)[1]
    for processes in ("2", "1"):
        assert main(["serve", "arithmetic", "--port", port, "--processes", processes]) == 2
        assert "Address already in use" in capsys.readouterr().err
