"""Sandboxes for model-written code: a provider interface and the local providers.

``get_provider("auto")`` is the strongest provider that works here: ``bubblewrap`` (namespaces, a
read-only view of /usr and the Python environment, a scratch /tmp; see ``envs.sandbox.bubblewrap``),
else the ``subprocess`` fallback (rlimits and a scratch directory only; it logs a warning saying
what it does not protect against). ``provider.open(limits, persistent=...)`` returns a session whose
``run(code)`` returns an ``Execution``; ``close()`` ends it. See ``docs/python-tool.md``.
"""

from __future__ import annotations

import logging
import threading

from envs.sandbox.base import (
    INFRA_STATUSES,
    Execution,
    Sandbox,
    SandboxLimits,
    SandboxProvider,
    SandboxUnavailable,
)

logger = logging.getLogger(__name__)

PROVIDER_NAMES = ("auto", "bubblewrap", "subprocess")
_warned = threading.Event()

__all__ = ["INFRA_STATUSES", "PROVIDER_NAMES", "Execution", "Sandbox", "SandboxLimits", "SandboxProvider",
           "SandboxUnavailable", "get_provider"]


def get_provider(name: str | SandboxProvider = "auto") -> SandboxProvider:
    """A provider by name (``PROVIDER_NAMES``), or ``name`` itself if it is one.

    ``"auto"``: bubblewrap when it runs here, else the fallback with a warning (once per process).
    ``"bubblewrap"`` raises ``SandboxUnavailable`` (saying why) when it cannot run.
    """
    if isinstance(name, SandboxProvider):
        return name
    from envs.sandbox.bubblewrap import BubblewrapProvider
    from envs.sandbox.fallback import SubprocessProvider

    if name == "subprocess":
        return SubprocessProvider()
    if name not in ("auto", "bubblewrap"):
        raise ValueError(f"unknown sandbox {name!r}; choose one of {', '.join(PROVIDER_NAMES)} or pass a SandboxProvider")
    bubblewrap = BubblewrapProvider()
    reason = bubblewrap.unavailable_reason()
    if reason is None:
        return bubblewrap
    if name == "bubblewrap":
        raise SandboxUnavailable(f"bubblewrap cannot run here: {reason}")
    fallback = SubprocessProvider()
    if not _warned.is_set():
        _warned.set()
        logger.warning("bubblewrap cannot run here (%s); model-written code runs in the weaker %r fallback, which "
                       "does not protect against: %s", reason, fallback.name, "; ".join(fallback.unprotected))
    return fallback
