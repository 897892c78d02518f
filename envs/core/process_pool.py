"""A pool of persistent worker processes with a hard wall-clock timeout per task.

Why not ``concurrent.futures.ProcessPoolExecutor`` or ``signal.alarm``: symbolic algebra can spin
inside C code (a huge integer power) where no signal handler runs, an executor cannot cancel a
running task, and ``SIGALRM`` only works in the main thread of the main interpreter, which excludes
trainer threads, asyncio executors and Ray actors. Here each worker is a plain subprocess
(``python -c ...``, no ``fork`` of a threaded parent, no re-import of the caller's ``__main__``)
talking pickles over a pair of pipes. A task that overruns its deadline gets its worker killed
(``SIGKILL``) and replaced; the caller sees a ``timeout`` outcome, never a hang.

There is deliberately no in-worker "soft" interrupt (an exception raised by a timer signal): it can
land inside a half-finished import or cache update and leave the worker subtly broken, so an
overrunning worker is always replaced. Slow imports happen at worker start (``preload``), before
any deadline runs.

* ``pool.call(fn, *args)`` runs one task and returns an :class:`Outcome` (never raises for task
  failures); ``pool.run`` returns the value or raises :class:`TaskFailed`.
* ``pool.map(fn, arg_tuples)`` streams chunks of tasks to all workers at once for throughput; every
  task still gets its own deadline.
* ``await pool.acall(...)`` / ``await pool.amap(...)`` run on a helper thread, so the event loop
  keeps running.
* ``shared_pool(name, ...)`` returns one pool per process and name, so many environment instances
  (one per trajectory, as trainers create them) share a few worker processes.

``fn`` must be picklable by reference: a module-level function of an importable module.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

OK, ERROR, TIMEOUT, CRASHED = "ok", "error", "timeout", "crashed"
_READY = "__ready__"
_STARTUP_TIMEOUT = 120.0  # a cold worker imports sympy and friends; generous on a loaded machine


class PoolClosed(RuntimeError):
    """The pool was closed (explicitly or at interpreter exit)."""


class PoolFailure(RuntimeError):
    """The pool cannot start worker processes (the OS refused: no processes or descriptors left)."""


class TaskFailed(RuntimeError):
    """Raised by ``ProcessPool.run`` when a task did not return a value."""

    def __init__(self, outcome: Outcome):
        super().__init__(f"task {outcome.status}: {outcome.error}")
        self.outcome = outcome


@dataclass(frozen=True)
class Outcome:
    """How one task ended: ``status`` is ``ok``, ``error`` (it raised), ``timeout`` or ``crashed``."""

    status: str
    value: Any = None
    error: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == OK


class _Worker:
    """One subprocess and its two pipe ends; used by one thread at a time."""

    _ids = itertools.count()

    def __init__(self, preload: Sequence[str], env: dict[str, str]):
        parent_recv_fd, child_send_fd = os.pipe()
        child_recv_fd, parent_send_fd = os.pipe()
        code = "from envs.core.process_pool import _worker_main; _worker_main()"
        args = [sys.executable, "-c", code, str(child_recv_fd), str(child_send_fd), ",".join(preload)]
        try:
            self.proc = subprocess.Popen(args, pass_fds=(child_recv_fd, child_send_fd), env=env,
                                         stdin=subprocess.DEVNULL, close_fds=True)
        finally:
            os.close(child_recv_fd)
            os.close(child_send_fd)
        self.recv = Connection(parent_recv_fd, writable=False)
        self.send = Connection(parent_send_fd, readable=False)
        self.ready = False
        self.tasks_done = 0
        self.id = next(self._ids)

    def wait_ready(self, timeout: float) -> bool:
        if self.ready:
            return True
        if not self.recv.poll(timeout):
            return False
        try:
            message = self.recv.recv()
        except (EOFError, OSError):
            return False
        self.ready = message == _READY
        return self.ready

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        for conn in (self.recv, self.send):
            try:
                conn.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
            logger.warning("worker %s did not exit after SIGKILL", self.proc.pid)

    def request_exit(self) -> None:
        """Close the worker's input pipe: an idle worker exits when it sees end-of-file."""
        try:
            self.send.close()
        except OSError:
            pass

    def stop(self, grace: float = 2.0) -> None:
        """Ask the worker to exit, wait up to ``grace`` seconds, then make sure it did."""
        self.request_exit()
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        self.kill()


