"""``python -m envs.retrieval``: build an index, serve it over HTTP, or try a query.

    python -m envs.retrieval build-index --corpus corpus.jsonl --backend bm25|pyserini|dense|hybrid [--out DIR]
    python -m envs.retrieval serve --corpus corpus.jsonl --backend dense --port 8000
    python -m envs.retrieval serve --backend dense --index e5_Flat.index --corpus wiki-18.jsonl --embedder e5-base-v2
    python -m envs.retrieval search --corpus corpus.jsonl --backend hybrid -k 5 "who founded X"

Dense indexes embed with WordLlama unless ``--embedder`` names a sentence-transformers model
(``e5-base-v2``, ``bge-base-en-v1.5``, a hub id or a local path); ``--index`` takes an index
directory, or a prebuilt faiss file together with the ``--corpus`` it was built from (Search-R1's).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from envs.core.cli import add_logging_argument, cli_entry, program_name, progress_enabled, setup_logging
from envs.retrieval.base import format_passages
from envs.retrieval.corpus import default_cache_dir, load_corpus
from envs.retrieval.factory import BACKENDS, make_retriever

_DENSE = ("dense", "hybrid")


def _add_dense_options(p: argparse.ArgumentParser, *, building: bool) -> None:
    g = p.add_argument_group("dense and hybrid backends")
    g.add_argument("--embedder", default=None,
                   help="wordllama (default; embedded, no download) or a sentence-transformers model: e5-base-v2, "
                        "bge-base-en-v1.5, a hub id or a local path (a prebuilt faiss file defaults to e5-base-v2)")
    g.add_argument("--batch-size", type=int, default=None, help="texts per embedding batch")
    g.add_argument("--index-type", default=None,
                   help="faiss index_factory string when building: Flat (default, exact), IVF4096,Flat, HNSW32, ...")
    if not building:
        g.add_argument("--nprobe", type=int, default=None, help="IVF lists searched per query (default 16)")
        g.add_argument("--ef-search", type=int, default=None, help="HNSW search breadth (default 64)")
        g.add_argument("--cpu", action="store_true", help="keep the faiss index on the CPU even with faiss-gpu")
        g.add_argument("--dense-weight", type=float, default=None,
                       help="hybrid: weight of the dense score in the fusion (0 = BM25 alone, 1 = dense alone; "
                            "default 0.3)")


def _dense_options(args: argparse.Namespace, *, building: bool) -> dict[str, Any]:
    """The ``make_retriever`` / ``build`` options the dense flags ask for (only those given)."""
    if args.backend not in _DENSE:
        given = [f for f in ("embedder", "batch_size", "index_type", "nprobe", "ef_search", "dense_weight")
                 if getattr(args, f, None) is not None] + (["cpu"] if getattr(args, "cpu", False) else [])
        if given:
            raise SystemExit(f"--{given[0].replace('_', '-')} applies to --backend dense or hybrid")
        return {}
    options: dict[str, Any] = {}
    index = getattr(args, "index", None)
    if args.index_type is not None:
        if index is not None:
            raise SystemExit("--index-type applies when building from --corpus; an index keeps the type it was built with")
        options["index_type"] = args.index_type
    if args.embedder is not None:
        options["embedder"] = args.embedder
    if args.batch_size is not None:
        options["embedder_options"] = {"batch_size": args.batch_size}
    if not building:
        for flag, key in (("nprobe", "nprobe"), ("ef_search", "ef_search")):
            if getattr(args, flag) is not None:
                options[key] = getattr(args, flag)
        if args.cpu:
            options["use_gpu"] = False
        if args.dense_weight is not None:
            if args.backend != "hybrid":
                raise SystemExit("--dense-weight applies to --backend hybrid")
            options["dense_weight"] = args.dense_weight
    return options


def _add_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=[b for b in BACKENDS if b != "http"], default="bm25")
    p.add_argument("--corpus", help="JSONL corpus with id, title, text (or Search-R1's contents) per line")
    p.add_argument("--index", help="an index directory (pyserini: or a prebuilt index name; dense/hybrid: or a "
                                   "faiss file, with the --corpus it was built from)")
    p.add_argument("--cache-dir", default=None, help=f"index cache root (default {default_cache_dir()})")
    _add_dense_options(p, building=False)


def _build_index(args: argparse.Namespace) -> int:
    options = _dense_options(args, building=True)
    started = time.perf_counter()
    passages = load_corpus(args.corpus)
    print(f"read {len(passages):,} passages from {args.corpus} in {time.perf_counter() - started:.1f}s")
    started = time.perf_counter()
    if args.backend == "bm25":
        from envs.retrieval.bm25 import BM25Retriever

        if args.out:
            retriever = BM25Retriever.build(passages, args.out, show_progress=progress_enabled())
        else:
            retriever = BM25Retriever(passages, cache_dir=args.cache_dir, show_progress=progress_enabled())
        out = retriever.index_dir
    elif args.backend in _DENSE:
        if args.out:
            from envs.retrieval.dense import DenseRetriever
            from envs.retrieval.hybrid import HybridRetriever

            (DenseRetriever if args.backend == "dense" else HybridRetriever).build(passages, args.out, **options)
            out = Path(args.out)
        else:
            retriever = make_retriever(args.backend, passages=passages, cache_dir=args.cache_dir, show_progress=progress_enabled(),
                                       **options)
            out = getattr(retriever, "index_dir", None) or getattr(retriever.dense, "index_dir", None)  # type: ignore[attr-defined]
    else:
        from envs.retrieval.corpus import corpus_fingerprint
        from envs.retrieval.pyserini_backend import build_index

        root = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
        out = Path(args.out) if args.out else root / "indexes" / f"lucene-{corpus_fingerprint(passages)}"
        build_index(passages, out, threads=args.threads, progress=progress_enabled())
    print(f"index written to {out} in {time.perf_counter() - started:.1f}s")
    return 0


def _retriever(args: argparse.Namespace):  # noqa: ANN202 - any Retriever
    if args.corpus is None and args.index is None:
        raise SystemExit("pass --corpus, --index, or both (a faiss index file with the corpus it was built from)")
    options: dict[str, Any] = {"threads": args.threads} if args.backend == "pyserini" else {}
    options.update(_dense_options(args, building=False))
    return make_retriever(args.backend, corpus_path=args.corpus, index=args.index, cache_dir=args.cache_dir, **options)


def _serve(args: argparse.Namespace) -> int:
    from envs.retrieval.server import ServerLimits, serve

    limits = {name: getattr(args, name) for name in ("max_topk", "max_body_bytes", "max_query_chars", "max_queries",
                                                     "header_timeout", "max_connections")
              if getattr(args, name) is not None}
    retriever = _retriever(args)
    serve(retriever, host=args.host, port=args.port, log_level=args.log_level,
          limits=ServerLimits(default_topk=args.topk, **limits))
    return 0


def _search(args: argparse.Namespace) -> int:
    retriever = _retriever(args)
    for hits in retriever.search_many(args.queries, args.k):
        print(format_passages(hits))
        print()
    return 0


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=program_name("envs.retrieval"), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build-index", help="index a JSONL corpus (bm25s, pyserini's Lucene indexer, dense, hybrid)")
    b.add_argument("--backend", choices=["bm25", "pyserini", *_DENSE], default="bm25")
    b.add_argument("--corpus", required=True)
    b.add_argument("--out", default=None, help="index directory (default: the cache, keyed by corpus hash)")
    b.add_argument("--cache-dir", default=None)
    b.add_argument("--threads", type=int, default=2)
    add_logging_argument(b)
    _add_dense_options(b, building=True)
    b.set_defaults(func=_build_index)
    s = sub.add_parser("serve", help="serve the Search-R1 /retrieve protocol over a backend")
    _add_source(s)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--topk", type=int, default=3, help="topk when a request does not say (or says 0)")
    s.add_argument("--threads", type=int, default=2)
    add_logging_argument(s)
    limits = s.add_argument_group("limits (defaults: envs.retrieval.server.ServerLimits)")
    limits.add_argument("--max-topk", type=int, default=None, help="a larger topk is lowered to it (default 1000)")
    limits.add_argument("--max-body-bytes", type=int, default=None, help="larger request bodies get 413 (default 64 MiB)")
    limits.add_argument("--max-query-chars", type=int, default=None,
                        help="longer queries are truncated to it (default 4096)")
    limits.add_argument("--max-queries", type=int, default=None,
                        help="queries per request; more get 413 (default 8192)")
    limits.add_argument("--header-timeout", type=float, default=None,
                        help="seconds a connection has to send its request headers (closes half-open sockets; default 10)")
    limits.add_argument("--max-connections", type=int, default=None,
                        help="open connections; beyond it the oldest idle one is closed (default 1024)")
    s.set_defaults(func=_serve)
    q = sub.add_parser("search", help="print the top passages for queries")
    _add_source(q)
    q.add_argument("-k", type=int, default=5)
    q.add_argument("--threads", type=int, default=2)
    q.add_argument("queries", nargs="+")
    add_logging_argument(q)
    q.set_defaults(func=_search)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
