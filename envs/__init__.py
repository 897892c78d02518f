"""AgentR1-Gym: Gymnasium text environments for training LLM agents with RL.

``import envs`` registers every ``AgentR1/*`` id (and plugins' ids) with Gymnasium; environment
modules themselves load only when an env is made, so this import stays light (no torch).
"""

from __future__ import annotations

import importlib

from envs.core import DataError, ItemListEnv, TextEnv, Tool, ToolResult, UnicodeText, end_unfinished, tool
from envs.core.registry import load_plugins, make, register_env, resolve_env_id, suite_envs

# Each package registers its ids in its own light ``__init__``; add a new built-in package here.
BUILTIN_PACKAGES = ("arithmetic", "math", "qa", "multiagent")

for _name in BUILTIN_PACKAGES:
    importlib.import_module(f"envs.{_name}")
load_plugins()

__all__ = [
    "DataError", "ItemListEnv", "TextEnv", "Tool", "ToolResult", "UnicodeText", "end_unfinished", "make",
    "register_env", "resolve_env_id", "suite_envs", "tool",
]
__version__ = "0.1.0"
