"""A fair, bounded pool of persistent worker processes with hard time and memory limits per task.

Why not ``concurrent.futures.ProcessPoolExecutor``, ``pebble`` or ``signal.alarm``: symbolic algebra
can spin inside C code (a huge integer power) where no signal handler runs; an executor cannot
cancel a running task; ``SIGALRM`` only works in the main thread; and pools built on
``multiprocessing`` (``pebble``, ``loky``) cannot start inside a daemonic process (Gymnasium's
``AsyncVectorEnv`` workers are daemonic), re-import the caller's ``__main__`` under ``spawn`` and
``forkserver``, and time a task only from when it starts, not from when it was submitted. Here each
worker is a plain subprocess (``python -c ...``, no ``fork`` of a threaded parent) talking pickles
over a pair of pipes.

The rules, in the order a call meets them:

* **Queueing is bounded and fair.** A call waits for a worker at most ``queue_timeout`` seconds
  (default: ``timeout``); waiting callers are served strictly in arrival order (a worker that
  comes free is handed to the oldest waiter, so a busy thread cannot grab it again first). At most
  ``max_waiting`` callers wait; beyond that, or past the queue deadline, the outcome is ``busy``.
  So a call returns within ``queue_timeout + timeout``, plus a worker start when no worker is ready
  (a cold pool, or every worker being replaced at once: that is a start-up, not a busy pool).
* **Work is hard-limited.** A task that overruns ``timeout`` gets its worker killed (``SIGKILL``)
  and replaced: ``timeout``. Workers run under ``RLIMIT_AS`` (``memory_limit_mb``, default
  ``AGENTR1_WORKER_MEMORY_MB`` or 1024; 0 turns it off), so a runaway
  allocation raises ``MemoryError`` inside the task (an ``error`` outcome) instead of swapping the
  host. A worker that hits ``MemoryError`` is replaced after reporting it.
* **Crashes are retried once.** A worker that dies mid-task (killed, segfault, OOM killer) or before
  it became ready is replaced, and the task runs again on the fresh worker, ahead of the queue; a
  second crash is reported as ``crashed``. ``busy`` and ``crashed`` are infrastructure outcomes
  (:attr:`Outcome.infra`): callers must not charge them to whoever submitted the task.
* Replacement workers start in the background (they import ``preload`` there); callers are only
  ever handed ready workers, so slow imports never count against a task's deadline.

API: ``pool.call(fn, *args)`` returns an :class:`Outcome` (never raises for task failures);
``pool.run`` returns the value or raises :class:`TaskFailed`; ``pool.map(fn, arg_tuples)`` streams
chunks to all workers (each task still has its own time limit; batch callers wait in the queue
without a queue deadline unless they pass one); ``await pool.acall`` / ``pool.amap`` wait on helper
threads (the queue deadline starts when ``acall`` is awaited); ``shared_pool(name, ...)`` returns one
pool per process and name. ``fn`` must be picklable by reference (a module-level function).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
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
from typing import Any

from envs.core.layout import child_environment

logger = logging.getLogger(__name__)

OK, ERROR, TIMEOUT, CRASHED, BUSY = "ok", "error", "timeout", "crashed", "busy"
INFRA_STATUSES = frozenset({CRASHED, BUSY})
_READY = "__ready__"
_STARTUP_TIMEOUT = 120.0  # a cold worker imports sympy and friends; generous on a loaded machine
DEFAULT_MEMORY_LIMIT_MB = 1024  # a warm math-verify worker maps ~170 MB
DEFAULT_MAX_WAITING = 512


class PoolClosed(RuntimeError):
    """The pool was closed (explicitly or at interpreter exit)."""


class PoolFailure(RuntimeError):
    """The pool cannot start worker processes (the OS refused, or every start attempt failed)."""


class TaskFailed(RuntimeError):
    """Raised by ``ProcessPool.run`` when a task did not return a value."""

    def __init__(self, outcome: Outcome):
        super().__init__(f"task {outcome.status}: {outcome.error}")
        self.outcome = outcome


@dataclass(frozen=True)
class Outcome:
    """How one task ended.

    ``status``: ``ok``, ``error`` (it raised), ``timeout`` (it ran past its limit), ``crashed``
    (its worker died twice) or ``busy`` (no worker came free in time). ``waited`` is the time spent
    queueing, ``attempts`` the number of workers it ran on.
    """

    status: str
    value: Any = None
    error: str = ""
    seconds: float = 0.0
    waited: float = 0.0
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def infra(self) -> bool:
        """The pool, not the task, failed: do not charge this outcome to the task's author."""
        return self.status in INFRA_STATUSES


