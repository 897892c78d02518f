"""A retrieval server speaking the Search-R1 protocol over any backend (FastAPI + uvicorn), safe to expose.

Rollout workers on many nodes then share one index instead of loading it in every process:
``python -m envs.retrieval serve --corpus corpus.jsonl --backend bm25 --port 8000`` and make the
envs with ``retriever="http", retriever_url="http://host:8000"``. Requests carry ``queries`` (a
list, Search-R1) or ``query`` (a string or list, SkyRL's search tool); the answer is always
``{"result": [[...] per query]}``, with ``{"document": row, "score": s}`` entries when
``return_scores`` is true and bare rows otherwise. A row is the corpus row as stored (``id`` and
Search-R1's ``contents`` added only where the corpus has none: ``base.to_document``).

Search-R1's own client (``_batch_search``) posts ``{"queries": [...], "topk": 3, "return_scores":
true}`` and reads ``.json()["result"]`` without looking at the status, so any 4xx ends a training
run. Everything its reference server accepts is accepted here, with the same answer: the body is
validated by pydantic with the reference's field types (lax coercion: ``"2"`` -> 2, ``true`` -> 1,
``1``/``"true"`` -> True); ``topk`` 0 or absent means the server's default; an empty ``queries``
list gets ``{"result": []}``; a batch of any size up to ``max_queries`` (default 8,192; its GRPO
recipes send 512 x 5 = 2,560) is searched in chunks of ``chunk_queries``.

Limits (``ServerLimits``), because a cluster's clients are many and some misbehave; none of them
changes what a well-formed Search-R1 request gets:

* request bodies above ``max_body_bytes`` (64 MiB: room for ``max_queries`` queries of
  ``max_query_chars`` ASCII characters) get 413 (before they are read, when ``Content-Length``
  says so; otherwise as soon as the stream passes the limit), a body not complete within
  ``body_timeout`` gets 408, more than ``max_queries`` queries get 413; a query over
  ``max_query_chars`` is truncated (counted in a rate-limited log line), never failing its batch;
  a ``topk`` above ``max_topk`` is lowered to it; every malformed request is a 4xx with a
  one-line message (JSON ``NaN``/``Infinity`` included), never a 500 with a traceback;
* a connection must deliver its request headers within ``header_timeout`` seconds of connecting
  (or of its previous answer), so half-open and slow-loris connections are closed; idle keep-alive
  connections close after ``keep_alive`` seconds;
* at most ``max_connections`` connections (also kept below the process's file-descriptor limit):
  a new connection beyond the cap evicts the oldest connection that has not sent a request yet, so
  a flood of idle sockets cannot lock out a client that actually asks something;
* server logs are rate-limited per message (``RateLimitedLog``): a flood writes a few lines and a
  count of what was suppressed, not megabytes.

This module imports fastapi and uvicorn at import time; ``envs.retrieval`` never imports it eagerly.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import resource
import threading
import time
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from uvicorn.protocols.http.h11_impl import H11Protocol

from envs.core.logs import RateLimitedLog
from envs.retrieval.base import RetrievalError, Retriever, to_document

logger = logging.getLogger(__name__)

_SERVER_LOGGERS = ("uvicorn.error", "uvicorn.access", "asyncio", __name__)
ACCEPT_BACKLOG = 128  # asyncio accepts up to this many connections per event-loop pass


@dataclass(frozen=True)
class ServerLimits:
    """What one client may ask of the server, and how long it may take to ask."""

    max_body_bytes: int = 64 << 20
    max_query_chars: int = 4_096
    max_queries: int = 8_192
    max_topk: int = 1_000
    default_topk: int = 3
    chunk_queries: int = 1_024
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    keep_alive: float = 5.0
    max_connections: int = 1_024

    def __post_init__(self) -> None:
        if min(self.max_body_bytes, self.max_query_chars, self.max_queries, self.max_topk, self.max_connections,
               self.chunk_queries) < 1:
            raise ValueError("server limits must be >= 1")
        if not 1 <= self.default_topk <= self.max_topk:
            raise ValueError(f"default_topk must be in 1..{self.max_topk}")
        if min(self.header_timeout, self.body_timeout, self.keep_alive) <= 0:
            raise ValueError("server timeouts must be > 0")


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class RetrieveBody(BaseModel):
    """A ``/retrieve`` body, with the field types of Search-R1's ``QueryRequest`` (plus SkyRL's ``query``).

    pydantic's lax mode does the coercion the reference server does: ``topk: "2"`` -> 2, ``true`` ->
    1, ``2.0`` -> 2 (``2.5`` is refused); ``return_scores: 1`` / ``"true"`` / ``"yes"`` -> True.
    """

    model_config = ConfigDict(extra="ignore")

    queries: list[str] | None = None
    query: str | list[str] | None = None
    topk: int | None = None
    return_scores: bool = False


@dataclass(frozen=True)
class ParsedRequest:
    queries: list[str]
    topk: int
    return_scores: bool
    truncated: int = 0  # queries cut to max_query_chars
    asked_topk: int | None = None  # the topk asked for, when it was above max_topk


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_request(body: bytes, limits: ServerLimits) -> ParsedRequest:
    """The queries, ``topk`` and ``return_scores`` of a ``/retrieve`` body; ``BadRequest`` says what is wrong."""
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(400, f"the body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise BadRequest(422, "the body must be a JSON object")
    try:
        request = RetrieveBody.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:3])
        raise BadRequest(422, problems[:500]) from None
    if request.queries is None and request.query is None:
        raise BadRequest(422, "send 'queries' (a list of strings) or 'query'")
    queries = list(request.queries or [])
    queries.extend([request.query] if isinstance(request.query, str) else request.query or [])
    if len(queries) > limits.max_queries:
        raise BadRequest(413, f"{len(queries)} queries in one request; the limit is {limits.max_queries} "
                              "(--max-queries)")
    long = [i for i, q in enumerate(queries) if len(q) > limits.max_query_chars]
    for i in long:
        queries[i] = queries[i][:limits.max_query_chars]
    topk = request.topk if request.topk else limits.default_topk  # the reference: `if not request.topk`
    if topk < 1:  # the reference fails its whole batch here; a default is the lenient reading
        topk = limits.default_topk
    asked = None
    if topk > limits.max_topk:
        asked, topk = topk, limits.max_topk
    return ParsedRequest(queries, topk, request.return_scores, truncated=len(long), asked_topk=asked)


async def _read_body(request: Request, limits: ServerLimits) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limits.max_body_bytes:
                raise BadRequest(413, f"the body is larger than {limits.max_body_bytes} bytes")
        except ValueError:
            raise BadRequest(400, "Content-Length is not a number") from None
    body = bytearray()

    async def read() -> None:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limits.max_body_bytes:
                raise BadRequest(413, f"the body is larger than {limits.max_body_bytes} bytes")

    try:
        await asyncio.wait_for(read(), limits.body_timeout)
    except asyncio.TimeoutError:
        raise BadRequest(408, f"the body did not arrive within {limits.body_timeout:g}s") from None
    except ClientDisconnect:  # nobody is left to read an answer
        raise BadRequest(400, "the client disconnected before sending the whole body") from None
    return bytes(body)


def create_app(retriever: Retriever, *, limits: ServerLimits | None = None, **limit_overrides: Any) -> FastAPI:
    """The FastAPI app serving ``retriever`` at ``POST /retrieve`` (and ``GET /health``).

    ``limit_overrides`` are ``ServerLimits`` fields (``max_topk=``, ``default_topk=``, ...).
    """
    limits = _limits(limits, limit_overrides)
    app = FastAPI(title="agentr1-gym retrieval", version="1")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "backend": getattr(retriever, "name", type(retriever).__name__)}

    @app.post("/retrieve")
    async def retrieve(request: Request) -> Any:
        try:
            body = await _read_body(request, limits)
            parsed = await run_in_threadpool(parse_request, body, limits)  # a large body parses off the event loop
        except BadRequest as exc:
            headers = {"Connection": "close"} if exc.status in (408, 413) else None  # the rest of the body is not read
            return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)
        if parsed.truncated:
            logger.warning("truncated %d over-long queries to %d characters", parsed.truncated, limits.max_query_chars)
        if parsed.asked_topk is not None:
            logger.warning("a request asked for topk=%d; answering the server's max_topk=%d", parsed.asked_topk,
                           limits.max_topk)
        started = time.perf_counter()
        queries, k = parsed.queries, parsed.topk
        found = []
        try:
            for start in range(0, len(queries), limits.chunk_queries):
                found.extend(await run_in_threadpool(retriever.search_many, queries[start:start + limits.chunk_queries], k))
        except RetrievalError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=503)
        except Exception as exc:  # a backend bug: one log line (rate-limited), a 500 with a message
            logger.error("search failed: %s: %s", type(exc).__name__, exc)
            return JSONResponse({"detail": f"search failed: {type(exc).__name__}"}, status_code=500)
        logger.debug("served %d queries in %.3fs", len(queries), time.perf_counter() - started)
        if parsed.return_scores:
            result = [[{"document": to_document(p), "score": p.score} for p in hits] for hits in found]
        else:
            result = [[to_document(p) for p in hits] for hits in found]
        return JSONResponse({"result": result})

    return app


def _limits(limits: ServerLimits | None, overrides: dict[str, Any]) -> ServerLimits:
    if limits is None:
        return ServerLimits(**overrides)
    if overrides:
        from dataclasses import replace

        return replace(limits, **overrides)
    return limits


# ---------------------------------------------------------------------------- connections
def connection_cap(limits: ServerLimits) -> int:
    """``max_connections``, kept below this process's file-descriptor limit (raised to its hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = limits.max_connections + 128 + ACCEPT_BACKLOG
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return limits.max_connections
    # Room for the index, logs and the listener, and for one accept batch (``ACCEPT_BACKLOG``
    # connections are accepted per event-loop pass before any eviction closes one).
    return max(1, min(limits.max_connections, soft - 128 - ACCEPT_BACKLOG))


