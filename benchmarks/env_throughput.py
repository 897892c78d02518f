"""Env-layer throughput: episodes/s and step latency with a scripted policy and no model.

For every registered env that runs on shipped data (or those named with ``--env``): a single env,
then ``gym.make_vec`` in sync and async mode at several ``num_envs``. The policy is the env's own
golden ``demonstration()``, so each episode exercises parsing, tools, retrieval and scoring.

    python benchmarks/env_throughput.py [--env arithmetic-v0 ...] [--seconds 3] [--num-envs 1 4 8]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # as a script: the checkout's packages
import envs  # noqa: E402
from envs.core.cli import add_logging_argument, setup_logging  # noqa: E402
from envs.core.registry import resolve_env_id, suite_envs  # noqa: E402


def bench_single(env_id: str, kwargs: dict, seconds: float) -> dict[str, float]:
    env = gym.make(env_id, **kwargs)
    latencies: list[float] = []
    episodes, seed = 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.reset(seed=seed)
        seed += 1
        for action in env.unwrapped.demonstration():
            t0 = time.perf_counter()
            _, _, terminated, truncated, _ = env.step(action)
            latencies.append(time.perf_counter() - t0)
            if terminated or truncated:
                break
        episodes += 1
    elapsed = time.perf_counter() - start
    env.close()
    return {"episodes_per_s": episodes / elapsed, "p50_ms": 1e3 * float(np.percentile(latencies, 50)),
            "p99_ms": 1e3 * float(np.percentile(latencies, 99))}


def bench_vector(env_id: str, kwargs: dict, mode: str, num_envs: int, seconds: float) -> dict[str, float]:
    vec = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode,
                       vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}, **kwargs)
    vec.reset(seed=0)
    plans = [list(p) for p in vec.call("demonstration")]
    latencies: list[float] = []
    episodes = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        actions = tuple(plan.pop(0) if plan else "\\boxed{0}" for plan in plans)
        t0 = time.perf_counter()
        _, _, terminated, truncated, _ = vec.step(actions)
        latencies.append(time.perf_counter() - t0)
        done = np.logical_or(terminated, truncated)
        if done.any():
            episodes += int(done.sum())
            fresh = vec.call("demonstration")
            plans = [list(fresh[i]) if done[i] else plans[i] for i in range(num_envs)]
    elapsed = time.perf_counter() - start
    vec.close()
    return {"episodes_per_s": episodes / elapsed, "p50_ms": 1e3 * float(np.percentile(latencies, 50)),
            "p99_ms": 1e3 * float(np.percentile(latencies, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", action="append", help="env id or alias (default: every offline env)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per configuration")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 4, 16])
    add_logging_argument(parser)
    args = parser.parse_args()
    setup_logging(args.log_level)
    entries = [e for e in suite_envs() if e.offline_kwargs is not None]
    if args.env:
        wanted = {resolve_env_id(n) for n in args.env}
        entries = [e for e in entries if e.env_id in wanted]
    print(f"AgentR1-Gym {envs.__version__} env-layer benchmark (scripted golden policy, no model)")
    header = f"{'env':30} {'mode':8} {'n':>3} {'episodes/s':>11} {'step p50 ms':>12} {'step p99 ms':>12} {'vs single':>10}"
    print(header)
    print("-" * len(header))
    for entry in entries:
        single = bench_single(entry.env_id, entry.offline_kwargs, args.seconds)
        print(f"{entry.env_id:30} {'single':8} {1:>3} {single['episodes_per_s']:>11.1f} {single['p50_ms']:>12.3f} {single['p99_ms']:>12.3f} {1.0:>9.2f}x")
        for mode in ("sync", "async"):
            for n in args.num_envs:
                row = bench_vector(entry.env_id, entry.offline_kwargs, mode, n, args.seconds)
                ratio = row["episodes_per_s"] / single["episodes_per_s"]
                print(f"{entry.env_id:30} {mode:8} {n:>3} {row['episodes_per_s']:>11.1f} {row['p50_ms']:>12.3f} {row['p99_ms']:>12.3f} {ratio:>9.2f}x")


if __name__ == "__main__":
    main()
