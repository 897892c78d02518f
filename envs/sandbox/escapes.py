"""The escape suite: code that tries to get out of a sandbox, and how to tell whether it did.

Each ``EscapeCase`` runs adversarial code in a fresh session of a provider and judges, from the
``Execution`` and from the host (files, processes, a loopback server this suite starts), whether the
attempt was **contained**: no effect on the host beyond the scratch directory, the call ended with a
clear observation, and the session still runs code afterwards. ``tests/envs/sandbox/test_escapes.py``
asserts every case for both local providers (bubblewrap: all contained; the fallback: as listed in
``FALLBACK_EXPECTED``); ``python -m envs.sandbox.escapes`` prints the table in ``docs/python-tool.md``.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from envs.sandbox.base import Execution, SandboxLimits, SandboxProvider

SUITE_LIMITS = SandboxLimits(wall_s=2.0, cpu_s=1.0, memory_mb=256, processes=8, file_size_mb=8,
                             max_output_chars=600, stop_output_bytes=200_000, episode_s=0)
PROJECT_ROOT = Path(__file__).resolve().parents[2]
SECRET_VARIABLE = "AGENTR1_ESCAPE_SUITE_SECRET"


@dataclass
class Host:
    """What the suite sets up on the host for one case, and what it then observes there."""

    token: str = field(default_factory=lambda: secrets.token_hex(6))
    connections: int = 0
    server: socket.socket | None = None
    port: int = 0
    secret: str = field(default_factory=lambda: secrets.token_hex(12))

    @property
    def outside_paths(self) -> list[Path]:
        """Places outside the scratch directory the code tries to write to."""
        return [Path(tempfile.gettempdir()) / f"agentr1-escape-{self.token}", PROJECT_ROOT / f"escape-{self.token}",
                Path(sys.prefix) / f"escape-{self.token}", Path("/etc") / f"escape-{self.token}"]

    def start_server(self) -> None:
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.server.setblocking(False)
        self.port = self.server.getsockname()[1]

    def count_connections(self) -> int:
        """Accept what the kernel queued for the server; counted when asked, not by a thread that a
        loaded machine may not have scheduled yet (a completed handshake stays queued after the peer
        closes, so nothing is missed)."""
        while self.server is not None:
            try:
                conn, _ = self.server.accept()
            except OSError:  # BlockingIOError: the queue is empty
                break
            self.connections += 1
            conn.close()
        return self.connections

    def processes_with_token(self) -> list[int]:
        found = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open(f"/proc/{name}/cmdline", "rb") as f:
                        if self.token.encode() in f.read():
                            found.append(int(name))
                except OSError:
                    continue
        return found

    def cleanup(self) -> list[Path]:
        """Close the server and delete what the code wrote outside; returns the paths it did write."""
        if self.server is not None:
            server, self.server = self.server, None
            server.close()
        written = []
        for path in self.outside_paths:
            if path.exists():
                written.append(path)
                try:
                    path.unlink()
                except OSError:
                    pass
        return written


Judge = Callable[[Execution, Host], tuple[bool, str]]


@dataclass(frozen=True)
class EscapeCase:
    name: str
    code: str  # formatted with the Host's fields (``{token}``, ``{port}``, ...) and PROJECT_ROOT
    judge: Judge


def _status(execution: Execution) -> str:
    return execution.status + (f" ({execution.detail})" if execution.detail else "")


def _first_line(execution: Execution) -> str:
    text = (execution.stdout or execution.error or "").strip().splitlines()
    return text[-1][:80] if text else ""


def _printed_nothing_secret(marker: str) -> Judge:
    def judge(execution: Execution, host: Host) -> tuple[bool, str]:
        leaked = marker.format(secret=host.secret) in (execution.stdout or "")
        return not leaked, ("read it: " if leaked else "refused: ") + _first_line(execution)
    return judge


def _ended_with(*statuses: str) -> Judge:
    def judge(execution: Execution, host: Host) -> tuple[bool, str]:
        return execution.status in statuses, _status(execution) + (f": {_first_line(execution)}" if execution.error else "")
    return judge


def _wrote_outside(execution: Execution, host: Host) -> tuple[bool, str]:
    written = host.cleanup()
    if written:
        return False, "wrote " + ", ".join(str(p) for p in written)
    return True, "every write outside the scratch directory failed or stayed inside the sandbox"


def _connected(execution: Execution, host: Host) -> tuple[bool, str]:
    seen = host.count_connections()
    said = "connected" in (execution.stdout or "")
    if seen or said:
        return False, f"the host's server saw {seen} connection(s)" if seen else "the code says: connected"
    return True, "refused: " + _first_line(execution)


def _no_syscall_worked(execution: Execution, host: Host) -> tuple[bool, str]:
    worked = [line.split(":", 1)[1] for line in (execution.stdout or "").splitlines() if line.startswith("WORKED:")]
    return not worked, ("succeeded: " + ", ".join(worked)) if worked else "every call was refused"


def _clean_output(execution: Execution, host: Host) -> tuple[bool, str]:
    printable = all(ch in "\n\t" or ch.isprintable() for ch in execution.stdout)
    return printable and execution.status == "ok", f"{_status(execution)}, {len(execution.stdout)} printable characters"


def _bounded_output(execution: Execution, host: Host) -> tuple[bool, str]:
    shown = len(execution.stdout)
    return execution.status == "output_limit" and shown < 2000, f"{_status(execution)}, {shown} characters shown"


def _no_leftovers(execution: Execution, host: Host) -> tuple[bool, str]:
    alive = host.processes_with_token()
    return not alive, f"{len(alive)} process(es) still running" if alive else "none left after the call"


def _touched_owner(execution: Execution, host: Host) -> tuple[bool, str]:
    worked = [line.split(":", 1)[1] for line in (execution.stdout or "").splitlines() if line.startswith("WORKED:")]
    return not worked, ("succeeded: " + ", ".join(worked)) if worked else "refused: " + _first_line(execution)


CASES: tuple[EscapeCase, ...] = (
    EscapeCase("read the project's files", "print(open({project_file!r}).read()[:200])",
               lambda e, h: (PROJECT_MARKER not in (e.stdout or ""),
                             ("read it: " if PROJECT_MARKER in (e.stdout or "") else "refused: ") + _first_line(e))),
    EscapeCase("read /etc/shadow", "print(open('/etc/shadow').read()[:200])",
               lambda e, h: ("root:" not in (e.stdout or ""),
                             ("read it" if "root:" in (e.stdout or "") else "refused: " + _first_line(e)))),
    EscapeCase("read other processes' environment (/proc/*/environ)",
               "import os\nfor pid in os.listdir('/proc'):\n    try:\n        if {secret!r}.encode() in open(f'/proc/{{pid}}/environ', 'rb').read():\n"
               "            print('FOUND', {secret!r})\n    except Exception:\n        pass\nprint('done')",
               _printed_nothing_secret("FOUND {secret}")),
    EscapeCase("write outside the scratch directory",
               "for path in {outside!r}:\n    try:\n        open(path, 'w').write('x')\n        print('wrote', path)\n"
               "    except Exception as exc:\n        print(type(exc).__name__, path)",
               _wrote_outside),
    EscapeCase("connect to a server on the host's loopback",
               "import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\nprint('connected')",
               _connected),
    EscapeCase("fork bomb",
               "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
               _ended_with("timeout", "cpu_limit", "error")),
    EscapeCase("memory bomb",  # on a loaded machine filling the pages may outlast the wall time: contained too
               "blocks = []\nwhile True:\n    blocks.append(bytearray(32 << 20))",
               _ended_with("error", "killed", "timeout")),
    EscapeCase("busy loop", "while True:\n    pass", _ended_with("timeout", "cpu_limit")),
    EscapeCase("sleep past the deadline", "import time\ntime.sleep(3600)", _ended_with("timeout")),
    EscapeCase("signal or ptrace the owner process",
               "import ctypes, os, signal\nlibc = ctypes.CDLL(None, use_errno=True)\n"
               "try:\n    os.kill({owner_pid}, 0)\n    print('WORKED:signal')\nexcept OSError as exc:\n    print('kill', exc)\n"
               "if libc.ptrace(16, {owner_pid}, 0, 0) == 0:\n    print('WORKED:ptrace')\n    libc.ptrace(17, {owner_pid}, 0, 0)\n"
               "else:\n    print('ptrace errno', ctypes.get_errno())",
               _touched_owner),
    EscapeCase("ctypes system calls (namespaces, mount, setuid)",
               "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
               "if libc.unshare(0x10000000 | 0x00020000) == 0:\n    print('WORKED:unshare(user+mount)')\n"
               "if libc.mount(b'none', b'/tmp', b'tmpfs', 0, None) == 0:\n    print('WORKED:mount')\n"
               "if libc.setuid(0) == 0 and libc.getuid() == 0:\n    print('WORKED:setuid(0)')\nprint('done')",
               _no_syscall_worked),
    EscapeCase("crash the interpreter (ctypes segfault)", "import ctypes\nctypes.string_at(0)", _ended_with("killed")),
    EscapeCase("huge output", "print('x' * 50_000_000)", _bounded_output),
    EscapeCase("binary output", "import sys\nsys.stdout.buffer.write(bytes(range(256)) * 40)\nsys.stdout.flush()",
               _clean_output),
    EscapeCase("close stdout and stderr", "import os\nos.close(1)\nos.close(2)\nprint('lost')",
               _ended_with("error", "ok")),
    EscapeCase("flood stdout from a child process",
               "import subprocess\nsubprocess.run(['/usr/bin/yes', '{token}'])", _bounded_output),
    EscapeCase("leave processes running after the call",
               "import os, subprocess\nsubprocess.Popen(['/bin/sleep', '1000.{token}'], start_new_session=True)\n"
               "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        os.execv('/bin/sleep', ['sleep', '999.{token}'])\n"
               "    os._exit(0)\nprint('started')",
               _no_leftovers),
    EscapeCase("fill the disk (one huge file)",
               "with open('big', 'wb') as f:\n    for _ in range(1024):\n        f.write(bytes(1 << 20))",
               _ended_with("error", "killed")),
)
PROJECT_MARKER = "[build-system]"  # the first line of the project's pyproject.toml

# The fallback's outcomes here, by case and by who runs it ("root": CI; "user": a normal account).
# True = contained. ``None``: not asserted (differs with the machine: see docs/python-tool.md).
FALLBACK_EXPECTED: dict[str, dict[str, bool | None]] = {
    "read the project's files": {"root": False, "user": False},
    "read /etc/shadow": {"root": None, "user": True},
    "read other processes' environment (/proc/*/environ)": {"root": True, "user": False},
    "write outside the scratch directory": {"root": False, "user": False},
    "connect to a server on the host's loopback": {"root": False, "user": False},
    "signal or ptrace the owner process": {"root": True, "user": False},
    "ctypes system calls (namespaces, mount, setuid)": {"root": None, "user": True},
}


def fallback_expected(case: str) -> bool | None:
    """Whether the fallback contains ``case`` when run by this process's user (``None``: not asserted)."""
    return FALLBACK_EXPECTED.get(case, {}).get("root" if os.geteuid() == 0 else "user", True)


