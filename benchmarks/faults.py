r"""Fault-injection benchmark: each fault injected repeatedly, every outcome counted.

Sections (all by default; ``--only NAME`` for one):

* ``fairness``: 32 threads verify symbolic answers on a 2-worker math pool; calls per thread
  (min/max), step latency against the configured deadline (``queue_timeout + timeout``), busy outcomes.
* ``kill``: threads verify correct answers while a killer ``SIGKILL``\ s a random worker in service
  (both workers busy with checks) every ``--kill-every`` seconds, once the pool is back to full size;
  counts checks tried, correct, ``env_error`` (neutral), wrong (a correct answer scored wrong: must
  be 0), retries, and worker processes left alive after ``close()``.
* ``bm25``: every corruption of a cached bm25 index (a ranking is correct when ids and scores match) (same-size byte flip, truncation, deletion of
  each file; missing, garbled or wrong manifest): correct ranking, clear error, or silently wrong,
  for the cache (rebuilt) and for a read-only ``from_index``; plus what loading without the
  integrity check would have done.
* ``server``: a normal client polls the retrieval server while hostile clients send oversized
  bodies, 50 MB queries, bad ``topk`` values, 2,000 half-open connections and slow-loris headers
  (loopback only, bounded loops); the normal client's answers and latency, server status codes,
  connections, log volume and file descriptors left open.
* ``frozen``: a server that accepts and never answers costs the HTTP client its deadline once.
* ``tools``: calculator and sympy out-of-range / unprintable cases give tool messages.

    python benchmarks/faults.py [--seconds 20] [--threads 32] [--workers 2] [--only fairness]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from envs.core.cli import add_logging_argument, setup_logging  # noqa: E402

# Correct (gold, response) pairs the fast path leaves to math-verify (about 10-40 ms each).
SYMBOLIC_PAIRS = [
    ("\\frac{1}{2}", "\\boxed{\\sin(\\pi/6)}"),
    ("6\\sqrt{2}", "\\boxed{\\sqrt{72}}"),
    ("\\frac{\\sqrt{3}}{2}", "\\boxed{\\cos(\\pi/6)}"),
    ("2\\sqrt{5}", "\\boxed{\\sqrt{20}}"),
    ("x^2-1", "\\boxed{(x-1)(x+1)}"),
    ("\\frac{\\pi}{4}", "\\boxed{\\frac{2\\pi}{8}}"),
    ("3\\sqrt{3}", "\\boxed{\\sqrt{27}}"),
    ("(x+1)^2", "\\boxed{x^2+2x+1}"),
]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _math_pool(workers: int, timeout: float):
    from envs.core.process_pool import ProcessPool
    from envs.math.verify import _PRELOAD

    pool = ProcessPool(workers, timeout=timeout, preload=_PRELOAD, name="faults")
    assert pool.wait_ready(180), "the math workers did not start"
    while pool.ready_workers < workers:
        time.sleep(0.05)
    return pool


# ---------------------------------------------------------------------------- fairness
def fairness(args: argparse.Namespace) -> None:
    from envs.math.verify import ENV_ERROR, MathVerifier

    pool = _math_pool(args.workers, args.timeout)
    verifier = MathVerifier(timeout=args.timeout, pool=pool, cache_verdicts=False)
    counts = [0] * args.threads
    latencies: list[float] = []
    methods: dict[str, int] = {}
    lock = threading.Lock()
    stop = time.monotonic() + args.seconds

    def loop(i: int) -> None:
        rng = random.Random(i)
        while time.monotonic() < stop:
            gold, response = rng.choice(SYMBOLIC_PAIRS)
            started = time.perf_counter()
            verdict = verifier.verify(gold, response)
            elapsed = time.perf_counter() - started
            with lock:
                counts[i] += 1
                latencies.append(elapsed)
                methods[verdict.method] = methods.get(verdict.method, 0) + 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pool.close()
    deadline = pool.queue_timeout + pool.timeout
    print(f"\n## fairness: {args.threads} threads, {args.workers} workers, {os.cpu_count()} CPUs, {args.seconds:g}s\n")
    print("| checks | per thread min | per thread max | p50 s | p99 s | max s | deadline s | busy/env_error | wrong |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    wrong = sum(n for m, n in methods.items() if m not in ("symbolic", ENV_ERROR))
    print(f"| {sum(counts)} | {min(counts)} | {max(counts)} | {_pct(latencies, 0.5):.3f} | {_pct(latencies, 0.99):.3f} | "
          f"{max(latencies):.3f} | {deadline:g} | {methods.get(ENV_ERROR, 0)} | {wrong} |")
    print(f"\nverdicts by method: {methods}")


# ---------------------------------------------------------------------------- kill
def kill(args: argparse.Namespace) -> None:
    from envs.math.verify import ENV_ERROR, MathVerifier

    pool = _math_pool(args.workers, args.timeout)
    verifier = MathVerifier(timeout=args.timeout, pool=pool, cache_verdicts=False)
    tally = {"tried": 0, "correct": 0, "env_error": 0, "wrong": 0}
    reasons: dict[str, int] = {}
    lock = threading.Lock()
    stop = time.monotonic() + args.seconds
    kills = 0

    def checker(i: int) -> None:
        rng = random.Random(100 + i)
        while time.monotonic() < stop:
            verdict = verifier.verify(*rng.choice(SYMBOLIC_PAIRS))
            with lock:
                tally["tried"] += 1
                key = "correct" if verdict.correct else "env_error" if verdict.method == ENV_ERROR else "wrong"
                tally[key] += 1
                if key != "correct":
                    reasons[verdict.detail[:70]] = reasons.get(verdict.detail[:70], 0) + 1

    def killer() -> None:
        nonlocal kills
        rng = random.Random(7)
        while time.monotonic() < stop:
            time.sleep(args.kill_every)
            while pool.ready_workers < args.workers and time.monotonic() < stop:
                time.sleep(0.05)  # kill in service, not while starting: a start takes seconds under load
            pids = pool.worker_pids()
            if pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(rng.choice(pids), signal.SIGKILL)
                    kills += 1

    threads = [threading.Thread(target=checker, args=(i,)) for i in range(8)] + [threading.Thread(target=killer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seen = set(pool.worker_pids())
    pool.close()
    time.sleep(0.2)
    leaked = sum(_alive(pid) for pid in seen)
    print(f"\n## kill: SIGKILL a random worker in service every {args.kill_every:g}s for {args.seconds:g}s (8 threads, "
          f"{args.workers} workers)\n")
    print("| kills | checks | correct | env_error (neutral) | wrong (punished) | task retries | workers replaced | leaked processes |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {kills} | {tally['tried']} | {tally['correct']} | {tally['env_error']} | {tally['wrong']} | {pool.retries} | "
          f"{pool.restarts} | {leaked} |")
    if reasons:
        print(f"\nnot correct, by reason: {reasons}")


# ---------------------------------------------------------------------------- bm25
def bm25(args: argparse.Namespace) -> None:
    import bm25s

    from envs.qa.datasets import SAMPLE_CORPUS_PATH
    from envs.retrieval import RetrievalError, load_corpus
    from envs.retrieval.bm25 import BM25Retriever
    from envs.retrieval.integrity import MANIFEST_NAME

    logging.getLogger("envs.retrieval.bm25").setLevel(logging.ERROR)
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    corpus = load_corpus(SAMPLE_CORPUS_PATH)
    queries = ["Who founded Velmora Textiles?", "capital of Tervania", "river Selk Pale Ocean",
               "badminton player national titles", "opera composer Mirela Danescu cello"]
    root = Path(tempfile.mkdtemp(prefix="faults-bm25-"))
    try:
        base = BM25Retriever(corpus, cache_dir=root / "pristine")
        index_dir = base.index_dir
        expected = [[(p.id, round(p.score, 4)) for p in hits] for hits in base.search_many(queries, 5)]

        def flip(p: Path) -> None:
            data = bytearray(p.read_bytes())
            data[len(data) // 2] ^= 0x5A
            p.write_bytes(bytes(data))

        def scramble(p: Path) -> None:  # same size, every 97th byte changed
            data = bytearray(p.read_bytes())
            for i in range(0, len(data), 97):
                data[i] ^= 0x21
            p.write_bytes(bytes(data))

        corruptions = {"flip": flip, "scramble": scramble, "truncate": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
                       "delete": lambda p: p.unlink()}
        cases = [(f.name, kind, fn) for f in sorted(index_dir.iterdir()) if f.name != MANIFEST_NAME
                 for kind, fn in corruptions.items()]
        cases += [(MANIFEST_NAME, "delete", lambda p: p.unlink()), (MANIFEST_NAME, "garble", lambda p: p.write_text("{")),
                  (MANIFEST_NAME, "flip", flip)]
        rows = {"cache (rebuilt)": [0, 0, 0, 0], "read-only from_index": [0, 0, 0, 0],
                "no integrity check (the loader before)": [0, 0, 0, 0]}
        for n, (name, kind, fn) in enumerate(cases):
            for mode in rows:
                work = root / f"case{n}-{mode[:5]}"
                shutil.copytree(root / "pristine", work)
                target = work / index_dir.relative_to(root / "pristine")
                fn(target / name)
                try:
                    if mode.startswith("cache"):
                        got = BM25Retriever(corpus, cache_dir=work)
                    elif mode.startswith("read-only"):
                        got = BM25Retriever.from_index(target)
                    else:  # what the loader did before: trust whatever bm25s can read
                        got = BM25Retriever(corpus, persist=False)
                        got._model = bm25s.BM25.load(str(target), mmap=True, load_corpus=False)
                    ranking = [[(p.id, round(p.score, 4)) for p in hits] for hits in got.search_many(queries, 5)]
                    rows[mode][0 if ranking == expected else 3] += 1
                except RetrievalError:
                    rows[mode][1] += 1
                except Exception:  # a raw numpy/json exception: the old cache loader rebuilt on these
                    rows[mode][2] += 1
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\n## bm25 index corruption: {len(cases)} cases ({len(cases) - 3} file corruptions: one-byte flip, "
          "every-97th-byte scramble (both same size), truncation, deletion of each file; + 3 manifest cases)\n")
    print("| loader | correct ranking | clear error | raw exception | silently wrong ranking |")
    print("|---|---:|---:|---:|---:|")
    for mode, (ok, clear, raw, wrong) in rows.items():
        print(f"| {mode} | {ok} | {clear} | {raw} | {wrong} |")


# ---------------------------------------------------------------------------- server
_SERVER_CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))  # a common default: the issue's 1,100 sockets broke it
from envs.qa.datasets import SAMPLE_CORPUS_PATH
from envs.retrieval import load_corpus
from envs.retrieval.bm25 import BM25Retriever
from envs.retrieval.server import serve
serve(BM25Retriever(load_corpus(SAMPLE_CORPUS_PATH), persist=False), host="127.0.0.1", port=int(sys.argv[1]),
      log_level="info", header_timeout=2.0, body_timeout=2.0)
"""


