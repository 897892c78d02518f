"""One WebSocket frame in, one frame out: the session protocol (see ``envs.server.wire``).

Every failure a client can provoke (bad JSON, an unknown type, data of the wrong shape, an oversized
frame, a step before reset, an env that raises) becomes an ``error`` frame with OpenEnv's codes; the
session stays open and usable. ``exception`` in an error frame names the env's exception class so the
remote client can raise the same one (``ResetNeeded``, ``DataError``, ``IndexError``, ...).
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from envs.server import mcp, wire
from envs.server.schema import TextAction
from envs.server.sessions import Session, SessionManager

logger = logging.getLogger(__name__)

CLOSE = None  # handle() returns this for a ``close`` frame

_RESET_KEYS = ("seed", "episode_id", "options")


def parse_reset(data: Any) -> tuple[int | None, str | None, dict[str, Any]]:
    """``(seed, episode_id, options)`` from reset data; unknown keys join ``options`` (OpenEnv clients send them flat)."""
    if not isinstance(data, Mapping):
        raise ValueError("reset data must be a JSON object")
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer or null, got {seed!r}")
    episode_id = data.get("episode_id")
    if episode_id is not None and (not isinstance(episode_id, str) or len(episode_id) > 255):
        raise ValueError("episode_id must be a string of at most 255 characters")
    options = data.get("options")
    if options is not None and not isinstance(options, Mapping):
        raise ValueError("options must be a JSON object or null")
    merged = {k: v for k, v in data.items() if k not in _RESET_KEYS}
    merged.update(options or {})
    return seed, episode_id, merged


def parse_action(data: Any) -> str:
    """The model's text from step data; ``ValueError`` with pydantic's complaint (inputs left out) otherwise."""
    try:
        return TextAction.model_validate(data).message
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'data'}: {e['msg']}" for e in exc.errors(include_input=False))
        raise ValueError(f"step data must be {{\"{wire.ACTION_FIELD}\": str}}: {problems}") from None


def execution_error(exc: BaseException) -> str:
    return wire.error_frame(f"{type(exc).__name__}: {exc}", wire.EXECUTION_ERROR, exception=type(exc).__name__)


class SessionProtocol:
    """Answers the frames of one session."""

    def __init__(self, manager: SessionManager, session: Session, *, max_frame_chars: int):
        self.manager = manager
        self.session = session
        self.max_frame_chars = max_frame_chars

    async def handle(self, raw: str | bytes) -> str | None:
        """The reply to one frame (text, or bytes that should be UTF-8 JSON); ``CLOSE`` for a close frame."""
        if len(raw) > self.max_frame_chars:
            return wire.error_frame(f"frame of {len(raw)} characters exceeds the server's limit of "
                                    f"{self.max_frame_chars}", wire.VALIDATION_ERROR)
        try:
            message = wire.loads(raw)
        except wire.FrameError as exc:
            return wire.error_frame(str(exc), exc.code)
        if not isinstance(message, dict):
            return wire.error_frame("a frame must be a JSON object with a 'type'", wire.VALIDATION_ERROR)
        kind = message.get("type")
        data = message.get("data", {})
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            return wire.error_frame(f"unknown message type: {kind!r}", wire.UNKNOWN_TYPE)
        return await handler(self, data)

    # ------------------------------------------------------------------ message types
    async def _reset(self, data: Any) -> str:
        try:
            seed, episode_id, options = parse_reset(data)
        except ValueError as exc:
            return wire.error_frame(str(exc), wire.VALIDATION_ERROR)
        env = self.session.env
        assert env is not None
        try:
            obs, info = await self.manager.run(lambda: env.reset(seed=seed, options=options or None))
        except Exception as exc:
            return execution_error(exc)
        s = self.session
        s.started, s.step_count, s.terminated, s.truncated, s.episode_reward = True, 0, False, False, 0.0
        s.episode_id = episode_id if episode_id is not None else str(uuid.uuid4())
        return wire.frame("observation", wire.observation_data(obs, None, False, False, info, reset=True))

    async def _step(self, data: Any) -> str:
        try:
            action = parse_action(data)
        except ValueError as exc:
            return wire.error_frame(str(exc), wire.VALIDATION_ERROR)
        s = self.session
        if not s.started:
            return wire.error_frame("call reset before step", wire.EXECUTION_ERROR, exception="ResetNeeded")
        env = s.env
        assert env is not None
        try:
            obs, reward, terminated, truncated, info = await self.manager.run(env.step, action)
        except Exception as exc:
            return execution_error(exc)
        s.step_count += 1
        s.terminated, s.truncated = bool(terminated), bool(truncated)
        if math.isfinite(reward):
            s.episode_reward += float(reward)
        return wire.frame("observation", wire.observation_data(obs, reward, terminated, truncated, info, reset=False))

    async def _state(self, data: Any) -> str:
        return wire.frame("state", self.session.state())

    async def _close(self, data: Any) -> None:
        return CLOSE

    async def _mcp(self, data: Any) -> str:
        request = mcp.parse_request(data)
        if isinstance(request, dict):
            return wire.frame("mcp", request)
        if request.method in mcp.SESSION_METHODS:  # over a WebSocket they name this session only
            target = request.params.get("session_id", self.session.id)
            if request.method == mcp.SESSION_CREATE:
                response = mcp.result({"session_id": self.session.id}, request.id)
            elif target != self.session.id:
                response = mcp.error_response(mcp.INVALID_PARAMS, f"this WebSocket serves session {self.session.id}; "
                                              "close other sessions over POST /mcp", request.id)
            else:
                response = mcp.error_response(mcp.INVALID_REQUEST, "Cannot close active WebSocket-managed session via "
                                              "MCP method; close the WebSocket instead", request.id)
            return wire.frame("mcp", response)
        env = self.session.env
        assert env is not None
        return wire.frame("mcp", await mcp.call_tools(request, env.unwrapped.tools, self.manager.run))

    async def _spec(self, data: Any) -> str:
        return wire.frame(wire.SPEC, self.session.host.spec)

    async def _demonstration(self, data: Any) -> str:
        if not self.session.started:
            return wire.error_frame("call reset first", wire.EXECUTION_ERROR, exception="ResetNeeded")
        env = self.session.env
        assert env is not None
        try:
            actions = await self.manager.run(lambda: list(env.unwrapped.demonstration()))
        except Exception as exc:
            return execution_error(exc)
        return wire.frame(wire.DEMONSTRATION, {"actions": actions})

    async def _end_unfinished(self, data: Any) -> str:
        reason = data.get("reason", "budget") if isinstance(data, Mapping) else "budget"
        if not isinstance(reason, str):
            return wire.error_frame("reason must be a string", wire.VALIDATION_ERROR)
        env = self.session.env
        assert env is not None
        end = getattr(env.unwrapped, "end_unfinished", None)
        if end is None:
            return wire.error_frame("this env has no end_unfinished()", wire.EXECUTION_ERROR,
                                    exception="NotImplementedError")
        if not self.session.started:
            return wire.error_frame("call reset first", wire.EXECUTION_ERROR, exception="ResetNeeded")
        try:
            reward, info = await self.manager.run(end, reason)
        except Exception as exc:
            return execution_error(exc)
        s = self.session
        s.truncated = True
        s.episode_reward += float(reward)
        return wire.frame(wire.END_UNFINISHED, {"reward": float(reward), "info": wire.to_jsonable(info)})

    _handlers = {
        "reset": _reset, "step": _step, "state": _state, "close": _close, "mcp": _mcp,
        wire.SPEC: _spec, wire.DEMONSTRATION: _demonstration, wire.END_UNFINISHED: _end_unfinished,
    }
