"""The program a local sandbox runs: a supervisor that runs model-written code in kernel processes.

Standard library only, and nothing from this project: it is started as
``python -s -c <this file's source> <config JSON>`` inside a sandbox that cannot see the project.

Roles, in one process tree:

* the **supervisor** (this program's main loop) reads requests from the owner on ``req_fd`` and
  answers on ``resp_fd``, one length-prefixed JSON frame each. It is a child subreaper, so every
  process the code starts stays its descendant even after a double fork or ``setsid``; after each
  call it kills all of them but a persistent kernel. When it loses its owner (``PR_SET_PDEATHSIG``)
  or its request pipe closes, it kills every descendant and exits.
* a **kernel** runs the code. It is forked from the supervisor (fast: no interpreter start, and the
  modules in ``preload`` are already imported; a kernel is forked ahead of each call), drops
  privileges where the supervisor holds them (a root supervisor runs kernels as ``nobody`` in a user
  namespace of their own, which cannot create more), and sets its resource limits before any code
  runs. Fresh state: one kernel per call. Persistent state: one kernel per episode, replaced when it
  dies. The kernel's stdout and stderr are one pipe the supervisor reads: it keeps the head and the
  tail and stops a program that prints past the output limit. The code's result (the value of a
  final expression, a trimmed traceback) comes back on a second pipe.

Limits the supervisor enforces per call: wall time (a persistent kernel first gets an exception, so
its variables survive a loop that listens; fresh kernels are killed), output bytes, and leftover
processes. The kernel's rlimits enforce CPU time (an exception at the soft limit, SIGKILL one second
later), address space, file size, processes and open files.
"""

from __future__ import annotations

import ast
import builtins
import ctypes
import errno
import io
import json
import linecache
import math
import os
import resource
import select
import signal
import struct
import sys
import time
import traceback

_HEADER = struct.Struct(">I")
MAX_FRAME = 64 << 20
CLONE_NEWUSER = 0x10000000
PR_SET_PDEATHSIG, PR_SET_KEEPCAPS, PR_SET_NO_NEW_PRIVS, PR_SET_CHILD_SUBREAPER = 1, 8, 38, 36
CAP_DAC_READ_SEARCH = 2
CELL = "<cell>"
VALUE_MAX_CHARS = 100_000
TRACEBACK_MAX_FRAMES = 6
INTERRUPT_GRACE_S = 1.0


# ---------------------------------------------------------------------------- framing
def send_frame(fd: int, payload: dict) -> None:
    data = json.dumps(payload, ensure_ascii=False).encode("utf-8", "surrogatepass")
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def recv_frame(fd: int) -> dict | None:
    """The next frame on a blocking fd; ``None`` at end of file or on a broken frame."""
    header = _read_exactly(fd, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        return None
    body = _read_exactly(fd, size)
    if body is None:
        return None
    try:
        payload = json.loads(body.decode("utf-8", "surrogatepass"))
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        try:
            chunk = os.read(fd, left)
        except InterruptedError:
            continue
        except OSError:
            return None
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class FrameReader:
    """Frames from a non-blocking fd, read piecewise: ``feed`` the bytes, ``pop`` complete frames."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self.buffer += data

    def pop(self) -> dict | None:
        if len(self.buffer) < _HEADER.size:
            return None
        (size,) = _HEADER.unpack(bytes(self.buffer[:_HEADER.size]))
        if size > MAX_FRAME:
            self.buffer.clear()
            return {"status": "error", "error": "the program wrote to the sandbox's result channel"}
        if len(self.buffer) < _HEADER.size + size:
            return None
        body = bytes(self.buffer[_HEADER.size:_HEADER.size + size])
        del self.buffer[:_HEADER.size + size]
        try:
            payload = json.loads(body.decode("utf-8", "surrogatepass"))
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return {"status": "error", "error": "the program wrote to the sandbox's result channel"}
        return payload


# ---------------------------------------------------------------------------- process helpers
_libc = None


def libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def prctl(option: int, value: int) -> int:
    return libc().prctl(option, value, 0, 0, 0)


def process_table() -> dict[int, tuple[int, int]]:
    """``pid -> (parent pid, tasks)`` for every process this /proc shows."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        try:
            table[int(name)] = (int(fields[1]), int(fields[17]))
        except (IndexError, ValueError):
            continue
    return table


def descendants(root: int) -> list[int]:
    table = process_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, stack = [], list(children.get(root, ()))
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, ()))
    return found


