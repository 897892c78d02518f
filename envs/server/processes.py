"""Running the server: in this process, or as ``--processes N`` workers that share one port.

Python steps envs on one core per process, so a server that should use a machine's cores runs one
worker process per core. Each worker listens on the same port with ``SO_REUSEPORT``, and Linux
spreads new connections evenly over them; a session lives in the worker that accepted it. The
workers share a ``WorkerTable`` (the session cap, counts, heartbeats), so the cap, ``/health`` and
``/agentr1/status`` hold for the whole server, and each has a private Unix socket on which the
others relay requests for its MCP sessions (``envs.server.peers``).

The supervisor (the process ``serve`` started) starts the workers, prints the address once all
listen, restarts a worker that dies (its row is cleared: its sessions died with it; restarts back
off up to 30 s), and on SIGTERM/SIGINT stops every worker gracefully (each closes its sessions,
telling the clients) and exits 0. Workers die with the supervisor, even when it is SIGKILLed.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn

from envs.core.cli import setup_logging
from envs.core.logs import RateLimitedLog, rate_limit_handlers
from envs.server.app import ServerConfig, create_app
from envs.server.peers import Peers
from envs.server.table import WorkerTable

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 300.0  # a worker builds its envs (datasets, indexes) before it listens
STOP_TIMEOUT_S = 15.0  # graceful shutdown takes up to uvicorn's 5 s, plus closing sessions
MAX_RESTART_DELAY_S = 30.0


def available_cpus() -> int:
    """The cores this process may run on (its affinity mask, e.g. a container's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def can_share_a_port() -> bool:
    """Whether the kernel balances connections over ``SO_REUSEPORT`` listeners (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


@dataclass(frozen=True)
class ServeSpec:
    """What ``serve`` was asked for: the envs, the limits, the address, the log level."""

    envs: dict[str, dict[str, Any]]
    config: ServerConfig
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "warning"

    def url(self, port: int) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port}"


def _bound_socket(host: str, port: int, *, share: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if share:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, counting the sessions open when a stop signal arrives."""

    def handle_exit(self, sig: int, frame: Any) -> None:
        if not self.should_exit:
            self.config.app.state.manager.note_shutdown()
        super().handle_exit(sig, frame)


def _uvicorn_server(app: Any, spec: ServeSpec) -> uvicorn.Server:
    server = _Server(uvicorn.Config(
        app, log_level=spec.log_level, lifespan="on", timeout_graceful_shutdown=5,
        ws_max_size=2 * spec.config.max_frame_chars + (1 << 20),  # beyond this the transport drops the connection
        ws_per_message_deflate=False, backlog=4096))
    # uvicorn has set up its loggers now: bound every handler, so no flood of requests floods the log.
    rate_limit_handlers(RateLimitedLog(), ("", "uvicorn"))
    return server


def _raise_descriptor_limit(wanted: int) -> None:
    """One descriptor per connection: lift the soft limit toward the hard one when the cap needs it."""
    try:
        import resource
    except ImportError:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            logger.warning("could not raise the descriptor limit to %d (it is %d)", target, soft)


# ---------------------------------------------------------------------------- one process
def serve_here(spec: ServeSpec) -> int:
    """The whole server in this process (``--processes 1``); returns the exit status."""
    setup_logging(spec.log_level)
    try:
        sock = _bound_socket(spec.host, spec.port, share=False)  # first: a taken port fails before envs load
    except OSError as exc:
        print(f"cannot serve: {spec.host}:{spec.port}: {exc}", file=sys.stderr)
        return 2
    try:
        app = create_app(spec.envs, spec.config)
    except Exception as exc:  # unknown id, bad kwargs, unservable env
        sock.close()
        print(f"cannot serve: {exc}", file=sys.stderr)
        return 2
    _raise_descriptor_limit(spec.config.max_sessions + 256)
    port = sock.getsockname()[1]
    server = _uvicorn_server(app, spec)
    url = spec.url(port)
    print(f"serving {', '.join(app.state.hosts)} on {url} (WebSocket {url.replace('http', 'ws', 1)}/ws), "
          "1 process", flush=True)

    def stopped(signum: int, _frame: Any) -> None:
        # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal: end with status 0.
        closed = app.state.manager.table.total("open_at_shutdown")
        print(f"stopped by {signal.Signals(signum).name}; closed {closed} open session(s)", flush=True)
        raise SystemExit(0)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stopped)
    server.run(sockets=[sock])
    return 0