def _proc_status(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def server(args: argparse.Namespace) -> None:
    import http.client
    import subprocess

    from envs.retrieval.http import HttpRetriever

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_path = Path(tempfile.mkstemp(prefix="faults-server-", suffix=".log")[1])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with open(log_path, "wb") as log:
        child = subprocess.Popen([sys.executable, "-c", _SERVER_CHILD, str(port)], stdout=log, stderr=log, env=env)
    host, url = "127.0.0.1", f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/health", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        fds = lambda: len(os.listdir(f"/proc/{child.pid}/fd"))  # noqa: E731
        baseline_fds = fds()
        client = HttpRetriever(url, timeout=5.0, retries=2, backoff=0.05)
        normal: dict[str, Any] = {"tried": 0, "answered": 0, "latencies": []}
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                normal["tried"] += 1
                try:
                    if client.search("capital of Tervania", 3)[0].title == "Tervania":
                        normal["answered"] += 1
                except Exception:
                    pass
                normal["latencies"].append(time.perf_counter() - started)
                time.sleep(0.05)

        poller = threading.Thread(target=poll)
        poller.start()
        rows: list[tuple[str, str, str]] = []

        def post(body: bytes) -> int:
            conn = http.client.HTTPConnection(host, port, timeout=30)
            try:
                conn.request("POST", "/retrieve", body=body, headers={"Content-Type": "application/json"})
                return conn.getresponse().status
            except (OSError, http.client.HTTPException):
                return 0  # the server answered 413 and closed while we were still sending
            finally:
                conn.close()

        def attack(name: str, bodies: list[bytes]) -> None:
            counts: dict[int, int] = {}
            started = time.perf_counter()
            for body in bodies:
                status = post(body)
                counts[status] = counts.get(status, 0) + 1
            shown = ", ".join(f"{'closed while sending' if k == 0 else k}: {v}" for k, v in sorted(counts.items()))
            rows.append((name, shown, f"{(time.perf_counter() - started) / len(bodies):.3f} s each"))

        attack("50 MB query (x3)", [json.dumps({"queries": ["word " * 10_000_000]}).encode()] * 3)
        attack("100k-character query (x20)", [json.dumps({"queries": ["tervania " * 12_000]}).encode()] * 20)
        values = ["Infinity", "-Infinity", "NaN", "1e400", "0", "-1", "1000000000", '"5"', "true", "2.5", "[]", "{}"]
        attack("bad topk (12 kinds x10)", [b'{"queries": ["capital"], "topk": %s}' % v.encode() for v in values] * 10)
        attack("malformed JSON / deep nesting (x20)", [b"{not json", b"[" * 100_000] * 10)

        flood: list[socket.socket] = []
        peak_fds = 0
        started = time.perf_counter()
        for _ in range(2000):  # opened, never written to, held for 3 s
            try:
                flood.append(socket.create_connection((host, port), timeout=5))
            except OSError:
                break
            if len(flood) % 100 == 0:
                peak_fds = max(peak_fds, fds())
        hold = time.monotonic() + 3.0
        while time.monotonic() < hold:
            peak_fds = max(peak_fds, fds())
            time.sleep(0.05)
        closed_by_server = 0
        for s in flood:
            try:
                s.setblocking(False)
                closed_by_server += s.recv(1) == b""
            except (BlockingIOError, OSError):
                pass
            s.close()
        rows.append(("2,000 half-open connections, held 3 s", f"opened {len(flood)}, closed by the server "
                     f"{closed_by_server}; server fds peak {peak_fds} (limit 1024)", f"{time.perf_counter() - started:.1f} s"))

        loris = [socket.create_connection((host, port), timeout=5) for _ in range(200)]
        for s in loris:
            s.sendall(b"POST /retrieve HTTP/1.1\r\n")
        cut, started = 0, time.monotonic()
        while loris and time.monotonic() - started < 6.0:
            for s in list(loris):
                try:
                    s.sendall(b"X")  # one header byte per 0.2 s
                except OSError:
                    cut += 1
                    loris.remove(s)
                    s.close()
            time.sleep(0.2)
        for s in loris:
            s.close()
        rows.append(("200 slow-loris connections (a header byte per 0.2 s)", f"{cut} cut by the 2 s header deadline",
                     f"{time.monotonic() - started:.1f} s"))
        stop.set()
        poller.join()
        time.sleep(0.5)
        left_fds = fds() - baseline_fds
        peak_rss = _proc_status(child.pid, "VmHWM") / 1024
    finally:
        child.terminate()
        child.wait(10)
    log_bytes = log_path.stat().st_size
    log_path.unlink()
    lat = normal["latencies"]
    print("\n## server: hostile clients against `serve` in its own process (fd limit 1024, loopback, default limits "
          "except 2 s header/body deadlines)\n")
    print("| attack | server answers | time |")
    print("|---|---|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print("\n| normal client: answered / tried | p50 s | p99 s | max s | server peak RSS MB | server log bytes | "
          "server fds left open |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {normal['answered']} / {normal['tried']} | {_pct(lat, 0.5):.3f} | {_pct(lat, 0.99):.3f} | {max(lat):.3f} | "
          f"{peak_rss:.0f} | {log_bytes:,} | {left_fds} |")


# ---------------------------------------------------------------------------- frozen server
def frozen(args: argparse.Namespace) -> None:
    from envs.retrieval import RetrievalError
    from envs.retrieval.http import HttpRetriever

    rows = []
    with socket.socket() as listener:  # accepts (kernel backlog), never reads, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        for timeout, retries in ((2.0, 2), (5.0, 2)):
            client = HttpRetriever(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=timeout, retries=retries)
            started = time.monotonic()
            try:
                client.search("q", 3)
                outcome = "answered?"
            except RetrievalError:
                outcome = "unavailable"
            rows.append((timeout, retries, time.monotonic() - started, outcome))
    print("\n## frozen server: accepts connections, never answers\n")
    print("| client timeout s | retries | cost of one search s | outcome |")
    print("|---:|---:|---:|---|")
    for timeout, retries, cost, outcome in rows:
        print(f"| {timeout:g} | {retries} | {cost:.2f} | {outcome} |")


# ---------------------------------------------------------------------------- tools
def tools(args: argparse.Namespace) -> None:
    from envs.core.parsing import ToolCall
    from envs.core.tools import run_tool
    from envs.tools.calculator import calculator_tool
    from envs.tools.sympy_tool import compute

    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    logging.getLogger().addHandler(handler)
    calc = {"calculator": calculator_tool()}
    print("\n## tools: out-of-range and unprintable results\n")
    print("| tool | input | answer |")
    print("|---|---|---|")
    for expression in ["1e999", "1e-999", "1e308*10", "1e999999999", "9" * 300]:
        result = run_tool(calc, ToolCall("calculator", {"expression": expression}))
        print(f"| calculator | `{expression[:20]}` | {result.status}: {result.content[:90]} |")
    for expression in ["factorial(2000)", "factorial(2000)*x"]:
        try:
            answer = compute(expression)
        except Exception as exc:
            answer = f"{type(exc).__name__}: {exc}"
        print(f"| sympy | `{expression}` | {answer[:110]} |")
    logging.getLogger().removeHandler(handler)
    print(f"\nlog lines written meanwhile: {len(buffer.getvalue().splitlines())} (tracebacks: "
          f"{buffer.getvalue().count('Traceback')})")


SECTIONS = {"fairness": fairness, "kill": kill, "bm25": bm25, "server": server, "frozen": frozen, "tools": tools}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of the fairness and kill runs")
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=5.0, help="verification time limit (= queue deadline)")
    parser.add_argument("--kill-every", type=float, default=1.0, help="seconds between worker kills")
    add_logging_argument(parser, default="error")  # the faults it provokes are logged; the tables are the output
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    for name in args.only or SECTIONS:
        SECTIONS[name](args)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