def kill_descendants(keep: frozenset = frozenset()) -> int:
    """SIGKILL every descendant of this process except ``keep`` (their own children die too); reap
    them. Repeats until none is left, so processes forked during the sweep are caught next round."""
    me, killed = os.getpid(), 0
    for _ in range(200):
        victims = [pid for pid in descendants(me) if pid not in keep]
        if not victims:
            break
        for pid in victims:
            try:
                os.kill(pid, signal.SIGSTOP)  # stop first: a stopped process cannot fork again
            except OSError:
                pass
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
        reap()
    reap()
    return killed


def remove_tree(path: str) -> bool:
    """Delete a file or a tree the code left, whatever permissions it set on it; whether it is gone."""
    import shutil

    if os.path.isdir(path) and not os.path.islink(path):
        stack = [path]
        while stack:  # open every directory up first (top-down): a chmod 000 inside stops rmtree
            directory = stack.pop()
            try:
                os.chmod(directory, 0o700)
                with os.scandir(directory) as entries:
                    stack.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))
            except OSError:
                continue
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except OSError:
            pass
    return not os.path.lexists(path)


def reap() -> dict[int, int]:
    """Collect exited children (the supervisor adopts orphans); ``pid -> wait status``."""
    statuses = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return statuses
        if pid == 0:
            return statuses
        statuses[pid] = status


# ---------------------------------------------------------------------------- the kernel
class Interrupted(BaseException):
    """Raised in the code when a limit is reached: it stops the code, not the kernel."""


def _raise_interrupt(signum, frame):
    if signum == signal.SIGXCPU:
        raise Interrupted("CPU time limit reached")
    raise Interrupted("time limit reached")


def drop_privileges(config: dict) -> bool:
    """Run as an unprivileged user, in a user namespace of this kernel's own that cannot create more
    (so the process limit counts only this kernel's processes, and a nested namespace cannot mount a
    memory-backed filesystem), with no capabilities and no way to gain any. Returns whether the
    kernel got its own user namespace."""
    uid = config.get("drop_uid")
    if uid is not None and os.getuid() == 0:
        gid = config.get("drop_gid", uid)
        keep_read = bool(config.get("keep_read_capability"))
        if keep_read:
            prctl(PR_SET_KEEPCAPS, 1)
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        if keep_read:  # the fallback's interpreter may live where nobody can read (pyenv under /root)
            _set_capabilities(1 << CAP_DAC_READ_SEARCH)
    own_namespace = bool(config.get("new_userns")) and libc().unshare(CLONE_NEWUSER) == 0
    if own_namespace:
        try:
            with open("/proc/sys/user/max_user_namespaces", "w") as f:
                f.write("0")
        except OSError:
            pass
        _set_capabilities(0)
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    return own_namespace


def _set_capabilities(mask: int) -> None:
    """Make ``mask`` (bits of the low 32 capabilities) the effective and permitted set; 0 drops all."""
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    header, data = Header(0x20080522, 0), (Data * 2)()
    data[0].effective = data[0].permitted = mask
    libc().capset(ctypes.byref(header), data)


def tasks_of_user(uid: int) -> int:
    """Tasks (threads included, as RLIMIT_NPROC counts them) of ``uid`` visible here."""
    count = 0
    for pid in process_table():
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    stat = f.read()
                count += int(stat[stat.rfind(b")") + 2:].split()[17])
        except (OSError, ValueError, IndexError):
            continue
    return count


