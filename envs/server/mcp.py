"""MCP over JSON-RPC 2.0 (``POST /mcp`` and the ``mcp`` WebSocket frame): list and call the env's tools.

``tools/call`` runs a tool outside any episode (through ``envs.core.tools.run_tool``, so every
failure is a result, never an exception); it is not scored. Error codes are JSON-RPC's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from envs.core.parsing import ToolCall
from envs.core.tools import Tool, run_tool

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR = -32700, -32600, -32601, -32602, -32603


def error_response(code: int, message: str, request_id: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def _result(result: Any, request_id: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def list_tools(tools: Mapping[str, Tool]) -> list[dict[str, Any]]:
    return [{"name": t.name, "description": t.description, "inputSchema": t.parameters} for t in tools.values()]


async def handle_jsonrpc(request: Any, tools: Mapping[str, Tool],
                         run: Callable[..., Awaitable[Any]]) -> dict[str, Any]:
    """The JSON-RPC response to ``request`` (already parsed JSON); ``run`` executes blocking calls off the loop."""
    if not isinstance(request, Mapping) or request.get("jsonrpc") != "2.0" or not isinstance(request.get("method"), str):
        return error_response(INVALID_REQUEST, "Invalid request: expected a JSON-RPC 2.0 object with a 'method'",
                              request.get("id") if isinstance(request, Mapping) else None)
    request_id = request.get("id")
    if not (request_id is None or isinstance(request_id, str | int)) or isinstance(request_id, bool):
        return error_response(INVALID_REQUEST, "Invalid request: 'id' must be a string, an integer or null")
    params = request.get("params", {})
    if not isinstance(params, Mapping):
        return error_response(INVALID_PARAMS, "Params must be an object", request_id)
    method = request["method"]
    if method == "tools/list":
        return _result({"tools": list_tools(tools)}, request_id)
    if method == "tools/call":
        name, arguments = params.get("name"), params.get("arguments", {})
        if not isinstance(name, str) or not name:
            return error_response(INVALID_PARAMS, "Missing 'name' in params", request_id)
        if not isinstance(arguments, Mapping):
            return error_response(INVALID_PARAMS, "'arguments' must be an object", request_id)
        if name not in tools:
            return error_response(INVALID_PARAMS, f"Tool not found: {name}", request_id)
        try:
            result = await run(run_tool, tools, ToolCall(name, dict(arguments)))
        except Exception as exc:  # run_tool reports tool failures itself; this is the pool failing
            return error_response(INTERNAL_ERROR, f"{type(exc).__name__}: {exc}", request_id)
        return _result({"content": [{"type": "text", "text": result.content}], "isError": not result.ok,
                        "status": result.status}, request_id)
    return error_response(METHOD_NOT_FOUND, f"Method not found: {method}", request_id)
