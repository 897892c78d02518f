"""The bubblewrap provider: the strongest isolation available locally without a daemon.

``bwrap`` (Debian: ``apt-get install bubblewrap``) starts the supervisor in new pid, network, ipc
and uts namespaces, with ``--die-with-parent`` and a new session. The sandbox's root is an empty
read-only tmpfs holding only ``/usr`` (and its ``/bin``, ``/lib*`` links), the Python installation
and environment the interpreter runs from (read-only), a private ``/proc`` that shows only the
sandbox's processes, a minimal ``/dev`` (null, zero, random, urandom, tty: no host devices), and the
session's scratch directory as ``/tmp``, the one writable place. No ``/etc`` (beyond the dynamic
linker's cache), no ``/home``, ``/root`` or project files, no network but a private loopback.

Users and namespaces: as a normal user, bwrap creates a user namespace and forbids nested ones
(``--disable-userns``). As root, where a user namespace would still map the code to root (which
``RLIMIT_NPROC`` does not bind), bwrap keeps only the capabilities needed to drop privileges
(``CAP_SETUID``, ``CAP_SETGID``, ``CAP_KILL``) and each kernel switches to ``nobody`` inside a user
namespace of its own that cannot create more, with no capabilities and ``no_new_privs``.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any, ClassVar

from envs.sandbox.base import SandboxLimits, SandboxUnavailable
from envs.sandbox.local import LocalProvider, python_roots

logger = logging.getLogger(__name__)

_ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/alternatives")
_TOP_LEVEL = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_PROBES: dict[tuple[str, str], str | None] = {}  # (bwrap, python) -> None if it works, else why not
_PROBE_LOCK = threading.Lock()


class BubblewrapProvider(LocalProvider):
    name: ClassVar[str] = "bubblewrap"
    isolation: ClassVar[str] = (
        "bubblewrap: new user (or, as root, an unprivileged uid in its own user namespace), pid, network, "
        "ipc and uts namespaces; read-only root with only /usr and the Python environment; the episode's "
        "scratch directory as /tmp, the only writable place; no host devices; dies with its owner")
    unprotected: ClassVar[tuple[str, ...]] = (
        "kernel vulnerabilities: the code shares the host's Linux kernel and may use any system call (no seccomp filter)",
        "memory and CPU are limited per process (rlimits), not per sandbox: a program may hold up to "
        "processes x memory_mb and use several cores at once",
        "world-readable files under /usr and the Python environment (its site-packages) are readable",
        "timing and other side channels of a shared machine",
    )

    def __init__(self, *, python: str | None = None, bwrap: str | None = None):
        super().__init__(python=python)
        self.bwrap = bwrap or shutil.which("bwrap") or ""

    def available(self) -> bool:
        return self.unavailable_reason() is None

    def unavailable_reason(self) -> str | None:
        """Why this provider cannot run code here (``None``: it can). Probed once per process."""
        if not self.bwrap:
            return "bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
        key = (self.bwrap, self.python)
        with _PROBE_LOCK:
            if key not in _PROBES:
                _PROBES[key] = self._probe()
            return _PROBES[key]

    def _probe(self) -> str | None:
        sandbox = self.open(SandboxLimits(wall_s=30, episode_s=0))
        try:
            sandbox.start()
            result = sandbox.run("1 + 1")
        except SandboxUnavailable as exc:
            return str(exc)
        finally:
            sandbox.close()
        return None if result.ok and result.value == "2" else f"a probe run failed: {result.status} {result.detail} {result.error}"

    def settings(self, scratch: Path) -> dict[str, Any]:
        drop = self.drop_to()
        return {"cwd": "/tmp", "drop_uid": drop, "new_userns": drop is not None, "owner_pid": None}

    def command(self, python_argv: list[str], scratch: Path) -> list[str]:
        argv = [self.bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                "--die-with-parent", "--new-session", "--hostname", "sandbox"]
        if os.geteuid() == 0:
            argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_KILL"]
        else:
            argv += ["--unshare-user", "--disable-userns"]
        argv += ["--ro-bind", "/usr", "/usr"]
        for name in _TOP_LEVEL:
            path = Path("/") / name
            if path.is_symlink():
                argv += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                argv += ["--ro-bind", str(path), str(path)]
        argv += ["--perms", "0755", "--dir", "/etc"]
        for path in _ETC_FILES:
            argv += ["--ro-bind-try", path, path]
        made: set[str] = {"/", "/usr", "/tmp", "/proc", "/dev"}
        for root in python_roots(self.python):
            for parent in reversed(Path(root).parents):
                if str(parent) not in made and not str(parent).startswith("/usr/"):
                    argv += ["--perms", "0755", "--dir", str(parent)]  # bwrap would copy a 0700 /root
                    made.add(str(parent))
            argv += ["--ro-bind", root, root]
            made.add(root)
        argv += ["--proc", "/proc", "--dev", "/dev", "--bind", str(scratch), "/tmp", "--chdir", "/tmp",
                 "--remount-ro", "/", "--", *python_argv]
        return argv
