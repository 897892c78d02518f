"""The owner's side of a local sandbox: start the supervisor (``envs.sandbox.runner``), talk to it,
enforce the outer deadline, and make sure nothing outlives the session, the env or this process.

Lifetimes:

* ``reset()`` (an episode starts or ends) has the supervisor kill every process of the code, drop
  the kernel and empty the scratch directory; the sandbox stays warm for the next episode.
* ``close()`` (the env closes) closes the request pipe; the supervisor kills every process of the
  session and exits; a supervisor that does not is killed; the session's directory is deleted.
* A garbage-collected session is closed by its finaliser; open sessions are closed at exit.
* A SIGKILL of this process: the sandbox process was started with a parent-death signal
  (``bwrap --die-with-parent``, or the supervisor's own ``PR_SET_PDEATHSIG``), which fires when the
  *thread* that started it ends. So every sandbox is started from one long-lived spawner thread,
  never from a tool call's worker thread (which may end while the sandbox should live on). Its
  directory stays behind; each session locks its directory while its owner lives, and starting a
  session deletes the unlocked ones.
* A forked child (``AsyncVectorEnv`` workers) forgets its parent's sessions without touching them.
"""

from __future__ import annotations

import atexit
import dataclasses
import fcntl
import json
import logging
import os
import queue
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from abc import abstractmethod
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from envs.sandbox import runner
from envs.sandbox.base import (
    BUDGET,
    CPU_LIMIT,
    ERROR,
    EXITED,
    KILLED,
    OK,
    OUTPUT_LIMIT,
    TIMEOUT,
    UNAVAILABLE,
    Execution,
    Sandbox,
    SandboxLimits,
    SandboxProvider,
    SandboxUnavailable,
    trim_output,
)

logger = logging.getLogger(__name__)

RUNNER_SOURCE = Path(runner.__file__).read_text(encoding="utf-8")
START_TIMEOUT_S = 60.0  # a cold interpreter on a loaded machine; an unresponsive start is infrastructure
ANSWER_GRACE_S = 5.0  # the supervisor's own deadline handling, on top of the call's wall time
MAX_CODE_CHARS = 200_000
SESSION_PREFIX = "agentr1-sandbox-"
NOBODY = 65534
SANDBOX_ENV = {  # the code's environment: nothing of the host's
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONIOENCODING": "utf-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "MPLBACKEND": "Agg",
}
_STATUS_TEXT = {OK, ERROR, TIMEOUT, CPU_LIMIT, OUTPUT_LIMIT, KILLED, EXITED}


class LocalProvider(SandboxProvider):
    """A provider whose sandboxes run the supervisor as a local process (``command`` says how)."""

    def __init__(self, *, python: str | None = None):
        self.python = python or sys.executable

    def open(self, limits: SandboxLimits, *, persistent: bool = False, preload: tuple[str, ...] = ()) -> LocalSandbox:
        return LocalSandbox(self, limits, persistent=persistent, preload=preload)

    @abstractmethod
    def command(self, python_argv: list[str], scratch: Path) -> list[str]:
        """The argv that starts ``python_argv`` (the supervisor) in this provider's sandbox."""

    @abstractmethod
    def settings(self, scratch: Path) -> dict[str, Any]:
        """Supervisor config for this provider: ``cwd`` (as the code sees it), ``drop_uid``,
        ``new_userns``, ``owner_pid``."""

    def python_argv(self, config: dict[str, Any]) -> list[str]:
        flags = ["-s", "-P"] if sys.version_info >= (3, 11) else ["-s"]
        return [self.python, *flags, "-c", RUNNER_SOURCE, json.dumps(config)]

    @staticmethod
    def drop_to() -> int | None:
        """The uid kernels run as when this process is root: the unprivileged ``nobody``."""
        if os.geteuid() != 0:
            return None
        try:
            import pwd

            return pwd.getpwnam("nobody").pw_uid
        except (ImportError, KeyError):
            return NOBODY


