"""``python -m envs serve ENV_ID [ENV_ID ...]``: run the OpenEnv-protocol server with uvicorn."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import gymnasium as gym

from envs.core.cli import add_logging_argument
from envs.core.registry import resolve_env_id, suite_envs


def add_parser(sub: Any) -> None:
    serve = sub.add_parser("serve", help="serve envs over the OpenEnv protocol (WebSocket sessions, HTTP routes)",
                           description="Serve one or more envs; the first is what plain OpenEnv clients get. "
                                       "Needs the server extra: pip install 'agentr1-gym[server]'.")
    serve.add_argument("env", nargs="+", help="env id or alias (repeatable)")
    serve.add_argument("--env-kwargs", type=json.loads, default={}, help="JSON object of make-kwargs for every env")
    serve.add_argument("--offline", action="store_true",
                       help="start from each env's offline kwargs (the shipped sample data); --env-kwargs override")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed on startup)")
    serve.add_argument("--max-sessions", type=int, default=64,
                       help="concurrent sessions (env instances) of the whole server, all processes together")
    serve.add_argument("--idle-timeout", type=float, default=600.0, help="seconds before an idle session is closed")
    serve.add_argument("--processes", type=int, default=None,
                       help="worker processes sharing the port (default: the CPUs this process may use; Linux)")
    serve.add_argument("--workers", type=int, default=None,
                       help="env worker threads per process (default min(max-sessions, max(4, 2 x CPUs)))")
    serve.add_argument("--pool-ttl", type=float, default=60.0,
                       help="seconds an unused env instance stays pooled (0: until shutdown)")
    serve.add_argument("--max-pooled", type=int, default=None,
                       help="pooled env instances per env and process (default: max-sessions; 0: no pooling)")
    serve.add_argument("--max-frame-mb", type=float, default=8.0, help="larger frames are answered with an error")
    add_logging_argument(serve, default="warning")
    serve.set_defaults(func=serve_command)


def env_table(names: list[str], env_kwargs: dict[str, Any], offline: bool) -> dict[str, dict[str, Any]]:
    """``{env_id: kwargs}`` for the command line's env names."""
    if not isinstance(env_kwargs, dict):
        raise SystemExit("--env-kwargs must be a JSON object")
    table: dict[str, dict[str, Any]] = {}
    entries = {e.env_id: e for e in suite_envs()}
    for name in names:
        env_id = resolve_env_id(name)
        base: dict[str, Any] = {}
        if offline:
            entry = entries.get(env_id)
            if entry is None or entry.offline_kwargs is None:
                raise SystemExit(f"{env_id} has no offline mode; drop --offline and pass --env-kwargs")
            base = dict(entry.offline_kwargs)
        table[env_id] = {**base, **env_kwargs}
    return table


def serve_command(args: argparse.Namespace) -> int:
    try:
        from envs.server.app import ServerConfig
        from envs.server.processes import ServeSpec, available_cpus, can_share_a_port, serve
    except ImportError as exc:
        print(f"serving needs the server extra ({exc}): pip install 'agentr1-gym[server]'", file=sys.stderr)
        return 2
    try:
        table = env_table(args.env, args.env_kwargs, args.offline)
        config = ServerConfig(max_sessions=args.max_sessions, idle_timeout=args.idle_timeout, workers=args.workers,
                              max_frame_chars=int(args.max_frame_mb * (1 << 20)),
                              pool_ttl=args.pool_ttl or None, max_pooled=args.max_pooled)
    except (gym.error.Error, ValueError) as exc:  # unknown id, a limit out of range
        print(f"cannot serve: {exc}", file=sys.stderr)
        return 2
    processes = args.processes if args.processes is not None else (available_cpus() if can_share_a_port() else 1)
    return serve(ServeSpec(table, config, host=args.host, port=args.port, log_level=args.log_level), processes)
