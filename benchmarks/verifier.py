r"""Verifier benchmark: ``MathVerifier`` against plain math-verify on a labelled set, in the same run.

Each pair is ``(gold, model output, label)``; the label says whether the output's final answer is
mathematically the gold (written by hand, see ``BASE_CASES``; the outputs wrap each answer form in
R1-style reasoning templates, several boxes, or no box at all). Plain math-verify is called the way
its README shows, ``verify(parse(gold), parse(output))``, in the main thread of a fresh interpreter
per round (its ``SIGALRM`` timeouts need the main thread; a fresh process gives it the same cold
SymPy caches as the fresh ``MathVerifier`` pool each round gets). Both sides get the same untimed
warm-up first (``envs.math.verify.warm_up``'s pairs, then SymPy's cache cleared).

    python benchmarks/verifier.py [--workers 2] [--rounds 3] [--pairs benchmarks/data/verifier_pairs.jsonl] [--limit N]
    python benchmarks/verifier.py --write-pairs   # regenerate the labelled file from BASE_CASES

Prints verifications/s and agreement with the labels (plus false positives / negatives) per
verifier, and agreement per category.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PAIRS_PATH = Path(__file__).resolve().parent / "data" / "verifier_pairs.jsonl"
PM = "\\begin{pmatrix} 1 & 4 \\\\ 0 & 1 \\end{pmatrix}"

# (category, gold, equivalent answer forms, different answer forms) -- labels are mathematical truth.
BASE_CASES: list[tuple[str, str, list[str], list[str]]] = [
    ("integer", "42", ["42", "42.0", "\\mathbf{42}"], ["24", "41", "-42", "420"]),
    ("integer", "1000", ["1,000", "1000", "10^3", "1{,}000"], ["100", "10000", "999"]),
    ("integer", "-4", ["-4", "-4.0", "x = -4"], ["4", "-\\frac{1}{4}"]),
    ("integer", "5050", ["5050", "5,050"], ["5000", "4950"]),
    ("integer", "120", ["120", "5!", "\\binom{10}{3}"], ["720", "210"]),
    ("integer", "24", ["24", "2^3 \\cdot 3"], ["12", "36"]),
    ("integer", "5", ["x=5", "x = 5", "5"], ["x = 6", "-5"]),
    ("thousands", "14800", ["14,800", "14{,}800", "14800"], ["14,900", "1480", "148"]),
    ("thousands", "1234567", ["1,234,567", "1234567"], ["1,234,576", "123456"]),
    ("fraction", "\\frac{3}{4}", ["\\frac{3}{4}", "\\dfrac{3}{4}", "3/4", "0.75", "\\frac{6}{8}", "\\tfrac34"],
     ["\\frac{4}{3}", "0.7", "\\frac{3}{5}"]),
    ("fraction", "\\frac{1}{6}", ["\\frac{1}{6}", "\\dfrac16", "\\frac{6}{36}", "1/6"], ["\\frac{1}{36}", "\\frac{5}{36}", "0.16"]),
    ("fraction", "-\\frac{1}{3}", ["-\\frac{1}{3}", "\\frac{-1}{3}", "-1/3"], ["\\frac{1}{3}", "-3"]),
    ("fraction", "\\frac{11}{12}", ["\\frac{11}{12}", "\\dfrac{11}{12}", "\\frac{22}{24}"], ["\\frac{12}{11}", "\\frac{3}{7}"]),
    ("fraction", "\\frac{1}{2}", ["\\frac{1}{2}", "0.5", "0.50", "\\frac{2}{4}"], ["\\frac{1}{3}", "0.05", "2"]),
    ("sqrt", "6\\sqrt{2}", ["6\\sqrt{2}", "\\sqrt{72}", "6 \\sqrt 2", "3\\sqrt{8}"], ["6\\sqrt{3}", "\\sqrt{62}", "36\\sqrt{2}"]),
    ("sqrt", "3\\sqrt{5}", ["3\\sqrt{5}", "\\sqrt{45}"], ["5\\sqrt{3}", "\\sqrt{15}"]),
    ("sqrt", "\\frac{\\sqrt{3}}{2}", ["\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{2}", "\\frac{1}{2}\\sqrt{3}", "\\frac{3}{2\\sqrt{3}}"],
     ["\\frac{\\sqrt{2}}{2}", "\\frac{1}{2}", "\\sqrt{3}"]),
    ("interval", "(4, \\infty)", ["(4,\\infty)", "\\left(4, \\infty\\right)", "(4, +\\infty)"], ["[4, \\infty)", "(-\\infty, 4)", "(4, 5)"]),
    ("interval", "[-3, 3]", ["[-3,3]", "\\left[-3, 3\\right]"], ["(-3, 3)", "[-3, 3)", "[0, 3]"]),
    ("interval", "[2, \\infty)", ["[2,\\infty)", "[2, \\infty)"], ["(2, \\infty)", "[-2, \\infty)"]),
    ("interval", "(-\\infty, -1) \\cup (1, \\infty)", ["(-\\infty,-1)\\cup(1,\\infty)", "(1, \\infty) \\cup (-\\infty, -1)"],
     ["(-1, 1)", "(-\\infty, -1] \\cup [1, \\infty)"]),
    ("set", "\\{2, 3\\}", ["\\{2,3\\}", "\\{3, 2\\}", "2, 3", "3, 2"], ["\\{2, 4\\}", "\\{2\\}", "\\{2, 3, 4\\}"]),
    ("set", "\\{-4, 4\\}", ["\\{4, -4\\}", "-4, 4"], ["\\{4\\}", "\\{-4, 0, 4\\}"]),
    ("tuple", "(7, 3)", ["(7,3)", "(7, 3)", "\\left(7, 3\\right)"], ["(3, 7)", "(7, 4)", "(7, 3, 0)"]),
    ("tuple", "(2, 2)", ["(2,2)", "\\left( 2, 2 \\right)"], ["(2, -2)", "(4, 2)"]),
    ("matrix", PM, ["\\begin{bmatrix}1&4\\\\0&1\\end{bmatrix}", "\\begin{pmatrix}1 & 4\\\\ 0 & 1\\end{pmatrix}"],
     ["\\begin{pmatrix} 1 & 4 \\\\ 1 & 0 \\end{pmatrix}", "\\begin{pmatrix} 1 & 2 \\\\ 0 & 1 \\end{pmatrix}"]),
    ("matrix", "\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}", ["\\begin{pmatrix}1\\\\-2\\end{pmatrix}", "\\begin{bmatrix} 1 \\\\ -2 \\end{bmatrix}"],
     ["\\begin{pmatrix} -2 \\\\ 1 \\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"]),
    ("units", "12", ["12 \\text{ cm}", "12\\,\\text{cm}", "12 \\text{ cm}^2"], ["13\\text{ cm}", "144 \\text{ cm}^2"]),
    ("units", "120^\\circ", ["120^\\circ", "120^{\\circ}", "120"], ["60^\\circ", "100"]),
    ("units", "12.50", ["\\$12.50", "12.5", "\\$12.5"], ["\\$12.05", "1250"]),
    ("percent", "25\\%", ["25\\%", "25", "25 \\%", "0.25"], ["30\\%", "75\\%", "2.5\\%"]),
    ("percent", "40\\%", ["40\\%", "40"], ["60\\%", "4\\%"]),
    ("text", "\\text{Monday}", ["\\text{Monday}", "Monday", "\\textbf{Monday}", "\\text{monday}"], ["\\text{Tuesday}", "Sunday"]),
    ("text", "\\text{composite}", ["\\text{composite}", "\\text{Composite}"], ["\\text{prime}"]),
    ("text", "\\text{(C)}", ["\\text{(C)}", "(C)", "C", "\\textbf{(C)}"], ["\\text{(B)}", "(D)", "B"]),
    ("expression", "x^2 - x - 6", ["x^2-x-6", "(x+2)(x-3)", "-6 - x + x^2"], ["x^2+x-6", "(x-2)(x+3)", "x^2-6"]),
    ("expression", "9\\pi", ["9\\pi", "9 \\pi", "\\pi \\cdot 9"], ["3\\pi", "9", "28.27"]),
    ("expression", "2\\sqrt{3} - 1", ["-1 + 2\\sqrt{3}", "2\\sqrt3-1"], ["2\\sqrt{3}+1", "2\\sqrt{3}"]),
    ("expression", "y = 2x + 3", ["y=2x+3", "y = 3 + 2x"], ["y = 2x - 3", "y = 3x + 2"]),
    ("decimal", "3.6", ["3.6", "3.60", "\\frac{18}{5}"], ["3.5", "36"]),
    ("decimal", "0.125", ["0.125", "\\frac{1}{8}", ".125"], ["0.12", "0.0125"]),
]

_REASONING = [
    "First I set up the quantities. From the statement, $a + b = 7$ and $2a = 10$, so $a = 5$ and $b = 2$. "
    "Then I combine them and double-check each step against the conditions.",
    "Let me think about this carefully. If we try small cases: for n = 1 we get 3, for n = 2 we get 8, for n = 3 "
    "we get 15. The pattern suggests a closed form, which I verify by substituting back.",
    "We are given the constraint, so let me rewrite it as $x^2 - 9 = 0$, which is a difference of squares. "
    "Wait, that is only part of the problem; combining with the second condition gives the result below.",
]
_TEMPLATES = [
    "<think>\n{r}\n</think>\n\nThe final answer is $\\boxed{{{a}}}$.",
    "{r}\n</think>\n\n**Final Answer**\n\\[\n\\boxed{{{a}}}\n\\]",
    "Let me solve this step by step. {r} So the answer is \\boxed{{{a}}}.",
]


def build_pairs() -> list[dict]:
    """The labelled set: every answer form in several templates, plus several-box and no-box outputs."""
    pairs: list[dict] = []
    for case_index, (category, gold, same, different) in enumerate(BASE_CASES):
        for forms, label in ((same, True), (different, False)):
            for form_index, form in enumerate(forms):
                for t_index, template in enumerate(_TEMPLATES):
                    reasoning = _REASONING[(case_index + form_index + t_index) % len(_REASONING)]
                    pairs.append({"gold": gold, "output": template.format(r=reasoning, a=form), "label": label,
                                  "category": category})
        reasoning = _REASONING[case_index % len(_REASONING)]
        right, wrong = same[0], different[0]
        pairs.append({"gold": gold, "label": True, "category": "several-boxes",
                      "output": f"{reasoning} My first attempt gave \\boxed{{{wrong}}}, but I made a slip. "
                                f"Rechecking, the answer is \\boxed{{{right}}}."})
        pairs.append({"gold": gold, "label": False, "category": "several-boxes",
                      "output": f"{reasoning} I first wrote \\boxed{{{right}}}, then changed my mind: \\boxed{{{wrong}}}."})
        pairs.append({"gold": gold, "label": True, "category": "no-box",
                      "output": f"<think>\n{reasoning}\n</think>\n\nThe final answer is ${right}$."})
        pairs.append({"gold": gold, "label": False, "category": "no-box",
                      "output": f"<think>\n{reasoning}\n</think>\n\nThe final answer is ${wrong}$."})
    return pairs


def write_pairs(path: Path) -> int:
    """Write the labelled set atomically."""
    from envs.core.io import atomic_write_text

    pairs = build_pairs()
    atomic_write_text(path, "".join(json.dumps(pair, ensure_ascii=False) + "\n" for pair in pairs))
    return len(pairs)


def load_pairs(path: Path, limit: int | None) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        pairs = [json.loads(line) for line in fh if line.strip()]
    return pairs[:limit] if limit else pairs


def _proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` from ``/proc`` (Linux), 0.0 if unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _plain_pass(pairs: list[dict]) -> tuple[list[bool], float, float]:
    """Plain math-verify as its README shows it, in the main thread (its SIGALRM timeouts need that)."""
    from math_verify import parse, verify

    verdicts = []
    start, cpu = time.perf_counter(), time.process_time()
    for pair in pairs:
        verdicts.append(bool(verify(parse(f"\\boxed{{{pair['gold']}}}"), parse(pair["output"]))))
    return verdicts, time.perf_counter() - start, time.process_time() - cpu


def _plain_warm_up() -> None:
    """Give plain math-verify the warm-up each MathVerifier worker gets at start-up (``verify.warm_up``:
    one check of each common answer shape, then SymPy's cache cleared), so neither side pays
    latex2sympy's lazy parser warm-up inside the timed pass."""
    from math_verify import parse, verify
    from sympy.core.cache import clear_cache

    from envs.math.verify import _WARM_UP_PAIRS

    for gold, answer in _WARM_UP_PAIRS:
        try:
            verify(parse(f"\\boxed{{{gold}}}"), parse(f"\\boxed{{{answer}}}"))
        except Exception:  # warming is best effort, as in the workers
            pass
    clear_cache()


def run_plain(path: Path, limit: int | None) -> tuple[list[bool], float, float]:
    """One pass of plain math-verify in a fresh interpreter, so SymPy's caches start cold (as the
    MathVerifier workers' do in every round); imports are not timed."""
    command = [sys.executable, __file__, "--plain-pass", "--pairs", str(path)] + (["--limit", str(limit)] if limit else [])
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    payload = json.loads(out.stdout.strip().splitlines()[-1])
    return payload["verdicts"], payload["seconds"], payload["cpu"]


def run_ours(pairs: list[dict], workers: int, batch: bool,
             cache: bool = True) -> tuple[list[bool], float, float, dict[str, int], float]:
    from envs.core.process_pool import ProcessPool
    from envs.math import verify as mv

    pool = ProcessPool(workers, timeout=5.0, preload=mv._PRELOAD, name="bench")
    start = time.perf_counter()
    pool.start()
    pool.map(mv.fast_compare, [("1", "1")] * workers, chunksize=1)  # wait until every worker is ready
    startup = time.perf_counter() - start
    mv.clear_caches()
    verifier = mv.MathVerifier(timeout=5.0, pool=pool, cache_verdicts=cache)
    pids = [w.proc.pid for w in pool._all]
    cpu = time.process_time() + sum(_proc_cpu_seconds(pid) for pid in pids)
    start = time.perf_counter()
    if batch:
        verdicts = verifier.verify_batch([(p["gold"], p["output"]) for p in pairs])
    else:
        verdicts = [verifier.verify(p["gold"], p["output"]) for p in pairs]
    elapsed = time.perf_counter() - start
    cpu = time.process_time() + sum(_proc_cpu_seconds(pid) for pid in pids) - cpu
    pool.close()
    methods: dict[str, int] = defaultdict(int)
    for v in verdicts:
        methods[v.method] += 1
    return [v.correct for v in verdicts], elapsed, cpu, dict(methods), startup


def _agreement(verdicts: list[bool], pairs: list[dict]) -> tuple[float, int, int]:
    fp = sum(1 for v, p in zip(verdicts, pairs) if v and not p["label"])
    fn = sum(1 for v, p in zip(verdicts, pairs) if not v and p["label"])
    return 1 - (fp + fn) / len(pairs), fp, fn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=Path, default=PAIRS_PATH)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds; the best of each is shown")
    parser.add_argument("--write-pairs", action="store_true", help="regenerate the labelled file and exit")
    parser.add_argument("--plain-pass", action="store_true", help=argparse.SUPPRESS)  # internal: one cold plain pass
    args = parser.parse_args(argv)
    if args.plain_pass:
        _plain_warm_up()  # imports and the same warm-up the MathVerifier workers get, before the clock starts
        verdicts, seconds, cpu = _plain_pass(load_pairs(args.pairs, args.limit))
        print(json.dumps({"verdicts": verdicts, "seconds": seconds, "cpu": cpu}))
        return 0
    logging.basicConfig(level=logging.ERROR)
    if args.write_pairs:
        print(f"wrote {write_pairs(args.pairs)} pairs to {args.pairs}")
        return 0
    pairs = load_pairs(args.pairs, args.limit)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{len(pairs)} labelled pairs ({sum(p['label'] for p in pairs)} equivalent), {cpus} CPUs, "
          f"MathVerifier with {args.workers} workers\n")

    # Interleaved rounds, best of each (the machine may be shared): every round starts a fresh pool
    # and clears the caller-side caches, so MathVerifier's caches start cold each time. The labelled
    # set repeats each answer form in three templates, so the verdict cache finds repeats (as it does
    # among a prompt's GRPO samples); the "verdict cache off" row shows the speed without it.
    best: dict[str, float] = {}
    cpu_best: dict[str, float] = {}
    results: dict[str, list[bool]] = {}
    methods: dict[str, int] = {}
    startups: list[float] = []

    def record(key: str, verdicts: list[bool], seconds: float, cpu: float) -> None:
        results[key] = verdicts
        best[key] = min(best.get(key, float("inf")), seconds)
        cpu_best[key] = min(cpu_best.get(key, float("inf")), cpu)

    for _ in range(args.rounds):
        record("plain", *run_plain(args.pairs, args.limit))
        verdicts, seconds, cpu, methods, startup = run_ours(pairs, args.workers, batch=True)
        record("batch", verdicts, seconds, cpu)
        startups.append(startup)
        verdicts, seconds, cpu, _, _ = run_ours(pairs, args.workers, batch=False)
        record("single", verdicts, seconds, cpu)
        verdicts, seconds, cpu, _, _ = run_ours(pairs, args.workers, batch=True, cache=False)
        record("nocache", verdicts, seconds, cpu)
    plain, ours = results["plain"], results["batch"]
    names = {"plain": "plain math-verify (1 process)", "batch": f"MathVerifier.verify_batch ({args.workers} workers)",
             "single": f"MathVerifier.verify, one call at a time ({args.workers} workers)",
             "nocache": f"MathVerifier.verify_batch, verdict cache off ({args.workers} workers)"}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"best of {args.rounds} interleaved rounds; load average at the end {load:.1f}. Wall-clock rates depend on "
          "what else runs on the machine; CPU-seconds (this process + its workers) do not.\n")
    print("| verifier | verifications/s (wall) | vs plain | verifications per CPU-s | vs plain | agreement | false pos | false neg |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for key, name in names.items():
        acc, fp, fn = _agreement(results[key], pairs)
        rate, cpu_rate = len(pairs) / best[key], len(pairs) / max(cpu_best[key], 1e-9)
        print(f"| {name} | {rate:,.0f} | {best['plain'] / best[key]:.2f}x | {cpu_rate:,.0f} | "
              f"{cpu_best['plain'] / max(cpu_best[key], 1e-9):.2f}x | {acc:.3f} | {fp} | {fn} |")
    print(f"\nworker start-up (excluded above): {min(startups):.2f}s; MathVerifier decisions by method: "
          + ", ".join(f"{k} {v}" for k, v in sorted(methods.items())))

    print("\n| category | pairs | plain agreement | MathVerifier agreement |")
    print("|---|---:|---:|---:|")
    by_cat: dict[str, list[int]] = defaultdict(list)
    for i, pair in enumerate(pairs):
        by_cat[pair["category"]].append(i)
    for category, idx in sorted(by_cat.items()):
        sub = [pairs[i] for i in idx]
        p_acc = _agreement([plain[i] for i in idx], sub)[0]
        o_acc = _agreement([ours[i] for i in idx], sub)[0]
        print(f"| {category} | {len(idx)} | {p_acc:.3f} | {o_acc:.3f} |")
    disagreements = [(pairs[i], plain[i], ours[i]) for i in range(len(pairs)) if ours[i] != pairs[i]["label"]]
    if disagreements:
        print("\nMathVerifier errors:")
        for pair, p, o in disagreements[:25]:
            print(f"  [{pair['category']}] gold={pair['gold']!r} label={pair['label']} ours={o} plain={p} "
                  f"output=...{pair['output'][-60:]!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
