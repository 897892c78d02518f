"""Tools: plain callables with a name, a description and a JSON schema.

The Agent-R1 split: a ``Tool`` runs and reports what happened (a ``ToolResult``); the environment
decides what that means (observation text, state, reward). ``run_tool`` is the one place that turns
every failure a model can provoke (unknown tool, bad arguments, exception, timeout, huge output)
into a ``ToolResult`` with ``ok=False`` and a ``status`` naming the failure.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from envs.core.parsing import ToolCall

logger = logging.getLogger(__name__)

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}

# Statuses a ToolResult can carry; environments map them to reward components.
OK, UNKNOWN_TOOL, BAD_ARGUMENTS, ERROR, TIMEOUT = "ok", "unknown_tool", "bad_arguments", "error", "timeout"
# Statuses that report a fault of the infrastructure, not of the model's call (a backend that is
# down, a worker that crashed, a pool with no free slot, a deadline spent queueing). The env core
# never charges them to the model; it counts them in the ``env_error`` metric instead.
INFRASTRUCTURE_STATUSES = frozenset({"unavailable", "worker_crashed", "busy", "infra_timeout"})
UNAVAILABLE = "unavailable"  # a backend (retrieval server, index) could not answer


@dataclass(frozen=True)
class ToolResult:
    """What a tool reports: its text output, whether it worked, and anything the env may use."""

    content: str
    ok: bool = True
    status: str = OK
    metadata: dict[str, Any] = field(default_factory=dict)
    truncated: bool = False

    @property
    def infra(self) -> bool:
        """Did the infrastructure fail (``INFRASTRUCTURE_STATUSES``) rather than the call?"""
        return self.status in INFRASTRUCTURE_STATUSES


class ToolError(Exception):
    """Raised by a tool for an expected failure; its message becomes the observation."""


@dataclass
class Tool:
    """A named callable with a JSON-schema for its keyword arguments.

    ``fn`` receives the validated arguments as keywords and returns a ``str`` or a ``ToolResult``.
    ``tag_argument`` names the argument that the short tag form (``<name>text</name>``) fills;
    ``fence_argument`` the one a fenced block (```` ```name ... ``` ````, ToRL's code form) fills.
    ``timeout`` bounds the wall-clock time of one call; a tool that can run away on CPU (symbolic
    algebra) must also enforce its own hard limit in a worker process. ``release`` drops what a
    tool holds for one episode (a sandbox's processes and files): the env calls it when an episode
    starts or ends; ``close`` frees the tool's resources when the env closes.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., str | ToolResult]
    tag_argument: str | None = None
    timeout: float = 10.0
    max_output_chars: int = 4000
    fence_argument: str | None = None
    release: Callable[[], None] | None = None
    close: Callable[[], None] | None = None

    def schema(self) -> dict[str, Any]:
        """The OpenAI/Hermes function schema, as chat templates expect in ``tools=[...]``."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}

    def validate(self, arguments: Mapping[str, Any]) -> str | None:
        """A message describing what is wrong with ``arguments``, or ``None`` if they fit the schema."""
        props: dict[str, Any] = self.parameters.get("properties", {})
        missing = [k for k in self.parameters.get("required", []) if k not in arguments]
        if missing:
            return f"missing required argument(s): {', '.join(missing)}"
        if self.parameters.get("additionalProperties", True) is False:
            extra = [k for k in arguments if k not in props]
            if extra:
                return f"unexpected argument(s): {', '.join(map(str, extra))}"
        for key, value in arguments.items():
            expected = props.get(key, {}).get("type")
            if expected in _JSON_TYPES:
                ok = isinstance(value, _JSON_TYPES[expected]) and not (expected in ("integer", "number") and isinstance(value, bool))
                if not ok:
                    return f"argument {key!r} must be of type {expected}"
        return None


def tool(name: str, description: str, parameters: dict[str, Any], **options: Any) -> Callable[[Callable[..., Any]], Tool]:
    """Decorator: turn a function into a ``Tool``."""

    def wrap(fn: Callable[..., Any]) -> Tool:
        return Tool(name=name, description=description, parameters=parameters, fn=fn, **options)

    return wrap


# Tool calls run on daemon worker threads. A call that outlives its timeout cannot be killed (Python
# has no thread cancellation), so it is abandoned: it must neither block interpreter exit (the threads
# of a ``ThreadPoolExecutor`` are joined at exit, so one stuck call would hang the process forever) nor
# hold a pool slot that later calls queue behind. Idle workers are reused (starting a thread per call
# doubles a fast tool's latency); a worker whose abandoned call finally returns goes back to idle.
# Abandoned calls still running are counted; past ``MAX_ABANDONED_CALLS`` new calls fail at once
# instead of piling up more threads.
MAX_ABANDONED_CALLS = 64
MAX_IDLE_WORKERS = 16
_idle: collections.deque[_Worker] = collections.deque()
_abandoned: set[_Job] = set()
_abandoned_lock = threading.Lock()


class _CallTimedOut(Exception):
    pass


class _Job:
    __slots__ = ("fn", "arguments", "done", "ok", "value")

    def __init__(self, fn: Callable[..., Any], arguments: Mapping[str, Any]):
        self.fn, self.arguments, self.done = fn, arguments, threading.Event()
        self.ok, self.value = False, None

    def run(self) -> None:
        try:
            self.value, self.ok = self.fn(**self.arguments), True
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self.value = exc
        finally:
            self.done.set()


class _Worker:
    def __init__(self) -> None:
        self.inbox: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        threading.Thread(target=self._loop, name="agentr1-tool", daemon=True).start()

    def _loop(self) -> None:
        while True:
            job = self.inbox.get()
            job.run()
            del job
            if len(_idle) >= MAX_IDLE_WORKERS:
                return
            _idle.append(self)


def _call_with_timeout(fn: Callable[..., Any], arguments: Mapping[str, Any], timeout: float) -> Any:
    """``fn(**arguments)`` on a daemon worker; raise ``_CallTimedOut`` after ``timeout`` seconds."""
    job = _Job(fn, arguments)
    try:
        worker = _idle.pop()
    except IndexError:
        worker = _Worker()
    worker.inbox.put(job)
    if not job.done.wait(timeout):
        with _abandoned_lock:
            _abandoned.add(job)
        raise _CallTimedOut
    if not job.ok:
        raise job.value
    return job.value


def _too_many_abandoned() -> bool:
    with _abandoned_lock:
        for job in [j for j in _abandoned if j.done.is_set()]:
            _abandoned.discard(job)
        return len(_abandoned) >= MAX_ABANDONED_CALLS


def _forget_workers_after_fork() -> None:
    # A forked child (AsyncVectorEnv workers, Ray, dataloaders) inherits these objects but not the
    # threads behind them; handing a job to one would wait forever.
    _idle.clear()
    with _abandoned_lock:
        _abandoned.clear()


os.register_at_fork(after_in_child=_forget_workers_after_fork)


def run_tool(tools: Mapping[str, Tool], call: ToolCall) -> ToolResult:
    """Run ``call`` against ``tools``; every failure becomes a ``ToolResult`` with ``ok=False``."""
    spec = tools.get(call.name)
    if spec is None:
        known = ", ".join(sorted(tools)) or "none"
        return ToolResult(f"Error: unknown tool {call.name!r}. Available tools: {known}.", ok=False, status=UNKNOWN_TOOL)
    problem = spec.validate(call.arguments)
    if problem:
        return ToolResult(f"Error: bad arguments for {spec.name}: {problem}.", ok=False, status=BAD_ARGUMENTS)
    if _too_many_abandoned():
        return ToolResult(f"Error: {spec.name} is unavailable: earlier calls are still running past their timeout.",
                          ok=False, status=TIMEOUT)
    try:
        output = _call_with_timeout(spec.fn, call.arguments, spec.timeout)
    except _CallTimedOut:
        return ToolResult(f"Error: {spec.name} timed out after {spec.timeout:g}s.", ok=False, status=TIMEOUT)
    except ToolError as exc:
        return ToolResult(f"Error: {exc}", ok=False, status=ERROR)
    except TypeError as exc:  # arguments the schema allowed but the function rejects
        return ToolResult(f"Error: bad arguments for {spec.name}: {exc}", ok=False, status=BAD_ARGUMENTS)
    except Exception as exc:  # a tool bug must not kill the episode
        logger.warning("tool %s raised", spec.name, exc_info=True)
        return ToolResult(f"Error: {spec.name} failed: {type(exc).__name__}: {exc}", ok=False, status=ERROR)
    result = output if isinstance(output, ToolResult) else ToolResult(str(output))
    if len(result.content) > spec.max_output_chars:
        cut = result.content[: spec.max_output_chars] + "\n[output truncated]"
        result = ToolResult(cut, ok=result.ok, status=result.status, metadata=result.metadata, truncated=True)
    return result
