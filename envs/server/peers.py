"""Requests for a session another worker process holds: passed to that worker over its private socket.

The kernel spreads connections over the workers of ``serve --processes N`` with no regard for what
they carry, yet an MCP session lives in the process that opened it: OpenEnv's ``MCPToolClient`` opens
it with one HTTP request and then attaches a WebSocket and sends tool calls on other connections.
Session ids name their worker (``w<index>-<uuid>``); a worker that gets a request for another
worker's session relays it over that worker's Unix socket: an HTTP request as one request, a
WebSocket as a bridge that copies frames both ways until either side closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from envs.server.sessions import worker_of

logger = logging.getLogger(__name__)

RELAY_TIMEOUT_S = 600.0  # one relayed HTTP request (a tool call) may take as long as a step


class PeerUnavailable(ConnectionError):
    """The worker that holds a session did not answer (it died, or is restarting)."""


class Peers:
    """This worker's index and every worker's private socket path."""

    def __init__(self, index: int, sockets: Sequence[str]):
        self.index = index
        self.sockets = list(sockets)
        self._clients: dict[int, Any] = {}

    def remote_owner(self, session_id: str) -> int | None:
        """The other worker that holds ``session_id``; ``None`` if it is this one's (or no worker's)."""
        owner = worker_of(session_id)
        if owner is None or owner == self.index or owner >= len(self.sockets):
            return None
        return owner

    async def post(self, owner: int, path: str, body: bytes) -> Any:
        """Relay one JSON request to worker ``owner``; its JSON answer."""
        import httpx

        client = self._clients.get(owner)
        if client is None:
            client = self._clients[owner] = httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(uds=self.sockets[owner]), base_url="http://worker",
                timeout=RELAY_TIMEOUT_S)
        try:
            response = await client.post(path, content=body, headers={"content-type": "application/json"})
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PeerUnavailable(f"worker {owner}: {type(exc).__name__}: {exc}") from None

    async def bridge(self, websocket: WebSocket, owner: int, path: str) -> None:
        """Serve an accepted client WebSocket by relaying its frames to and from worker ``owner``."""
        from websockets.asyncio.client import unix_connect
        from websockets.exceptions import ConnectionClosed, WebSocketException

        try:
            upstream = await unix_connect(self.sockets[owner], uri=f"ws://worker{path}", max_size=None,
                                          compression=None, ping_interval=None)
        except (OSError, WebSocketException) as exc:
            raise PeerUnavailable(f"worker {owner}: {type(exc).__name__}: {exc}") from None

        async def client_to_worker() -> None:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                await upstream.send(text if text is not None else message.get("bytes") or b"")

        async def worker_to_client() -> None:
            async for frame in upstream:
                if isinstance(frame, str):
                    await websocket.send_text(frame)
                else:
                    await websocket.send_bytes(frame)

        tasks = [asyncio.ensure_future(client_to_worker()), asyncio.ensure_future(worker_to_client())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, WebSocketDisconnect, RuntimeError):
                    await task
            code = upstream.close_code or 1000
            await upstream.close()
            with contextlib.suppress(Exception):
                await websocket.close(code=code)

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
