"""The retrieval server under hostile clients: limits answer 4xx with a message, idle sockets are closed,
a flood of half-open connections never locks out a real client, logs stay short."""

import http.client
import json
import logging
import socket
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from envs.retrieval.base import Passage  # noqa: E402
from envs.retrieval.http import HttpRetriever  # noqa: E402
from envs.retrieval.server import BackgroundServer, RateLimitedLog, ServerLimits, parse_request  # noqa: E402


class _Echo:
    """A backend that answers instantly: these tests are about the server, not about ranking."""

    name = "echo"

    def search_many(self, queries, k=5):
        return [[Passage(str(i), "T", q[:50], 1.0) for i in range(k)] for q in queries]

    def search(self, query, k=5):
        return self.search_many([query], k)[0]


LIMITS = ServerLimits(max_body_bytes=10_000, max_query_chars=500, max_queries=8, max_topk=20, header_timeout=1.0,
                      body_timeout=0.8, keep_alive=1.0, max_connections=64)


@pytest.fixture(scope="module")
def server():
    with BackgroundServer(_Echo(), limits=LIMITS) as srv:
        yield srv


def _post(server, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        conn.request("POST", "/retrieve", body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


BAD = {
    b'{"queries": ["q"], "topk": Infinity}': 400,
    b'{"queries": ["q"], "topk": NaN}': 400,
    b'{"queries": ["q"], "topk": 1e400}': 422,  # parsed as a float infinity by Python's json
    b'{"queries": ["q"], "topk": 2.5}': 422,  # pydantic refuses a fractional int, as the reference does
    b'{"queries": ["q"], "topk": [2]}': 422,
    b'{"queries": "q"}': 422,
    b'{"query": 5}': 422,
    b'{"queries": [1, 2]}': 422,
    b'{"queries": ["q"], "return_scores": "maybe"}': 422,
    b"{}": 422,
    b"[]": 422,
    b"not json": 400,
    b"": 400,
    json.dumps({"queries": ["q"] * 9}).encode(): 413,
    b"[" * 5000 + b"]" * 5000: 400,  # nesting deep enough to overflow a naive recursive parser
}
# What Search-R1's reference server accepts is answered, not refused (its client crashes on a 4xx)
LENIENT = {
    b'{"queries": ["q"], "topk": 0}': LIMITS.default_topk,  # the reference: `if not request.topk` -> default
    b'{"queries": ["q"], "topk": -1}': LIMITS.default_topk,
    b'{"queries": ["q"], "topk": "5"}': 5,
    b'{"queries": ["q"], "topk": true}': 1,
    b'{"queries": ["q"], "topk": 2.0}': 2,
    b'{"queries": ["q"], "topk": 1000000000}': LIMITS.max_topk,  # lowered to the cap
    b'{"queries": ["q"], "return_scores": "yes"}': LIMITS.default_topk,
}


def test_every_bad_request_is_a_4xx_with_a_message(server):
    for body, status in BAD.items():
        got, answer = _post(server, body)
        assert got == status, (body[:60], got, answer)
        assert isinstance(answer.get("detail"), str) and answer["detail"] and "Traceback" not in answer["detail"]
    assert _post(server, b'{"queries": ["q"], "topk": 2.0}') == (200, {"result": [[_doc(0, "q"), _doc(1, "q")]]})
    for body, topk in LENIENT.items():
        got, answer = _post(server, body)
        assert got == 200 and len(answer["result"][0]) == topk, (body, got, answer)


def test_over_long_queries_are_truncated_not_refused(server):
    got, answer = _post(server, json.dumps({"queries": ["x" * 501, "short"], "topk": 1}).encode())
    assert got == 200 and [hits[0]["text"] for hits in answer["result"]] == ["x" * 50, "short"]


def _read_all(s: socket.socket) -> bytes:
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data


def _doc(i, text):
    return {"id": str(i), "contents": f'"T"\n{text}', "title": "T", "text": text}


def test_oversized_bodies_are_refused_without_being_read(server):
    with socket.create_connection((server.host, server.port), timeout=5) as s:
        s.sendall(b"POST /retrieve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 50000000\r\n\r\n")  # announces 50 MB, sends none of it
        reply = _read_all(s)
    assert reply.startswith(b"HTTP/1.1 413") and b"larger than 10000 bytes" in reply
    with socket.create_connection((server.host, server.port), timeout=5) as s:  # no length announced: counted
        chunk = b'{"queries": ["' + b"x" * 20_000
        s.sendall(b"POST /retrieve HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        assert _read_all(s).startswith(b"HTTP/1.1 413")


def test_a_body_that_stalls_gets_408_in_bounded_time(server):
    with socket.create_connection((server.host, server.port), timeout=5) as s:
        s.sendall(b"POST /retrieve HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"queries\"")
        started = time.monotonic()
        reply = s.recv(4096)
        assert reply.startswith(b"HTTP/1.1 408") and time.monotonic() - started < LIMITS.body_timeout + 1.0


def test_slow_headers_are_cut_off_at_the_header_deadline(server):
    with socket.create_connection((server.host, server.port), timeout=5) as s:
        started = time.monotonic()
        s.sendall(b"POST /retrieve HTTP/1.1\r\n")
        closed = False
        while time.monotonic() - started < 4.0:
            try:
                s.sendall(b"X")  # one header byte at a time, each well within any per-read timeout
                if s.recv(1, socket.MSG_DONTWAIT) == b"":
                    closed = True
                    break
            except BlockingIOError:
                pass
            except OSError:
                closed = True
                break
            time.sleep(0.1)
        assert closed and time.monotonic() - started < LIMITS.header_timeout + 1.0


def test_a_flood_of_half_open_connections_never_locks_out_a_real_client(server):
    client = HttpRetriever(server.url, timeout=3.0, retries=2, backoff=0.05)
    flood = []
    answered = 0
    try:
        for i in range(300):  # well past the cap of 64; nothing is ever sent on these sockets
            flood.append(socket.create_connection((server.host, server.port), timeout=5))
            if i % 50 == 49:
                assert client.search("still there?", 2)[0].text == "still there?"
                answered += 1
        assert server.connections <= LIMITS.max_connections + 1
        assert server.protocol.evicted >= 300 - LIMITS.max_connections
        time.sleep(LIMITS.header_timeout + 0.5)
        assert server.connections == 0  # every idle socket was closed by the header deadline
        assert client.search("after", 1)[0].text == "after"
    finally:
        for s in flood:
            s.close()
    assert answered == 6


def test_repeated_log_messages_are_rate_limited():
    log = logging.getLogger("agentr1.test.ratelimit")
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler, limiter = Keep(), RateLimitedLog(burst=3, interval=0.3)
    log.addHandler(handler)
    log.addFilter(limiter)
    log.propagate = False
    try:
        for _ in range(1000):
            log.warning("accept failed: %s", "EMFILE")
        time.sleep(0.35)
        log.warning("accept failed: %s", "EMFILE")
    finally:
        log.removeHandler(handler)
        log.removeFilter(limiter)
    assert len(records) == 4 and "997 similar messages suppressed" in records[-1]


def test_parse_request_accepts_both_protocols():
    parsed = parse_request(b'{"queries": ["a", "b"], "topk": 3, "return_scores": true}', LIMITS)
    assert (parsed.queries, parsed.topk, parsed.return_scores) == (["a", "b"], 3, True)
    parsed = parse_request(b'{"query": "a"}', LIMITS)
    assert (parsed.queries, parsed.topk, parsed.return_scores) == (["a"], LIMITS.default_topk, False)
    parsed = parse_request(b'{"query": ["a"], "topk": null}', LIMITS)
    assert (parsed.queries, parsed.topk, parsed.return_scores) == (["a"], LIMITS.default_topk, False)
    parsed = parse_request(b'{"queries": [], "topk": 3}', LIMITS)
    assert parsed.queries == [] and parsed.truncated == 0
