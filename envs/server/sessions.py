"""Hosted envs (a pool of instances per env id) and WebSocket sessions (a cap, an idle reaper).

A session owns one env instance for its lifetime. Instances are reused across sessions and stateless
HTTP calls: ``reset`` leaves nothing from an earlier episode (the conformance kit checks that), and a
session refuses ``step`` until it has reset, so reuse cannot leak an episode. Env calls run on a
thread pool, never on the event loop; a session runs one call at a time.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import gymnasium as gym

from envs.core.env import TextEnv
from envs.core.registry import resolve_env_id, suite_envs

logger = logging.getLogger(__name__)

T = TypeVar("T")


class CapacityError(RuntimeError):
    """The server already holds ``max_sessions`` sessions."""

    def __init__(self, active: int, maximum: int):
        super().__init__(f"server at capacity: {active}/{maximum} sessions active; retry later or use another server")
        self.active, self.maximum = active, maximum


class FactoryError(RuntimeError):
    """The env could not be made."""


class HostedEnv:
    """One env id with fixed make-kwargs, and a pool of idle instances of it."""

    def __init__(self, env_id: str, kwargs: Mapping[str, Any] | None = None, *, max_idle: int = 64):
        self.env_id = resolve_env_id(env_id)
        self.kwargs = dict(kwargs or {})
        self.name = self.env_id.split("/")[-1]
        entry = next((e for e in suite_envs() if e.env_id == self.env_id), None)
        self.summary = entry.summary if entry is not None else ""
        self._max_idle = max_idle
        self._idle: list[gym.Env] = []
        self._lock = threading.Lock()
        self._closed = False
        first = self._make()  # fails fast on bad kwargs, and gives the spec
        base = first.unwrapped
        if not isinstance(base, TextEnv):
            first.close()
            raise TypeError(f"{self.env_id} is not a text env (TextEnv); only text envs can be served")
        self.supports_concurrent_sessions = bool(getattr(type(base), "SUPPORTS_CONCURRENT_SESSIONS", True))
        self.items: list[dict[str, Any]] | None = list(base.items) if hasattr(base, "items") else None
        self.spec = {
            "env_id": self.env_id,
            "kwargs": self.kwargs,
            "summary": self.summary,
            "observation_max_length": base.observation_space.max_length,
            "action_max_length": base.action_space.max_length,
            "max_action_chars": base.max_action_chars,
            "max_turns": base.max_turns,
            "max_episode_steps": first.spec.max_episode_steps if first.spec is not None else None,
            "tools": [t.schema() for t in base.tools.values()],
            "num_items": len(self.items) if self.items is not None else None,
            "reward_weights": {k: float(v) for k, v in getattr(base, "reward_weights", {}).items()},
        }
        self.tools = dict(base.tools)
        self._idle.append(first)

    def _make(self) -> gym.Env:
        try:
            return gym.make(self.env_id, **self.kwargs)
        except Exception as exc:
            raise FactoryError(f"could not make {self.env_id} with {self.kwargs}: {type(exc).__name__}: {exc}") from exc

    def acquire(self) -> gym.Env:
        """An idle instance, or a new one (blocking: call from a worker thread)."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._make()

    def release(self, env: gym.Env) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle:
                self._idle.append(env)
                return
        env.close()

    @property
    def idle(self) -> int:
        return len(self._idle)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for env in idle:
            try:
                env.close()
            except Exception:
                logger.warning("closing an idle %s failed", self.env_id, exc_info=True)


@dataclass
class Session:
    """One WebSocket connection's episode bookkeeping."""

    id: str
    host: HostedEnv
    env: gym.Env | None = None
    episode_id: str | None = None
    step_count: int = 0
    started: bool = False
    terminated: bool = False
    truncated: bool = False
    episode_reward: float = 0.0
    last_active: float = field(default_factory=time.monotonic)
    busy: bool = False
    closed: bool = False
    on_reap: Callable[[str], Awaitable[None]] | None = None

    def state(self) -> dict[str, Any]:
        return {"episode_id": self.episode_id, "step_count": self.step_count, "env_id": self.host.env_id,
                "terminated": self.terminated, "truncated": self.truncated, "episode_reward": self.episode_reward}


class SessionManager:
    """The session table: a cap, env calls on a worker pool, idle reaping, shutdown."""

    def __init__(self, *, max_sessions: int, idle_timeout: float | None, workers: int):
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {max_sessions}")
        if idle_timeout is not None and idle_timeout <= 0:
            raise ValueError(f"idle_timeout must be > 0 seconds or None, got {idle_timeout}")
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self.executor = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="agentr1-env")
        self.sessions: dict[str, Session] = {}
        self.reaped = 0
        self._reaper: asyncio.Task | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the worker pool."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, lambda: fn(*args))

    async def open(self, host: HostedEnv) -> Session:
        """A new session with its own env instance; ``CapacityError`` / ``FactoryError`` otherwise."""
        if len(self.sessions) >= self.max_sessions:
            raise CapacityError(len(self.sessions), self.max_sessions)
        session = Session(id=str(uuid.uuid4()), host=host)
        self.sessions[session.id] = session  # holds the slot while the env is made
        try:
            session.env = await self.run(host.acquire)
        except BaseException:
            self.sessions.pop(session.id, None)
            raise
        return session

    async def close(self, session: Session) -> None:
        """Free the session and return its env to the pool; idempotent."""
        if session.closed:
            return
        session.closed = True
        self.sessions.pop(session.id, None)
        env, session.env = session.env, None
        if env is not None:
            try:
                await self.run(session.host.release, env)
            except RuntimeError:  # the worker pool is already shut down
                env.close()

    def start_reaper(self) -> None:
        if self.idle_timeout is not None and self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap_loop())

    async def _reap_loop(self) -> None:
        assert self.idle_timeout is not None
        interval = min(max(self.idle_timeout / 4, 0.05), 5.0)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for session in [s for s in self.sessions.values() if not s.busy and now - s.last_active > self.idle_timeout]:
                self.reaped += 1
                logger.info("reaping session %s (idle %.0f s)", session.id, now - session.last_active)
                try:
                    if session.on_reap is not None:
                        await session.on_reap(f"session idle for more than {self.idle_timeout:g} s; closed by the server")
                except Exception:
                    logger.debug("notifying a reaped session failed", exc_info=True)
                await self.close(session)

    async def shutdown(self) -> int:
        """Stop the reaper, close every session (telling its client why), stop the worker pool; the sessions closed."""
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        open_sessions = list(self.sessions.values())
        for session in open_sessions:
            if session.on_reap is not None:
                try:
                    await session.on_reap("the server is shutting down")
                except Exception:
                    logger.debug("notifying a session of shutdown failed", exc_info=True)
            await self.close(session)
        self.executor.shutdown(wait=False, cancel_futures=True)
        return len(open_sessions)
