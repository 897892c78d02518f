"""Sandbox speed and memory: the python tool's sandboxes against a plain ``python -c`` subprocess.

For each way of running a snippet of model code, prints the cold latency (a new sandbox: start plus
the first call), the latency of a new episode in a warm sandbox (``reset`` plus a call), warm
latency per call (p50, p99), calls per second (one session, calls in a row) and memory (PSS of every
process of an idle warm sandbox; a plain subprocess: its peak RSS). Ratios are against the plain
``python -c`` subprocess, the cost of running code with no isolation and no limits at all.

    python benchmarks/sandbox.py [--seconds 3] [--code "print(sum(range(10**5)))"] [--preload sympy numpy]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envs.sandbox import SandboxLimits  # noqa: E402
from envs.sandbox.bubblewrap import BubblewrapProvider  # noqa: E402
from envs.sandbox.fallback import SubprocessProvider  # noqa: E402
from envs.sandbox.local import LocalProvider, LocalSandbox  # noqa: E402

LIMITS = SandboxLimits(wall_s=30, cpu_s=30, episode_s=0)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _tree_pss_mb(root: int) -> float:
    """Proportional set size of ``root`` and its descendants (shared pages split between them)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
                children.setdefault(int(stat[stat.rfind(")") + 2:].split()[1]), []).append(int(name))
            except OSError:
                continue
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, ()))
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def measure_plain(code: str, seconds: float) -> dict[str, float]:
    """A new ``python -c`` process per call, output captured: no isolation, no limits."""
    def call() -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-s", "-c", code], capture_output=True, check=True)
        return time.perf_counter() - start

    cold = statistics.median(call() for _ in range(3))
    warm = _calls_for(call, seconds)
    # memory: the same process kept alive after running the code
    proc = subprocess.Popen([sys.executable, "-s", "-c", code + "\nimport sys\nsys.stdout.flush()\nsys.stdin.read()"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    proc.stdout.readline()
    memory = _tree_pss_mb(proc.pid)
    proc.communicate(b"")
    return {"cold": cold, "episode": cold, **_summary(warm), "memory": memory}


def measure_sandbox(provider: LocalProvider, code: str, seconds: float, *, persistent: bool,
                    preload: tuple[str, ...] = ()) -> dict[str, float]:
    colds = []
    for _ in range(3):
        start = time.perf_counter()
        sandbox = provider.open(LIMITS, persistent=persistent, preload=preload)
        result = sandbox.run(code)
        colds.append(time.perf_counter() - start)
        sandbox.close()
        if not result.ok:
            raise SystemExit(f"{provider.name}: the code failed: {result.status} {result.error or result.detail}")
    sandbox = provider.open(LIMITS, persistent=persistent, preload=preload)
    assert isinstance(sandbox, LocalSandbox)
    try:
        sandbox.run(code)
        episodes = []
        for _ in range(5):
            start = time.perf_counter()
            sandbox.reset()
            sandbox.run(code)
            episodes.append(time.perf_counter() - start)

        def call() -> float:
            start = time.perf_counter()
            sandbox.run(code)
            return time.perf_counter() - start

        warm = _calls_for(call, seconds)
        time.sleep(0.5)  # idle: a fresh-state sandbox has forked the next call's kernel by now
        memory = _tree_pss_mb(sandbox.pid) if sandbox.pid else float("nan")
    finally:
        sandbox.close()
    return {"cold": statistics.median(colds), "episode": statistics.median(episodes), **_summary(warm), "memory": memory}


def _calls_for(call, seconds: float) -> list[float]:
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 5:
        times.append(call())
    return times


def _summary(times: list[float]) -> dict[str, float]:
    return {"p50": _percentile(times, 0.5), "p99": _percentile(times, 0.99), "rate": len(times) / sum(times)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds of warm calls per row")
    parser.add_argument("--code", default="print(sum(i * i for i in range(10_000)))", help="the snippet each call runs")
    parser.add_argument("--preload", nargs="*", default=[], help="modules the sandboxes import once (e.g. sympy numpy)")
    args = parser.parse_args(argv)

    rows: list[tuple[str, dict[str, float]]] = [("plain `python -c` subprocess (no isolation)", measure_plain(args.code, args.seconds))]
    providers: list[LocalProvider] = [SubprocessProvider()]
    bubblewrap = BubblewrapProvider()
    reason = bubblewrap.unavailable_reason()
    if reason is None:
        providers.append(bubblewrap)
    else:
        print(f"(bubblewrap skipped: {reason})")
    for provider in providers:
        for persistent in (False, True):
            label = f"{provider.name}, {'persistent' if persistent else 'fresh'} state"
            if args.preload:
                label += f", preload {' '.join(args.preload)}"
            rows.append((label, measure_sandbox(provider, args.code, args.seconds, persistent=persistent,
                                                preload=tuple(args.preload))))

    base = rows[0][1]
    print(f"\nSandbox benchmark: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, code {args.code!r}\n")
    print("| path | cold call (ms) | new episode (ms) | warm p50 (ms) | warm p99 (ms) | calls/s | vs plain | memory (MB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, r in rows:
        print(f"| {label} | {r['cold'] * 1e3:.1f} | {r['episode'] * 1e3:.1f} | {r['p50'] * 1e3:.2f} | {r['p99'] * 1e3:.2f} "
              f"| {r['rate']:.0f} | {r['rate'] / base['rate']:.1f}x | {r['memory']:.1f} |")
    print("\ncold: a new sandbox and its first call; new episode: reset (processes killed, scratch emptied) and a call; "
          "memory: PSS of an idle warm sandbox's processes (plain: of one python -c that ran the code)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