# ---------------------------------------------------------------------------- workers
def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this worker when the supervisor dies, however it dies (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # it died before prctl took effect
        os._exit(1)


def _worker(spec: ServeSpec, index: int, port: int, table: WorkerTable, sockets: list[str], parent_pid: int,
            report: multiprocessing.connection.Connection) -> None:
    """One worker process: build the app, listen on the shared port and on its own socket, serve."""
    _die_with_parent(parent_pid)
    setup_logging(spec.log_level)
    try:
        app = create_app(spec.envs, spec.config, table=table, index=index, peers=Peers(index, sockets))
    except Exception as exc:
        report.send(("error", f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc)))
        sys.exit(2)
    _raise_descriptor_limit(spec.config.max_sessions + 256)
    shared = _bound_socket(spec.host, port, share=True)
    private = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(sockets[index]):  # left by this worker's previous life
        os.unlink(sockets[index])
    private.bind(sockets[index])
    server = _uvicorn_server(app, spec)

    def say_ready() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.02)
        if server.started:
            report.send(("ready", os.getpid()))

    def stopped(_signum: int, _frame: Any) -> None:
        # uvicorn re-raises the stop signal after its graceful shutdown: exit normally, running finalizers.
        raise SystemExit(0)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stopped)
    threading.Thread(target=say_ready, daemon=True).start()
    server.run(sockets=[shared, private])