def python_roots(python: str) -> list[str]:
    """The directories an interpreter needs outside /usr: its environment and its installation."""
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                  os.path.dirname(os.path.dirname(os.path.realpath(python))),
                  os.path.dirname(os.path.dirname(os.path.abspath(python)))}
    roots = sorted({os.path.realpath(c) for c in candidates} | candidates)
    roots = [r for r in roots if r and r != "/" and not (r == "/usr" or r.startswith("/usr/")) and os.path.isdir(r)]
    # Drop roots inside other roots (their parent is bound already).
    return [r for r in roots if not any(r != other and r.startswith(other + os.sep) for other in roots)]


class _Spawner:
    """Starts processes from one long-lived thread (see the module doc: parent-death signals)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[list[str], dict[str, Any], Future]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="agentr1-sandbox-spawner", daemon=True)
                self._thread.start()
        future: Future = Future()
        self._jobs.put((argv, kwargs, future))
        return future.result()

    def _loop(self) -> None:
        while True:
            argv, kwargs, future = self._jobs.get()
            try:
                future.set_result(subprocess.Popen(argv, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)
            del argv, kwargs, future


_SPAWNER = _Spawner()
_LIVE: weakref.WeakSet[LocalSandbox] = weakref.WeakSet()


class _Process:
    """A running sandbox: the process, its pipes and its directory (what a finaliser must clean)."""

    def __init__(self, proc: subprocess.Popen, req_w: int, resp_r: int, directory: Path, lock: int):
        self.proc, self.req_w, self.resp_r, self.directory, self.lock = proc, req_w, resp_r, directory, lock
        self.reader = runner.FrameReader()

    def stop(self, grace: float = 2.0) -> None:
        """Close the request pipe (the supervisor kills its processes and exits), then make sure."""
        _close(self.req_w)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                self.proc.send_signal(signal.SIGTERM)  # the fallback's supervisor kills its processes on TERM
                self.proc.wait(timeout=grace)
            except (subprocess.TimeoutExpired, OSError):
                pass
            try:
                self.proc.kill()
                self.proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, OSError):
                logger.warning("sandbox process %s did not exit", self.proc.pid)
        _close(self.resp_r)
        _remove_tree(self.directory)
        _close(self.lock)

    def disown(self) -> None:
        """In a forked child: drop the parent's descriptors, touch nothing else."""
        for fd in (self.req_w, self.resp_r, self.lock):
            _close(fd)