class _Busy(Exception):
    pass


class _Worker:
    """One subprocess and its two pipe ends; used by one thread at a time."""

    _ids = itertools.count()

    def __init__(self, preload: Sequence[str], env: dict[str, str], memory_limit_mb: int | None):
        parent_recv_fd, child_send_fd = os.pipe()
        child_recv_fd, parent_send_fd = os.pipe()
        code = "from envs.core.process_pool import _worker_main; _worker_main()"
        args = [sys.executable, "-c", code, str(child_recv_fd), str(child_send_fd), ",".join(preload),
                str(memory_limit_mb or 0)]
        try:
            self.proc = subprocess.Popen(args, pass_fds=(child_recv_fd, child_send_fd), env=env,
                                         stdin=subprocess.DEVNULL, close_fds=True)
        except BaseException:
            for fd in (parent_recv_fd, parent_send_fd):
                os.close(fd)
            raise
        finally:
            os.close(child_recv_fd)
            os.close(child_send_fd)
        self.recv = Connection(parent_recv_fd, writable=False)
        self.send = Connection(parent_send_fd, readable=False)
        self.tasks_done = 0
        self.id = next(self._ids)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float) -> bool:
        try:
            if not self.recv.poll(timeout):
                return False
            return self.recv.recv() == _READY
        except (EOFError, OSError):
            return False

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


class _Waiter:
    __slots__ = ("event", "worker", "failure")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.worker: _Worker | None = None
        self.failure: str | None = None


