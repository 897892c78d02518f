"""``python -m envs.retrieval``: build an index, serve it over HTTP, or try a query.

    python -m envs.retrieval build-index --corpus corpus.jsonl --backend bm25 [--out DIR]
    python -m envs.retrieval serve --corpus corpus.jsonl --backend bm25 --port 8000
    python -m envs.retrieval search --corpus corpus.jsonl --backend bm25 -k 5 "who founded X"
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from envs.core.cli import add_logging_argument, cli_entry, program_name, progress_enabled, setup_logging
from envs.retrieval.base import format_passages
from envs.retrieval.corpus import default_cache_dir, load_corpus
from envs.retrieval.factory import BACKENDS, make_retriever


def _add_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=[b for b in BACKENDS if b != "http"], default="bm25")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--corpus", help="JSONL corpus with id, title, text (or Search-R1's contents) per line")
    src.add_argument("--index", help="an index directory (or, for pyserini, a prebuilt index name)")
    p.add_argument("--cache-dir", default=None, help=f"index cache root (default {default_cache_dir()})")


def _build_index(args: argparse.Namespace) -> int:
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
    else:
        from envs.retrieval.corpus import corpus_fingerprint
        from envs.retrieval.pyserini_backend import build_index

        root = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
        out = Path(args.out) if args.out else root / "indexes" / f"lucene-{corpus_fingerprint(passages)}"
        build_index(passages, out, threads=args.threads, progress=progress_enabled())
    print(f"index written to {out} in {time.perf_counter() - started:.1f}s")
    return 0


def _retriever(args: argparse.Namespace):  # noqa: ANN202 - any Retriever
    options = {"threads": args.threads} if args.backend == "pyserini" else {}
    return make_retriever(args.backend, corpus_path=args.corpus, index=args.index, cache_dir=args.cache_dir, **options)


def _serve(args: argparse.Namespace) -> int:
    from envs.retrieval.server import serve

    retriever = _retriever(args)
    serve(retriever, host=args.host, port=args.port, default_topk=args.topk, log_level=args.log_level,
          max_topk=args.max_topk, max_body_bytes=args.max_body_bytes, max_query_chars=args.max_query_chars,
          header_timeout=args.header_timeout, max_connections=args.max_connections)
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
    b = sub.add_parser("build-index", help="index a JSONL corpus (bm25s or pyserini's Lucene indexer)")
    b.add_argument("--backend", choices=["bm25", "pyserini"], default="bm25")
    b.add_argument("--corpus", required=True)
    b.add_argument("--out", default=None, help="index directory (default: the cache, keyed by corpus hash)")
    b.add_argument("--cache-dir", default=None)
    b.add_argument("--threads", type=int, default=2)
    add_logging_argument(b)
    b.set_defaults(func=_build_index)
    s = sub.add_parser("serve", help="serve the Search-R1 /retrieve protocol over a backend")
    _add_source(s)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--topk", type=int, default=3, help="topk when a request does not say")
    s.add_argument("--threads", type=int, default=2)
    add_logging_argument(s)
    s.add_argument("--max-topk", type=int, default=100, help="largest topk a request may ask for")
    s.add_argument("--max-body-bytes", type=int, default=1 << 20, help="larger request bodies get 413")
    s.add_argument("--max-query-chars", type=int, default=4096, help="longer queries get 413")
    s.add_argument("--header-timeout", type=float, default=10.0,
                   help="seconds a connection has to send its request headers (closes half-open sockets)")
    s.add_argument("--max-connections", type=int, default=1024,
                   help="open connections; beyond it the oldest idle one is closed")
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
