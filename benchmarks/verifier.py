r"""Verifier benchmark: ``MathVerifier``, plain math-verify and lighteval's math metric, side by side.

Two sets, in one run:

* the project's labelled pairs (``benchmarks/verifier_pairs.py``; labels are mathematical truth);
* math-verify 0.9.0's own test cases, downloaded at run time (``benchmarks/math_verify_suite.py``;
  never stored in this repository), each with its expected verdict, precision and extraction configs.

Verifiers:

* **plain math-verify** as a user calls it: ``verify(parse(gold), parse(output), float_rounding=p)``
  with the gold wrapped as math-verify expects (``$gold$`` unless it already has maths delimiters or
  a box), default extraction configs, one process (its SIGALRM timeouts need the main thread), after
  the same untimed warm-up the MathVerifier workers get;
* **lighteval 0.13.0's metric** as the Open-RS evaluation ran it (``benchmarks/lighteval_metric.py``,
  in its own venv: lighteval pins an older latex2sympy2_extended), one process;
* **MathVerifier** (``verify_batch``; also one call at a time, and with the verdict cache off) with
  ``--workers`` worker processes. On math-verify's cases it gets the case's precision and, for the
  unboxed reading, the case's extraction configs (the cases test those configs).

Rates are wall-clock verifications/s, best of ``--rounds`` interleaved rounds (the machine may be
shared); every MathVerifier round starts a fresh pool with cold caches.

    python benchmarks/verifier.py [--workers 2] [--rounds 2] [--lighteval-venv DIR | --no-lighteval]
    python benchmarks/verifier.py --write-pairs   # regenerate the labelled file
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from envs.core.cli import add_logging_argument, progress, setup_logging  # noqa: E402

from math_verify_suite import SuiteCase, load_suite  # noqa: E402
from verifier_pairs import PAIRS_PATH, load_pairs, write_pairs  # noqa: E402

Row = dict  # {"gold", "pred", "label", "precision", "match_types", "category"}


def _wrap_gold(gold: str) -> str:
    return gold if any(t in gold for t in ("$", "\\boxed", "\\(", "\\[")) else f"${gold}$"


def pair_rows(pairs: list[dict]) -> list[Row]:
    return [{"gold": p["gold"], "pred": p["output"], "label": p["label"], "precision": 6,
             "match_types": ["latex", "expr"], "category": p["category"]} for p in pairs]


def suite_rows(cases: list[SuiteCase]) -> list[Row]:
    return [{"gold": c.gold, "pred": c.pred, "label": c.expected, "precision": c.precision,
             "match_types": list(c.match_types), "category": c.source.split("::")[0]} for c in cases]


# ---------------------------------------------------------------------------- plain math-verify
def _plain_pass(rows: list[Row]) -> tuple[list[bool], float]:
    from math_verify import parse, verify

    out = []
    start = time.perf_counter()
    for row in rows:
        try:
            out.append(bool(verify(parse(_wrap_gold(row["gold"])), parse(row["pred"]), float_rounding=row["precision"])))
        except Exception:  # math-verify raises on a few inputs; that is a "no"
            out.append(False)
    return out, time.perf_counter() - start


def _plain_warm_up() -> None:
    """The warm-up every MathVerifier worker gets (``verify.warm_up``'s pairs, then SymPy's cache cleared)."""
    from math_verify import parse, verify
    from sympy.core.cache import clear_cache

    from envs.math.verify import _WARM_UP_PAIRS

    for gold, answer in _WARM_UP_PAIRS:
        try:
            verify(parse(f"${gold}$"), parse(f"\\boxed{{{answer}}}"))
        except Exception:  # best effort, as in the workers
            pass
    clear_cache()


def run_plain(rows: list[Row]) -> tuple[list[bool], float]:
    """One pass in a fresh interpreter (cold SymPy caches, like a fresh MathVerifier pool)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(rows, fh)
    try:
        out = subprocess.run([sys.executable, __file__, "--plain-pass", fh.name], capture_output=True, text=True, check=True)
    finally:
        os.unlink(fh.name)
    payload = json.loads(out.stdout.strip().splitlines()[-1])
    return payload["verdicts"], payload["seconds"]