class LocalSandbox(Sandbox):
    """A session on a local provider; the sandbox starts on the first ``run``."""

    def __init__(self, provider: LocalProvider, limits: SandboxLimits, *, persistent: bool = False,
                 preload: tuple[str, ...] = ()):
        self.provider = provider.name
        self._provider = provider
        self.limits = limits
        self.persistent = persistent
        self.preload = tuple(preload)
        self.time_used = 0.0  # wall seconds of this session's calls (the episode budget)
        self.calls = 0
        self._process: _Process | None = None
        self._finalizer: weakref.finalize | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._handed_over: set[int] = set()
        _LIVE.add(self)

    # ------------------------------------------------------------------ lifecycle
    @property
    def started(self) -> bool:
        return self._process is not None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.proc.pid

    def start(self) -> None:
        """Start the sandbox now (``run`` does it on demand); ``SandboxUnavailable`` if it cannot."""
        with self._lock:
            self._ensure_started()

    def _ensure_started(self) -> _Process:
        if self._closed:
            raise SandboxUnavailable("the sandbox session is closed")
        if self._process is not None:
            return self._process
        _remove_stale_sessions()
        directory = Path(tempfile.mkdtemp(prefix=SESSION_PREFIX))
        try:
            process = self._launch(directory)
        except BaseException:
            _remove_tree(directory)
            raise
        self._process = process
        self._finalizer = weakref.finalize(self, process.stop)
        return process

    def _launch(self, directory: Path) -> _Process:
        lock = _hold_lock(directory)
        try:
            return self._start(directory, lock)
        except BaseException:
            if lock not in self._handed_over:
                _close(lock)
            raise
        finally:
            self._handed_over.discard(lock)

    def _start(self, directory: Path, lock: int) -> _Process:
        scratch = directory / "scratch"
        scratch.mkdir()
        provider = self._provider
        limits = self.limits
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        config = {
            **provider.settings(scratch),
            "req_fd": req_r,
            "resp_fd": resp_w,
            "persistent": self.persistent,
            "preload": list(self.preload),
            "env": {**SANDBOX_ENV},
            "limits": {
                "wall_s": limits.wall_s, "cpu_s": limits.cpu_s, "cpu_episode_s": limits.episode_s,
                "memory_mb": limits.memory_mb, "processes": limits.processes, "file_size_mb": limits.file_size_mb,
                "open_files": limits.open_files, "keep_output_bytes": 4 * limits.max_output_chars,
                "stop_output_bytes": limits.stop_output_bytes,
            },
        }
        config["env"].update(HOME=config["cwd"], TMPDIR=config["cwd"])
        if config.get("drop_uid") is not None:  # the kernels run as this user: the scratch is theirs
            os.chown(scratch, config["drop_uid"], config.get("drop_gid", config["drop_uid"]))
            directory.chmod(0o711)
        argv = provider.command(provider.python_argv(config), scratch)
        log_path = directory / "log"
        try:
            with open(log_path, "wb") as log:
                proc = _SPAWNER.popen(argv, pass_fds=(req_r, resp_w), stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=log, env={**SANDBOX_ENV, "PYTHONHASHSEED": "0"}, cwd=scratch,
                                      start_new_session=True)
        except OSError as exc:
            _close(req_w)
            _close(resp_r)
            raise SandboxUnavailable(f"{provider.name}: cannot start {argv[0]}: {exc}") from exc
        finally:
            _close(req_r)
            _close(resp_w)
        process = _Process(proc, req_w, resp_r, directory, lock)
        self._handed_over.add(lock)  # from here on the process closes it
        hello = _read_frame(process, time.monotonic() + START_TIMEOUT_S)
        if not isinstance(hello, dict) or not hello.get("ready"):
            process.stop(grace=0.5)
            raise SandboxUnavailable(f"{provider.name} sandbox did not start: "
                                     f"{_tail(log_path) or 'no answer within %gs' % START_TIMEOUT_S}")
        for error in hello.get("preload_errors") or ():
            logger.warning("sandbox preload failed: %s", error)
        return process

    def reset(self) -> None:
        with self._lock:
            self.time_used, self.calls = 0.0, 0
            process = self._process
            if process is None:
                return
            reply = None
            if process.proc.poll() is None:
                try:
                    runner.send_frame(process.req_w, {"op": "reset"})
                    reply = _read_frame(process, time.monotonic() + ANSWER_GRACE_S)
                except OSError:
                    reply = None
            if not (isinstance(reply, dict) and reply.get("reset")):
                self._stop()  # it could not be cleaned: the next run starts a new one

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._stop()
        _LIVE.discard(self)

    def _stop(self) -> None:
        process = self._detach()
        if process is not None:
            process.stop()

    def _disown(self) -> None:
        process = self._detach()
        if process is not None:
            process.disown()

    def _detach(self) -> _Process | None:
        """Forget the running sandbox (its finaliser too) and return it."""
        process, self._process = self._process, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        return process

    # ------------------------------------------------------------------ running code
    def run(self, code: str) -> Execution:
        with self._lock:
            return self._run(code)

    def _run(self, code: str) -> Execution:
        limits = self.limits
        remaining = limits.episode_s - self.time_used if limits.episode_s else limits.wall_s
        if remaining <= 0:
            return Execution(BUDGET, detail=f"the episode's {limits.episode_s:g}s of tool time are spent")
        if not isinstance(code, str):
            return Execution(ERROR, error="TypeError: the code must be a string")
        if len(code) > MAX_CODE_CHARS:
            return Execution(ERROR, error=f"the code is longer than {MAX_CODE_CHARS} characters")
        wall = min(limits.wall_s, remaining)
        restarted = False
        if self._process is not None and self._process.proc.poll() is not None:
            self._stop()  # it died while idle (not the code's doing): start a new one
            restarted = True
        try:
            process = self._ensure_started()
        except SandboxUnavailable as exc:
            return Execution(UNAVAILABLE, detail=str(exc))
        self.calls += 1
        started = time.monotonic()
        try:
            runner.send_frame(process.req_w, {"code": code, "wall_s": wall})
            reply = _read_frame(process, started + wall + runner.INTERRUPT_GRACE_S + ANSWER_GRACE_S)
        except OSError:
            reply = None
        elapsed = time.monotonic() - started
        self.time_used += elapsed
        if not isinstance(reply, dict):
            # No answer: the supervisor died during the call (the code killed it) or stopped answering.
            died = process.proc.poll() is not None
            self._stop()
            status = KILLED if died else TIMEOUT
            detail = "the sandbox ended while running the code" if died else "the sandbox stopped answering"
            return Execution(status, seconds=elapsed, state_lost=self.persistent, detail=detail)
        execution = self._execution(reply, elapsed)
        if restarted and self.persistent:
            execution = dataclasses.replace(execution, state_lost=True)
        return execution

    def _execution(self, reply: dict[str, Any], elapsed: float) -> Execution:
        status = str(reply.get("status", ERROR))
        if status not in _STATUS_TEXT:
            if status == UNAVAILABLE:
                self._stop()
                return Execution(UNAVAILABLE, seconds=elapsed, detail=str(reply.get("error", ""))[:2000])
            status = ERROR
        stdout = trim_output(str(reply.get("stdout_head", "")), str(reply.get("stdout_tail", "")),
                             int(reply.get("stdout_bytes", 0) or 0), bool(reply.get("stdout_complete", True)),
                             self.limits.max_output_chars)
        detail = {TIMEOUT: f"time limit: {self.limits.wall_s:g}s per call",
                  CPU_LIMIT: f"CPU time limit: {self.limits.cpu_s:g}s per call",
                  OUTPUT_LIMIT: f"output limit: {self.limits.stop_output_bytes} bytes",
                  KILLED: f"killed by {reply.get('signal', 'a signal')}",
                  EXITED: f"exit status {reply.get('exit_code')}"}.get(status, "")
        value = reply.get("value")
        error = reply.get("error")
        return Execution(status, stdout=stdout, stdout_bytes=int(reply.get("stdout_bytes", 0) or 0),
                         value=None if value is None else str(value), error=None if error is None else str(error),
                         seconds=float(reply.get("seconds", elapsed) or elapsed), cpu_s=float(reply.get("cpu_s", 0) or 0),
                         state_lost=bool(reply.get("state_lost")), detail=detail)