def set_limits(limits: dict, own_namespace: bool) -> None:
    def setrlimit(kind: int, soft: int, hard: int | None = None) -> None:
        hard = soft if hard is None else hard
        _, current_hard = resource.getrlimit(kind)
        if current_hard != resource.RLIM_INFINITY:  # a limit can only go down
            soft, hard = (current_hard if v == resource.RLIM_INFINITY else min(v, current_hard) for v in (soft, hard))
        try:
            resource.setrlimit(kind, (soft, hard))
        except (ValueError, OSError):
            pass

    setrlimit(resource.RLIMIT_CORE, 0)
    if limits.get("processes"):
        # RLIMIT_NPROC counts the tasks of the real uid: in the kernel's own user namespace that is the
        # kernel alone; elsewhere every task of the user (all of them, in the fallback), so allow that
        # many more.
        base = 1 if own_namespace else int(limits.get("user_tasks") or 0)
        setrlimit(resource.RLIMIT_NPROC, base + int(limits["processes"]))
    if limits.get("memory_mb"):
        setrlimit(resource.RLIMIT_AS, int(limits["memory_mb"]) << 20)
    if limits.get("file_size_mb"):
        setrlimit(resource.RLIMIT_FSIZE, int(limits["file_size_mb"]) << 20)
    if limits.get("open_files"):
        setrlimit(resource.RLIMIT_NOFILE, int(limits["open_files"]))
    if limits.get("cpu_s"):
        # A fresh kernel is killed a second after its soft limit. A persistent kernel's soft limit moves
        # with each call (``_set_call_cpu``) and its hard limit is the episode's (none without a budget).
        used = _cpu_used()
        soft = math.ceil(used + limits["cpu_s"])
        total = limits.get("cpu_total_s")
        hard = soft + 1 if total is None else math.ceil(used + total) + 1 if total else resource.RLIM_INFINITY
        setrlimit(resource.RLIMIT_CPU, soft, hard)


def _cpu_used() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _set_call_cpu(limits: dict) -> None:
    """A persistent kernel's soft CPU limit moves with each call (its hard limit is the episode's)."""
    if not limits.get("cpu_s"):
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    wanted = math.ceil(_cpu_used() + limits["cpu_s"])
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (wanted, hard))
    except (ValueError, OSError):
        pass


def _std_stream(fd: int) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
                            write_through=True)


def kernel_main(config: dict, req_fd: int, res_fd: int, out_fd: int, supervisor: int) -> None:
    """The kernel's life: set up, then run one request (fresh) or every request (persistent)."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_DFL)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != supervisor:
        os._exit(1)
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    saved_out = os.dup(out_fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    keep = {0, 1, 2, req_fd, res_fd, saved_out}
    for name in os.listdir("/proc/self/fd"):
        if int(name) not in keep:
            try:
                os.close(int(name))
            except OSError:
                pass
    for fd in (req_fd, res_fd, saved_out):
        os.set_inheritable(fd, False)
    own_namespace = drop_privileges(config)
    limits = dict(config["limits"])
    if config.get("persistent"):
        limits["cpu_total_s"] = limits.get("cpu_episode_s") or 0
    set_limits(limits, own_namespace)
    os.chdir(config["cwd"])
    os.environ.clear()
    os.environ.update(config["env"])
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    send_frame(res_fd, {"setup": "ok"})  # before any code runs: a failure up to here is the sandbox's
    while True:
        _interrupts(signal.SIG_IGN)
        request = recv_frame(req_fd)
        if request is None:
            os._exit(0)
        _set_call_cpu(limits)
        os.dup2(saved_out, 1)  # the last call may have closed or replaced them
        os.dup2(saved_out, 2)
        sys.stdout, sys.stderr, sys.stdin = _std_stream(1), _std_stream(2), open(os.devnull)
        started = _cpu_used()
        _interrupts(_raise_interrupt)
        result = execute(request.get("code", ""), namespace)
        _interrupts(signal.SIG_IGN)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        result["cpu_s"] = round(_cpu_used() - started, 4)
        try:
            send_frame(res_fd, result)
        except OSError:
            os._exit(1)


def _interrupts(handler) -> None:
    """Limits interrupt the code (an exception in it), never the kernel's own bookkeeping."""
    signal.signal(signal.SIGXCPU, handler)
    signal.signal(signal.SIGUSR1, handler)


