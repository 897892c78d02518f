"""Where the suite is imported from: a checkout, or an installed ``agentr1_gym`` distribution.

A checkout imports the top-level packages ``envs``, ``adapters`` and ``baselines``; a wheel (or an
editable install) imports them as ``agentr1_gym.envs``, ... (see docs/install.md). Processes the
suite starts (worker pools, trainers, verl and Ray jobs) must import it the same way: from a
checkout they need its root on ``PYTHONPATH``; installed they need nothing, and must never get the
package folder itself on the path, which would expose ``envs`` as a top-level name over PyPI's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

INSTALLED_PACKAGE = "agentr1_gym"  # the import name of the installed suite (the wheel's only top-level package)
# "" in a checkout (this module is envs.core.layout), "agentr1_gym" when installed
PACKAGE = ".".join(__name__.split(".")[:-3])
# the logger (and module) name roots of the suite's own code
SUITE_ROOTS: tuple[str, ...] = (PACKAGE,) if PACKAGE else ("envs", "adapters", "baselines", "benchmarks")


def checkout_root() -> Path | None:
    """The checkout this process imports the suite from (``None`` when it is installed)."""
    return None if PACKAGE else Path(__file__).resolve().parents[2]


def child_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) with what a child process needs to import the suite as this one does."""
    env = dict(os.environ if base is None else base)
    root = checkout_root()
    if root is not None:
        parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if str(root) not in parts:
            env["PYTHONPATH"] = os.pathsep.join([str(root), *parts])
    return env
