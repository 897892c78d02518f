"""Counters every worker process of one server shares: the session cap, ``/health``, ``/agentr1/status``.

One row per worker in shared memory (``multiprocessing.RawArray``). A worker writes only its own row,
except ``sessions``, which changes under one lock so that the cap holds for the whole server: a
session is admitted only while the sum over all rows is below it. The supervisor clears the row of
a worker that died (its sessions died with it), so a crash never leaks capacity.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from typing import Any

logger = logging.getLogger(__name__)

FIELDS = ("pid", "sessions", "reaped", "open_at_shutdown", "heartbeat_ms", "idle_instances", "restarts")
_COLUMN = {name: i for i, name in enumerate(FIELDS)}
LOCK_TIMEOUT_S = 2.0  # the lock guards a few additions; a longer wait means its holder died holding it


def now_ms() -> int:
    """CLOCK_MONOTONIC in milliseconds: one clock for every process on the machine."""
    return int(time.monotonic() * 1000)


class WorkerTable:
    """Per-worker counters, readable by every worker; ``take_slot`` / ``free_slot`` enforce the session cap."""

    def __init__(self, workers: int, context: Any = None):
        if workers < 1:
            raise ValueError(f"a server has at least one worker, got {workers}")
        ctx = context or multiprocessing.get_context("spawn")
        self.workers = workers
        self._values = ctx.RawArray("q", workers * len(FIELDS))
        self._lock = ctx.Lock()

    def get(self, index: int, field: str) -> int:
        return int(self._values[index * len(FIELDS) + _COLUMN[field]])

    def set(self, index: int, field: str, value: int) -> None:
        self._values[index * len(FIELDS) + _COLUMN[field]] = int(value)

    def add(self, index: int, field: str, amount: int = 1) -> None:
        """For fields only worker ``index`` writes (``sessions`` goes through the lock instead)."""
        self._values[index * len(FIELDS) + _COLUMN[field]] += amount

    def total(self, field: str) -> int:
        column = _COLUMN[field]
        return sum(int(self._values[i * len(FIELDS) + column]) for i in range(self.workers))

    def take_slot(self, index: int, maximum: int) -> int | None:
        """Count a new session of worker ``index``; ``None`` if admitted, else the sessions already open."""
        if not self._lock.acquire(timeout=LOCK_TIMEOUT_S):
            logger.error("the session table's lock was not released in %.0f s; refusing a session", LOCK_TIMEOUT_S)
            return self.total("sessions")
        try:
            active = self.total("sessions")
            if active >= maximum:
                return active
            self.add(index, "sessions")
            return None
        finally:
            self._lock.release()

    def free_slot(self, index: int) -> None:
        if not self._lock.acquire(timeout=LOCK_TIMEOUT_S):
            logger.error("the session table's lock was not released in %.0f s; freeing a slot without it",
                         LOCK_TIMEOUT_S)
            self.add(index, "sessions", -1)
            return
        try:
            self.add(index, "sessions", -1)
        finally:
            self._lock.release()

    def clear(self, index: int) -> None:
        """Forget a dead worker's sessions and pid (its counts of reaped and closed sessions stay)."""
        if not self._lock.acquire(timeout=LOCK_TIMEOUT_S):
            logger.warning("worker %d died holding the session table's lock; releasing it", index)
        try:
            self.set(index, "sessions", 0)
            self.set(index, "pid", 0)
            self.set(index, "heartbeat_ms", 0)
            self.set(index, "idle_instances", 0)
        finally:
            self._lock.release()

    def rows(self) -> list[dict[str, int]]:
        return [{name: self.get(i, name) for name in FIELDS} for i in range(self.workers)]