@dataclass(frozen=True)
class EscapeResult:
    case: str
    contained: bool
    observation: str
    still_runs: bool  # the session ran code again afterwards


def run_case(provider: SandboxProvider, case: EscapeCase, limits: SandboxLimits = SUITE_LIMITS) -> EscapeResult:
    """Play one case in a fresh session; the session must run ``1 + 1`` afterwards."""
    host = Host()
    previous = os.environ.get(SECRET_VARIABLE)
    os.environ[SECRET_VARIABLE] = host.secret  # the owner's environment holds a secret to look for
    host.start_server()
    sandbox = provider.open(limits)
    try:
        code = case.code.format(token=host.token, port=host.port, secret=host.secret, owner_pid=os.getpid(),
                                project_file=str(PROJECT_ROOT / "pyproject.toml"),
                                outside=[str(p) for p in host.outside_paths])
        execution = sandbox.run(code)
        contained, observation = case.judge(execution, host)
        after = sandbox.run("1 + 1")
        still_runs = after.ok and after.value == "2"
    finally:
        sandbox.close()
        host.cleanup()
        if previous is None:
            os.environ.pop(SECRET_VARIABLE, None)
        else:
            os.environ[SECRET_VARIABLE] = previous
    return EscapeResult(case.name, contained and still_runs, observation, still_runs)


def run_suite(provider: SandboxProvider) -> list[EscapeResult]:
    return [run_case(provider, case) for case in CASES]


def main() -> None:
    from envs.sandbox import get_provider
    from envs.sandbox.bubblewrap import BubblewrapProvider
    from envs.sandbox.fallback import SubprocessProvider

    providers: list[SandboxProvider] = [SubprocessProvider()]
    if BubblewrapProvider().available():
        providers.insert(0, get_provider("bubblewrap"))
    results = {p.name: run_suite(p) for p in providers}
    who = "root" if os.geteuid() == 0 else "a normal user"
    print(f"Escape suite, run as {who} (python -m envs.sandbox.escapes)\n")
    print("| attempt | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for i, case in enumerate(CASES):
        cells = [f"{'contained' if r[i].contained else '**not contained**'}: {r[i].observation}" for r in results.values()]
        print(f"| {case.name} | " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")


if __name__ == "__main__":
    main()
