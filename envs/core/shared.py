"""Values built once per process and handed to every caller: datasets, corpus indexes.

Trainers build many env instances in one process (one per concurrent sample, per vector-env slot,
per thread); they all need the same dataset and the same index. ``SharedValues.get(key, build)``
runs ``build`` once per key; callers asking for a key that is being built wait for that build
instead of starting their own, while different keys build in parallel. A failed build is not
remembered: the next caller tries again (and sees the error itself).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class _Slot(Generic[T]):
    __slots__ = ("lock", "ready", "value")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ready = False
        self.value: T | None = None


class SharedValues(Generic[T]):
    """A thread-safe, process-wide map from a key to a value built on first request."""

    def __init__(self) -> None:
        self._slots: dict[Hashable, _Slot[T]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], T]) -> T:
        """The value for ``key``, calling ``build()`` if no caller has built it yet."""
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot()
        with slot.lock:
            if not slot.ready:
                slot.value = build()
                slot.ready = True
            return slot.value  # type: ignore[return-value]

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            slot = self._slots.get(key)
        return slot is not None and slot.ready

    def __len__(self) -> int:
        with self._lock:
            return sum(slot.ready for slot in self._slots.values())

    def clear(self) -> None:
        """Forget every value (tests; freeing memory in a long-lived process). Holders keep theirs."""
        with self._lock:
            self._slots.clear()