def hardened_protocol(limits: ServerLimits, cap: int) -> type[H11Protocol]:
    """uvicorn's h11 protocol plus a header deadline per request and a connection cap with eviction."""

    class HardenedH11Protocol(H11Protocol):
        # connections that have not sent complete request headers since connecting (or since
        # their last answer), oldest first: the ones a flood evicts
        waiting: collections.OrderedDict[HardenedH11Protocol, None] = collections.OrderedDict()
        evicted = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._header_timer: asyncio.TimerHandle | None = None
            self._await_headers()
            if len(self.connections) > cap:
                victim = next((c for c in self.waiting if c is not self), None)
                victim = victim or self  # every other connection is mid-request: refuse this one
                type(self).evicted += 1
                victim._drop()

        def _await_headers(self) -> None:
            self._cancel_header_timer()
            self._header_timer = self.loop.call_later(limits.header_timeout, self._drop)
            self.waiting[self] = None

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            self.waiting.pop(self, None)

        def _drop(self) -> None:
            self._cancel_header_timer()
            if not self.transport.is_closing():
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._header_timer is not None and self.conn.their_state is not h11.IDLE:
                self._cancel_header_timer()  # a complete request line and headers arrived

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._await_headers()  # the next request on this connection gets its own deadline

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

    return HardenedH11Protocol