# ---------------------------------------------------------------------------- lighteval
def run_lighteval(python: Path, rows: list[Row]) -> tuple[list[bool], float]:
    from lighteval_metric import verdicts

    return verdicts(python, [{"gold": _wrap_gold(r["gold"]), "pred": r["pred"], "precision": r["precision"],
                              "gold_format": "latex"} for r in rows])


# ---------------------------------------------------------------------------- MathVerifier
def run_ours(rows: list[Row], workers: int, mode: str = "batch") -> tuple[list[bool], float, dict[str, int]]:
    """``mode``: ``batch`` (verify_batch), ``single`` (one verify call at a time), ``nocache``."""
    from envs.core.process_pool import ProcessPool
    from envs.math import verify as mv

    pool = ProcessPool(workers, timeout=5.0, preload=mv._PRELOAD, name="bench")
    pool.start()
    pool.map(mv.fast_compare, [("1", "1")] * workers, chunksize=1)  # wait until every worker is ready
    mv.clear_caches()
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[(row["precision"], tuple(row["match_types"]))].append(i)
    verifiers = {}
    for precision, types in groups:
        gold_format = {("expr",): "expr", ("latex",): "latex"}.get(types, "any")
        verifiers[(precision, types)] = mv.MathVerifier(timeout=5.0, pool=pool, float_rounding=precision,
                                                        text_extraction=types, gold_format=gold_format,
                                                        cache_verdicts=mode != "nocache")
    out: list = [None] * len(rows)

    def run_group(key: tuple, idx: list[int]) -> None:
        pairs = [(rows[i]["gold"], rows[i]["pred"]) for i in idx]
        verdicts = (verifiers[key].verify_batch(pairs) if mode != "single"
                    else [verifiers[key].verify(g, r) for g, r in pairs])
        for i, v in zip(idx, verdicts, strict=True):
            out[i] = v

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(groups)) as threads:  # groups share the workers, none waits for another
        for future in [threads.submit(run_group, key, idx) for key, idx in groups.items()]:
            future.result()
    elapsed = time.perf_counter() - start
    pool.close()
    methods: dict[str, int] = defaultdict(int)
    for v in out:
        methods[v.method] += 1
    return [v.correct for v in out], elapsed, dict(methods)


# ---------------------------------------------------------------------------- report
def _score(verdicts: list[bool], rows: list[Row]) -> tuple[int, int, int]:
    fp = sum(1 for v, r in zip(verdicts, rows) if v and not r["label"])
    fn = sum(1 for v, r in zip(verdicts, rows) if not v and r["label"])
    return len(rows) - fp - fn, fp, fn


def _measure(name: str, rows: list[Row], rounds: int, runners: dict[str, Callable[[], tuple]]) -> dict[str, tuple]:
    """Best wall-clock time of each runner over interleaved rounds: ``{key: (verdicts, seconds, extra)}``."""
    best: dict[str, tuple] = {}
    bar = progress(total=rounds * len(runners), desc=name, unit="run", leave=False)
    for _ in range(rounds):
        for key, run in runners.items():
            bar.update()
            verdicts, seconds, *extra = run()
            if key not in best or seconds < best[key][1]:
                best[key] = (verdicts, seconds, extra[0] if extra else None)
    bar.close()
    return best


