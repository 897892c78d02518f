"""Building retrievers from configuration, with one shared instance per configuration per process.

A vector env makes many env instances in one process; they all ask for the same retriever, and
``shared_retriever`` hands each the same object instead of loading (or building) the index again.
Callers of one configuration wait for its single build; other configurations build meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from envs.core.shared import SharedValues
from envs.retrieval.base import Passage, Retriever
from envs.retrieval.corpus import corpus_fingerprint, load_corpus

BACKENDS = ("bm25", "pyserini", "http", "dense", "hybrid")

_SHARED: SharedValues[Retriever] = SharedValues()


def make_retriever(backend: str = "bm25", *, passages: Sequence[Passage] | None = None,
                   corpus_path: str | os.PathLike[str] | None = None, index: str | os.PathLike[str] | None = None,
                   url: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                   **options: Any) -> Retriever:
    """A new retriever of ``backend`` (``BACKENDS``).

    ``bm25``/``pyserini``/``dense``/``hybrid`` over ``passages``, a corpus file or an ``index``
    directory; ``dense`` also over a prebuilt faiss file with its corpus (``index="e5_Flat.index",
    corpus_path="wiki-18.jsonl"``, Search-R1's files), and ``hybrid`` adds a BM25 index over that
    corpus; ``http`` at ``url``. ``options`` go to the backend (``embedder=``, ``index_type=``,
    ``dense_weight=``, ...: see ``envs.retrieval.dense`` and ``envs.retrieval.hybrid``).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown retriever backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "http":
        if not url:
            raise ValueError("retriever='http' needs retriever_url='http://host:port'")
        from envs.retrieval.http import HttpRetriever

        return HttpRetriever(url, **options)
    if index is not None and Path(index).expanduser().is_file() and backend in ("dense", "hybrid"):
        return _prebuilt_faiss(backend, index, corpus_path, cache_dir, options)
    if index is not None:
        if backend == "bm25":
            from envs.retrieval.bm25 import BM25Retriever

            return BM25Retriever.from_index(index, **options)
        if backend == "dense":
            from envs.retrieval.dense import DenseRetriever

            return DenseRetriever.from_index(index, **options)
        if backend == "hybrid":
            from envs.retrieval.hybrid import HybridRetriever

            return HybridRetriever.from_index(index, **options)
        from envs.retrieval.pyserini_backend import PyseriniRetriever

        return PyseriniRetriever(index, **options)
    if passages is None:
        if corpus_path is None:
            raise ValueError(f"retriever={backend!r} needs a corpus (passages or a JSONL path) or an index")
        passages = load_corpus(corpus_path)
    if backend == "bm25":
        from envs.retrieval.bm25 import BM25Retriever

        return BM25Retriever(passages, cache_dir=cache_dir, **options)
    if backend == "dense":
        from envs.retrieval.dense import DenseRetriever

        return DenseRetriever.from_passages(passages, cache_dir=cache_dir, **options)
    if backend == "hybrid":
        from envs.retrieval.hybrid import HybridRetriever

        return HybridRetriever.from_passages(passages, cache_dir=cache_dir, **options)
    from envs.retrieval.pyserini_backend import PyseriniRetriever

    return PyseriniRetriever.from_passages(passages, cache_dir=cache_dir, **options)


def _prebuilt_faiss(backend: str, index: str | os.PathLike[str], corpus_path: str | os.PathLike[str] | None,
                    cache_dir: str | os.PathLike[str] | None, options: dict[str, Any]) -> Retriever:
    """A faiss index file and its JSONL corpus (row i = line i), as Search-R1 ships them."""
    if corpus_path is None:
        raise ValueError(f"index={str(index)!r} is a faiss file: pass the corpus it was built from too "
                         "(corpus_path=..., --corpus, or the env's corpus=...)")
    if backend == "dense":
        from envs.retrieval.dense import DenseRetriever

        return DenseRetriever.from_faiss(index, corpus_path, cache_dir=cache_dir, **options)
    from envs.retrieval.hybrid import HybridRetriever

    return HybridRetriever.from_faiss(index, corpus_path, cache_dir=cache_dir, **options)


def _file_key(path: str | os.PathLike[str]) -> str:
    p = Path(path).expanduser().resolve()
    st = p.stat()
    return f"{p}:{st.st_size}:{st.st_mtime_ns}"


def shared_retriever(backend: str = "bm25", *, passages: Sequence[Passage] | None = None,
                     corpus_path: str | os.PathLike[str] | None = None, index: str | os.PathLike[str] | None = None,
                     url: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                     **options: Any) -> Retriever:
    """Like ``make_retriever``, but one instance per configuration in this process."""
    corpus_key = (corpus_fingerprint(passages) if passages is not None else
                  _file_key(corpus_path) if corpus_path is not None else None)
    config = {"backend": backend, "corpus": corpus_key, "index": str(index) if index else None, "url": url,
              "cache_dir": str(cache_dir) if cache_dir else None, "options": options}
    key = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()
    return _SHARED.get(key, lambda: make_retriever(backend, passages=passages, corpus_path=corpus_path, index=index,
                                                   url=url, cache_dir=cache_dir, **options))


def clear_shared_retrievers() -> None:
    """Forget the shared instances (tests; freeing memory in a long-lived process)."""
    _SHARED.clear()
