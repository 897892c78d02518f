"""Frames and bodies that must end as protocol errors: never an internal error, never a flood of log.

A grid of hostile values (huge integer literals, deep nesting, non-finite numbers, lone surrogates,
wrong types) at every field of every frame type and HTTP body, sent to a real two-process server;
random JSON frames against the protocol in process (hypothesis); the log stays a few lines.
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect

from envs.server import wire
from envs.server.protocol import CLOSE, SessionProtocol
from envs.server.sessions import HostedEnv, SessionManager

OPENENV_CODES = {wire.INVALID_JSON, wire.UNKNOWN_TYPE, wire.VALIDATION_ERROR, wire.EXECUTION_ERROR,
                 wire.CAPACITY_REACHED, wire.FACTORY_ERROR, wire.SESSION_ERROR}
REPLY_TYPES = {"observation", "state", "mcp", "error", wire.SPEC, wire.DEMONSTRATION, wire.END_UNFINISHED}

HOSTILE = [  # raw JSON text put where a field's value goes
    "null", "true", "-1", "0", "1.5", "1e999", "NaN", "-Infinity", "9" * 5000, "-" + "9" * 4400,
    '"text"', '"' + "x" * 20_000 + '"', '"\\ud800\\udfff"', "[]", "{}", "[" * 70 + "]" * 70,
    '{"a":' * 70 + "1" + "}" * 70, "[" * 30 + "]" * 30, '[1, "a", null]', '{"question": 5, "answers": [[]]}',
]
X = '"__X__"'
FRAMES = [  # one field per template takes every hostile value
    X, '{"type": __X__}', '{"type": "reset", "data": __X__}', '{"type": "reset", "data": {"seed": __X__}}',
    '{"type": "reset", "data": {"episode_id": __X__}}', '{"type": "reset", "data": {"options": __X__}}',
    '{"type": "reset", "data": {"options": {"index": __X__}}}', '{"type": "reset", "data": {"options": {"item": __X__}}}',
    '{"type": "reset", "data": {"index": __X__}}', '{"type": "step", "data": __X__}',
    '{"type": "step", "data": {"message": __X__}}', '{"type": "step", "data": {"message": "hi", "metadata": __X__}}',
    '{"type": "state", "data": __X__}', '{"type": "agentr1.spec", "data": __X__}',
    '{"type": "agentr1.demonstration", "data": __X__}', '{"type": "agentr1.end_unfinished", "data": {"reason": __X__}}',
    '{"type": "mcp", "data": __X__}', '{"type": "mcp", "data": {"jsonrpc": __X__, "id": 1, "method": "tools/list"}}',
    '{"type": "mcp", "data": {"jsonrpc": "2.0", "id": __X__, "method": "tools/list"}}',
    '{"type": "mcp", "data": {"jsonrpc": "2.0", "id": 1, "method": __X__}}',
    '{"type": "mcp", "data": {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": __X__}}',
    '{"type": "mcp", "data": {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": __X__}}}',
    '{"type": "mcp", "data": {"jsonrpc": "2.0", "id": 1, "method": "tools/call", '
    '"params": {"name": "search", "arguments": __X__}}}',
    '{"type": "mcp", "data": {"jsonrpc": "2.0", "id": 1, "method": "tools/call", '
    '"params": {"name": "search", "arguments": {"query": __X__, "top_k": __X__}}}}',
    '{"type": "mcp", "data": {"jsonrpc": "2.0", "id": 1, "method": "openenv/session/close", '
    '"params": {"session_id": __X__}}}',
]
BODIES = {  # HTTP route -> bodies with one hostile field
    "/reset": [X, '{"seed": __X__}', '{"options": __X__}', '{"options": {"index": __X__}}', '{"episode_id": __X__}'],
    "/step": [X, '{"action": __X__}', '{"action": {"message": __X__}}', '{"action": {"message": "x"}, "seed": __X__}',
              '{"action": {"message": "x"}, "timeout_s": __X__}'],
    "/mcp": [X, '{"jsonrpc": "2.0", "id": __X__, "method": "tools/list"}',
             '{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "search", "arguments": __X__}}',
             '{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"session_id": __X__, "name": "search"}}',
             '{"jsonrpc": "2.0", "id": 1, "method": "openenv/session/close", "params": {"session_id": __X__}}'],
    "/HotpotQA-v0/task": [X, '{"index": __X__}', '{"split": __X__, "index": 0}'],
    "/HotpotQA-v0/task_range": ['{"start": __X__, "stop": 2}'],
}


def frame_problem(raw_reply: str) -> str | None:
    """Why a reply is not a well-formed protocol frame (``None`` if it is one)."""
    reply = json.loads(raw_reply)
    if reply.get("type") not in REPLY_TYPES:
        return f"unexpected reply type {reply.get('type')!r}"
    if reply["type"] == "error":
        data = reply["data"]
        if data["code"] not in OPENENV_CODES:
            return f"unknown code {data['code']!r}"
        if "internal error" in data["message"] or len(data["message"]) > 2 * wire.MAX_MESSAGE_CHARS:
            return f"not a protocol error: {data['message'][:200]}"
    if reply["type"] == "mcp" and "error" in reply["data"] and reply["data"]["error"]["code"] == -32603:
        return f"internal JSON-RPC error: {reply['data']['error']}"
    return None


@pytest.fixture(scope="module")
def server(module_server_factory):
    return module_server_factory("hotpotqa", "arithmetic", "--offline", "--processes", "2")


def test_hostile_values_at_every_field_get_protocol_errors_and_the_log_stays_short(server):
    log_before = server.log_bytes()
    with connect(server.url.replace("http", "ws") + "/ws", max_size=None) as ws:
        for template in FRAMES:
            for value in HOSTILE:
                ws.send('{"type": "reset", "data": {"seed": 0}}')
                assert json.loads(ws.recv(timeout=30))["type"] == "observation"
                ws.send(template.replace(X, value))
                problem = frame_problem(ws.recv(timeout=30))
                assert problem is None, (template, value[:40], problem)
        for raw in (b"\xff\xfe\xfd", b'{"type": "reset", "data": {"seed": 1}}\xc3\x28', b"\xed\xa0\x80", b""):
            ws.send(raw)  # binary frames that are not UTF-8 (or not JSON)
            reply = json.loads(ws.recv(timeout=30))
            assert reply["data"]["code"] == wire.INVALID_JSON, (raw, reply)
        for _ in range(200):  # the flood: integer literals past Python's 4,300-digit limit
            ws.send('{"type": "reset", "data": {"seed": ' + "9" * 5000 + "}}")
            assert json.loads(ws.recv(timeout=30))["data"]["code"] == wire.INVALID_JSON
        ws.send('{"type": "reset", "data": {"seed": 0}}')  # the session survived all of it
        assert json.loads(ws.recv(timeout=30))["type"] == "observation"
    for path, bodies in BODIES.items():
        for template in bodies:
            for value in HOSTILE:
                status, body = _post(server.url + path, template.replace(X, value))
                assert 200 <= status < 500, (path, template, value[:40], status, body[:300])
                if path == "/mcp":
                    assert "error" in json.loads(body) or "result" in json.loads(body)
                    assert '"code":-32603' not in body.replace(" ", ""), body[:300]
    for _ in range(200):  # malformed HTTP: uvicorn logs a warning for each, rate-limited now
        with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=10) as raw:
            raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            raw.recv(1024)
    assert server.active_sessions(expect=0) == 0
    written = server.log_bytes() - log_before
    assert written < 4000, f"{written} bytes of log for ~4,000 bad frames and requests"


def _post(url: str, body: str) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body.encode("utf-8", "surrogatepass"),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


# ------------------------------------------------------------------ in process: random JSON frames
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)
frame_types = st.sampled_from(["reset", "step", "state", "mcp", "close", wire.SPEC, wire.DEMONSTRATION,
                               wire.END_UNFINISHED, "nope"]) | json_values
fields = st.sampled_from(["seed", "episode_id", "options", "message", "metadata", "reason", "jsonrpc", "id", "method",
                          "params", "index", "item"])
frames = st.fixed_dictionaries({"type": frame_types}, optional={
    "data": json_values | st.dictionaries(fields, json_values, max_size=4)})


@pytest.fixture(scope="module")
def protocol():
    loop = asyncio.new_event_loop()
    host = HostedEnv("AgentR1/Arithmetic-v0")
    manager = SessionManager(max_sessions=2, idle_timeout=None, workers=1, hosts=[host])
    session = loop.run_until_complete(manager.open(host))
    yield loop, SessionProtocol(manager, session, max_frame_chars=1 << 20)
    loop.run_until_complete(manager.shutdown())
    loop.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=frames, reset_first=st.booleans())
def test_random_frames_get_well_formed_replies(protocol, frame, reset_first):
    loop, handler = protocol
    if reset_first:
        loop.run_until_complete(handler.handle('{"type": "reset", "data": {"seed": 0}}'))
    reply = loop.run_until_complete(handler.handle(json.dumps(frame)))  # an exception here fails the test
    if reply is not CLOSE:
        assert frame_problem(reply) is None, (frame, reply[:300])


@settings(max_examples=300, deadline=None)
@given(raw=st.text(max_size=200) | st.binary(max_size=200))
def test_loads_refuses_what_is_not_json_with_a_frame_error(raw):
    try:
        wire.loads(raw)
    except wire.FrameError as exc:
        assert exc.code in (wire.INVALID_JSON, wire.VALIDATION_ERROR) and len(str(exc)) <= 300
