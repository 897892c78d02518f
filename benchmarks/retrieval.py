"""Retrieval backends on one generated corpus: index build time, queries/s, and top-10 agreement.

A corpus of ``--passages`` passages (100k by default) is generated from a fixed seed: titles and
text drawn from a Zipf-Mandelbrot-distributed vocabulary of made-up words mixed with English stopwords, so
term statistics look like prose. Queries are words picked from random passages plus noise words.
Both bm25s (Lucene-like settings; numpy and numba scorers) and pyserini (Lucene BM25, k1=0.9,
b=0.4) index the same passages; the table reports build and load times, batch throughput, and how
much the two top-10 lists overlap.

    python benchmarks/retrieval.py [--passages 100000] [--queries 2000] [--skip-pyserini] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # as a script: the checkout's packages
from envs.core.cli import add_logging_argument, progress_enabled, setup_logging  # noqa: E402
from envs.retrieval.base import Passage  # noqa: E402

STOPWORDS = ("the", "of", "and", "a", "in", "to", "was", "is", "for", "on", "as", "with", "by", "at", "from", "his",
             "her", "an", "which", "that", "it", "were", "are", "this", "be")
_ONSETS = ("b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "st", "tr", "gl")
_VOWELS = ("a", "e", "i", "o", "u", "ae", "io")
_CODAS = ("", "n", "r", "s", "l", "th", "m", "x")


def make_vocabulary(rng: np.random.Generator, size: int) -> list[str]:
    """``size`` distinct pronounceable made-up words of 2-4 syllables."""
    syllables = np.array([o + v for o in _ONSETS for v in _VOWELS])
    words: set[str] = set()
    while len(words) < size:
        batch = 2 * (size - len(words))
        counts = rng.integers(2, 5, size=batch)
        picks = rng.integers(len(syllables), size=(batch, 4))
        codas = rng.integers(len(_CODAS), size=batch)
        for n, row, coda in zip(counts, picks, codas, strict=True):
            words.add("".join(syllables[row[:n]]) + _CODAS[coda])
            if len(words) == size:
                break
    return sorted(words)


def generate_corpus(n: int, seed: int = 0, vocab_size: int = 50_000) -> list[Passage]:
    """``n`` passages of 40-120 tokens: Zipf-Mandelbrot content words and ~30 % stopwords."""
    rng = np.random.default_rng(seed)
    vocab = rng.permutation(np.array(make_vocabulary(rng, vocab_size), dtype=object))  # rank != alphabet
    # Zipf-Mandelbrot (offset 50): the commonest content word is ~0.3 % of tokens, as in encyclopedic prose
    # (the stopwords take the head of the distribution); a plain Zipf puts one word in nearly every passage.
    cdf = np.cumsum(1.0 / (np.arange(1, vocab_size + 1) + 50.0) ** 1.05)
    cdf /= cdf[-1]
    lengths = rng.integers(40, 121, size=n)
    total = int(lengths.sum())
    content = vocab[np.minimum(np.searchsorted(cdf, rng.random(total)), vocab_size - 1)]
    stops = np.array(STOPWORDS, dtype=object)[rng.integers(len(STOPWORDS), size=total)]
    tokens = np.where(rng.random(total) < 0.3, stops, content)
    title_words = vocab[rng.integers(200, vocab_size, size=(n, 2))]
    passages, start = [], 0
    for i, length in enumerate(lengths):
        text = " ".join(tokens[start:start + length])
        start += length
        passages.append(Passage(id=f"d{i}", title=" ".join(title_words[i]).title(), text=text.capitalize() + "."))
    return passages


def generate_queries(passages: list[Passage], n: int, seed: int = 1) -> list[str]:
    """Queries of 3-8 words from a random passage (title words sometimes), with a noise word mixed in."""
    rng = np.random.default_rng(seed)
    queries = []
    for _ in range(n):
        p = passages[int(rng.integers(len(passages)))]
        words = p.text.rstrip(".").lower().split()
        picked = [words[int(j)] for j in rng.integers(len(words), size=int(rng.integers(3, 9)))]
        if rng.random() < 0.3:
            picked += p.title.lower().split()[:1]
        picked.insert(int(rng.integers(len(picked) + 1)), STOPWORDS[int(rng.integers(len(STOPWORDS)))])
        queries.append(" ".join(picked))
    return queries


def _timed(fn):  # noqa: ANN001, ANN202 - tiny helper
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def bench_bm25(passages: list[Passage], queries: list[str], workdir: Path, k: int) -> tuple[list[dict], list[list[str]]]:
    from envs.retrieval.bm25 import BM25Retriever

    rows = []
    index_dir = workdir / "bm25s"
    built, build_s = _timed(lambda: BM25Retriever.build(passages, index_dir, show_progress=progress_enabled(),
                                                        backend="numpy"))
    _, load_s = _timed(lambda: BM25Retriever.from_index(index_dir, backend="numpy"))
    results = None
    for backend in ("numpy", "numba"):
        retriever = BM25Retriever.from_index(index_dir, backend=backend)  # numba: compiles while warming up
        n = len(queries) if backend == "numba" else min(len(queries), 500)
        retriever.search_many(queries[:n], k)  # a first pass pages the mmap'd index in: time the second
        found, search_s = _timed(lambda r=retriever, n=n: r.search_many(queries[:n], k))
        if backend == "numba":
            results = [[p.id for p in hits] for hits in found]
        rows.append({"backend": f"bm25s ({backend})", "build_s": build_s, "load_s": load_s, "queries": n,
                     "qps": n / search_s})
    del built
    assert results is not None
    return rows, results


def bench_pyserini(passages: list[Passage], queries: list[str], workdir: Path, k: int,
                   threads: int) -> tuple[dict, list[list[str]]]:
    from envs.retrieval.pyserini_backend import PyseriniRetriever, build_index, start_jvm

    index_dir = workdir / "lucene"
    _, build_s = _timed(lambda: build_index(passages, index_dir, threads=threads, progress=progress_enabled()))
    start_jvm()
    retriever, load_s = _timed(lambda: PyseriniRetriever(index_dir, threads=threads))
    retriever.search_many(queries, k)  # a first pass warms the JVM's JIT up: time the second
    found, search_s = _timed(lambda: retriever.search_many(queries, k))
    return ({"backend": f"pyserini 1.6 Lucene ({threads} threads)", "build_s": build_s, "load_s": load_s,
             "queries": len(queries), "qps": len(queries) / search_s}, [[p.id for p in hits] for hits in found])


def overlap(a: list[list[str]], b: list[list[str]], k: int) -> tuple[float, float]:
    """Mean |A ∩ B| / k over queries, and the share of queries with identical top-k sets."""
    shares, same = [], 0
    for x, y in zip(a, b, strict=True):
        denom = min(k, max(len(x), len(y)))
        shares.append(len(set(x) & set(y)) / denom if denom else 1.0)  # both empty: they agree
        same += set(x) == set(y)
    return statistics.fmean(shares), same / len(a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-pyserini", action="store_true")
    parser.add_argument("--workdir", default=None, help="where indexes go (default: a temporary directory)")
    add_logging_argument(parser)
    args = parser.parse_args()
    setup_logging(args.log_level)

    with tempfile.TemporaryDirectory(prefix="agentr1-retrieval-bench-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        passages, gen_s = _timed(lambda: generate_corpus(args.passages, seed=args.seed))
        queries = generate_queries(passages, args.queries, seed=args.seed + 1)
        print(f"corpus: {len(passages):,} passages generated in {gen_s:.1f}s (seed {args.seed}); "
              f"{len(queries):,} queries; top-{args.k}")
        rows, bm25_ids = bench_bm25(passages, queries, workdir, args.k)
        lucene_ids = None
        if not args.skip_pyserini:
            try:
                row, lucene_ids = bench_pyserini(passages, queries, workdir, args.k, args.threads)
                rows.append(row)
            except Exception as exc:  # no Java / no pyserini: report it in the table's place
                print(f"pyserini skipped: {type(exc).__name__}: {exc}")
        print()
        print("open s: loading the saved index (bm25s: mmap; Lucene: the searcher, JVM already up). Throughput is"
              " the second pass over the queries (warm JIT and page cache), query analysis included.\n")
        print(f"| {'backend':<34} | {'index build s':>13} | {'open s':>7} | {'queries':>7} | {'queries/s':>9} |")
        print(f"|{'-' * 36}|{'-' * 15}:|{'-' * 8}:|{'-' * 8}:|{'-' * 10}:|")
        for r in rows:
            print(f"| {r['backend']:<34} | {r['build_s']:>13.1f} | {r['load_s']:>7.2f} | {r['queries']:>7} | {r['qps']:>9,.0f} |")
        if lucene_ids is not None:
            mean, identical = overlap(bm25_ids, lucene_ids, args.k)
            print(f"\ntop-{args.k} overlap bm25s vs Lucene: {mean:.3f} mean; identical sets on {identical:.1%} of queries")


if __name__ == "__main__":
    main()
