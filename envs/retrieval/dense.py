"""Dense retrieval: an embedder (``envs.retrieval.embedders``) and a faiss index, inner-product search.

Three ways in, one retriever:

* ``DenseRetriever.from_passages(passages, cache_dir=...)``: embeds the passages (WordLlama by
  default), builds the index and caches it under ``<cache_dir>/indexes/dense-<hash>`` (the hash covers
  the corpus, the embedder's ``spec()`` and the index type), written atomically with the same
  integrity manifest as the bm25 caches: a cache that fails it is rebuilt.
* ``DenseRetriever.build(passages, out_dir)`` / ``from_index(out_dir)``: an index directory
  (``index.faiss``, the corpus as ``passages.jsonl`` with line offsets, the embedder spec, the manifest);
  ``from_index`` refuses a directory that fails its manifest with ``IndexIntegrityError``.
* ``DenseRetriever.from_faiss(index_file, corpus_path, embedder="e5-base-v2")``: prebuilt files as
  Search-R1 ships them (``e5_Flat.index`` + ``wiki-18.jsonl``): row ``i`` of the index is line ``i`` of
  the corpus, read on demand (``JsonlRows``), so a 21-million-row corpus costs 8 bytes a row in memory.

``index_type`` is a faiss ``index_factory`` string: ``"Flat"`` (exact, the default and Search-R1's),
``"IVF4096,Flat"`` (inverted lists; ``nprobe`` lists searched, default 16), ``"HNSW32"`` (graph;
``ef_search``, default 64), or any other factory string (``"IVF4096,PQ64"``, ...). With faiss-gpu
installed and a GPU visible, the index is cloned to all GPUs (sharded, float16 storage as Search-R1
does); ``use_gpu=False`` keeps it on the CPU. faiss and the embedder load only when this module is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from envs.core.io import atomic_directory
from envs.retrieval.base import Passage, RetrievalError, query_batch
from envs.retrieval.corpus import (
    JsonlRows,
    corpus_fingerprint,
    default_cache_dir,
    load_offsets,
    save_offsets,
    write_corpus_jsonl,
)
from envs.retrieval.embedders import DEFAULT_EMBEDDER, Embedder, embedder_from_spec, make_embedder
from envs.retrieval.integrity import load_checked, require_intact, write_manifest

logger = logging.getLogger(__name__)

INDEX_NAME = "index.faiss"
_META_NAME = "agentr1_meta.json"
_CORPUS_NAME = "passages.jsonl"
_FORMAT_VERSION = 1
DEFAULT_NPROBE = 16
DEFAULT_EF_SEARCH = 64


def faiss_gpus() -> int:
    """GPUs faiss can use here (0 with faiss-cpu)."""
    import faiss

    return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0


def build_faiss_index(vectors: np.ndarray, index_type: str = "Flat") -> Any:
    """A faiss index over ``vectors`` (inner product), trained first when the type needs it (IVF, PQ)."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    try:
        index = faiss.index_factory(int(vectors.shape[1]), index_type, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise ValueError(f"index_type {index_type!r} is not a faiss index_factory string: "
                         f"{str(exc).strip().splitlines()[-1][:200]}") from None
    if not index.is_trained:
        try:
            index.train(vectors)
        except RuntimeError as exc:
            raise ValueError(f"could not train a {index_type!r} index on {len(vectors):,} vectors (IVF needs at "
                             f"least as many vectors as lists): {str(exc).strip().splitlines()[-1][:200]}") from None
    index.add(vectors)
    return index


class DenseRetriever:
    """Passages ranked by inner product of embeddings in a faiss index (see the module docstring).

    ``rows[i]`` is the passage of index row ``i`` (a list, or ``JsonlRows`` for large corpora).
    """

    name = "dense"

    def __init__(self, index: Any, rows: Sequence[Passage], embedder: Embedder, *, nprobe: int | None = None,
                 ef_search: int | None = None, use_gpu: bool | str = "auto", gpu_float16: bool = True,
                 index_type: str | None = None, index_dir: Path | None = None):
        if index.ntotal != len(rows):
            raise RetrievalError(f"the index has {index.ntotal:,} vectors but the corpus {len(rows):,} rows; row i "
                                 "of the index must be row i of the corpus")
        if index.d != embedder.dim:
            raise RetrievalError(f"the index holds {index.d}-dimensional vectors but embedder {embedder.name!r} "
                                 f"makes {embedder.dim}-dimensional ones; use the embedder the index was built with")
        if use_gpu not in (True, False, "auto"):
            raise ValueError(f"use_gpu must be True, False or 'auto', got {use_gpu!r}")
        self.cpu_index = index
        self.rows = rows
        self.embedder = embedder
        self.index_type = index_type
        self.index_dir = index_dir
        self.index, self.on_gpu = self._place(index, use_gpu, gpu_float16)
        self._tune(nprobe, ef_search)
        self._lock = threading.Lock()  # a GPU index is not safe to search from two threads at once

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_passages(cls, passages: Sequence[Passage], *, embedder: str | Embedder = DEFAULT_EMBEDDER,
                      embedder_options: dict[str, Any] | None = None, index_type: str = "Flat",
                      cache_dir: str | os.PathLike[str] | None = None, persist: bool = True,
                      show_progress: bool = False, **search_options: Any) -> DenseRetriever:
        """Embed and index ``passages`` (or load their cached index); ``persist=False`` keeps it in memory."""
        if not passages:
            raise ValueError("DenseRetriever needs at least one passage")
        passages = list(passages)
        model = make_embedder(embedder, **(embedder_options or {}))
        index_dir = None
        if persist:
            root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
            index_dir = root / "indexes" / f"dense-{_cache_key(passages, model, index_type)}"
            index, problem = load_checked(index_dir, lambda d: _read_index(d, model, index_type))
            if index is not None:
                logger.info("loaded dense index from %s", index_dir)
                return cls(index, passages, model, index_type=index_type, index_dir=index_dir, **search_options)
            if index_dir.exists():
                logger.warning("dense index cache %s failed its integrity check (%s); rebuilding", index_dir, problem)
        index = cls._embed_and_index(passages, model, index_type, show_progress)
        if index_dir is not None:
            try:
                _save(index_dir, index, passages, model, index_type)
            except OSError:
                logger.warning("could not save the dense index to %s; using it in memory", index_dir, exc_info=True)
                index_dir = None
        return cls(index, passages, model, index_type=index_type, index_dir=index_dir, **search_options)

    @classmethod
    def build(cls, passages: Sequence[Passage], out_dir: str | os.PathLike[str], *,
              embedder: str | Embedder = DEFAULT_EMBEDDER, embedder_options: dict[str, Any] | None = None,
              index_type: str = "Flat", show_progress: bool = True, **search_options: Any) -> DenseRetriever:
        """Build an index directory at ``out_dir`` (atomically) and return a retriever over it."""
        if not passages:
            raise ValueError("DenseRetriever needs at least one passage")
        passages = list(passages)
        model = make_embedder(embedder, **(embedder_options or {}))
        index = cls._embed_and_index(passages, model, index_type, show_progress)
        out_dir = Path(out_dir)
        _save(out_dir, index, passages, model, index_type)
        return cls(index, passages, model, index_type=index_type, index_dir=out_dir, **search_options)

    @classmethod
    def from_index(cls, index_dir: str | os.PathLike[str], *, embedder: str | Embedder | None = None,
                   embedder_options: dict[str, Any] | None = None, **search_options: Any) -> DenseRetriever:
        """Open a directory written by ``build`` / ``build-index --backend dense`` (checked against its manifest)."""
        index_dir = Path(index_dir)
        meta_path = index_dir / _META_NAME
        if not meta_path.exists():
            raise RetrievalError(f"{index_dir} is not a dense index built by agentr1-gym (no {_META_NAME}); for "
                                 "a prebuilt faiss file pass it with its corpus (index='x.index', corpus_path=...)")
        require_intact(index_dir, rebuild_hint="rebuild it with `python -m envs.retrieval build-index --backend dense`")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        saved = meta["embedder"]
        if embedder is None:
            model = embedder_from_spec(saved, **(embedder_options or {}))
        else:
            model = make_embedder(embedder, **(embedder_options or {}))
            if _comparable(model.spec()) != _comparable(saved):
                raise ValueError(f"{index_dir} was built with embedder {saved}; {model.spec()} makes other vectors")
        index = _read_index(index_dir, model, meta.get("index_type"))
        rows = JsonlRows(index_dir / _CORPUS_NAME, load_offsets(index_dir))
        return cls(index, rows, model, index_type=meta.get("index_type"), index_dir=index_dir, **search_options)

    @classmethod
    def from_faiss(cls, index_file: str | os.PathLike[str], corpus_path: str | os.PathLike[str], *,
                   embedder: str | Embedder = "e5-base-v2", embedder_options: dict[str, Any] | None = None,
                   cache_dir: str | os.PathLike[str] | None = None, **search_options: Any) -> DenseRetriever:
        """A prebuilt faiss index file and the JSONL corpus it was built from (Search-R1's ``e5_Flat.index``
        + ``wiki-18.jsonl``), loaded as they are; ``embedder`` must be the model that built it."""
        import faiss

        index_file = Path(index_file).expanduser()
        if not index_file.is_file():
            raise RetrievalError(f"faiss index file {index_file} does not exist")
        try:
            index = faiss.read_index(str(index_file))
        except RuntimeError as exc:
            raise RetrievalError(f"{index_file} is not a readable faiss index: "
                                 f"{str(exc).strip().splitlines()[-1][:200]}") from None
        rows = JsonlRows.open(corpus_path, cache_dir=cache_dir)
        model = make_embedder(embedder, **(embedder_options or {}))
        return cls(index, rows, model, index_type=None, **search_options)

    @staticmethod
    def _embed_and_index(passages: Sequence[Passage], model: Embedder, index_type: str, show_progress: bool) -> Any:
        logger.info("embedding %d passages with %s", len(passages), model.name)
        # Search-R1's index builder embeds the stored ``contents`` ("Title"\ntext), so do we
        vectors = model.encode_passages([p.contents for p in passages], show_progress=show_progress)
        return build_faiss_index(vectors, index_type)

    def _place(self, index: Any, use_gpu: bool | str, gpu_float16: bool) -> tuple[Any, bool]:
        if use_gpu is False:
            return index, False
        gpus = faiss_gpus()
        if gpus == 0:
            if use_gpu is True:
                raise ValueError("use_gpu=True, but faiss sees no GPU here (install faiss-gpu on a machine with one)")
            return index, False
        import faiss

        options = faiss.GpuMultipleClonerOptions()
        options.shard = True  # split the vectors over the GPUs instead of copying them to each
        options.useFloat16 = bool(gpu_float16)
        try:
            placed = faiss.index_cpu_to_all_gpus(index, co=options)
        except RuntimeError as exc:  # e.g. HNSW has no GPU implementation
            if use_gpu is True:
                raise ValueError(f"this index cannot move to the GPU: {str(exc).strip().splitlines()[-1]}") from None
            logger.warning("dense index stays on the CPU: %s", str(exc).strip().splitlines()[-1])
            return index, False
        logger.info("dense index on %d GPU(s)", gpus)
        return placed, True

    def _tune(self, nprobe: int | None, ef_search: int | None) -> None:
        import faiss

        space = faiss.GpuParameterSpace() if self.on_gpu else faiss.ParameterSpace()
        ivf = faiss.try_extract_index_ivf(self.cpu_index)
        if nprobe is None and ivf is not None:
            nprobe = min(DEFAULT_NPROBE, int(ivf.nlist))
        if ef_search is None and _hnsw(self.cpu_index) is not None:
            ef_search = DEFAULT_EF_SEARCH
        for name, value, kind in (("nprobe", nprobe, "IVF"), ("efSearch", ef_search, "HNSW")):
            if value is None:
                continue
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
            try:
                space.set_index_parameter(self.index, name, int(value))
            except RuntimeError:
                raise ValueError(f"{name} applies to {kind} indexes; this one is {type(self.cpu_index).__name__}") from None

    # ------------------------------------------------------------------ search
    def search(self, query: str, k: int = 5) -> list[Passage]:
        return self.search_many([query], k)[0]

    def search_many(self, queries: Sequence[str], k: int = 5) -> list[list[Passage]]:
        queries = query_batch(queries, k)
        if not queries:
            return []
        vectors = np.ascontiguousarray(self.embedder.encode_queries(queries), dtype=np.float32)
        k_eff = min(k, int(self.index.ntotal))
        if k_eff == 0:
            return [[] for _ in queries]
        if self.on_gpu:
            with self._lock:
                scores, ids = self.index.search(vectors, k_eff)
        else:
            scores, ids = self.index.search(vectors, k_eff)
        rows = self.rows
        if (ids >= 0).all():  # one flat pass: the per-hit copy is most of this method's own time
            flat = list(map(Passage.scored, map(rows.__getitem__, ids.ravel().tolist()), scores.ravel().tolist()))
            results = [flat[start:start + k_eff] for start in range(0, len(flat), k_eff)]
        else:  # an ANN index can find fewer than k (-1 ids)
            results = [[rows[i].scored(s) for i, s in zip(row_ids, row_scores, strict=True) if i >= 0]
                       for row_ids, row_scores in zip(ids.tolist(), scores.tolist(), strict=True)]
        for q in np.flatnonzero(~vectors.any(axis=1)):  # no known token: nothing matches (as bm25 finds nothing)
            results[q] = []
        return results

    def __len__(self) -> int:
        return len(self.rows)

    def close(self) -> None:
        """Drop the index and close the corpus file."""
        close = getattr(self.rows, "close", None)
        if close is not None:
            close()


def _hnsw(index: Any) -> Any:
    import faiss

    current = index
    while current is not None:
        if isinstance(current, faiss.IndexHNSW):
            return current
        current = getattr(current, "index", None)  # pre-transforms wrap the real index
        if current is not None:
            current = faiss.downcast_index(current)
    return None


def _comparable(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in ("max_length",)}


def _cache_key(passages: Sequence[Passage], model: Embedder, index_type: str) -> str:
    setting = json.dumps({"embedder": model.spec(), "index_type": index_type}, sort_keys=True)
    return corpus_fingerprint(passages) + "-" + hashlib.sha256(setting.encode()).hexdigest()[:12]


def _read_index(index_dir: Path, model: Embedder, index_type: str | None) -> Any:
    import faiss

    meta = json.loads((index_dir / _META_NAME).read_text(encoding="utf-8"))
    if meta.get("format") != _FORMAT_VERSION:
        raise RetrievalError(f"{index_dir} has index format {meta.get('format')}; this code reads {_FORMAT_VERSION}")
    if index_type is not None and meta.get("index_type") != index_type:
        raise RetrievalError(f"{index_dir} holds a {meta.get('index_type')!r} index, not {index_type!r}")
    index = faiss.read_index(str(index_dir / INDEX_NAME))
    if index.d != model.dim:
        raise RetrievalError(f"{index_dir} holds {index.d}-dimensional vectors; {model.name} makes {model.dim}")
    return index


def _save(index_dir: Path, index: Any, passages: Sequence[Passage], model: Embedder, index_type: str) -> None:
    import faiss

    from envs.retrieval.corpus import line_offsets

    with atomic_directory(index_dir) as tmp:
        faiss.write_index(index, str(tmp / INDEX_NAME))
        write_corpus_jsonl(passages, tmp / _CORPUS_NAME)
        save_offsets(line_offsets(tmp / _CORPUS_NAME), tmp)
        meta = {"format": _FORMAT_VERSION, "embedder": model.spec(), "index_type": index_type,
                "num_passages": len(passages), "dim": model.dim, "fingerprint": corpus_fingerprint(passages)}
        (tmp / _META_NAME).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        write_manifest(tmp)  # last: a directory without a manifest is never trusted