def execute(code: str, namespace: dict) -> dict:
    """Run ``code`` like a notebook cell: statements, then the value of a final expression."""
    lines = code.splitlines(keepends=True)
    linecache.cache[CELL] = (len(code), None, lines, CELL)
    try:
        try:
            tree = ast.parse(code, CELL, "exec")
        except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
            return {"status": "error", "error": format_error(exc)}
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        exec(compile(tree, CELL, "exec"), namespace)  # noqa: S102 - running model code is this sandbox's purpose
        value = None if last is None else eval(compile(last, CELL, "eval"), namespace)  # noqa: S307
    except Interrupted as exc:
        return {"status": "interrupted", "error": format_error(exc), "reason": str(exc)}
    except SystemExit as exc:
        if exc.code in (None, 0):
            return {"status": "ok", "value": None}
        return {"status": "error", "error": f"SystemExit: {exc.code}"}
    except BaseException as exc:  # noqa: BLE001 - every failure of the code is its result
        try:
            return {"status": "error", "error": format_error(exc)}
        except BaseException:  # noqa: BLE001 - formatting itself can fail (RecursionError, MemoryError)
            return {"status": "error", "error": type(exc).__name__}
    if value is None:
        return {"status": "ok", "value": None}
    namespace["_"] = value
    return {"status": "ok", "value": safe_repr(value)}


def safe_repr(value) -> str:
    try:
        text = repr(value)
    except ValueError as exc:  # an int with more digits than Python prints
        if isinstance(value, int):
            return f"<an integer with about {int(value.bit_length() * 0.30103) + 1} digits, too long to print>"
        text = f"<repr failed: {exc}>"
    except BaseException as exc:  # noqa: BLE001 - the object's own __repr__ is model code
        text = f"<repr failed: {type(exc).__name__}: {exc}>"
    if len(text) > VALUE_MAX_CHARS:
        text = text[:VALUE_MAX_CHARS]
    return text


def format_error(exc: BaseException) -> str:
    """The traceback of the code's own frames (the kernel's are dropped), at most a few frames deep."""
    info = traceback.TracebackException.from_exception(exc, limit=-50)
    info.stack = traceback.StackSummary.from_list([f for f in info.stack if f.filename == CELL][-TRACEBACK_MAX_FRAMES:])
    info.__cause__ = info.__context__ = None
    return "".join(info.format()).rstrip()


