"""AgentR1-Gym: Gymnasium text environments for training LLM agents with RL.

``import envs`` registers every ``AgentR1/*`` id (and plugins' ids) with Gymnasium; environment
modules themselves load only when an env is made, so this import stays light (no torch).
"""

from __future__ import annotations

import importlib

import gymnasium as gym

from envs.core import DataError, ItemListEnv, TextEnv, Tool, ToolResult, UnicodeText, end_unfinished, tool
from envs.core.registry import REMOTE_ENV_ID, env_server_urls, load_plugins, make, register_env, resolve_env_id, suite_envs

# Each package registers its ids in its own light ``__init__``; add a new built-in package here.
BUILTIN_PACKAGES = ("arithmetic", "math", "qa", "multiagent")

for _name in BUILTIN_PACKAGES:
    importlib.import_module(f"envs.{_name}")
load_plugins()
# A server's env as a local Gymnasium env (``python -m envs serve``); loads websockets only when made.
if REMOTE_ENV_ID not in gym.registry:
    gym.register(id=REMOTE_ENV_ID, entry_point="envs.remote:RemoteEnv")

__all__ = [
    "DataError", "ItemListEnv", "TextEnv", "Tool", "ToolResult", "UnicodeText", "end_unfinished", "env_server_urls", "make",
    "register_env", "resolve_env_id", "suite_envs", "tool",
]
__version__ = "0.1.0"
