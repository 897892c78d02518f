"""MCP over JSON-RPC 2.0 (``POST /mcp`` and the ``mcp`` WebSocket frame): list and call the env's tools.

``tools/call`` runs a tool through ``envs.core.tools.run_tool``, so every failure is a result, never
an exception; it is not scored (episodes are played with ``step``). OpenEnv's session methods,
``openenv/session/create`` and ``openenv/session/close``, open and close a session over HTTP; its id
then goes in ``params.session_id`` of ``tools/list`` / ``tools/call`` (they run on that session's env
instance) and in ``?session_id=`` of a WebSocket that attaches to it. That is the flow OpenEnv
0.10.0's ``MCPToolClient`` uses. Error codes are JSON-RPC's (``-32000``: the server could not open a
session, with ``data`` saying why).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple

from envs.core.parsing import ToolCall
from envs.core.tools import Tool, run_tool

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR = -32700, -32600, -32601, -32602, -32603
SERVER_ERROR = -32000
SESSION_CREATE, SESSION_CLOSE = "openenv/session/create", "openenv/session/close"
SESSION_METHODS = (SESSION_CREATE, SESSION_CLOSE)
TOOLS_LIST, TOOLS_CALL = "tools/list", "tools/call"


class Request(NamedTuple):
    id: str | int | None
    method: str
    params: Mapping[str, Any]


def error_response(code: int, message: str, request_id: Any = None, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = dict(data)
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def result(value: Any, request_id: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": value}


def parse_request(request: Any) -> Request | dict[str, Any]:
    """The request's id, method and params; or the JSON-RPC error response saying what is wrong with it."""
    if not isinstance(request, Mapping) or request.get("jsonrpc") != "2.0" or not isinstance(request.get("method"), str):
        request_id = request.get("id") if isinstance(request, Mapping) else None
        return error_response(INVALID_REQUEST, "Invalid request: expected a JSON-RPC 2.0 object with a 'method'",
                              request_id if _valid_id(request_id) else None)
    request_id = request.get("id")
    if not _valid_id(request_id):
        return error_response(INVALID_REQUEST, "Invalid request: 'id' must be a string, an integer or null")
    params = request.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        return error_response(INVALID_PARAMS, "Params must be an object", request_id)
    session_id = params.get("session_id")
    if session_id is not None and (not isinstance(session_id, str) or not session_id or len(session_id) > 128):
        return error_response(INVALID_PARAMS, "'session_id' must be a non-empty string of at most 128 characters",
                              request_id)
    return Request(request_id, request["method"], params)


def _valid_id(request_id: Any) -> bool:
    return request_id is None or (isinstance(request_id, str | int) and not isinstance(request_id, bool))


def list_tools(tools: Mapping[str, Tool]) -> list[dict[str, Any]]:
    return [{"name": t.name, "description": t.description, "inputSchema": t.parameters} for t in tools.values()]


async def call_tools(request: Request, tools: Mapping[str, Tool], run: Callable[..., Awaitable[Any]]) -> dict[str, Any]:
    """The response to a ``tools/list`` or ``tools/call`` request (any other method is not found).

    ``run`` executes the blocking tool call off the event loop. A call's result carries MCP's
    ``content`` and ``isError`` plus ``data`` (the text), which OpenEnv's ``MCPToolClient`` returns.
    """
    if request.method == TOOLS_LIST:
        return result({"tools": list_tools(tools)}, request.id)
    if request.method != TOOLS_CALL:
        return error_response(METHOD_NOT_FOUND, f"Method not found: {request.method[:100]}", request.id)
    name, arguments = request.params.get("name"), request.params.get("arguments", {})
    if not isinstance(name, str) or not name:
        return error_response(INVALID_PARAMS, "Missing 'name' in params", request.id)
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, Mapping):
        return error_response(INVALID_PARAMS, "'arguments' must be an object", request.id)
    if name not in tools:
        return error_response(INVALID_PARAMS, f"Tool not found: {name[:100]}; tools: {', '.join(tools)}", request.id)
    try:
        outcome = await run(run_tool, tools, ToolCall(name, dict(arguments)))
    except Exception as exc:  # run_tool reports tool failures itself; this is the pool failing
        return error_response(INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"[:500], request.id)
    return result({"content": [{"type": "text", "text": outcome.content}], "isError": not outcome.ok,
                   "status": outcome.status, "data": outcome.content}, request.id)
