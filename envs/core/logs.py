"""Log records a flood cannot multiply: what servers attach to their request paths' logs.

A client that sends the same bad request ten thousand times must not write ten thousand tracebacks:
``RateLimitedLog`` lets a few records of each message template through per interval, then one line
saying how many it held back. Attach it to the handlers (``rate_limit_handlers``), so it also covers
records that loggers further down the tree propagate to them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable


class RateLimitedLog(logging.Filter):
    """At most ``burst`` records per message template per ``interval`` seconds; then a count."""

    def __init__(self, burst: int = 5, interval: float = 10.0):
        super().__init__()
        self.burst, self.interval = burst, interval
        self._seen: dict[tuple[str, str], list[float]] = {}  # key -> [window start, count, suppressed]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = time.monotonic()
        with self._lock:
            window = self._seen.get(key)
            if window is None or now - window[0] >= self.interval:
                suppressed = int(window[2]) if window else 0
                self._seen[key] = [now, 1, 0]
                if len(self._seen) > 10_000:
                    self._seen = {key: self._seen[key]}
                if suppressed:
                    record.msg = f"{record.msg} ({suppressed} similar messages suppressed)"
                return True
            window[1] += 1
            if window[1] <= self.burst:
                return True
            window[2] += 1
            return False


def rate_limit_handlers(log_filter: logging.Filter, logger_names: Iterable[str] = ("",)) -> list[logging.Handler]:
    """Attach ``log_filter`` to every handler of the named loggers (``""``: the root); the handlers changed."""
    changed = []
    for name in logger_names:
        for handler in logging.getLogger(name).handlers:
            if log_filter not in handler.filters:
                handler.addFilter(log_filter)
                changed.append(handler)
    return changed
