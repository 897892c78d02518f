"""The sandbox interface: what a provider promises, the limits it enforces, what one run returns.

A ``SandboxProvider`` opens ``Sandbox`` sessions; a session runs code (``run``) until it is closed.
A session serves one episode at a time: files in its scratch directory, and with ``persistent=True``
the interpreter's variables, last until ``reset`` (the next episode) or ``close``. The local providers (``bubblewrap``, then
the weaker ``subprocess`` fallback) are the implementations here; a remote sandbox service plugs in
by implementing these two classes (see ``docs/python-tool.md``).

Every failure of the *code* is an ``Execution`` with a status the model is charged for (``error``,
``timeout``, ``cpu_limit``, ...); a sandbox that cannot start or run anything is ``unavailable`` or
``crashed`` (``Execution.infra``), which the environments never charge.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Any, ClassVar

# What the code did (the model's doing).
OK = "ok"
ERROR = "error"  # it raised, or did not parse
TIMEOUT = "timeout"  # it ran past the call's wall time
CPU_LIMIT = "cpu_limit"  # it used more CPU time than the call allows
OUTPUT_LIMIT = "output_limit"  # it printed more than ``stop_output_bytes`` and was stopped
KILLED = "killed"  # its process died on a signal (a segfault through ctypes, the memory limit in C code)
EXITED = "exited"  # it ended its own process (os._exit)
BUDGET = "episode_budget"  # the episode's tool time is spent: nothing ran
# What the sandbox did (never the model's doing).
UNAVAILABLE = "unavailable"  # the sandbox could not start or could not run anything
CRASHED = "crashed"  # the sandbox died while idle
INFRA_STATUSES = frozenset({UNAVAILABLE, CRASHED})


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot be started here (missing tool, refused namespaces, start timeout)."""


@dataclass(frozen=True)
class SandboxLimits:
    """Limits on the code a sandbox runs: per call, and per session (one episode).

    ``wall_s``: wall time of one call. ``cpu_s``: CPU time of one call (per process).
    ``memory_mb``: address space of each process. ``processes``: processes (and threads) the code
    may start at once. ``file_size_mb``: the largest file it may write. ``open_files``: descriptors
    per process. ``max_output_chars``: output shown (head and tail; the middle is cut).
    ``stop_output_bytes``: output after which the code is stopped. ``episode_s``: total wall time of
    the session's calls (the per-episode budget); ``0`` turns a limit off where that is allowed
    (``episode_s``, ``cpu_s``).
    """

    wall_s: float = 10.0
    cpu_s: float = 10.0
    memory_mb: int = 1024
    processes: int = 8
    file_size_mb: int = 16
    open_files: int = 64
    max_output_chars: int = 2000
    stop_output_bytes: int = 1_000_000
    episode_s: float = 60.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"sandbox limit {f.name} must be a number >= 0, got {value!r}")
        for name in ("wall_s", "memory_mb", "processes", "file_size_mb", "open_files", "max_output_chars",
                     "stop_output_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"sandbox limit {name} must be > 0, got {getattr(self, name)!r}")
        if self.memory_mb < 64:
            raise ValueError(f"memory_mb must be at least 64 (an interpreter needs that), got {self.memory_mb}")
        if self.open_files < 16:
            raise ValueError(f"open_files must be at least 16, got {self.open_files}")

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> SandboxLimits:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown sandbox limit(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


@dataclass(frozen=True)
class Execution:
    """What one run of code did. ``stdout`` is what it printed (stdout and stderr interleaved, the
    middle cut past ``max_output_chars``), ``value`` the repr of a final expression, ``error`` a
    trimmed traceback. ``state_lost``: a persistent interpreter was stopped, its variables are gone."""

    status: str
    stdout: str = ""
    stdout_bytes: int = 0
    value: str | None = None
    error: str | None = None
    seconds: float = 0.0
    cpu_s: float = 0.0
    state_lost: bool = False
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def infra(self) -> bool:
        """The sandbox failed, not the code: never charge this to the model."""
        return self.status in INFRA_STATUSES


class Sandbox(ABC):
    """One session: runs code until closed. Not thread-safe across calls (a lock serialises them)."""

    provider: str = ""

    @abstractmethod
    def run(self, code: str) -> Execution:
        """Run ``code``; never raises for anything the code does."""

    @abstractmethod
    def reset(self) -> None:
        """Start a new episode: drop every process, variable and file of the last one and reset the
        time budget, keeping the sandbox itself (a fresh start costs an interpreter start)."""

    @abstractmethod
    def close(self) -> None:
        """Stop everything the session started and delete its files; idempotent."""

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SandboxProvider(ABC):
    """Opens sandbox sessions. ``isolation`` says what it isolates; ``unprotected`` lists, one item
    each, what it does not protect against (shown in the python tool's results and the docs)."""

    name: ClassVar[str] = ""
    isolation: ClassVar[str] = ""
    unprotected: ClassVar[tuple[str, ...]] = ()
    weak: ClassVar[bool] = False  # isolation too weak to run untrusted code unattended (the fallback)

    @abstractmethod
    def open(self, limits: SandboxLimits, *, persistent: bool = False, preload: tuple[str, ...] = ()) -> Sandbox:
        """A new session (it may start lazily, on its first ``run``). ``preload``: modules to import
        before any code runs, so calls that import them start fast (a hint; a provider may ignore it)."""

    def available(self) -> bool:
        """Whether this provider can run code here."""
        return True

    def describe(self) -> dict[str, Any]:
        return {"sandbox": self.name, "isolation": self.isolation, "unprotected": list(self.unprotected)}


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_text(text: str) -> str:
    """Printable text: line endings normalised, other control characters (NUL, escapes) dropped."""
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def trim_output(head: str, tail: str, total_bytes: int, complete: bool, max_chars: int) -> str:
    """At most ``max_chars`` of an output, its start and its end, the cut in the middle marked.

    ``head`` and ``tail`` are what the sandbox kept of ``total_bytes``; ``complete``: nothing was
    dropped between them."""
    head, tail = clean_text(head), clean_text(tail)
    if complete and len(head) + len(tail) <= max_chars:
        return head + tail
    if complete:
        head, tail = (head + tail), (head + tail)
    half = max(1, max_chars // 2)
    return f"{head[:half]}\n[... output cut: {total_bytes} bytes printed in all ...]\n{tail[-half:]}"
