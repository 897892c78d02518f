"""Env server overhead: steps/s and step latency over loopback WebSocket sessions vs the same envs in process.

For each env (default: the two embedded ones, arithmetic and HotpotQA with in-process BM25) it starts
``python -m envs serve ENV --offline`` and, for each concurrency C, opens C sessions from one asyncio
load generator, each replaying the golden episode of its seed (``demonstration()``) for ``--seconds`` (and at most
``--max-steps`` steps per session). The in-process row runs C threads, each replaying the same episodes
on its own local env. "added p50" is the server's p50 step latency minus the in-process one at the same concurrency;
"added ms/step" is the difference in wall time per step at that load (1000 / steps/s), what a step
costs once the machine is saturated. Server RSS is the server process's resident set after the run
(and its peak). Loopback only; the load generator shares the machine's cores with the server.

    python benchmarks/server.py [--env arithmetic-v0 ...] [--concurrency 1 16 64] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # as a script: the checkout's packages
import envs  # noqa: E402
from envs.core.cli import add_logging_argument, setup_logging  # noqa: E402
from envs.core.registry import resolve_env_id, suite_envs  # noqa: E402


def start_server(env_id: str, max_sessions: int, workers: int | None) -> tuple[subprocess.Popen, str,
                                                                               tempfile._TemporaryFileWrapper]:
    log = tempfile.NamedTemporaryFile("w+", prefix="bench-serve-", suffix=".log")  # noqa: SIM115
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "envs", "serve", env_id, "--offline", "--port", "0",
                             "--max-sessions", str(max_sessions),
                             *(["--workers", str(workers)] if workers else [])], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = re.search(r"on (http://\S+) ", Path(log.name).read_text())
        if found:
            url = found.group(1)
            while time.monotonic() < deadline:
                try:
                    urllib.request.urlopen(url + "/health", timeout=5).read()
                    return proc, url, log
                except OSError:
                    time.sleep(0.05)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not start: " + Path(log.name).read_text())


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident set of ``pid`` in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def drive(make: Callable[[], gym.Env], clients: int, seconds: float, max_steps: int) -> dict[str, float]:
    """``clients`` threads, each with its own env, playing golden episodes; latencies of every step."""
    made = [make() for _ in range(clients)]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(i: int) -> None:
        env, mine = made[i], latencies[i]
        env.reset(seed=i)
        actions = env.unwrapped.demonstration()  # the same seed every episode: one golden plan per client
        barrier.wait()
        while time.perf_counter() < stop_at[0] and len(mine) < max_steps:
            env.reset(seed=i)
            for action in actions:
                t0 = time.perf_counter()
                _, _, terminated, truncated, _ = env.step(action)
                mine.append(time.perf_counter() - t0)
                if terminated or truncated:
                    break

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + seconds
    start = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    for env in made:
        env.close()
    every = np.array([x for per in latencies for x in per])
    return {"steps_per_s": len(every) / elapsed, "p50_ms": 1e3 * float(np.percentile(every, 50)),
            "p99_ms": 1e3 * float(np.percentile(every, 99)), "steps": float(len(every))}


async def _session(url: str, env_id: str, seed: int, stop_at: float, max_steps: int, out: list[float]) -> None:
    """One loopback session speaking the wire protocol directly (what ``RemoteEnv`` sends, minus its thread)."""
    from websockets.asyncio.client import connect

    async with connect(f"{url.replace('http', 'ws', 1)}/ws?env_id={env_id}", max_size=None, compression=None) as ws:
        actions: list[str] | None = None
        while time.perf_counter() < stop_at and len(out) < max_steps:
            await ws.send(json.dumps({"type": "reset", "data": {"seed": seed}}))
            await ws.recv()
            if actions is None:  # the same seed every episode: one golden plan per session
                await ws.send(json.dumps({"type": "agentr1.demonstration"}))
                actions = json.loads(await ws.recv())["data"]["actions"]
            for action in actions:
                t0 = time.perf_counter()
                await ws.send(json.dumps({"type": "step", "data": {"message": action}}))
                reply = json.loads(await ws.recv())
                out.append(time.perf_counter() - t0)
                if reply["type"] != "observation":
                    raise RuntimeError(f"server error: {reply}")
                if reply["data"]["done"]:
                    break


def drive_remote(url: str, env_id: str, clients: int, seconds: float, max_steps: int) -> dict[str, float]:
    """``clients`` concurrent sessions from one asyncio load generator (cheaper per step than threads)."""
    latencies: list[list[float]] = [[] for _ in range(clients)]

    async def run() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(_session(url, env_id, i, start + seconds, max_steps, latencies[i])
                               for i in range(clients)))
        return time.perf_counter() - start

    elapsed = asyncio.run(run())
    every = np.array([x for per in latencies for x in per])
    return {"steps_per_s": len(every) / elapsed, "p50_ms": 1e3 * float(np.percentile(every, 50)),
            "p99_ms": 1e3 * float(np.percentile(every, 99)), "steps": float(len(every))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", action="append", help="env id or alias (default: arithmetic-v0, hotpotqa-v0)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per configuration")
    parser.add_argument("--max-steps", type=int, default=20_000, help="cap per client per configuration")
    parser.add_argument("--workers", type=int, help="the server's env worker threads (default: its own)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    add_logging_argument(parser)
    args = parser.parse_args()
    setup_logging(args.log_level)
    offline = {e.env_id: e.offline_kwargs for e in suite_envs() if e.offline_kwargs is not None}
    ids = [resolve_env_id(n) for n in (args.env or ["arithmetic-v0", "hotpotqa-v0"])]
    print(f"AgentR1-Gym {envs.__version__} env server benchmark: loopback WebSocket sessions vs in process, "
          f"{os.cpu_count()} CPUs, {args.seconds:g} s per row")
    header = (f"{'env':16} {'sessions':>8} {'where':10} {'steps/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'added p50':>10} {'added ms/step':>13} {'server RSS MiB (peak)':>22}")
    print(header)
    print("-" * len(header))
    rows = []
    for env_id in ids:
        kwargs = offline[env_id]
        proc, url, log = start_server(env_id, max(args.concurrency), args.workers)
        try:
            for clients in args.concurrency:
                local = drive(lambda: gym.make(env_id, **kwargs), clients, args.seconds, args.max_steps)
                remote = drive_remote(url, env_id, clients, args.seconds, args.max_steps)
                rss, peak = rss_mb(proc.pid)
                added = remote["p50_ms"] - local["p50_ms"]
                # What each step costs the machine: wall time per step at saturation, server minus in process.
                cost = 1e3 / remote["steps_per_s"] - 1e3 / local["steps_per_s"]
                name = env_id.split("/")[-1]
                print(f"{name:16} {clients:>8} {'in process':10} {local['steps_per_s']:>9.0f} {local['p50_ms']:>8.3f} "
                      f"{local['p99_ms']:>8.3f}")
                print(f"{name:16} {clients:>8} {'server':10} {remote['steps_per_s']:>9.0f} {remote['p50_ms']:>8.3f} "
                      f"{remote['p99_ms']:>8.3f} {added:>+10.3f} {cost:>+13.3f} {rss:>15.0f} ({peak:.0f})")
                rows.append({"env": env_id, "sessions": clients, "local": local, "remote": remote,
                             "added_p50_ms": added, "added_ms_per_step": cost, "server_rss_mib": rss,
                             "server_peak_rss_mib": peak})
            status = json.loads(urllib.request.urlopen(url + "/agentr1/status", timeout=5).read())
            if status["active_sessions"]:
                print(f"  warning: {status['active_sessions']} sessions still open after the run")
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