# ---------------------------------------------------------------------------- logging
def _install_log_filter(log_filter: RateLimitedLog) -> None:
    for name in _SERVER_LOGGERS:
        logging.getLogger(name).addFilter(log_filter)


def _remove_log_filter(log_filter: RateLimitedLog) -> None:
    for name in _SERVER_LOGGERS:
        logging.getLogger(name).removeFilter(log_filter)


def server_config(retriever: Retriever, *, host: str, port: int, log_level: str, limits: ServerLimits) -> uvicorn.Config:
    """The uvicorn configuration with this module's limits (h11 protocol, header deadline, cap)."""
    cap = connection_cap(limits)
    return uvicorn.Config(create_app(retriever, limits=limits), host=host, port=port, log_level=log_level,
                          lifespan="off", http=hardened_protocol(limits, cap), timeout_keep_alive=limits.keep_alive,
                          backlog=ACCEPT_BACKLOG, h11_max_incomplete_event_size=16 * 1024)


class BackgroundServer:
    """A uvicorn server on its own thread (tests, benchmarks, a trainer that hosts the index itself)."""

    def __init__(self, retriever: Retriever, *, host: str = "127.0.0.1", port: int = 0,
                 limits: ServerLimits | None = None, log_level: str = "warning", **limit_overrides: Any):
        self.limits = _limits(limits, limit_overrides)
        config = server_config(retriever, host=host, port=port, log_level=log_level, limits=self.limits)
        config.load()
        self.protocol: type[H11Protocol] = config.http_protocol_class  # type: ignore[assignment]
        self._server = uvicorn.Server(config)
        self._log_filter = RateLimitedLog()
        self._thread = threading.Thread(target=self._server.run, name="agentr1-retrieval-server", daemon=True)
        self.host = host
        self.port = port

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        _install_log_filter(self._log_filter)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the retrieval server did not start")
            time.sleep(0.02)
        sockets = [s for srv in self._server.servers for s in srv.sockets]
        self.port = int(sockets[0].getsockname()[1])
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        """Open client connections right now."""
        return len(self._server.server_state.connections)

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        _remove_log_filter(self._log_filter)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(retriever: Retriever, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
          limits: ServerLimits | None = None, **limit_overrides: Any) -> None:
    """Serve ``retriever`` in the foreground until interrupted."""
    limits = _limits(limits, limit_overrides)
    log_filter = RateLimitedLog()
    _install_log_filter(log_filter)
    try:
        uvicorn.Server(server_config(retriever, host=host, port=port, log_level=log_level, limits=limits)).run()
    finally:
        _remove_log_filter(log_filter)