class ProcessPool:
    """Run picklable functions in worker processes with hard per-task timeouts (see the module doc).

    Workers start lazily on first use (or on ``start()``) and are replaced after a timeout, a crash,
    or ``max_tasks_per_worker`` tasks (symbolic libraries grow caches). ``preload`` entries
    (``"module"`` or ``"module:function"``) are imported, and the function called, when a worker
    starts, before it takes tasks, so slow imports never count against a task's deadline.
    Thread-safe.
    """

    def __init__(self, workers: int | None = None, *, timeout: float = 5.0, preload: Sequence[str] = (),
                 max_tasks_per_worker: int | None = 20_000, name: str = "pool"):
        if workers is None:
            workers = default_workers()
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        self.size = int(workers)
        self.timeout = float(timeout)
        self.preload = tuple(preload)
        self.max_tasks_per_worker = max_tasks_per_worker
        self.name = name
        self._idle: queue.LifoQueue[_Worker | None] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._all: set[_Worker] = set()
        self._started = 0
        self._closed = False
        self._threads: ThreadPoolExecutor | None = None
        self._async_threads: ThreadPoolExecutor | None = None
        self._env = _worker_environment()
        self.restarts = 0
        _LIVE_POOLS.add(self)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> ProcessPool:
        """Start every worker now (they import ``preload`` in the background)."""
        with self._lock:
            self._check_open()
            while self._started < self.size:
                self._started += 1
                self._idle.put(self._spawn())
        return self

    def close(self) -> None:
        """Stop all workers; later calls raise ``PoolClosed``. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = list(self._all)
            self._all.clear()
        for _ in range(self.size):
            self._idle.put(None)  # wake threads waiting for a worker
        for worker in workers:  # ask all to exit first: shutdown waits one grace period, not one per worker
            worker.request_exit()
        deadline = time.monotonic() + 2.0
        for worker in workers:
            worker.stop(max(0.0, deadline - time.monotonic()))
        for executor in (self._threads, self._async_threads):
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)

    @property
    def closed(self) -> bool:
        return self._closed

    def _disown(self) -> None:
        """In a forked child: mark closed and drop the parent's workers without touching them."""
        self._lock = threading.Lock()
        self._closed = True
        self._all = set()
        self._idle = queue.LifoQueue()
        for _ in range(self.size):
            self._idle.put(None)
        self._threads = self._async_threads = None

    def __enter__(self) -> ProcessPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise PoolClosed(f"process pool {self.name!r} is closed")

    def _spawn(self) -> _Worker:
        worker = _Worker(self.preload, self._env)
        self._all.add(worker)
        return worker

    def _acquire(self) -> _Worker:
        with self._lock:
            self._check_open()
            if self._idle.empty() and self._started < self.size:
                try:
                    worker = self._spawn()
                except OSError:
                    raise PoolFailure(f"process pool {self.name!r} cannot start a worker process") from None
                self._started += 1
                return worker
        worker = self._idle.get()
        if worker is None:
            self._idle.put(None)
            raise PoolClosed(f"process pool {self.name!r} is closed")
        return worker

    def _release(self, worker: _Worker, healthy: bool) -> None:
        recycle = self.max_tasks_per_worker is not None and worker.tasks_done >= self.max_tasks_per_worker
        replacement = None
        with self._lock:
            if self._closed:
                self._all.discard(worker)
                worker.kill()
                return
            if healthy and not recycle and worker.alive():
                self._idle.put(worker)
                return
            self._all.discard(worker)
            if not healthy:
                self.restarts += 1
            try:
                replacement = self._spawn()
            except OSError:  # out of processes or file descriptors: shrink; a later acquire retries
                logger.exception("%s: could not start a replacement worker", self.name)
                self._started -= 1
        if healthy:
            worker.stop()
        else:
            worker.kill()
        if replacement is not None:
            self._idle.put(replacement)

    # ------------------------------------------------------------------ running tasks
    def call(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Outcome:
        """Run ``fn(*args)`` in a worker; the outcome says how it ended."""
        return self.map(fn, [args], timeout=timeout, chunksize=1)[0]

    def run(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
        """Run ``fn(*args)`` and return its value; raise ``TaskFailed`` otherwise."""
        outcome = self.call(fn, *args, timeout=timeout)
        if not outcome.ok:
            raise TaskFailed(outcome)
        return outcome.value

    def map(self, fn: Callable[..., Any], arg_tuples: Iterable[Sequence[Any]], *, timeout: float | None = None,
            chunksize: int | None = None) -> list[Outcome]:
        """Run ``fn(*args)`` for every tuple; each task has its own deadline of ``timeout`` seconds.

        Tasks travel in chunks (fewer pipe round trips) and results stream back one by one, so a
        task that overruns costs only itself: its worker is replaced and the rest of its chunk is
        resent.
        """
        self._check_open()
        tasks = [tuple(a) for a in arg_tuples]
        if not tasks:
            return []
        limit = self.timeout if timeout is None else float(timeout)
        if chunksize is None:
            # Small chunks: task costs vary a lot (an interval comparison can take 100x an integer
            # one), and a driver stuck with a chunk of slow tasks would leave other workers idle.
            chunksize = max(1, min(4, -(-len(tasks) // (self.size * 4))))
        try:
            blob = pickle.dumps(fn)
        except Exception as exc:
            raise TypeError(f"{fn!r} cannot be sent to a worker process (it must be a module-level function): {exc}") from exc
        results: list[Outcome | None] = [None] * len(tasks)
        chunks = [list(range(i, min(i + chunksize, len(tasks)))) for i in range(0, len(tasks), chunksize)]
        if len(chunks) == 1 or self.size == 1:
            for chunk in chunks:
                self._run_chunk(blob, tasks, chunk, limit, results)
        else:
            pending: queue.SimpleQueue[list[int]] = queue.SimpleQueue()
            for chunk in chunks:
                pending.put(chunk)

            def drain() -> None:
                while True:
                    try:
                        chunk = pending.get_nowait()
                    except queue.Empty:
                        return
                    self._run_chunk(blob, tasks, chunk, limit, results)

            drivers = min(self.size, len(chunks))
            executor = self._executor()
            futures = [executor.submit(drain) for _ in range(drivers - 1)]
            drain()
            for future in futures:
                if not future.cancel():  # a helper that never started has nothing left to do
                    future.result()
        return [r if r is not None else Outcome(CRASHED, error="not run") for r in results]

    async def acall(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Outcome:
        """``call`` without blocking the running event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(for_async=True), lambda: self.call(fn, *args, timeout=timeout))

    async def amap(self, fn: Callable[..., Any], arg_tuples: Iterable[Sequence[Any]], *,
                   timeout: float | None = None) -> list[Outcome]:
        """``map`` without blocking the running event loop."""
        tasks = list(arg_tuples)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(for_async=True), lambda: self.map(fn, tasks, timeout=timeout))

    def _executor(self, for_async: bool = False) -> ThreadPoolExecutor:
        # Two executors: ``map`` drivers never wait on threads of the same executor that async
        # callers may have filled, so nested use cannot deadlock.
        with self._lock:
            self._check_open()
            attr = "_async_threads" if for_async else "_threads"
            executor = getattr(self, attr)
            if executor is None:
                executor = ThreadPoolExecutor(max_workers=32 if for_async else max(4, 4 * self.size),
                                              thread_name_prefix=f"{self.name}-{'async' if for_async else 'driver'}")
                setattr(self, attr, executor)
            return executor

    def _run_chunk(self, blob: bytes, tasks: list[tuple], chunk: list[int], limit: float,
                   results: list[Outcome | None]) -> None:
        todo = list(chunk)
        while todo:
            worker = self._acquire()
            healthy = True
            try:
                if not worker.wait_ready(_STARTUP_TIMEOUT):
                    healthy = False
                    error = "worker failed to start"
                    logger.error("%s: a worker process failed to start (exit code %s)", self.name, worker.proc.poll())
                    for index in todo:
                        results[index] = Outcome(CRASHED, error=error)
                    return
                try:
                    worker.send.send_bytes(pickle.dumps((blob, [tasks[i] for i in todo])))
                except (OSError, pickle.PicklingError, TypeError, AttributeError) as exc:
                    if isinstance(exc, OSError):
                        healthy = False
                        continue  # the worker died while idle: retry the chunk on a fresh one
                    for index in todo:
                        results[index] = Outcome(ERROR, error=f"arguments cannot be sent to a worker: {exc}")
                    return
                while todo:
                    started = time.monotonic()
                    try:
                        arrived = worker.recv.poll(limit)
                    except OSError as exc:  # ``close()`` on another thread closed this worker's pipes
                        healthy = False
                        results[todo.pop(0)] = Outcome(CRASHED, error=f"worker died: {exc}",
                                                       seconds=time.monotonic() - started)
                        break
                    if not arrived:
                        healthy = False
                        results[todo.pop(0)] = Outcome(TIMEOUT, error=f"no result within {limit:g}s", seconds=limit)
                        break
                    try:
                        status, value, error, seconds = worker.recv.recv()
                    except (EOFError, OSError, pickle.UnpicklingError) as exc:
                        healthy = False
                        results[todo.pop(0)] = Outcome(CRASHED, error=f"worker died: {exc or type(exc).__name__}",
                                                       seconds=time.monotonic() - started)
                        break
                    worker.tasks_done += 1
                    results[todo.pop(0)] = Outcome(status, value, error, seconds)
            finally:
                self._release(worker, healthy)


def default_workers() -> int:
    """``AGENTR1_WORKERS`` if set, else the CPUs this process may use (at most 4)."""
    env = os.environ.get("AGENTR1_WORKERS")
    if env:
        return max(1, int(env))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def _worker_environment() -> dict[str, str]:
    """The parent's environment, with the project root on ``PYTHONPATH`` so workers import ``envs``."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        env["PYTHONPATH"] = os.pathsep.join([root, *parts])
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


_SHARED: dict[str, ProcessPool] = {}
_SHARED_LOCK = threading.Lock()
_LIVE_POOLS: weakref.WeakSet[ProcessPool] = weakref.WeakSet()


def shared_pool(name: str, *, workers: int | None = None, timeout: float = 5.0,
                preload: Sequence[str] = ()) -> ProcessPool:
    """The process-wide pool called ``name`` (created on first use; recreated if it was closed).

    The first caller's settings win; later callers pass per-call timeouts instead.
    """
    with _SHARED_LOCK:
        pool = _SHARED.get(name)
        if pool is None or pool.closed:
            pool = ProcessPool(workers, timeout=timeout, preload=preload, name=name)
            _SHARED[name] = pool
        return pool


def _after_fork_in_child() -> None:
    """A forked child (``gym.vector.AsyncVectorEnv``, ``multiprocessing``) must not talk to its
    parent's workers: their pipes are the parent's. Forget them (without killing them) so the
    child starts its own pools on first use; locks held by other parent threads are replaced."""
    global _SHARED_LOCK
    _SHARED_LOCK = threading.Lock()
    _SHARED.clear()
    for pool in list(_LIVE_POOLS):
        pool._disown()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _close_all() -> None:
    for pool in list(_LIVE_POOLS):
        try:
            pool.close()
        except Exception:  # pragma: no cover - best effort at exit
            pass


# ---------------------------------------------------------------------------- worker side
def _worker_main() -> None:
    """Entry point of a worker process: ``argv = [recv_fd, send_fd, preload]``."""
    recv_fd, send_fd = int(sys.argv[1]), int(sys.argv[2])
    preload = [m for m in sys.argv[3].split(",") if m] if len(sys.argv) > 3 else []
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    # Keep the protocol pipes private: anything a task prints goes to stderr.
    sys.stdout = sys.stderr
    recv = Connection(recv_fd, writable=False)
    send = Connection(send_fd, readable=False)
    import importlib

    for entry in preload:  # "module" or "module:function" (called once, e.g. to warm caches)
        module, _, function = entry.partition(":")
        try:
            loaded = importlib.import_module(module)
            if function:
                getattr(loaded, function)()
        except Exception:
            traceback.print_exc()
    send.send(_READY)
    functions: dict[bytes, Callable[..., Any]] = {}
    while True:
        try:
            blob, batch = pickle.loads(recv.recv_bytes())
        except (EOFError, OSError):
            return  # the parent closed the pipe or died
        fn = functions.get(blob)
        if fn is None:
            try:
                fn = pickle.loads(blob)
            except Exception as exc:  # report, do not die
                for _ in batch:
                    send.send((ERROR, None, f"cannot load the task function: {type(exc).__name__}: {exc}", 0.0))
                continue
            functions[blob] = fn
        for args in batch:
            started = time.monotonic()
            try:
                message = (OK, fn(*args), "", time.monotonic() - started)
            except Exception as exc:  # a task's failure is data for the caller
                message = (ERROR, None, f"{type(exc).__name__}: {exc}", time.monotonic() - started)
            try:
                send.send(message)
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                send.send((ERROR, None, f"result cannot be sent back: {exc}", message[3]))
            except OSError:
                return