def _read_frame(process: _Process, deadline: float) -> dict[str, Any] | None:
    """The supervisor's next frame before ``deadline``; ``None`` on timeout, end of file or junk."""
    reader = process.reader
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            ready, _, _ = select.select([process.resp_r], [], [], left)
        except InterruptedError:
            continue
        except (OSError, ValueError):
            return None
        if not ready:
            continue
        try:
            data = os.read(process.resp_r, 1 << 16)
        except InterruptedError:
            continue
        except OSError:
            return None
        if not data:
            return None
        reader.feed(data)
        frame = reader.pop()
        if frame is not None:
            return frame


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _remove_tree(path: Path) -> None:
    if not runner.remove_tree(str(path)):
        logger.warning("could not delete the sandbox directory %s", path)


def _hold_lock(directory: Path) -> int:
    """Lock the session's directory for as long as this process lives (the kernel drops the lock
    when the process dies, SIGKILL included): an unlocked session directory is a dead owner's."""
    fd = os.open(directory / "lock.new", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.rename(directory / "lock.new", directory / "lock")  # "lock" only ever names a held lock
    return fd


def _remove_stale_sessions() -> None:
    """Delete the session directories of owners that died without closing them (a SIGKILL)."""
    root = Path(tempfile.gettempdir())
    try:
        candidates = [p for p in root.iterdir() if p.name.startswith(SESSION_PREFIX)]
    except OSError:
        return
    for directory in candidates:
        try:
            fd = os.open(directory / "lock", os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue  # being created, or not a session of this kind: leave it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # its owner is alive
        try:
            _remove_tree(directory)
        finally:
            os.close(fd)


def _tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()[-chars:]
    except OSError:
        return ""


def _forget_after_fork() -> None:
    global _SPAWNER
    _SPAWNER = _Spawner()
    for sandbox in list(_LIVE):
        sandbox._disown()
    _LIVE.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


@atexit.register
def _close_all() -> None:
    for sandbox in list(_LIVE):
        try:
            sandbox.close()
        except Exception:  # pragma: no cover - best effort at exit
            pass
