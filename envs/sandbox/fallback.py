"""The fallback provider: a plain subprocess with resource limits and a scratch working directory.

Used only when bubblewrap cannot run here, with a warning, because it does not isolate: the code
sees the host's files, processes and network as the user it runs as. What it does do: the same
per-call limits as the sandbox (wall time, CPU time, address space, file size, processes, open
files, output), a scratch working directory deleted with the session, a clean environment, no
standard input, kernels as ``nobody`` when this process is root, and cleanup of every process the
code starts (the supervisor is a child subreaper, so double forks and ``setsid`` do not escape it,
and it kills them all when its owner dies). ``SubprocessProvider.unprotected`` lists what it does
not protect against; ``docs/python-tool.md`` has the escape suite's results for both providers.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, ClassVar

from envs.sandbox.local import LocalProvider, python_roots


class SubprocessProvider(LocalProvider):
    name: ClassVar[str] = "subprocess"
    weak: ClassVar[bool] = True
    isolation: ClassVar[str] = (
        "none (fallback): a subprocess with rlimits and a scratch working directory, as nobody when the host "
        "process is root, else as the host user")
    unprotected: ClassVar[tuple[str, ...]] = (
        "file reads: every file the sandbox user can read (the project, system files; as a normal user, your own "
        "files; as root with a Python installation only root can read, every file, /etc/shadow included)",
        "file writes: everywhere the sandbox user can write, not only the scratch directory "
        "(as a normal user: your home and the project)",
        "network: the host's network, its loopback services included",
        "other processes: it sees every process; as a normal user it can signal or trace your processes "
        "and read their environment (secrets) in /proc",
        "its own supervisor: as a normal user the code can kill it, and then the processes it started outlive the call",
        "kernel vulnerabilities and every system call (in that last root case also new user and mount namespaces, "
        "where a memory-backed file system escapes memory_mb)",
        "memory and CPU are limited per process (rlimits), not per sandbox; "
        "as a normal user the process limit counts all your processes",
    )

    def settings(self, scratch: Path) -> dict[str, Any]:
        drop = self.drop_to()
        # As root, kernels run as nobody. Where nobody cannot read the interpreter (pyenv under /root)
        # they keep one capability, to read any file, and so no user namespace of their own (which
        # would drop it): then the code can read every file and create namespaces. Otherwise (and as a
        # normal user) each kernel gets a user namespace that cannot create more, so the process limit
        # counts only its own processes.
        keep_read = drop is not None and not _readable_by_everyone(python_roots(self.python))
        return {"cwd": str(scratch), "drop_uid": drop, "keep_read_capability": keep_read,
                "new_userns": not keep_read, "owner_pid": os.getpid()}

    def command(self, python_argv: list[str], scratch: Path) -> list[str]:
        return python_argv


def _readable_by_everyone(roots: list[str]) -> bool:
    """Can any user reach and read these directories (every parent searchable by others)?"""
    for root in roots:
        path = Path(root)
        for directory in (*reversed(path.parents), path):
            try:
                mode = directory.stat().st_mode
            except OSError:
                return False
            if not mode & stat.S_IXOTH or (directory == path and not mode & stat.S_IROTH):
                return False
    return True
