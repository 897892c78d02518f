"""Reward audit: does any degenerate policy earn as much as solving the task, on any env?

For every registered env id (on its shipped offline data), plus ``Math-v0`` with the sympy tool and
with the python tool (also under the ToRL reward preset) and ``Arithmetic-v0`` with the python tool,
plays the conformance kit's degenerate policies (``envs.testing.degenerate_policies``: tool spam at
the per-turn maximum, repeated calls, never answering, a wrong answer after spam, answering without
tags, empty turns, junk, a budget cut through ``end_unfinished``) and the demonstration padded with
useless tool calls, against ``demonstration()`` on the same item.

    python benchmarks/reward_audit.py [--seeds 0 1 2] [--env AgentR1/HotpotQA-v0 ...]

Prints one table per env (policy: mean episode reward, golden reward, margin = golden - policy,
worst margin over the seeds) and exits 1 if any degenerate policy reaches the demonstration's reward
or a padded demonstration exceeds it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from envs.core.cli import add_logging_argument, echo, progress, setup_logging  # noqa: E402

# (env id, extra make kwargs, label): the registered ids run as registered; these add tool configurations.
EXTRA_CONFIGURATIONS = [
    ("AgentR1/Math-v0", {"tools": ("sympy",)}, "AgentR1/Math-v0 tools=('sympy',)"),
    # The python tool with 2s calls (its infinite-loop policy waits out every call).
    ("AgentR1/Math-v0", {"tools": ("python",), "python": {"wall_s": 2}}, "AgentR1/Math-v0 tools=('python',)"),
    ("AgentR1/Math-v0", {"tools": ("python",), "reward_preset": "torl", "python": {"wall_s": 2, "errors": "last_line"}},
     "AgentR1/Math-v0 ToRL (python, torl rewards)"),
    ("AgentR1/Arithmetic-v0", {"python": {"wall_s": 2}}, "AgentR1/Arithmetic-v0 python=True"),
]


def configurations(only: list[str] | None) -> list[tuple[str, dict, str]]:
    from envs.core.registry import resolve_env_id, suite_envs

    out = []
    for entry in suite_envs():
        if entry.offline_kwargs is None:
            logging.warning("%s has no offline mode; skipped", entry.env_id)
            continue
        out.append((entry.env_id, dict(entry.offline_kwargs), entry.env_id))
        out += [(env_id, {**entry.offline_kwargs, **extra}, label)
                for env_id, extra, label in EXTRA_CONFIGURATIONS if env_id == entry.env_id]
    if only:
        wanted = {resolve_env_id(name) for name in only}
        out = [c for c in out if c[0] in wanted]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--env", nargs="*", help="env ids or aliases (default: every registered id)")
    add_logging_argument(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)

    import envs  # noqa: F401 - registers the ids
    from envs.testing import reward_audit

    failed = 0
    bar = progress(configurations(args.env), desc="auditing", unit="configuration")
    for env_id, kwargs, label in bar:
        bar.set_postfix_str(label)
        rows = reward_audit(env_id, make_kwargs=kwargs, seeds=args.seeds)
        by_policy = defaultdict(list)
        for row in rows:
            by_policy[row.policy].append(row)
        echo(f"\n## {label}  (seeds {' '.join(map(str, args.seeds))})\n")
        echo("| policy | episode reward | golden reward | margin | worst margin | |")
        echo("|---|---:|---:|---:|---:|---|")
        for policy, group in by_policy.items():
            n = len(group)
            reward = sum(r.episode_reward for r in group) / n
            golden = sum(r.golden_reward for r in group) / n
            worst = min(r.margin for r in group)
            ok = all(r.ok for r in group)
            failed += not ok
            verdict = ("ok (may tie)" if group[0].may_tie else "ok") if ok else "FAIL"
            echo(f"| {policy} | {reward:.3f} | {golden:.3f} | {golden - reward:.3f} | {worst:.3f} | {verdict} |")
    print(f"\n{failed} failing (env, policy) pair(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