class ProcessPool:
    """Run picklable functions in worker processes with hard per-task limits (see the module doc).

    Workers start lazily on first use (or on ``start()``) and are replaced after a timeout, a crash,
    a ``MemoryError`` or ``max_tasks_per_worker`` tasks (symbolic libraries grow caches).
    ``preload`` entries (``"module"`` or ``"module:function"``) are imported, and the function
    called, when a worker starts, before it takes tasks. Thread-safe.
    """

    def __init__(self, workers: int | None = None, *, timeout: float = 5.0, preload: Sequence[str] = (),
                 max_tasks_per_worker: int | None = 20_000, name: str = "pool", queue_timeout: float | None = None,
                 max_waiting: int | None = DEFAULT_MAX_WAITING, memory_limit_mb: int | None = None):
        if workers is None:
            workers = default_workers()
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        if queue_timeout is not None and queue_timeout < 0:
            raise ValueError(f"queue_timeout must be >= 0, got {queue_timeout}")
        if max_waiting is not None and max_waiting < 0:
            raise ValueError(f"max_waiting must be >= 0, got {max_waiting}")
        self.size = int(workers)
        self.timeout = float(timeout)
        self.queue_timeout = self.timeout if queue_timeout is None else float(queue_timeout)
        self.max_waiting = max_waiting
        self.memory_limit_mb = default_memory_limit_mb() if memory_limit_mb is None else memory_limit_mb
        self.preload = tuple(preload)
        self.max_tasks_per_worker = max_tasks_per_worker
        self.name = name
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []  # ready and free; LIFO keeps the warmest worker busy
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._all: set[_Worker] = set()
        self._slots = 0  # workers running or starting
        self._ready = 0  # workers that finished starting and are still in service
        self._ever_ready = False
        self._closed = False
        self._threads: ThreadPoolExecutor | None = None
        self._async_threads: ThreadPoolExecutor | None = None
        self._env = _worker_environment()
        self.restarts = 0  # workers replaced after a timeout, crash or MemoryError
        self.retries = 0  # tasks re-run after their worker crashed
        self.start_failures = 0
        _LIVE_POOLS.add(self)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> ProcessPool:
        """Start every worker now (they import ``preload`` in the background)."""
        with self._lock:
            self._check_open()
            while self._slots < self.size:
                self._start_worker_locked()
        return self

    def wait_ready(self, timeout: float = _STARTUP_TIMEOUT) -> bool:
        """Block until at least one worker is ready (benchmarks, warm-ups); ``False`` on timeout."""
        self.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._ever_ready or self._closed:
                    return self._ever_ready
            time.sleep(0.01)
        return False

    def close(self) -> None:
        """Stop all workers; later calls raise ``PoolClosed``. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = list(self._all)
            self._all.clear()
            self._idle.clear()
            waiters = list(self._waiters)
            self._waiters.clear()
        for waiter in waiters:
            waiter.event.set()
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

    @property
    def ready_workers(self) -> int:
        """Workers that finished starting and are in service (idle or running a task)."""
        return self._ready

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (fault injection, leak checks)."""
        with self._lock:
            return [w.pid for w in self._all]

    def _disown(self) -> None:
        """In a forked child: mark closed and drop the parent's workers without touching them."""
        self._lock = threading.Lock()
        self._closed = True
        self._all = set()
        self._idle = []
        self._waiters = collections.deque()
        self._slots = self._ready = 0
        self._threads = self._async_threads = None

    def __enter__(self) -> ProcessPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise PoolClosed(f"process pool {self.name!r} is closed")

    # ------------------------------------------------------------------ workers
    def _start_worker_locked(self) -> None:
        """Take a slot and bring a worker up on a helper thread; it joins the pool once ready."""
        self._slots += 1
        threading.Thread(target=self._bring_up, name=f"{self.name}-start", daemon=True).start()

    def _bring_up(self) -> None:
        error = ""
        attempt = failures = 0
        # A worker that exits by itself while starting (a broken preload, a bad interpreter) is
        # retried once; one killed by a signal (the OOM killer, an operator) up to five times.
        while failures < 2 and attempt < 5:
            attempt += 1
            if self._closed:
                break
            try:
                worker = _Worker(self.preload, self._env, self.memory_limit_mb)
            except OSError as exc:
                error = f"cannot start a worker process: {exc}"
                failures += 1
                time.sleep(0.05)
                continue
            with self._lock:
                if self._closed:
                    break
                self._all.add(worker)
            if worker.wait_ready(_STARTUP_TIMEOUT):
                with self._lock:
                    if not self._closed:
                        self._ever_ready = True
                        self._ready += 1
                        self._hand_over_locked(worker)
                        return
                worker.kill()
                return
            if self._closed:  # close() stopped it while it was starting
                worker.kill()
                return
            with self._lock:
                self._all.discard(worker)
            worker.kill()  # also reaps it, so the exit code is known
            code = worker.proc.returncode
            error = f"a worker process failed to start (exit code {code})"
            logger.warning("%s: %s (attempt %d)", self.name, error, attempt)
            if code is None or code >= 0:
                failures += 1
        with self._lock:
            if self._closed:
                return
            self._slots -= 1
            self.start_failures += 1
            logger.error("%s: %s", self.name, error or "a worker could not be started")
            if self._slots == 0:  # nothing will ever come free: fail the waiters now, not at their deadline
                for waiter in self._waiters:
                    waiter.failure = error or "worker processes fail to start"
                    waiter.event.set()
                self._waiters.clear()

    def _hand_over_locked(self, worker: _Worker) -> None:
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.worker = worker
            waiter.event.set()
        else:
            self._idle.append(worker)

    def _acquire(self, deadline: float | None, *, first: bool = False) -> _Worker:
        """A ready worker, in arrival order; ``_Busy`` past ``deadline`` or when too many wait."""
        with self._lock:
            self._check_open()
            if self._idle and not self._waiters:
                return self._idle.pop()
            if self._slots < self.size:
                self._start_worker_locked()
            if not first and self.max_waiting is not None and len(self._waiters) >= self.max_waiting:
                raise _Busy(f"{len(self._waiters)} calls are already waiting for a worker")
            waiter = _Waiter()
            if first:
                self._waiters.appendleft(waiter)
            else:
                self._waiters.append(waiter)
        cold_until = time.monotonic() + _STARTUP_TIMEOUT
        while True:
            now = time.monotonic()
            limit = None if deadline is None else deadline - now
            if limit is not None and self._ready == 0 and limit <= 0.1:
                # Every worker is (re)starting: the pool is starting, not busy; look again shortly.
                limit = 0.1 if now < cold_until else limit
            waiter.event.wait(None if limit is None else max(0.0, limit))
            with self._lock:
                if waiter.worker is not None:
                    return waiter.worker
                if waiter.failure is not None:
                    raise PoolFailure(f"process pool {self.name!r}: {waiter.failure}")
                self._check_open()
                now = time.monotonic()
                expired = deadline is not None and now >= deadline and (self._ready > 0 or now >= cold_until)
                if expired:
                    self._waiters.remove(waiter)
                    raise _Busy(f"no worker came free within {self.queue_timeout:g}s")

    def _release(self, worker: _Worker, healthy: bool) -> None:
        recycle = self.max_tasks_per_worker is not None and worker.tasks_done >= self.max_tasks_per_worker
        with self._lock:
            if self._closed:
                self._all.discard(worker)
                healthy = False
            elif healthy and not recycle and worker.alive():
                self._hand_over_locked(worker)
                return
            else:
                self._all.discard(worker)
                if not healthy:
                    self.restarts += 1
                self._slots -= 1
                self._ready -= 1
                self._start_worker_locked()
        if healthy:
            worker.stop()
        else:
            worker.kill()

    # ------------------------------------------------------------------ running tasks
    def call(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Outcome:
        """Run ``fn(*args)`` in a worker; the outcome says how it ended (queue deadline: ``queue_timeout``)."""
        return self._map(fn, [args], timeout, 1, time.monotonic() + self.queue_timeout)[0]

    def run(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
        """Run ``fn(*args)`` and return its value; raise ``TaskFailed`` otherwise."""
        outcome = self.call(fn, *args, timeout=timeout)
        if not outcome.ok:
            raise TaskFailed(outcome)
        return outcome.value

    def map(self, fn: Callable[..., Any], arg_tuples: Iterable[Sequence[Any]], *, timeout: float | None = None,
            chunksize: int | None = None, queue_timeout: float | None = None) -> list[Outcome]:
        """Run ``fn(*args)`` for every tuple; each task has its own limit of ``timeout`` seconds.

        Tasks travel in chunks (fewer pipe round trips) and results stream back one by one, so a
        task that overruns costs only itself: its worker is replaced and the rest of its chunk is
        resent. Chunks queue fairly with other callers; without ``queue_timeout`` they wait as long
        as it takes (a batch is throughput work).
        """
        deadline = None if queue_timeout is None else time.monotonic() + float(queue_timeout)
        return self._map(fn, arg_tuples, timeout, chunksize, deadline)

    def _map(self, fn: Callable[..., Any], arg_tuples: Iterable[Sequence[Any]], timeout: float | None,
             chunksize: int | None, deadline: float | None) -> list[Outcome]:
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
        run = _ChunkRun(self, blob, tasks, limit, deadline, results)
        if len(chunks) == 1 or self.size == 1:
            for chunk in chunks:
                run.chunk(chunk)
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
                    run.chunk(chunk)

            drivers = min(self.size, len(chunks))
            executor = self._executor()
            futures = [executor.submit(drain) for _ in range(drivers - 1)]
            drain()
            for future in futures:
                if not future.cancel():  # a helper that never started has nothing left to do
                    future.result()
        return [r if r is not None else Outcome(CRASHED, error="not run") for r in results]

    async def acall(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Outcome:
        """``call`` without blocking the running event loop; waiting for a helper thread counts as queueing."""
        deadline = time.monotonic() + self.queue_timeout
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(for_async=True),
                                          lambda: self._map(fn, [args], timeout, 1, deadline)[0])

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
                executor = ThreadPoolExecutor(max_workers=64 if for_async else max(4, 4 * self.size),
                                              thread_name_prefix=f"{self.name}-{'async' if for_async else 'driver'}")
                setattr(self, attr, executor)
            return executor


class _ChunkRun:
    """The tasks of one ``map``/``call``: results, and how often each task's worker crashed."""

    def __init__(self, pool: ProcessPool, blob: bytes, tasks: list[tuple], limit: float, deadline: float | None,
                 results: list[Outcome | None]):
        self.pool, self.blob, self.tasks, self.limit, self.deadline = pool, blob, tasks, limit, deadline
        self.results = results
        self.started = time.monotonic()
        self.crashes = [0] * len(tasks)

    def chunk(self, chunk: list[int]) -> None:
        pool = self.pool
        todo = list(chunk)
        retrying = False
        idle_deaths = 0
        while todo:
            try:
                worker = pool._acquire(self.deadline, first=retrying)
            except _Busy as exc:
                waited = time.monotonic() - self.started
                for i in todo:
                    self.results[i] = Outcome(BUSY, error=str(exc), waited=waited, attempts=self.crashes[i])
                return
            except PoolFailure as exc:
                for i in todo:
                    self.results[i] = Outcome(CRASHED, error=str(exc), attempts=self.crashes[i])
                return
            waited = time.monotonic() - self.started
            healthy = True
            try:
                try:
                    worker.send.send_bytes(pickle.dumps((self.blob, [self.tasks[i] for i in todo])))
                except (OSError, pickle.PicklingError, TypeError, AttributeError) as exc:
                    if isinstance(exc, OSError):  # the worker died while idle: not the task's doing
                        healthy = False
                        idle_deaths += 1
                        if idle_deaths <= 2:
                            retrying = True
                            continue
                        for i in todo:
                            self.results[i] = Outcome(CRASHED, error=f"workers keep dying: {exc}", waited=waited)
                        return
                    for i in todo:
                        self.results[i] = Outcome(ERROR, error=f"arguments cannot be sent to a worker: {exc}")
                    return
                healthy, retrying = self._collect(worker, todo, waited)
            finally:
                pool._release(worker, healthy)

    def _collect(self, worker: _Worker, todo: list[int], waited: float) -> tuple[bool, bool]:
        """Read results in order; returns (worker still healthy, the head task is to be retried first)."""
        pool = self.pool
        while todo:
            index = todo[0]
            started = time.monotonic()
            crash = ""
            try:
                arrived = worker.recv.poll(self.limit)
            except OSError as exc:  # ``close()`` on another thread closed this worker's pipes
                arrived, crash = True, f"worker died: {exc}"
            if not arrived:
                todo.pop(0)
                self.results[index] = Outcome(TIMEOUT, error=f"no result within {self.limit:g}s", seconds=self.limit,
                                              waited=waited, attempts=self.crashes[index] + 1)
                return False, False
            if not crash:
                try:
                    status, value, error, seconds = worker.recv.recv()
                except (EOFError, OSError, pickle.UnpicklingError) as exc:
                    crash = f"worker died: {exc or type(exc).__name__}"
            if crash:
                self.crashes[index] += 1
                if self.crashes[index] < 2 and not pool.closed:
                    with pool._lock:
                        pool.retries += 1
                    logger.warning("%s: worker %s died during a task; retrying it on a fresh worker",
                                   pool.name, worker.pid)
                    return False, True
                todo.pop(0)
                self.results[index] = Outcome(CRASHED, error=crash, seconds=time.monotonic() - started, waited=waited,
                                              attempts=self.crashes[index])
                return False, False
            worker.tasks_done += 1
            todo.pop(0)
            self.results[index] = Outcome(status, value, error, seconds, waited=waited,
                                          attempts=self.crashes[index] + 1)
            if status == ERROR and error.startswith("MemoryError"):
                return False, False  # a worker that ran out of memory may be in a bad state: replace it
        return True, False


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


def default_memory_limit_mb() -> int:
    """``AGENTR1_WORKER_MEMORY_MB`` if set (0 turns the limit off), else ``DEFAULT_MEMORY_LIMIT_MB``."""
    env = os.environ.get("AGENTR1_WORKER_MEMORY_MB")
    return max(0, int(env)) if env else DEFAULT_MEMORY_LIMIT_MB


def _worker_environment() -> dict[str, str]:
    """The parent's environment, with what workers need to import the suite as the parent does."""
    env = child_environment()
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


_SHARED: dict[str, ProcessPool] = {}
_SHARED_LOCK = threading.Lock()
_LIVE_POOLS: weakref.WeakSet[ProcessPool] = weakref.WeakSet()


def shared_pool(name: str, *, workers: int | None = None, timeout: float = 5.0, preload: Sequence[str] = (),
                **options: Any) -> ProcessPool:
    """The process-wide pool called ``name`` (created on first use; recreated if it was closed).

    The first caller's settings win; later callers pass per-call timeouts instead. ``options`` go
    to ``ProcessPool`` (``queue_timeout``, ``max_waiting``, ``memory_limit_mb``, ...).
    """
    with _SHARED_LOCK:
        pool = _SHARED.get(name)
        if pool is None or pool.closed:
            pool = ProcessPool(workers, timeout=timeout, preload=preload, name=name, **options)
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
def _limit_memory(megabytes: int) -> None:
    if megabytes <= 0:
        return
    try:
        import resource

        limit = megabytes << 20
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError) as exc:  # pragma: no cover - not Linux, or not allowed
        print(f"worker memory limit not set: {exc}", file=sys.stderr)


def _worker_main() -> None:
    """Entry point of a worker process: ``argv = [recv_fd, send_fd, preload, memory_limit_mb]``."""
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
    _limit_memory(int(sys.argv[4]) if len(sys.argv) > 4 else 0)  # after preload: imports map a lot of address space
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
            except Exception as exc:  # a task's failure is data for the caller (MemoryError included)
                message = (ERROR, None, f"{type(exc).__name__}: {exc}", time.monotonic() - started)
            try:
                send.send(message)
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                send.send((ERROR, None, f"result cannot be sent back: {exc}", message[3]))
            except OSError:
                return