# ---------------------------------------------------------------------------- the supervisor
class Kernel:
    def __init__(self, pid: int, req_fd: int, res_fd: int, out_fd: int):
        self.pid, self.req_fd, self.res_fd, self.out_fd = pid, req_fd, res_fd, out_fd
        self.status: int | None = None
        self.cpu_s = 0.0  # CPU time of the exited kernel (from wait4)
        self.completed = 0  # calls it answered: the state a persistent kernel holds
        self.ready = False  # it reported that its setup (privileges, limits) succeeded
        self.reader = FrameReader()

    def _waited(self, status: int, usage) -> None:
        self.status = status
        self.cpu_s = usage.ru_utime + usage.ru_stime

    def alive(self) -> bool:
        if self.status is not None:
            return False
        try:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:
            self.status = 0
            return False
        if pid:
            self._waited(status, usage)
            return False
        return True

    def kill(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                _, status, usage = os.wait4(self.pid, 0)
                self._waited(status, usage)
            except ChildProcessError:
                self.status = 0
        for fd in (self.req_fd, self.res_fd, self.out_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.req_fd = self.res_fd = self.out_fd = -1


class Output:
    """The head and tail of what the code printed, and how much it printed in all."""

    def __init__(self, keep: int):
        self.keep, self.head, self.tail, self.total = keep, bytearray(), bytearray(), 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.keep - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > self.keep:
                del self.tail[:len(self.tail) - self.keep]

    def result(self) -> dict:
        return {"stdout_head": self.head.decode("utf-8", "replace"), "stdout_tail": self.tail.decode("utf-8", "replace"),
                "stdout_bytes": self.total, "stdout_complete": self.total <= len(self.head) + len(self.tail)}


class Supervisor:
    def __init__(self, config: dict):
        self.config = config
        self.limits = config["limits"]
        self.req_fd, self.resp_fd = int(config["req_fd"]), int(config["resp_fd"])
        self.persistent = bool(config.get("persistent"))
        self.kernel: Kernel | None = None

    def serve(self) -> None:
        prctl(PR_SET_CHILD_SUBREAPER, 1)
        signal.signal(signal.SIGTERM, self._terminate)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        owner = self.config.get("owner_pid")
        if owner:  # without a pid namespace to die with, follow the owner out
            prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != owner:
                self._terminate()
        os.set_inheritable(self.req_fd, False)
        os.set_inheritable(self.resp_fd, False)
        # Where kernels share a process count with the rest of their user's processes, their process
        # limit counts those too (counted once: a scan of every process is slow in the fallback).
        uid = self.config.get("drop_uid")
        self.limits["user_tasks"] = tasks_of_user(uid if uid is not None and os.getuid() == 0 else os.getuid())
        send_frame(self.resp_fd, {"ready": True, "pid": os.getpid(), "uid": os.getuid(), "python": sys.version.split()[0],
                                  "preload_errors": self._preload()})
        while True:
            self._prepare_kernel()
            request = recv_frame(self.req_fd)
            if request is None:
                self._terminate()
            try:
                response = self.reset() if request.get("op") == "reset" else self.run(request)
            except OSError as exc:  # fork refused, pipes exhausted: the sandbox cannot run this call
                self._discard_kernel()
                kill_descendants()
                response = {"status": "unavailable", "error": f"the sandbox could not run the code: {exc}"}
            send_frame(self.resp_fd, response)

    def _preload(self) -> list[str]:
        """Import the configured modules once: every kernel is forked with them loaded (``import
        sympy`` in a fresh call then costs nothing), yet each call still starts from clean variables."""
        import importlib

        errors = []
        for name in self.config.get("preload") or ():
            try:
                importlib.import_module(name)
            except Exception as exc:  # noqa: BLE001 - reported to the owner, never fatal
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
        return errors

    def _prepare_kernel(self) -> None:
        """Fork the next call's kernel while the owner is busy elsewhere (the model is generating)."""
        if self.kernel is None:
            try:
                self.kernel = self.spawn()
            except OSError:
                self.kernel = None  # the call will try again, and report what stops it

    def _terminate(self, *_: object) -> None:
        kill_descendants()
        os._exit(0)

    def reset(self) -> dict:
        """A new episode in the same sandbox: no kernel, no process of the code, an empty scratch directory."""
        self._discard_kernel()
        kill_descendants()
        pid = os.fork()
        if pid == 0:  # the files are the kernels' user's: delete them as that user
            try:
                drop_privileges(self.config)
                os._exit(0 if all([remove_tree(e.path) for e in os.scandir(self.config["cwd"])]) else 1)
            finally:
                os._exit(2)
        _, status = os.waitpid(pid, 0)
        wiped = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        return {"reset": wiped, "error": None if wiped else "the scratch directory could not be emptied"}

    def spawn(self) -> Kernel:
        k_req_r, k_req_w = os.pipe()
        k_res_r, k_res_w = os.pipe()
        out_r, out_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                for fd in (k_req_w, k_res_r, out_r, self.req_fd, self.resp_fd):
                    os.close(fd)
                kernel_main(self.config, k_req_r, k_res_w, out_w, os.getppid())
            except BaseException:  # noqa: BLE001 - a kernel that cannot set up tells why, then exits
                traceback.print_exc()
            finally:
                os._exit(1)
        for fd in (k_req_r, k_res_w, out_w):
            os.close(fd)
        for fd in (k_res_r, out_r):
            os.set_blocking(fd, False)
        return Kernel(pid, k_req_w, k_res_r, out_r)

    def _discard_kernel(self) -> bool:
        """Kill the kernel; whether that lost state (a persistent kernel that had run code)."""
        kernel, self.kernel = self.kernel, None
        if kernel is None:
            return False
        kernel.kill()
        return self.persistent and kernel.completed > 0

    def run(self, request: dict) -> dict:
        state_lost = False
        if self.kernel is not None and not self.kernel.alive():
            state_lost = self._discard_kernel()  # it died between calls (a thread of the code ended it)
        if self.kernel is None:
            self.kernel = self.spawn()
        kernel = self.kernel
        wall = float(request.get("wall_s") or self.limits.get("wall_s") or 10.0)
        started = time.monotonic()
        try:
            send_frame(kernel.req_fd, {"code": request.get("code", "")})
        except OSError:
            pass  # the kernel died at start; its exit status says why
        result, output = self._collect(kernel, started + wall)
        result["seconds"] = round(time.monotonic() - started, 4)
        result.update(output.result())
        if result.get("responded"):
            kernel.completed += 1
        if not (self.persistent and result.pop("responded", False) and kernel.alive()):
            state_lost = self._discard_kernel() or state_lost
        kill_descendants(frozenset({self.kernel.pid}) if self.kernel else frozenset())
        result["state_lost"] = state_lost
        return result

    def _collect(self, kernel: Kernel, deadline: float) -> tuple[dict, Output]:
        """Read the kernel's output and result until it answers, dies, or overruns a limit."""
        output = Output(int(self.limits.get("keep_output_bytes") or 8192))
        stop_bytes = int(self.limits.get("stop_output_bytes") or 1 << 20)
        interrupted = False
        open_fds = {kernel.res_fd, kernel.out_fd}
        while kernel.res_fd in open_fds:
            now = time.monotonic()
            if now >= deadline:
                if self.persistent and not interrupted:  # an exception first: the variables may survive
                    interrupted, deadline = True, now + INTERRUPT_GRACE_S
                    try:
                        os.kill(kernel.pid, signal.SIGUSR1)
                    except OSError:
                        pass
                    continue
                kernel.kill()
                return {"status": "timeout"}, output
            try:
                ready, _, _ = select.select(list(open_fds), [], [], min(deadline - now, 0.5))
            except InterruptedError:
                continue
            for fd in ready:
                try:
                    data = os.read(fd, 1 << 16)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    open_fds.discard(fd)
                elif fd == kernel.out_fd:
                    output.add(data)
                    if output.total > stop_bytes:
                        kernel.kill()
                        return {"status": "output_limit"}, output
                else:
                    kernel.reader.feed(data)
                    frame = kernel.reader.pop()
                    if frame is not None and frame.get("setup") == "ok" and not kernel.ready:
                        kernel.ready = True
                        frame = kernel.reader.pop()
                    if frame is not None:
                        self._drain(kernel, output)
                        if frame.get("status") == "interrupted":
                            frame["status"] = "timeout" if interrupted else "cpu_limit"
                        frame["responded"] = True
                        return frame, output
        self._drain(kernel, output)  # the kernel closed its result pipe: it is gone
        kernel.kill()
        if not kernel.ready:
            head = output.result()
            return {"status": "unavailable", "error": "the sandbox's kernel failed to start: "
                                                      + (head["stdout_head"] + head["stdout_tail"])[-2000:]}, Output(0)
        status = kernel.status or 0
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            cpu = float(self.limits.get("cpu_s") or 0)
            if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu and kernel.cpu_s >= cpu):
                return {"status": "cpu_limit"}, output
            name = signal.Signals(sig).name if sig in {s.value for s in signal.Signals} else str(sig)
            return {"status": "killed", "signal": name}, output
        return {"status": "exited", "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}, output

    @staticmethod
    def _drain(kernel: Kernel, output: Output) -> None:
        while True:
            try:
                data = os.read(kernel.out_fd, 1 << 16)
            except OSError:
                return
            if not data:
                return
            output.add(data)


def main(argv: list[str]) -> None:
    config = json.loads(argv[1])
    Supervisor(config).serve()


if __name__ == "__main__":
    main(sys.argv)
