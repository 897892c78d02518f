"""Env server benchmarks: OpenEnv's concurrency sweep, and the per-step overhead against in-process envs.

``sweep`` (the default) follows the method of OpenEnv's scaling experiments (its tutorial "How OpenEnv
environments scale"): a batch of N concurrent sessions, each connecting over WebSocket, resetting,
stepping and closing, with N doubling from ``--start`` until the first level where a session fails,
bounded by ``--max-level`` and by time (``--level-timeout`` per level, ``--budget`` per run). Each
session replays the golden episode of its seed (one step for Arithmetic, three for HotpotQA: two
searches and the answer), computed here in process beforehand. It reports per level: success rate,
connect / reset / step latency p50 and p99, each session's total p99, wall time, the server's peak
resident memory (the supervisor and every worker, sampled while the level runs) and the machine's
load average, for 1 and N worker processes. "sessions/core" is the largest level with 100 %
success divided by the server's processes (OpenEnv divides its largest level with >= 95 % success
by the machine's cores). The load generator is one asyncio process on the same machine: it shares
the cores with the server, as OpenEnv's local runs did.

``overhead`` compares steps/s and step latency over loopback sessions with the same envs in process
(C threads, each replaying the same golden episodes on its own env).

    python benchmarks/server.py sweep [--env arithmetic-v0 ...] [--processes 1 2] [--max-level 8192] [--out rows.jsonl]
    python benchmarks/server.py overhead [--env ...] [--concurrency 1 16 64] [--seconds 3]

Rows go to ``--out`` as they finish (JSON lines); a rerun with the same file skips the levels it holds.
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
from typing import Any

import gymnasium as gym
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # as a script: the checkout's packages
import envs  # noqa: E402
from envs.core.cli import add_logging_argument, setup_logging  # noqa: E402
from envs.core.registry import resolve_env_id, suite_envs  # noqa: E402

DEFAULT_ENVS = ["arithmetic-v0", "hotpotqa-v0"]


# ---------------------------------------------------------------------------- the server under test
class Server:
    """``python -m envs serve ENV --offline`` in a subprocess, with its worker pids and memory."""

    def __init__(self, env_id: str, *args: str):
        self.log = tempfile.NamedTemporaryFile("w+", prefix="bench-serve-", suffix=".log")  # noqa: SIM115
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = subprocess.Popen([sys.executable, "-m", "envs", "serve", env_id, "--offline", "--port", "0", *args],
                                     cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, text=True)
        self.url = self._wait_listening()

    def _wait_listening(self, timeout: float = 300.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(r"on (http://\S+) ", Path(self.log.name).read_text())
            if found:
                url = found.group(1)
                while time.monotonic() < deadline:
                    try:
                        urllib.request.urlopen(url + "/health", timeout=5).read()
                        return url
                    except OSError:
                        time.sleep(0.05)
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.proc.kill()
        raise RuntimeError("server did not start: " + Path(self.log.name).read_text())

    def get(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.loads(response.read())

    def pids(self) -> list[int]:
        workers = [w["pid"] for w in self.get("/health")["workers"] if w["pid"]]
        return sorted({self.proc.pid, *workers})

    def rss_mib(self, pids: list[int]) -> float:
        total = 0
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except FileNotFoundError:
                pass
        return total / 1024

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class PeakMemory:
    """The largest resident set of the server's processes together, sampled every 0.2 s."""

    def __init__(self, server: Server):
        self.server, self.pids = server, server.pids()
        self.peak = server.rss_mib(self.pids)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self.server.rss_mib(self.pids))

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def golden_actions(env_id: str, seeds: int) -> list[list[str]]:
    """The golden episode's actions for seeds ``0..seeds-1`` (computed in process, before any timing)."""
    kwargs = {e.env_id: e.offline_kwargs for e in suite_envs()}[env_id]
    env = gym.make(env_id, disable_env_checker=True, **kwargs)
    plans = []
    for seed in range(seeds):
        env.reset(seed=seed)
        plans.append(list(env.unwrapped.demonstration()))
    env.close()
    return plans


# ---------------------------------------------------------------------------- sweep
async def _session(url: str, seed: int, actions: list[str], timeout: float) -> dict[str, Any]:
    """Connect, reset, replay ``actions``, close: the phase latencies, or the failure."""
    from websockets.asyncio.client import connect

    started = time.perf_counter()
    timings: dict[str, Any] = {"steps": []}

    async def play() -> None:
        async with connect(url.replace("http", "ws", 1) + "/ws", open_timeout=None, ping_interval=None,
                           max_size=None, compression=None, close_timeout=timeout) as ws:
            timings["connect"] = time.perf_counter() - started
            t0 = time.perf_counter()
            await ws.send(json.dumps({"type": "reset", "data": {"seed": seed}}))
            reply = json.loads(await ws.recv())
            if reply["type"] != "observation":
                raise RuntimeError(f"reset: {reply['data'].get('code')}: {reply['data'].get('message', '')[:80]}")
            timings["reset"] = time.perf_counter() - t0
            for action in actions:
                t0 = time.perf_counter()
                await ws.send(json.dumps({"type": "step", "data": {"message": action}}))
                reply = json.loads(await ws.recv())
                if reply["type"] != "observation":
                    raise RuntimeError(f"step: {reply['data'].get('code')}: {reply['data'].get('message', '')[:80]}")
                timings["steps"].append(time.perf_counter() - t0)
                if reply["data"]["done"]:
                    break
            await ws.send('{"type": "close"}')

    try:
        await asyncio.wait_for(play(), timeout)
    except Exception as exc:  # a failed session is a data point, not a crash
        timings["error"] = f"{type(exc).__name__}: {str(exc)[:100]}"
    timings["total"] = time.perf_counter() - started
    return timings


