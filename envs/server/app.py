"""The FastAPI app: OpenEnv 0.10.0's routes over one or more suite envs.

* ``WS /ws`` — one session (one env instance) per connection; ``?env_id=`` picks a hosted env (the
  first is the default, what OpenEnv clients get) and ``?env_kwargs=<json>`` must agree with the
  kwargs it is served with (a client never silently plays other data); ``?session_id=`` attaches to
  a session opened over ``/mcp`` instead. ``WS /envs/{name}/ws`` is the same for the env named
  ``name`` (``Math-v0``), so ``{url}/envs/{name}`` is an OpenEnv base URL.
* ``GET /health`` (every worker process), ``/metadata``, ``/schema``, ``/state``; ``POST /reset``,
  ``/step`` (stateless, as in OpenEnv: each request borrows an instance; ``/step`` resets it with the
  body's ``seed``/``options`` first, so it scores a one-turn episode); ``POST /mcp`` and
  ``/envs/{name}/mcp`` (JSON-RPC 2.0 over the tools, and OpenEnv's MCP sessions); ``GET /openapi.json``.
* The task API over each env's dataset split: ``/list_environments``, ``/{env}/splits``,
  ``/{env}/tasks``, ``/num_tasks``, ``/task``, ``/task_range``.
* ``GET /agentr1/status``: sessions, capacity, pooled instances, workers (for load balancers and leak checks).

Every parse failure of a frame or a body is a protocol error with a short message (an ``error``
frame, a JSON-RPC error, a 4xx), never an internal error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastapi import Body, FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from envs.core.registry import resolve_env_id
from envs.server import mcp, wire
from envs.server.peers import Peers, PeerUnavailable
from envs.server.protocol import CLOSE, SessionProtocol, parse_reset
from envs.server.schema import EpisodeState, TextAction, schemas
from envs.server.sessions import CapacityError, FactoryError, HostedEnv, Session, SessionManager
from envs.server.table import WorkerTable, now_ms

logger = logging.getLogger(__name__)

API_VERSION = "1.0.0"  # the OpenEnv HTTP API profile implemented (`openenv validate` reads openapi info.version)
DEFAULT_SPLIT = "default"
STALE_HEARTBEAT_MS = 10_000  # a worker silent this long is reported not alive (heartbeats come every second)
ATTACH_WAIT_STEPS = 20  # x 50 ms: how long an attach waits for the session's previous WebSocket to detach


class ResetBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    seed: int | None = Field(default=None, ge=0)
    episode_id: str | None = Field(default=None, max_length=255)
    options: dict[str, Any] | None = Field(default=None, description="e.g. {'index': 3} or {'item': {...}}")


class StepBody(ResetBody):
    action: TextAction
    timeout_s: float | None = Field(default=None, gt=0)
    request_id: str | None = Field(default=None, max_length=255)


class SplitBody(BaseModel):
    split: str = DEFAULT_SPLIT
    index: int | None = None
    start: int | None = None
    stop: int | None = None


class ServerConfig(BaseModel):
    """Limits of one server (every worker process together)."""

    max_sessions: int = Field(default=64, ge=1, description="open sessions, over all worker processes")
    idle_timeout: float | None = Field(default=600.0, gt=0, description="seconds before an idle session is closed")
    workers: int | None = Field(default=None, ge=1, description="env worker threads per process "
                                "(default: min(max_sessions, max(4, 2 x CPUs)))")
    max_frame_chars: int = Field(default=8 << 20, ge=1024, description="larger frames get a VALIDATION_ERROR frame")
    pool_ttl: float | None = Field(default=60.0, gt=0, description="seconds an unused pooled env instance is kept")
    max_pooled: int | None = Field(default=None, ge=0, description="pooled instances per env and process "
                                   "(default: max_sessions)")


def create_app(envs: Mapping[str, Mapping[str, Any] | None] | str, config: ServerConfig | None = None, *,
               table: WorkerTable | None = None, index: int = 0, peers: Peers | None = None) -> FastAPI:
    """An app serving ``envs`` (``{env_id: make_kwargs}``, or one id); the first is the default env.

    ``table``, ``index`` and ``peers`` make it worker ``index`` of a multi-process server
    (``envs.server.processes``); without them it is a whole server in one process.
    """
    from envs import __version__

    config = config or ServerConfig()
    if isinstance(envs, str):
        envs = {envs: {}}
    if not envs:
        raise ValueError("serve at least one env")
    max_pooled = config.max_sessions if config.max_pooled is None else config.max_pooled
    hosts = [HostedEnv(env_id, kwargs, max_idle=max_pooled, pool_ttl=config.pool_ttl) for env_id, kwargs in envs.items()]
    for host in hosts:
        if config.max_sessions > 1 and not host.supports_concurrent_sessions:
            raise ValueError(f"{host.env_id} declares SUPPORTS_CONCURRENT_SESSIONS = False; serve it with max_sessions=1")
    by_id = {h.env_id: h for h in hosts}
    by_name = {h.name.lower(): h for h in hosts}
    default = hosts[0]
    # Steps that hold the GIL gain nothing from more threads than cores; steps that wait (math-verify's
    # process pool, an HTTP retriever) overlap up to the pool size.
    workers = config.workers or min(config.max_sessions, max(4, 2 * (os.cpu_count() or 1)))
    table = table if table is not None else WorkerTable(1)
    manager = SessionManager(max_sessions=config.max_sessions, idle_timeout=config.idle_timeout, workers=workers,
                             table=table, index=index, hosts=hosts)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        manager.start()
        try:
            yield
        finally:
            await manager.shutdown()
            if peers is not None:
                await peers.aclose()
            for host in hosts:
                host.close()

    app = FastAPI(title=f"AgentR1-Gym env server: {', '.join(by_id)}", version=API_VERSION, lifespan=lifespan,
                  description=f"OpenEnv-protocol server for AgentR1-Gym {__version__} text environments.")
    app.state.manager, app.state.hosts = manager, by_id

    @app.exception_handler(RequestValidationError)
    async def invalid_body(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes the input back, and cannot encode NaN/Infinity (a 500); this says where and why.
        problems = [{"loc": [str(part)[:100] for part in e.get("loc", ())], "msg": wire.short(str(e.get("msg", "")), 200),
                     "type": e.get("type")} for e in exc.errors()[:20]]
        return JSONResponse(status_code=422, content={"detail": problems})

    def host_named(name: str) -> HostedEnv:
        host = by_name.get(name.lower()) or by_id.get(name)
        if host is None:
            raise HTTPException(404, f"unknown environment {name[:100]!r}; served: {', '.join(by_name)}")
        return host

    # Stateless HTTP calls borrow pooled instances; at most max_sessions at once, so a flood of
    # requests waits instead of making instances without bound.
    http_slots = asyncio.Semaphore(config.max_sessions)

    async def borrowed(host: HostedEnv, fn: Any) -> Any:
        async with http_slots:
            env = await manager.checkout(host)
            try:
                return await manager.run(fn, env)
            finally:
                await manager.checkin(host, env)

    # ------------------------------------------------------------------ info
    def worker_rows() -> list[dict[str, Any]]:
        now = now_ms()
        return [{"worker": i, "pid": row["pid"], "alive": bool(row["pid"]) and now - row["heartbeat_ms"] < STALE_HEARTBEAT_MS,
                 "sessions": row["sessions"], "reaped_sessions": row["reaped"], "idle_instances": row["idle_instances"],
                 "restarts": row["restarts"]} for i, row in enumerate(table.rows())]

    @app.get("/health", tags=["Health"])
    async def health() -> dict[str, Any]:
        rows = worker_rows()
        return {"status": "healthy" if all(r["alive"] for r in rows) else "degraded",
                "workers": [{k: r[k] for k in ("worker", "pid", "alive", "sessions", "restarts")} for r in rows]}

    @app.get("/metadata", tags=["Environment Info"])
    async def metadata() -> dict[str, Any]:
        return {"name": default.env_id, "description": default.summary or default.env_id, "version": __version__,
                "author": "AgentR1-Gym", "readme_content": None, "documentation_url": None}

    @app.get("/schema", tags=["Schema"])
    async def schema() -> dict[str, Any]:
        return schemas()

    @app.get("/state", tags=["State Management"])
    async def state() -> dict[str, Any]:
        # Stateless, as in OpenEnv: HTTP holds no episode (WS /ws does).
        return EpisodeState(env_id=default.env_id).model_dump()

    @app.get("/agentr1/status", tags=["Environment Info"])
    async def status() -> dict[str, Any]:
        return {"active_sessions": manager.active, "max_sessions": manager.max_sessions,
                "reaped_sessions": table.total("reaped"), "idle_instances": table.total("idle_instances"),
                "processes": table.workers, "answered_by": index, "workers": worker_rows(),
                "envs": {h.env_id: {"idle_instances": h.idle, "spec": h.spec} for h in hosts}}

    # ------------------------------------------------------------------ stateless simulation routes
    @app.post("/reset", tags=["Environment Control"])
    async def reset(body: ResetBody = Body(default_factory=ResetBody)) -> dict[str, Any]:
        try:
            seed, _, options = parse_reset(body.model_dump(exclude_none=True))
            obs, info = await borrowed(default, lambda env: env.reset(seed=seed, options=options or None))
        except Exception as exc:
            raise HTTPException(400, wire.short(f"{type(exc).__name__}: {exc}")) from None
        return wire.observation_data(obs, None, False, False, info, reset=True)

    @app.post("/step", tags=["Environment Control"])
    async def step(body: StepBody) -> dict[str, Any]:
        def one_turn(env: Any) -> tuple:
            env.reset(seed=seed, options=options or None)
            return env.step(body.action.message)

        try:
            seed, _, options = parse_reset(body.model_dump(exclude_none=True, exclude={"action", "timeout_s", "request_id"}))
            obs, reward, terminated, truncated, info = await borrowed(default, one_turn)
        except Exception as exc:
            raise HTTPException(400, wire.short(f"{type(exc).__name__}: {exc}")) from None
        return wire.observation_data(obs, reward, terminated, truncated, info, reset=False)

    # ------------------------------------------------------------------ MCP (JSON-RPC 2.0)
    @app.post("/mcp", tags=["MCP"])
    async def mcp_default(request: Request) -> dict[str, Any]:
        return await mcp_endpoint(request, default, "/mcp")

    @app.post("/envs/{env_name}/mcp", tags=["MCP"])
    async def mcp_by_name(request: Request, env_name: str) -> dict[str, Any]:
        host = by_name.get(env_name.lower())
        if host is None:
            return mcp.error_response(mcp.INVALID_PARAMS, f"this server does not serve {env_name[:100]!r}")
        return await mcp_endpoint(request, host, f"/envs/{host.name}/mcp")

    async def mcp_endpoint(http: Request, host: HostedEnv, path: str) -> dict[str, Any]:
        body = await http.body()
        try:
            payload = wire.loads(body)
        except wire.FrameError as exc:
            return mcp.error_response(mcp.PARSE_ERROR, f"Parse error: {exc}")
        request = mcp.parse_request(payload)
        if isinstance(request, dict):
            return request
        session_id = request.params.get("session_id")
        owner = peers.remote_owner(session_id) if peers is not None and session_id else None
        if owner is not None:  # another worker holds this session
            assert peers is not None
            try:
                return await peers.post(owner, path, body)
            except PeerUnavailable as exc:
                logger.warning("relaying an MCP request failed: %s", exc)
                return mcp.error_response(mcp.INVALID_PARAMS, f"Unknown session_id: {session_id} (its worker is gone)",
                                          request.id)
        if request.method == mcp.SESSION_CREATE:
            return await mcp_create(host, request)
        if request.method == mcp.SESSION_CLOSE:
            return await mcp_close(request)
        if session_id is None:  # stateless, as in OpenEnv: tools of a borrowed instance
            if request.method == mcp.TOOLS_LIST:
                return mcp.result({"tools": host.tool_listing}, request.id)
            return await stateless_call(host, request)
        session = manager.sessions.get(session_id)
        if session is None or session.closed:
            return mcp.error_response(mcp.INVALID_PARAMS, f"Unknown session_id: {session_id}", request.id)
        async with session.turn():
            env = session.env
            if env is None:
                return mcp.error_response(mcp.INVALID_PARAMS, f"Unknown session_id: {session_id}", request.id)
            return await mcp.call_tools(request, env.unwrapped.tools, manager.run)

    async def stateless_call(host: HostedEnv, request: mcp.Request) -> dict[str, Any]:
        async with http_slots:
            env = await manager.checkout(host)
            try:
                return await mcp.call_tools(request, env.unwrapped.tools, manager.run)
            finally:
                await manager.checkin(host, env)

    async def mcp_create(host: HostedEnv, request: mcp.Request) -> dict[str, Any]:
        try:
            session = await manager.open(host, mcp=True)
        except CapacityError as exc:
            return mcp.error_response(mcp.SERVER_ERROR, str(exc), request.id,
                                      {"active_sessions": exc.active, "max_sessions": exc.maximum})
        except FactoryError as exc:
            return mcp.error_response(mcp.SERVER_ERROR, wire.short(str(exc)), request.id, {"factory_name": host.env_id})
        return mcp.result({"session_id": session.id}, request.id)

    async def mcp_close(request: mcp.Request) -> dict[str, Any]:
        session_id = request.params.get("session_id")
        if session_id is None:
            return mcp.error_response(mcp.INVALID_PARAMS, "Invalid params - 'session_id' is required", request.id)
        session = manager.sessions.get(session_id)
        if session is None or session.closed:
            return mcp.error_response(mcp.INVALID_PARAMS, f"Unknown session_id: {session_id}", request.id)
        if not session.mcp:
            return mcp.error_response(mcp.INVALID_REQUEST, "Cannot close active WebSocket-managed session via MCP "
                                      "method", request.id)
        if session.attached:  # closed when its WebSocket detaches, as in OpenEnv
            session.close_when_detached = True
            return mcp.result({"session_id": session_id, "closed": False, "closing": True}, request.id)
        async with session.turn():  # after a tool call still running on it
            await manager.close(session)
        return mcp.result({"session_id": session_id, "closed": True}, request.id)

    # ------------------------------------------------------------------ task API
    def split_items(host: HostedEnv, split: str) -> list[dict[str, Any]]:
        if host.items is None:
            raise HTTPException(501, f"{host.env_id} has no dataset split (its tasks are generated)")
        if split != DEFAULT_SPLIT:
            raise HTTPException(404, f"unknown split {split[:100]!r}; {host.name} serves {DEFAULT_SPLIT!r}")
        return host.items

    @app.get("/list_environments", tags=["Task API"])
    async def list_environments() -> list[str]:
        return [h.name for h in hosts]

    @app.get("/{env_name}/splits", tags=["Task API"])
    async def splits(env_name: str) -> list[dict[str, Any]]:
        host = host_named(env_name)
        return [] if host.items is None else [{"name": DEFAULT_SPLIT, "type": "validation", "num_tasks": len(host.items)}]

    @app.post("/{env_name}/tasks", tags=["Task API"])
    async def tasks(env_name: str, body: SplitBody) -> dict[str, Any]:
        host = host_named(env_name)
        return {"tasks": wire.to_jsonable(split_items(host, body.split)), "env_name": host.name}

    @app.post("/{env_name}/num_tasks", tags=["Task API"])
    async def num_tasks(env_name: str, body: SplitBody) -> dict[str, Any]:
        return {"num_tasks": len(split_items(host_named(env_name), body.split))}

    @app.post("/{env_name}/task", tags=["Task API"])
    async def task(env_name: str, body: SplitBody) -> dict[str, Any]:
        items = split_items(host_named(env_name), body.split)
        if body.index is None or not 0 <= body.index < len(items):
            raise HTTPException(400, "Invalid task index")
        return {"task": wire.to_jsonable(items[body.index])}

    @app.post("/{env_name}/task_range", tags=["Task API"])
    async def task_range(env_name: str, body: SplitBody) -> dict[str, Any]:
        items = split_items(host_named(env_name), body.split)
        return {"tasks": wire.to_jsonable(items[body.start:body.stop])}

    # ------------------------------------------------------------------ sessions
    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket_session(websocket, default, named=False)

    @app.websocket("/envs/{env_name}/ws")
    async def ws_by_name(websocket: WebSocket, env_name: str) -> None:
        # Each hosted env is its own OpenEnv base URL: EnvClient(base_url=f"{url}/envs/Math-v0").
        host = by_name.get(env_name.lower())
        if host is None:
            await websocket.accept()
            await _refuse(websocket, wire.error_frame(f"this server does not serve {env_name!r}; it serves "
                                                      f"{', '.join(h.name for h in hosts)}", wire.FACTORY_ERROR,
                                                      factory_name=env_name))
            return
        await websocket_session(websocket, host, named=True)

    async def websocket_session(websocket: WebSocket, route_host: HostedEnv, *, named: bool) -> None:
        await websocket.accept()
        refusal, host = _pick_host(websocket.query_params, by_id, route_host)
        if host is None:
            await _refuse(websocket, refusal)
            return
        session_id = websocket.query_params.get("session_id")
        if session_id:  # an MCP session's env is its own; a route or ?env_id= that names another is refused
            await attach(websocket, session_id, host if named or "env_id" in websocket.query_params else None)
            return
        try:
            session = await manager.open(host)
        except CapacityError as exc:
            await _refuse(websocket, wire.error_frame(str(exc), wire.CAPACITY_REACHED, active_sessions=exc.active,
                                                      max_sessions=exc.maximum))
            return
        except FactoryError as exc:
            await _refuse(websocket, wire.error_frame(str(exc), wire.FACTORY_ERROR, factory_name=host.env_id))
            return
        try:
            await serve_frames(websocket, session)
        finally:
            await manager.close(session)

    async def attach(websocket: WebSocket, session_id: str, host: HostedEnv | None) -> None:
        """Serve an MCP session (``openenv/session/create``) over this WebSocket until it disconnects."""
        owner = peers.remote_owner(session_id) if peers is not None else None
        if owner is not None:
            assert peers is not None
            try:
                await peers.bridge(websocket, owner, websocket.url.path + "?" + websocket.url.query)
            except PeerUnavailable as exc:
                await _refuse(websocket, wire.error_frame(f"Unknown session_id: {session_id[:128]} ({exc})",
                                                          wire.SESSION_ERROR))
            return
        session = manager.sessions.get(session_id)
        if session is None or session.closed or not session.mcp:
            await _refuse(websocket, wire.error_frame(f"Unknown session_id: {session_id[:128]}", wire.SESSION_ERROR))
            return
        for _ in range(ATTACH_WAIT_STEPS):  # a client that just closed its WebSocket may reconnect first
            if not session.attached:
                break
            await asyncio.sleep(0.05)
        if session.attached:
            await _refuse(websocket, wire.error_frame(f"Session {session_id} already has an attached WebSocket",
                                                      wire.SESSION_ERROR))
            return
        if session.closed:
            await _refuse(websocket, wire.error_frame(f"Unknown session_id: {session_id[:128]}", wire.SESSION_ERROR))
            return
        if host is not None and session.host is not host:
            await _refuse(websocket, wire.error_frame(f"session {session_id} plays {session.host.env_id}, not "
                                                      f"{host.env_id}", wire.FACTORY_ERROR, factory_name=host.env_id))
            return
        session.attached = True
        try:
            await serve_frames(websocket, session)
        finally:
            session.attached, session.on_reap = False, None
            if session.close_when_detached:
                await manager.close(session)

    async def serve_frames(websocket: WebSocket, session: Session) -> None:
        protocol = SessionProtocol(manager, session, max_frame_chars=config.max_frame_chars)

        async def on_reap(reason: str) -> None:
            with contextlib.suppress(Exception):
                await websocket.send_text(wire.error_frame(reason, wire.SESSION_ERROR))
                await asyncio.wait_for(websocket.close(code=1001, reason=reason[:120]), timeout=1.0)

        session.on_reap = on_reap
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect" or session.closed:
                    break
                raw = message.get("text")
                if raw is None:
                    raw = message.get("bytes") or b""
                async with session.turn():
                    try:
                        reply = await protocol.handle(raw)
                    except Exception as exc:  # a bug here must cost one frame, not the session or the server
                        logger.exception("session %s: unexpected failure handling a frame", session.id)
                        reply = wire.error_frame(f"internal error: {type(exc).__name__}: {exc}", wire.EXECUTION_ERROR)
                if reply is CLOSE:
                    break
                await websocket.send_text(reply)
        except (WebSocketDisconnect, RuntimeError):
            pass  # the client vanished, or the socket closed under us (reaper, shutdown)
        finally:
            with contextlib.suppress(Exception):
                await websocket.close()

    return app


_MISSING = object()


def _pick_host(query: Mapping[str, str], by_id: Mapping[str, HostedEnv], default: HostedEnv) -> tuple[str, HostedEnv | None]:
    """The hosted env a connection asks for, or an error frame saying why none fits."""
    wanted = query.get("env_id")
    host = default
    if wanted:
        try:
            host = by_id.get(resolve_env_id(wanted))  # type: ignore[assignment]
        except Exception:
            host = None  # type: ignore[assignment]
        if host is None:
            return wire.error_frame(f"this server does not serve {wanted!r}; it serves {', '.join(by_id)}",
                                    wire.FACTORY_ERROR, factory_name=wanted), None
    raw_kwargs = query.get("env_kwargs")
    if raw_kwargs:
        try:
            asked = wire.loads(raw_kwargs)
        except wire.FrameError as exc:
            return wire.error_frame(f"env_kwargs must be a JSON object: {exc}", exc.code), None
        if not isinstance(asked, dict):
            return wire.error_frame("env_kwargs must be a JSON object", wire.VALIDATION_ERROR), None
        served = json.loads(json.dumps(host.kwargs, default=str))
        differing = sorted(k for k, v in asked.items() if served.get(k, _MISSING) != v)
        if differing:
            return wire.error_frame(
                f"{host.env_id} is served with env_kwargs {served}; the client asked for {asked} (differs in "
                f"{', '.join(differing)}). Start a server with those kwargs, or drop them from the client.",
                wire.FACTORY_ERROR, factory_name=host.env_id), None
    return "", host


async def _refuse(websocket: WebSocket, error: str) -> None:
    with contextlib.suppress(Exception):
        await websocket.send_text(error)
        await websocket.close(code=1008)
