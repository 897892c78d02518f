"""The ``python`` tool: runs model-written code in a sandbox and shows what it printed.

The code runs in an ``envs.sandbox`` session (bubblewrap where it works, else the weaker fallback,
which logs what it does not protect against), started on the env's first call. When an episode
starts or ends (``Tool.release``) the session drops every process, variable and file of the last
episode and keeps the sandbox warm; the env's ``close`` (``Tool.close``) stops it. A call answers with what the code
printed (stdout and stderr, head and tail past ``max_output_chars``), the value of a final
expression (as a notebook shows it) and, on an error, the traceback of the code's own frames.

Call forms: Hermes ``<tool_call>{"name": "python", "arguments": {"code": "..."}}</tool_call>``, and
with ``fenced=True`` (the default) a ```` ```python ```` block, answered with an ```` ```output ````
block (ToRL's convention). State: **fresh by default** (each call runs in a new interpreter, as in
ToRL: a call's result depends on its code alone, and a timeout loses nothing); ``persistent=True``
keeps one interpreter per episode, a notebook whose variables survive from call to call (a call
that must be killed loses them, and the result says so). Files in the scratch directory last for
the episode either way.

Limits (``PythonToolConfig``, make-kwarg ``python={...}``): per call ``wall_s``, ``cpu_s``,
``memory_mb``, ``processes``, ``file_size_mb``, ``open_files``, ``max_output_chars``,
``stop_output_bytes``; per episode ``episode_s`` (wall time of all calls; later calls are refused).
Code errors, timeouts and limits are the model's (``tool_error``); a sandbox that cannot start is
infrastructure (``unavailable``, never charged).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from envs.core.tools import ERROR, TIMEOUT, UNAVAILABLE, Tool, ToolResult
from envs.sandbox import PROVIDER_NAMES, Sandbox, SandboxLimits, SandboxProvider, SandboxUnavailable, get_provider
from envs.sandbox.base import BUDGET, CPU_LIMIT, Execution, trim_output
from envs.sandbox.local import ANSWER_GRACE_S, START_TIMEOUT_S

logger = logging.getLogger(__name__)

ERROR_STYLES = ("traceback", "last_line")
_TIMEOUT_STATUSES = frozenset({"timeout", CPU_LIMIT, BUDGET})


@dataclass(frozen=True)
class PythonToolConfig:
    """How the python tool runs code: the sandbox limits, the state, the call form, the error style.

    ``sandbox``: ``"auto"``, ``"bubblewrap"``, ``"subprocess"`` or a ``SandboxProvider``.
    ``errors``: ``"traceback"`` (the code's frames) or ``"last_line"`` (ToRL shows only that).
    ``preload``: modules the sandbox imports once, before any call (``["numpy", "sympy"]``: a fresh
    call that imports them then takes milliseconds, not a second; each sandbox holds them in memory).
    """

    limits: SandboxLimits = field(default_factory=SandboxLimits)
    persistent: bool = False
    fenced: bool = True
    errors: str = "traceback"
    sandbox: str | SandboxProvider = "auto"
    preload: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "preload", tuple(self.preload))
        if self.errors not in ERROR_STYLES:
            raise ValueError(f"errors must be one of {ERROR_STYLES}, got {self.errors!r}")
        if isinstance(self.sandbox, str) and self.sandbox not in PROVIDER_NAMES:
            raise ValueError(f"sandbox must be one of {PROVIDER_NAMES} or a SandboxProvider, got {self.sandbox!r}")

    @classmethod
    def from_options(cls, options: PythonToolConfig | Mapping[str, Any] | None) -> PythonToolConfig:
        """A config from itself, ``None`` (defaults) or one flat mapping of limits and options, as
        ``gym.make(..., python={"wall_s": 5, "persistent": True})`` passes it."""
        if options is None:
            return cls()
        if isinstance(options, PythonToolConfig):
            return options
        if not isinstance(options, Mapping):
            raise TypeError(f"python options must be a mapping or a PythonToolConfig, got {type(options).__name__}")
        values = dict(options)
        limit_names = {f.name for f in dataclasses.fields(SandboxLimits)}
        limits = values.pop("limits", {}) or {}
        if isinstance(limits, SandboxLimits):
            limits = dataclasses.asdict(limits)
        limits = {**limits, **{k: values.pop(k) for k in list(values) if k in limit_names}}
        known = {f.name for f in dataclasses.fields(cls)} - {"limits"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown python tool option(s) {unknown}; options: {sorted(known)}, "
                             f"limits: {sorted(limit_names)}")
        return cls(limits=SandboxLimits.from_mapping(limits), **values)


class PythonSession:
    """The tool's state for one env: its provider (resolved on first use) and the episode's sandbox."""

    def __init__(self, config: PythonToolConfig):
        self.config = config
        self._provider: SandboxProvider | None = None
        self._sandbox: Sandbox | None = None
        self._lock = threading.Lock()

    def provider(self) -> SandboxProvider:
        if self._provider is None:
            self._provider = get_provider(self.config.sandbox)
        return self._provider

    def __call__(self, code: str) -> ToolResult:
        with self._lock:
            try:
                provider = self.provider()
            except SandboxUnavailable as exc:
                return ToolResult(f"Error: the Python sandbox is unavailable: {exc}", ok=False, status=UNAVAILABLE,
                                  metadata={"sandbox": str(self.config.sandbox), "execution": UNAVAILABLE})
            if self._sandbox is None:
                self._sandbox = provider.open(self.config.limits, persistent=self.config.persistent,
                                              preload=self.config.preload)
            execution = self._sandbox.run(code)
        return self.result(execution, provider)

    def release(self) -> None:
        """End the episode in the sandbox (its processes, variables and files), keeping the sandbox warm."""
        with self._lock:
            if self._sandbox is not None:
                self._sandbox.reset()

    def close(self) -> None:
        """Stop the sandbox; a later call starts a new one."""
        with self._lock:
            sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            sandbox.close()

    def result(self, execution: Execution, provider: SandboxProvider) -> ToolResult:
        metadata = {"sandbox": provider.name, "execution": execution.status,
                    "state": "persistent" if self.config.persistent else "fresh"}
        if provider.weak:  # a weak sandbox says, in every result, what it does not protect against
            metadata.update(provider.describe())
        if execution.infra:
            status = UNAVAILABLE if execution.status == UNAVAILABLE else "worker_crashed"
            return ToolResult(f"Error: the Python sandbox failed ({execution.detail or execution.status}); "
                              "this is not your code's fault.", ok=False, status=status, metadata=metadata)
        content = self.render(execution)
        if execution.ok:
            return ToolResult(content, metadata=metadata)
        status = TIMEOUT if execution.status in _TIMEOUT_STATUSES else ERROR
        return ToolResult(content, ok=False, status=status, metadata=metadata)

    def render(self, execution: Execution) -> str:
        """The observation text: output, value, error, then what stopped the code."""
        limit = self.config.limits.max_output_chars
        parts: list[str] = []
        if execution.stdout:
            parts.append(execution.stdout.rstrip("\n"))
        if execution.value is not None:
            parts.append(trim_output(execution.value, "", len(execution.value), True, limit))
        if execution.error:
            error = execution.error.strip()
            if self.config.errors == "last_line":
                error = error.splitlines()[-1] if error else error
            parts.append(trim_output(error, "", len(error), True, limit))
        note = _NOTES.get(execution.status)
        if note:
            parts.append(note.format(limits=self.config.limits, detail=execution.detail))
        if execution.state_lost:
            parts.append("(The interpreter was restarted: variables from earlier calls are gone.)")
        return "\n".join(parts) if parts else "(no output: print what you want to see)"


_NOTES = {
    "timeout": "Error: the code ran past the {limits.wall_s:g}s time limit and was stopped.",
    CPU_LIMIT: "Error: the code used more than {limits.cpu_s:g}s of CPU time and was stopped.",
    "output_limit": "Error: the code printed more than {limits.stop_output_bytes} bytes and was stopped.",
    "killed": "Error: the code's process was {detail}.",
    "exited": "Error: the code ended its own process ({detail}).",
    BUDGET: "Error: {detail}; answer without running more code.",
}


def python_tool(config: PythonToolConfig | Mapping[str, Any] | None = None) -> Tool:
    """The ``python`` tool (one per env: it holds the episode's sandbox)."""
    config = PythonToolConfig.from_options(config)
    session = PythonSession(config)
    limits = config.limits
    state = ("Variables persist from call to call." if config.persistent
             else "Each call runs in a fresh interpreter: define everything the code uses.")
    return Tool(
        name="python",
        description=(f"Run Python 3 code in a sandbox and see what it prints and the value of its last line. {state} "
                     f"At most {limits.wall_s:g}s per call."),
        parameters={
            "type": "object",
            "properties": {"code": {"type": "string", "description": "Python source code to run"}},
            "required": ["code"],
            "additionalProperties": False,
        },
        fn=session,
        fence_argument="code" if config.fenced else None,
        release=session.release,
        close=session.close,
        # The sandbox enforces every limit itself; this last resort must outlast a start and a stop.
        timeout=limits.wall_s + START_TIMEOUT_S + ANSWER_GRACE_S + 10.0,
        max_output_chars=max(4000, 4 * limits.max_output_chars),
    )


def usage_hint(tool: Tool) -> str:
    """A prompt sentence offering a python tool: the call form it reads, and whether state persists."""
    session = tool.fn if isinstance(tool.fn, PythonSession) else None
    persistent = session is not None and session.config.persistent
    state = ("Variables persist from one code block to the next." if persistent
             else "Each code block runs on its own, so define everything it uses.")
    if tool.fence_argument:
        return ("You can run Python: write code in a ```python block and end your message there; what it prints "
                f"comes back in an ```output block. {state} When you know the answer, reply without code.")
    return ('You can run Python: <tool_call>{"name": "python", "arguments": {"code": "print(2**10)"}}</tool_call>; '
            f"what it prints comes back in the next message. {state}")


__all__ = ["PythonSession", "PythonToolConfig", "python_tool", "usage_hint"]
