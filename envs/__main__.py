"""Command line: ``python -m envs list | demo | play | serve | view``.

``demo`` plays each registered environment on the data the project ships (no download, no server,
no GPU) with a scripted policy, printing the transcript, rewards and reward components: episode 0 is
the env's golden demonstration; later episodes start with a malformed tool call (where the env has
tools) to show a penalty and how the env's outcome reward treats it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import gymnasium as gym

import envs
from envs.core.cli import add_logging_argument, cli_entry, program_name, setup_logging
from envs.core.registry import resolve_env_id, suite_envs
from envs.server.cli import add_parser as add_serve_parser
from envs.viewer.cli import add_parser as add_view_parser

MALFORMED_CALL = '<tool_call>{"name": "calculator", "arguments": {"expression": </tool_call>'


def _list(_: argparse.Namespace) -> int:
    for entry in suite_envs():
        offline = "offline" if entry.offline_kwargs is not None else "needs data"
        print(f"{entry.env_id:34} {', '.join(entry.aliases):38} [{offline}] {entry.summary}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    entries = [e for e in suite_envs() if e.offline_kwargs is not None]
    if args.env:
        wanted = {resolve_env_id(name) for name in args.env}
        entries = [e for e in entries if e.env_id in wanted]
    totals = []
    for entry in entries:
        env = gym.make(entry.env_id, **entry.offline_kwargs)
        for episode in range(args.episodes):
            result = _play_scripted(env, seed=args.seed + episode, quiet=args.quiet, malformed_first=episode > 0)
            totals.append((entry.env_id, episode, result))
        env.close()
    print("\n== summary ==")
    for env_id, episode, (ret, metrics) in totals:
        print(f"{env_id:34} episode {episode}: return {ret:+.3f}  acc {metrics.get('acc', 0):.0f}  turns {metrics.get('turns', 0):.0f}")
    return 0


def _play_scripted(env: gym.Env, *, seed: int, quiet: bool, malformed_first: bool) -> tuple[float, dict]:
    obs, info = env.reset(seed=seed)
    base = env.unwrapped
    show = (lambda *a: None) if quiet else print
    show(f"\n===== {env.spec.id if env.spec else type(base).__name__}  (seed {seed}) =====")
    for message in info["messages"]:
        show(f"[{message['role']}]\n{message['content']}\n")
    actions = list(base.demonstration())
    if malformed_first and base.tools and base.max_turns > len(actions):
        actions.insert(0, MALFORMED_CALL)
    ret, metrics = 0.0, {}
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        ret += reward
        show(f"[assistant]\n{action}\n")
        if obs:
            show(f"[observation]\n{obs}\n")
        show(f"  reward {reward:+.3f}  components {json.dumps(info['reward_components'])}")
        if terminated or truncated:
            metrics = info["metrics"]
            show(f"  episode over (terminated={terminated}, truncated={truncated}); metrics {json.dumps(metrics)}")
            break
    return ret, metrics


def _play(args: argparse.Namespace) -> int:
    """Type the model's turns yourself; an empty line ends a turn, EOF quits."""
    entry_kwargs = next((e.offline_kwargs for e in suite_envs() if e.env_id == resolve_env_id(args.env)), None) or {}
    env = gym.make(resolve_env_id(args.env), **entry_kwargs)
    obs, info = env.reset(seed=args.seed)
    print("\n".join(f"[{m['role']}] {m['content']}" for m in info["messages"]))
    while True:
        print("\n[you] (end your turn with an empty line)")
        lines = []
        for line in sys.stdin:
            if not line.strip():
                break
            lines.append(line.rstrip("\n"))
        else:
            if not lines:
                return 0
        obs, reward, terminated, truncated, info = env.step("\n".join(lines))
        print(f"[observation] {obs}\nreward {reward:+.3f} {info['reward_components']}")
        if terminated or truncated:
            print(f"episode over; metrics {info['metrics']}")
            return 0


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=program_name("envs"), description=f"AgentR1-Gym {envs.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="show registered environments").set_defaults(func=_list)
    demo = sub.add_parser("demo", help="play every env on shipped data with a scripted policy")
    demo.add_argument("--env", action="append", help="only this env (id or alias); repeatable")
    demo.add_argument("--episodes", type=int, default=2, help="episode 0 golden; later ones open with a malformed call")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quiet", action="store_true", help="print only the summary")
    add_logging_argument(demo)
    demo.set_defaults(func=_demo)
    play = sub.add_parser("play", help="play an env by typing the model's turns")
    play.add_argument("env")
    play.add_argument("--seed", type=int, default=0)
    add_logging_argument(play)
    play.set_defaults(func=_play)
    add_serve_parser(sub)
    add_view_parser(sub)
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "log_level", "info"))  # each working subcommand takes --log-level
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
