"""``python -m envs serve ENV_ID [ENV_ID ...]``: run the OpenEnv-protocol server with uvicorn."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sys
from typing import Any

import gymnasium as gym

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
    serve.add_argument("--max-sessions", type=int, default=64, help="concurrent WebSocket sessions (env instances)")
    serve.add_argument("--idle-timeout", type=float, default=600.0, help="seconds before an idle session is closed")
    serve.add_argument("--workers", type=int, default=None, help="env worker threads (default min(max-sessions, max(4, 2 x CPUs)))")
    serve.add_argument("--max-frame-mb", type=float, default=8.0, help="larger frames are answered with an error")
    serve.add_argument("--log-level", default="warning")
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
        import uvicorn

        from envs.server.app import ServerConfig, create_app
    except ImportError as exc:
        print(f"serving needs the server extra ({exc}): pip install 'agentr1-gym[server]'", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = ServerConfig(max_sessions=args.max_sessions, idle_timeout=args.idle_timeout, workers=args.workers,
                          max_frame_chars=int(args.max_frame_mb * (1 << 20)))
    try:
        app = create_app(env_table(args.env, args.env_kwargs, args.offline), config)
    except (gym.error.Error, ValueError, TypeError, RuntimeError) as exc:  # unknown id, bad kwargs, unservable env
        print(f"cannot serve: {exc}", file=sys.stderr)
        return 2
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(
        app, log_level=args.log_level, lifespan="on", timeout_graceful_shutdown=5,
        ws_max_size=2 * config.max_frame_chars + (1 << 20),  # beyond this the transport drops the connection
        ws_per_message_deflate=False))
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"serving {', '.join(app.state.hosts)} on http://{host}:{port} (WebSocket ws://{host}:{port}/ws)", flush=True)

    def stopped(signum: int, _frame: Any) -> None:
        # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal: end with status 0.
        print(f"stopped by {signal.Signals(signum).name}; closed {app.state.closed_at_shutdown} open session(s)",
              flush=True)
        raise SystemExit(0)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stopped)
    server.run(sockets=[sock])
    return 0