class Supervisor:
    """Starts, watches, restarts and stops the worker processes of one server."""

    def __init__(self, spec: ServeSpec, processes: int):
        self.spec = spec
        self.processes = processes
        self.ctx = multiprocessing.get_context("spawn")
        self.table = WorkerTable(processes, self.ctx)
        self.rundir = tempfile.mkdtemp(prefix="agentr1-serve-")
        self.sockets = [os.path.join(self.rundir, f"w{i}.sock") for i in range(processes)]
        self.procs: list[Any] = [None] * processes
        self.reports: list[Any] = [None] * processes
        self.started_at = [0.0] * processes
        self.quick_deaths = [0] * processes  # deaths in a row within a minute of starting, per worker
        self.restart_at: dict[int, float] = {}
        self.stop_signal: int | None = None
        self.port = 0
        self._wakeup, self._wakeup_writer = socket.socketpair()  # a signal writes a byte: waits end at once
        self._wakeup.setblocking(False)
        self._wakeup_writer.setblocking(False)

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; the exit status (2 if the envs cannot be served)."""
        setup_logging(self.spec.log_level)
        try:
            if self.spec.port:  # a plain bind fails if anything listens there, even another SO_REUSEPORT server
                _bound_socket(self.spec.host, self.spec.port, share=False).close()
            # Held, bound but not listening, for the server's life: it reserves the port (and picks
            # one for --port 0); the workers' listening sockets join it with SO_REUSEPORT.
            reserved = _bound_socket(self.spec.host, self.spec.port, share=True)
        except OSError as exc:
            print(f"cannot serve: {self.spec.host}:{self.spec.port}: {exc}", file=sys.stderr)
            return 2
        self.port = reserved.getsockname()[1]
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        previous_wakeup = signal.set_wakeup_fd(self._wakeup_writer.fileno())
        try:
            for i in range(self.processes):
                self._start(i)
            failure = self._wait_ready()
            if failure is not None:
                print(f"cannot serve: {failure}", file=sys.stderr)
                self._stop_all()
                return 2
            url = self.spec.url(self.port)
            print(f"serving {', '.join(self.spec.envs)} on {url} (WebSocket {url.replace('http', 'ws', 1)}/ws), "
                  f"{self.processes} processes", flush=True)
            while self.stop_signal is None:
                self._watch()
            closed = self._stop_all()
            print(f"stopped by {signal.Signals(self.stop_signal).name}; closed {closed} open session(s)", flush=True)
            return 0
        finally:
            signal.set_wakeup_fd(previous_wakeup)
            self._wakeup.close()
            self._wakeup_writer.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            reserved.close()
            shutil.rmtree(self.rundir, ignore_errors=True)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.stop_signal = signum

    def _start(self, index: int) -> None:
        receive, send = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(target=_worker, name=f"agentr1-serve-w{index}", daemon=False,
                                args=(self.spec, index, self.port, self.table, self.sockets, os.getpid(), send))
        proc.start()
        send.close()
        self.procs[index], self.reports[index], self.started_at[index] = proc, receive, time.monotonic()

    def _wait_ready(self) -> str | None:
        """``None`` once every worker listens; else why one cannot."""
        deadline = time.monotonic() + START_TIMEOUT_S
        waiting = set(range(self.processes))
        while waiting:
            if self.stop_signal is not None:
                return f"stopped by {signal.Signals(self.stop_signal).name} while starting"
            if time.monotonic() > deadline:
                return f"workers {sorted(waiting)} did not start in {START_TIMEOUT_S:.0f} s"
            ready = self._wait([self.reports[i] for i in waiting])
            for i in list(waiting):
                if self.reports[i] not in ready:
                    continue
                try:
                    kind, detail = self.reports[i].recv()
                except EOFError:
                    self.procs[i].join(5)
                    return f"worker {i} exited with status {self.procs[i].exitcode} before it listened"
                if kind == "error":
                    return str(detail)
                waiting.discard(i)
        return None

    def _wait(self, objects: list[Any]) -> list[Any]:
        """``multiprocessing.connection.wait`` for up to 0.5 s, cut short by a signal."""
        ready = multiprocessing.connection.wait([self._wakeup, *objects], timeout=0.5)
        if self._wakeup in ready:
            with contextlib.suppress(BlockingIOError):
                self._wakeup.recv(4096)
        return ready

    def _watch(self) -> None:
        """Wait a little for a worker to exit; restart the dead ones when their back-off is over."""
        alive = [p.sentinel for p in self.procs if p is not None and p.is_alive()]
        self._wait(alive)
        now = time.monotonic()
        for i, proc in enumerate(self.procs):
            if self.stop_signal is not None:
                return
            if proc is not None and not proc.is_alive():
                proc.join()
                ran = now - self.started_at[i]
                # At once, unless it keeps dying young: then after 1, 2, 4, ... 30 s.
                self.quick_deaths[i] = self.quick_deaths[i] + 1 if ran < 60 else 0
                delay = 0.0 if self.quick_deaths[i] <= 1 else min(2.0 ** (self.quick_deaths[i] - 2), MAX_RESTART_DELAY_S)
                logger.warning("worker %d (pid %s) exited with status %s after %.0f s, its %d session(s) lost; "
                               "restarting it in %.0f s", i, proc.pid, proc.exitcode, ran,
                               self.table.get(i, "sessions"), delay)
                self.table.clear(i)
                self.procs[i] = None
                self.restart_at[i] = now + delay
        for i, when in list(self.restart_at.items()):
            if now >= when:
                del self.restart_at[i]
                self.table.add(i, "restarts")
                self._start(i)

    def _stop_all(self) -> int:
        """SIGTERM every worker, wait for their graceful shutdown (then SIGKILL); the sessions they closed."""
        running = [p for p in self.procs if p is not None and p.is_alive()]
        for proc in running:
            proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in running:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                logger.warning("worker pid %s did not stop in %.0f s; killing it", proc.pid, STOP_TIMEOUT_S)
                proc.kill()
                proc.join()
        return self.table.total("open_at_shutdown")


def serve(spec: ServeSpec, processes: int) -> int:
    """Serve ``spec`` with ``processes`` worker processes (1: in this process); the exit status."""
    if processes < 1:
        print(f"cannot serve: --processes must be at least 1, got {processes}", file=sys.stderr)
        return 2
    if processes == 1:
        return serve_here(spec)
    if not can_share_a_port():
        print("cannot serve: --processes > 1 needs Linux (SO_REUSEPORT); run one server per port instead",
              file=sys.stderr)
        return 2
    return Supervisor(spec, processes).run()