def _table(title: str, rows: list[Row], results: dict[str, tuple], names: dict[str, str]) -> None:
    print(f"\n### {title}: {len(rows)} cases ({sum(r['label'] for r in rows)} equivalent)\n")
    print("| verifier | correct | agreement | false pos | false neg | verifications/s | vs plain |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    plain_seconds = results["plain"][1]
    for key, name in names.items():
        if key not in results:
            continue
        verdicts, seconds, _ = results[key]
        ok, fp, fn = _score(verdicts, rows)
        print(f"| {name} | {ok}/{len(rows)} | {ok / len(rows):.3f} | {fp} | {fn} | {len(rows) / seconds:,.0f} | "
              f"{plain_seconds / seconds:.2f}x |")


def _errors(title: str, rows: list[Row], verdicts: list[bool], limit: int = 20) -> None:
    wrong = [r for r, v in zip(rows, verdicts) if v != r["label"]]
    if wrong:
        print(f"\n{title} errors:")
        for r in wrong[:limit]:
            print(f"  [{r['category']}] gold={r['gold'][:60]!r} label={r['label']} pred=...{r['pred'][-70:]!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=Path, default=PAIRS_PATH)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds; the best of each is shown")
    parser.add_argument("--lighteval-venv", type=Path, default=Path(tempfile.gettempdir()) / "agentr1-lighteval-0.13.0",
                        help="virtual environment for lighteval (created on first use)")
    parser.add_argument("--no-lighteval", action="store_true")
    parser.add_argument("--no-suite", action="store_true", help="skip math-verify's own cases")
    parser.add_argument("--write-pairs", action="store_true", help="regenerate the labelled file and exit")
    parser.add_argument("--plain-pass", type=Path, help=argparse.SUPPRESS)  # internal: one cold plain pass
    add_logging_argument(parser, default="error")  # the verifier's timeouts and rejections are expected here
    args = parser.parse_args(argv)
    if args.plain_pass:
        logging.disable(logging.WARNING)
        _plain_warm_up()
        verdicts, seconds = _plain_pass(json.loads(args.plain_pass.read_text()))
        print(json.dumps({"verdicts": verdicts, "seconds": seconds}))
        return 0
    setup_logging(args.log_level)
    if args.write_pairs:
        print(f"wrote {write_pairs(args.pairs)} pairs to {args.pairs}")
        return 0
    lighteval_python = None
    if not args.no_lighteval:
        from lighteval_metric import ensure_venv

        lighteval_python = ensure_venv(args.lighteval_venv)
    sets = {"labelled pairs": pair_rows(load_pairs(args.pairs, None))}
    if not args.no_suite:
        sets["math-verify 0.9.0's own cases"] = suite_rows(load_suite())
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{cpus} CPUs; MathVerifier with {args.workers} workers; best of {args.rounds} interleaved rounds")
    names = {"plain": "plain math-verify (1 process)", "lighteval": "lighteval 0.13.0 math metric (1 process)",
             "batch": f"MathVerifier.verify_batch ({args.workers} workers)",
             "single": f"MathVerifier.verify, one call at a time ({args.workers} workers)",
             "nocache": f"MathVerifier.verify_batch, verdict cache off ({args.workers} workers)"}
    for title, rows in sets.items():
        runners: dict[str, Callable[[], tuple]] = {"plain": lambda rows=rows: run_plain(rows)}
        if lighteval_python is not None:
            runners["lighteval"] = lambda rows=rows: run_lighteval(lighteval_python, rows)
        for mode in ("batch", "single", "nocache"):
            runners[mode] = lambda rows=rows, mode=mode: run_ours(rows, args.workers, mode)
        results = _measure(title, rows, args.rounds, runners)
        _table(title, rows, results, names)
        methods = results["batch"][2]
        print("\nMathVerifier decisions by method: " + ", ".join(f"{k} {v}" for k, v in sorted(methods.items())))
        if title == "labelled pairs":
            print("\n| category | pairs | plain | lighteval | MathVerifier |")
            print("|---|---:|---:|---:|---:|")
            by_cat: dict[str, list[int]] = defaultdict(list)
            for i, row in enumerate(rows):
                by_cat[row["category"]].append(i)
            for category, idx in sorted(by_cat.items()):
                sub = [rows[i] for i in idx]
                cells = []
                for key in ("plain", "lighteval", "batch"):
                    if key in results:
                        cells.append(f"{_score([results[key][0][i] for i in idx], sub)[0] / len(sub):.3f}")
                    else:
                        cells.append("-")
                print(f"| {category} | {len(idx)} | " + " | ".join(cells) + " |")
        _errors(f"MathVerifier ({title})", rows, results["batch"][0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