def _quantiles(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def run_level(server: Server, plans: list[list[str]], sessions: int, timeout: float) -> dict[str, Any]:
    """One batch of ``sessions`` concurrent sessions; its figures."""
    load = os.getloadavg()[0]

    async def batch() -> list[dict[str, Any]]:
        return await asyncio.gather(*(_session(server.url, i, plans[i], timeout) for i in range(sessions)))

    with PeakMemory(server) as memory:
        started = time.perf_counter()
        results = asyncio.run(batch())
        wall = time.perf_counter() - started
    failures = [r for r in results if "error" in r]
    deadline = time.monotonic() + 60
    while (left := server.get("/agentr1/status")["active_sessions"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    ok = [r for r in results if "error" not in r]
    row: dict[str, Any] = {"sessions": sessions, "success": len(ok) / sessions, "wall_s": wall,
                           "peak_rss_mib": memory.peak, "load_1min": load, "sessions_left_open": left,
                           "errors": sorted({r["error"] for r in failures})[:5]}
    for phase in ("connect", "reset", "total"):
        row[f"{phase}_p50_s"], row[f"{phase}_p99_s"] = _quantiles([r[phase] for r in ok])
    row["step_p50_s"], row["step_p99_s"] = _quantiles([s for r in ok for s in r["steps"]])
    return row


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def sweep(args: argparse.Namespace) -> None:
    from envs.server.processes import available_cpus

    cpus = available_cpus()
    processes = args.processes or sorted({1, cpus})
    done = _load_rows(args.out)
    levels = []
    level = args.start
    while level <= args.max_level:
        levels.append(level)
        level *= 2
    print(f"AgentR1-Gym {envs.__version__} env server sweep (OpenEnv method): {cpus} CPUs, levels {levels}, "
          f"loopback, load generator in this process", flush=True)
    header = (f"{'env':14} {'procs':>5} {'sessions':>8} {'success':>8} {'connect p50/p99 s':>17} "
              f"{'reset p50/p99 s':>15} {'step p50/p99 s':>14} {'total p99 s':>11} {'wall s':>7} "
              f"{'peak RSS MiB':>12} {'load':>5}")
    print(header)
    print("-" * len(header), flush=True)
    summary = []
    run_started = time.monotonic()
    for name in args.env or DEFAULT_ENVS:
        env_id = resolve_env_id(name)
        plans = golden_actions(env_id, max(levels))
        for procs in processes:
            server = Server(env_id, "--processes", str(procs), "--max-sessions", str(2 * max(levels)),
                            "--idle-timeout", "600")
            clean = 0
            try:
                idle_rss = server.rss_mib(server.pids())
                for sessions in levels:
                    key = (env_id, procs, sessions)
                    row = done.get(key)
                    if row is None:
                        if time.monotonic() - run_started > args.budget:
                            print(f"  budget of {args.budget:.0f} s spent; stopping", flush=True)
                            break
                        row = {"env": env_id, "processes": procs, "cpus": cpus, "idle_rss_mib": idle_rss,
                               **run_level(server, plans, sessions, args.level_timeout)}
                        _append_row(args.out, row)
                    print(f"{env_id.split('/')[-1]:14} {procs:>5} {sessions:>8} {row['success']:>8.1%} "
                          f"{_fmt(row['connect_p50_s']):>8}/{_fmt(row['connect_p99_s']):<8} "
                          f"{_fmt(row['reset_p50_s']):>7}/{_fmt(row['reset_p99_s']):<7} "
                          f"{_fmt(row['step_p50_s']):>6}/{_fmt(row['step_p99_s']):<7} {_fmt(row['total_p99_s']):>11} "
                          f"{row['wall_s']:>7.1f} {row['peak_rss_mib']:>12.0f} {row['load_1min']:>5.1f}", flush=True)
                    if row["errors"]:
                        print(f"  failures: {'; '.join(row['errors'])}", flush=True)
                    if row["success"] < 1.0:
                        break
                    clean = sessions
            finally:
                server.stop()
            summary.append((env_id, procs, clean))
    print()
    for env_id, procs, clean in summary:
        print(f"{env_id}: {procs} process(es): largest level at 100 % success {clean} "
              f"({clean / min(procs, cpus):.0f} sessions/core)")


def _load_rows(path: Path | None) -> dict[tuple[str, int, int], dict[str, Any]]:
    if path is None or not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["env"], r["processes"], r["sessions"]): r for r in rows if "sessions" in r}


def _append_row(path: Path | None, row: dict[str, Any]) -> None:
    if path is not None:
        with path.open("a") as out:
            out.write(json.dumps(row) + "\n")


# ---------------------------------------------------------------------------- overhead
def drive_local(make: Callable[[], gym.Env], clients: int, seconds: float, max_steps: int) -> dict[str, float]:
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
    return _step_figures([x for per in latencies for x in per], elapsed)


def _step_figures(latencies: list[float], elapsed: float) -> dict[str, float]:
    every = np.array(latencies)
    return {"steps_per_s": len(every) / elapsed, "p50_ms": 1e3 * float(np.percentile(every, 50)),
            "p99_ms": 1e3 * float(np.percentile(every, 99)), "steps": float(len(every))}


async def _replay(url: str, env_id: str, seed: int, stop_at: float, max_steps: int, out: list[float]) -> None:
    """One loopback session replaying its seed's golden episode until ``stop_at``."""
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
        await asyncio.gather(*(_replay(url, env_id, i, start + seconds, max_steps, latencies[i])
                               for i in range(clients)))
        return time.perf_counter() - start

    elapsed = asyncio.run(run())
    return _step_figures([x for per in latencies for x in per], elapsed)


def overhead(args: argparse.Namespace) -> None:
    offline = {e.env_id: e.offline_kwargs for e in suite_envs() if e.offline_kwargs is not None}
    print(f"AgentR1-Gym {envs.__version__} env server overhead: loopback WebSocket sessions vs in process, "
          f"{os.cpu_count()} CPUs, {args.seconds:g} s per row, {args.processes} server process(es)")
    header = (f"{'env':16} {'sessions':>8} {'where':10} {'steps/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'added p50':>10} {'added ms/step':>13} {'server RSS MiB':>15}")
    print(header)
    print("-" * len(header))
    rows = []
    for name in args.env or DEFAULT_ENVS:
        env_id = resolve_env_id(name)
        kwargs = offline[env_id]
        server = Server(env_id, "--processes", str(args.processes), "--max-sessions", str(max(args.concurrency)),
                        *(["--workers", str(args.workers)] if args.workers else []))
        try:
            for clients in args.concurrency:
                local = drive_local(lambda: gym.make(env_id, **kwargs), clients, args.seconds, args.max_steps)
                remote = drive_remote(server.url, env_id, clients, args.seconds, args.max_steps)
                rss = server.rss_mib(server.pids())
                added = remote["p50_ms"] - local["p50_ms"]
                # What each step costs the machine: wall time per step at saturation, server minus in process.
                cost = 1e3 / remote["steps_per_s"] - 1e3 / local["steps_per_s"]
                short = env_id.split("/")[-1]
                print(f"{short:16} {clients:>8} {'in process':10} {local['steps_per_s']:>9.0f} "
                      f"{local['p50_ms']:>8.3f} {local['p99_ms']:>8.3f}")
                print(f"{short:16} {clients:>8} {'server':10} {remote['steps_per_s']:>9.0f} {remote['p50_ms']:>8.3f} "
                      f"{remote['p99_ms']:>8.3f} {added:>+10.3f} {cost:>+13.3f} {rss:>15.0f}")
                rows.append({"env": env_id, "sessions": clients, "local": local, "remote": remote,
                             "added_p50_ms": added, "added_ms_per_step": cost, "server_rss_mib": rss})
        finally:
            server.stop()
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    s = sub.add_parser("sweep", help="concurrent sessions, doubling until one fails (OpenEnv's method)")
    s.add_argument("--env", action="append", help=f"env id or alias (default: {', '.join(DEFAULT_ENVS)})")
    s.add_argument("--processes", type=int, nargs="+", help="server worker processes (default: 1 and the CPU count)")
    s.add_argument("--start", type=int, default=64, help="first level (concurrent sessions)")
    s.add_argument("--max-level", type=int, default=8192, help="last level, if every level before it succeeds")
    s.add_argument("--level-timeout", type=float, default=120.0, help="seconds a session may take (failure after)")
    s.add_argument("--budget", type=float, default=3600.0, help="seconds for the whole sweep; no level starts after")
    s.add_argument("--out", type=Path, help="append each level's row here (JSON lines); rows there are reused")
    o = sub.add_parser("overhead", help="steps/s and latency: server vs in process")
    o.add_argument("--env", action="append", help=f"env id or alias (default: {', '.join(DEFAULT_ENVS)})")
    o.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    o.add_argument("--seconds", type=float, default=3.0, help="time per configuration")
    o.add_argument("--max-steps", type=int, default=20_000, help="cap per client per configuration")
    o.add_argument("--processes", type=int, default=1, help="server worker processes")
    o.add_argument("--workers", type=int, help="the server's env worker threads (default: its own)")
    o.add_argument("--out", type=Path, help="also write the rows here (JSON)")
    for command in (s, o):
        add_logging_argument(command)
    args = parser.parse_args(sys.argv[1:] or ["sweep"])
    setup_logging(args.log_level)
    if args.command == "overhead":
        overhead(args)
    else:
        sweep(args)


if __name__ == "__main__":
    main()
