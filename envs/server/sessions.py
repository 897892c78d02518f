"""Hosted envs (a pool of instances per env id) and sessions (a cap, an idle reaper).

A session owns one env instance for its lifetime. It is opened by a WebSocket connection, or by
OpenEnv's ``openenv/session/create`` over ``/mcp`` (then a WebSocket may attach to it by id). Instances
are reused across sessions and stateless HTTP calls: ``reset`` leaves nothing from an earlier episode
(the conformance kit checks that), and a session refuses ``step`` until it has reset, so reuse cannot
leak an episode. A pooled instance unused for ``pool_ttl`` seconds is closed, so a burst of sessions
does not hold its memory forever. Env calls run on a thread pool, never on the event loop; a session
runs one call at a time. The session cap counts every worker process of the server (``WorkerTable``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import gymnasium as gym

from envs.core.env import TextEnv
from envs.core.registry import resolve_env_id, suite_envs
from envs.server.mcp import list_tools
from envs.server.table import WorkerTable, now_ms

logger = logging.getLogger(__name__)

T = TypeVar("T")
HEARTBEAT_S = 1.0  # how often a worker reports itself alive in the WorkerTable (and reaps, trims)


class CapacityError(RuntimeError):
    """The server already holds ``max_sessions`` sessions."""

    def __init__(self, active: int, maximum: int):
        super().__init__(f"server at capacity: {active}/{maximum} sessions active; retry later or use another server")
        self.active, self.maximum = active, maximum


class FactoryError(RuntimeError):
    """The env could not be made."""


class HostedEnv:
    """One env id with fixed make-kwargs, and a pool of idle instances of it.

    The pool keeps at most ``max_idle`` instances, each for at most ``pool_ttl`` seconds after its
    last use (``None``: forever); ``take_idle`` takes the most recently used one.
    """

    def __init__(self, env_id: str, kwargs: Mapping[str, Any] | None = None, *, max_idle: int = 64,
                 pool_ttl: float | None = None):
        if pool_ttl is not None and pool_ttl <= 0:
            raise ValueError(f"pool_ttl must be > 0 seconds or None, got {pool_ttl}")
        self.env_id = resolve_env_id(env_id)
        self.kwargs = dict(kwargs or {})
        self.name = self.env_id.split("/")[-1]
        entry = next((e for e in suite_envs() if e.env_id == self.env_id), None)
        self.summary = entry.summary if entry is not None else ""
        self.max_idle, self.pool_ttl = max_idle, pool_ttl
        self._idle: list[tuple[float, gym.Env]] = []  # (released at, instance), oldest first
        self._lock = threading.Lock()
        self._closed = False
        first = self.make()  # fails fast on bad kwargs, and gives the spec
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
        self.tool_listing = list_tools(base.tools)  # MCP tools/list, the same for every instance
        if not self.keep(first):
            self.discard(first)

    def make(self) -> gym.Env:
        """A new instance (blocking: call from a worker thread)."""
        try:
            # No passive env checker: it checks only an instance's first calls, and Gymnasium 1.4's
            # breaks the first step after a first reset that raised (a client's bad options).
            return gym.make(self.env_id, disable_env_checker=True, **self.kwargs)
        except Exception as exc:
            raise FactoryError(f"could not make {self.env_id} with {self.kwargs}: {type(exc).__name__}: {exc}") from exc

    def take_idle(self) -> gym.Env | None:
        """The most recently used idle instance, or ``None`` (never blocks: callable on the event loop)."""
        with self._lock:
            return self._idle.pop()[1] if self._idle else None

    def keep(self, env: gym.Env) -> bool:
        """Pool ``env`` for reuse if there is room (never blocks); ``False``: close it with ``discard``."""
        with self._lock:
            if self._closed or len(self._idle) >= self.max_idle:
                return False
            self._idle.append((time.monotonic(), env))
            return True

    def discard(self, env: gym.Env) -> None:
        """Close an instance the pool does not keep (blocking: call from a worker thread)."""
        _close_quietly(env, self.env_id)

    def trim(self, now: float | None = None) -> int:
        """Close the instances idle longer than ``pool_ttl`` (blocking: call from a worker thread); how many."""
        if self.pool_ttl is None:
            return 0
        cutoff = (time.monotonic() if now is None else now) - self.pool_ttl
        with self._lock:
            expired = 0
            while expired < len(self._idle) and self._idle[expired][0] < cutoff:
                expired += 1
            stale, self._idle = self._idle[:expired], self._idle[expired:]
        for _, env in stale:
            _close_quietly(env, self.env_id)
        return len(stale)

    @property
    def idle(self) -> int:
        return len(self._idle)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for _, env in idle:
            _close_quietly(env, self.env_id)


def _close_quietly(env: gym.Env, env_id: str) -> None:
    try:
        env.close()
    except Exception:
        logger.warning("closing an idle %s failed", env_id, exc_info=True)


@dataclass
class Session:
    """One session's episode bookkeeping: a WebSocket connection's, or an MCP session's (``mcp=True``)."""

    id: str
    host: HostedEnv
    env: gym.Env | None = None
    mcp: bool = False  # opened by openenv/session/create; a WebSocket may attach to it
    attached: bool = False  # a WebSocket is serving this session now
    close_when_detached: bool = False  # openenv/session/close arrived while a WebSocket was attached
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
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one call at a time, whichever route it came by

    def state(self) -> dict[str, Any]:
        return {"episode_id": self.episode_id, "step_count": self.step_count, "env_id": self.host.env_id,
                "terminated": self.terminated, "truncated": self.truncated, "episode_reward": self.episode_reward,
                "session_id": self.id}

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold the session for one call: the reaper leaves it alone, other calls wait."""
        async with self.lock:
            self.busy = True
            try:
                yield
            finally:
                self.busy = False
                self.last_active = time.monotonic()


def worker_of(session_id: str) -> int | None:
    """The index of the worker process that holds ``session_id`` (ids read ``w<index>-<uuid>``)."""
    head, sep, _ = session_id.partition("-")
    if not sep or not head.startswith("w") or not head[1:].isdigit() or len(head) > 8:
        return None
    return int(head[1:])


class SessionManager:
    """This process's sessions: the server-wide cap, env calls on a worker pool, reaping, pool trimming, shutdown."""

    def __init__(self, *, max_sessions: int, idle_timeout: float | None, workers: int,
                 table: WorkerTable | None = None, index: int = 0, hosts: Sequence[HostedEnv] = ()):
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {max_sessions}")
        if idle_timeout is not None and idle_timeout <= 0:
            raise ValueError(f"idle_timeout must be > 0 seconds or None, got {idle_timeout}")
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self.table = table if table is not None else WorkerTable(1)
        self.index = index
        self.hosts = list(hosts)
        self.executor = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="agentr1-env")
        self.sessions: dict[str, Session] = {}
        self._housekeeper: asyncio.Task | None = None

    @property
    def active(self) -> int:
        """Open sessions of the whole server (every worker process)."""
        return self.table.total("sessions")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the worker pool."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, lambda: fn(*args))

    async def checkout(self, host: HostedEnv) -> gym.Env:
        """An instance of ``host``: a pooled one at once, else a new one made on the worker pool."""
        env = host.take_idle()
        return env if env is not None else await self.run(host.make)

    async def checkin(self, host: HostedEnv, env: gym.Env) -> None:
        """Return an instance: pooled at once, or closed on the worker pool if the pool is full."""
        if not host.keep(env):
            try:
                await self.run(host.discard, env)
            except RuntimeError:  # the worker pool is already shut down
                host.discard(env)

    async def open(self, host: HostedEnv, *, mcp: bool = False) -> Session:
        """A new session with its own env instance; ``CapacityError`` / ``FactoryError`` otherwise."""
        refused = self.table.take_slot(self.index, self.max_sessions)
        if refused is not None:
            raise CapacityError(refused, self.max_sessions)
        session = Session(id=f"w{self.index}-{uuid.uuid4()}", host=host, mcp=mcp)
        self.sessions[session.id] = session  # holds the slot while the env is made
        try:
            session.env = await self.checkout(host)
        except BaseException:
            self.sessions.pop(session.id, None)
            self.table.free_slot(self.index)
            raise
        return session

    async def close(self, session: Session) -> None:
        """Free the session and return its env to the pool; idempotent."""
        if session.closed:
            return
        session.closed = True
        if self.sessions.pop(session.id, None) is not None:
            self.table.free_slot(self.index)
        env, session.env = session.env, None
        if env is not None:
            await self.checkin(session.host, env)

    def start(self) -> None:
        """Start housekeeping: the heartbeat ``/health`` reads, idle reaping, pool trimming."""
        self.table.set(self.index, "pid", os.getpid())
        self._beat()
        if self._housekeeper is None:
            self._housekeeper = asyncio.get_running_loop().create_task(self._housekeeping())

    def _beat(self) -> None:
        self.table.set(self.index, "heartbeat_ms", now_ms())
        self.table.set(self.index, "idle_instances", sum(h.idle for h in self.hosts))

    async def _housekeeping(self) -> None:
        interval = HEARTBEAT_S if self.idle_timeout is None else min(max(self.idle_timeout / 4, 0.05), HEARTBEAT_S)
        while True:
            await asyncio.sleep(interval)
            try:
                self._beat()
                if self.idle_timeout is not None:
                    await self._reap(time.monotonic())
                for host in self.hosts:
                    if host.pool_ttl is not None and host.idle:
                        await self.run(host.trim)
            except Exception:  # the heartbeat must outlive any one failure, or /health reports a live worker dead
                logger.exception("housekeeping failed; trying again in %.1f s", interval)

    async def _reap(self, now: float) -> None:
        assert self.idle_timeout is not None
        for session in [s for s in self.sessions.values() if not s.busy and now - s.last_active > self.idle_timeout]:
            self.table.add(self.index, "reaped")
            logger.info("reaping session %s (idle %.0f s)", session.id, now - session.last_active)
            try:
                if session.on_reap is not None:
                    await session.on_reap(f"session idle for more than {self.idle_timeout:g} s; closed by the server")
            except Exception:
                logger.debug("notifying a reaped session failed", exc_info=True)
            await self.close(session)

    async def shutdown(self) -> int:
        """Stop housekeeping, close every session (telling its client why), stop the worker pool; the sessions closed."""
        if self._housekeeper is not None:
            self._housekeeper.cancel()
            self._housekeeper = None
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

    def note_shutdown(self) -> None:
        """Record the sessions open as shutdown begins (the server closes their connections first, then ours)."""
        self.table.set(self.index, "open_at_shutdown", len(self.sessions))
