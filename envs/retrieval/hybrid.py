"""Hybrid retrieval: BM25 and dense scores fused into one ranking, with one knob (``dense_weight``).

Each backend returns ``depth`` candidates; a candidate scores

    (1 - dense_weight) * bm25 / best_bm25  +  dense_weight * cosine

where ``best_bm25`` is the query's top BM25 score (so BM25's part is in [0, 1], 1 for its best hit)
and ``cosine`` is the dense similarity (the embedders here normalise their vectors). A candidate one
backend did not return gets that backend's lower bound: 0 for BM25, the lowest cosine it returned
for dense. Ties go to the better BM25 rank. ``dense_weight`` 0 is BM25 alone, 1 is dense alone.

Why scores and not reciprocal-rank fusion: RRF treats BM25's confident hit (an exact name match,
far ahead of the rest) like any rank-1, so a weak dense model overrules it. With the embedded
WordLlama on the suite's benchmark data (``benchmarks/retrieval.py recall``), RRF fell below BM25
alone (recall@1 0.195 vs 0.222 on 3,000 generated questions, recall@10 0.465 vs 0.493 on 300),
while score fusion at 0.3 was never below BM25 and gained up to 3 points (docs/retrieval-dense.md
has the tables and the sweep). Cosines of a strong embedder (e5, bge) sit close together, so with
one of those raise the weight (0.5-0.7) to give dense the same say.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from envs.retrieval.base import Passage, RetrievalError, Retriever, query_batch

DEFAULT_DENSE_WEIGHT = 0.3
DEFAULT_DEPTH = 50
BM25_SUBDIR, DENSE_SUBDIR = "bm25", "dense"


def fuse(sparse: Sequence[Passage], dense: Sequence[Passage], k: int, *,
         dense_weight: float = DEFAULT_DENSE_WEIGHT) -> list[Passage]:
    """The top ``k`` of a BM25 and a dense ranking (passages matched by id), fused as the module says."""
    best = sparse[0].score if sparse else 0.0
    bm25 = {}
    for p in sparse:  # first listing wins: a backend listing a passage twice counts it once
        bm25.setdefault(p.id, p.score / best if best > 0 else 0.0)
    cosine = {}
    for p in dense:
        cosine.setdefault(p.id, p.score)
    floor = min(cosine.values(), default=0.0)
    found = {p.id: p for p in dense}
    found.update({p.id: p for p in sparse})
    rank = {pid: r for r, pid in enumerate(bm25)}
    fused = {pid: (1.0 - dense_weight) * bm25.get(pid, 0.0) + dense_weight * cosine.get(pid, floor) for pid in found}
    order = sorted(fused, key=lambda pid: (-fused[pid], rank.get(pid, len(rank))))
    return [found[pid].scored(fused[pid]) for pid in order[:k]]


class HybridRetriever:
    """BM25 and dense retrieval over one corpus, fused (see the module docstring)."""

    name = "hybrid"

    def __init__(self, sparse: Retriever, dense: Retriever, *, dense_weight: float = DEFAULT_DENSE_WEIGHT,
                 depth: int = DEFAULT_DEPTH):
        if not 0.0 <= dense_weight <= 1.0 or depth < 1:
            raise ValueError(f"dense_weight must be in [0, 1] and depth >= 1, got {dense_weight}, {depth}")
        self.sparse, self.dense = sparse, dense
        self.dense_weight, self.depth = float(dense_weight), int(depth)

    @classmethod
    def from_passages(cls, passages: Sequence[Passage], *, cache_dir: str | os.PathLike[str] | None = None,
                      bm25_options: dict[str, Any] | None = None, **options: Any) -> HybridRetriever:
        """BM25 and dense indexes over ``passages`` (each cached like its backend alone)."""
        from envs.retrieval.bm25 import BM25Retriever
        from envs.retrieval.dense import DenseRetriever

        fusion, dense_options = _split(options)
        sparse = BM25Retriever(passages, cache_dir=cache_dir, **(bm25_options or {}))
        dense = DenseRetriever.from_passages(passages, cache_dir=cache_dir, **dense_options)
        return cls(sparse, dense, **fusion)

    @classmethod
    def build(cls, passages: Sequence[Passage], out_dir: str | os.PathLike[str], *,
              bm25_options: dict[str, Any] | None = None, show_progress: bool = True, **options: Any) -> HybridRetriever:
        """Write ``out_dir/bm25`` and ``out_dir/dense`` (each with its own manifest)."""
        from envs.retrieval.bm25 import BM25Retriever
        from envs.retrieval.dense import DenseRetriever

        fusion, dense_options = _split(options)
        out_dir = Path(out_dir)
        sparse = BM25Retriever.build(passages, out_dir / BM25_SUBDIR, show_progress=show_progress, **(bm25_options or {}))
        dense = DenseRetriever.build(passages, out_dir / DENSE_SUBDIR, show_progress=show_progress, **dense_options)
        return cls(sparse, dense, **fusion)

    @classmethod
    def from_index(cls, index_dir: str | os.PathLike[str], *, bm25_options: dict[str, Any] | None = None,
                   **options: Any) -> HybridRetriever:
        """Open a directory written by ``build`` (``bm25/`` and ``dense/`` inside)."""
        from envs.retrieval.bm25 import BM25Retriever
        from envs.retrieval.dense import DenseRetriever

        index_dir = Path(index_dir)
        if not (index_dir / BM25_SUBDIR).is_dir() or not (index_dir / DENSE_SUBDIR).is_dir():
            raise RetrievalError(f"{index_dir} is not a hybrid index (it needs {BM25_SUBDIR}/ and {DENSE_SUBDIR}/ "
                                 "inside; build one with `python -m envs.retrieval build-index --backend hybrid`)")
        fusion, dense_options = _split(options)
        sparse = BM25Retriever.from_index(index_dir / BM25_SUBDIR, **(bm25_options or {}))
        dense = DenseRetriever.from_index(index_dir / DENSE_SUBDIR, **dense_options)
        return cls(sparse, dense, **fusion)

    @classmethod
    def from_faiss(cls, index_file: str | os.PathLike[str], corpus_path: str | os.PathLike[str], *,
                   cache_dir: str | os.PathLike[str] | None = None, bm25_options: dict[str, Any] | None = None,
                   **options: Any) -> HybridRetriever:
        """A prebuilt faiss file and its corpus (``DenseRetriever.from_faiss``) plus a BM25 index over that corpus."""
        from envs.retrieval.bm25 import BM25Retriever
        from envs.retrieval.corpus import load_corpus
        from envs.retrieval.dense import DenseRetriever

        fusion, dense_options = _split(options)
        dense = DenseRetriever.from_faiss(index_file, corpus_path, cache_dir=cache_dir, **dense_options)
        sparse = BM25Retriever(load_corpus(corpus_path), cache_dir=cache_dir, **(bm25_options or {}))
        return cls(sparse, dense, **fusion)

    def search(self, query: str, k: int = 5) -> list[Passage]:
        return self.search_many([query], k)[0]

    def search_many(self, queries: Sequence[str], k: int = 5) -> list[list[Passage]]:
        queries = query_batch(queries, k)
        depth = max(k, self.depth)
        sparse = self.sparse.search_many(queries, depth) if self.dense_weight < 1 else [[] for _ in queries]
        dense = self.dense.search_many(queries, depth) if self.dense_weight > 0 else [[] for _ in queries]
        return [fuse(a, b, k, dense_weight=self.dense_weight) for a, b in zip(sparse, dense, strict=True)]

    def __len__(self) -> int:
        return len(self.dense)  # type: ignore[arg-type]

    def close(self) -> None:
        for backend in (self.sparse, self.dense):
            close = getattr(backend, "close", None)
            if close is not None:
                close()


_FUSION = ("dense_weight", "depth")


def _split(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(fusion options, dense options)."""
    return ({k: v for k, v in options.items() if k in _FUSION}, {k: v for k, v in options.items() if k not in _FUSION})
