"""Embedded BM25 with bm25s: the default backend (no Java, no server, no GPU).

Settings follow Lucene's BM25 as pyserini uses it (method ``lucene``, k1=0.9, b=0.4, English
stopwords, Snowball English stemmer), which makes the top-10 agree with Lucene on ~98 % of results.
Each passage is indexed as ``title + text``, like the ``contents`` field of a Lucene index.

The index is built on first use and saved under ``<cache_dir>/indexes/bm25s-<hash>`` (written to a
temporary directory next to it, then renamed, so a crash or a concurrent builder never leaves a
half-written index); later runs load it with ``mmap`` in well under a second. The last file written is
an integrity manifest (sizes and SHA-256 of every file, ``envs.retrieval.integrity``): a cache that
does not match it is rebuilt, and ``from_index`` refuses a directory that does not match it with
``IndexIntegrityError``, so a corrupted index never ranks silently wrong. With numba
installed the numba scorer is used (tens of times faster on batches) for corpora of
``NUMBA_MIN_PASSAGES`` or more; otherwise numpy.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from envs.core.io import atomic_directory
from envs.retrieval.base import Passage, RetrievalError, query_batch
from envs.retrieval.corpus import corpus_fingerprint, default_cache_dir, load_corpus, write_corpus_jsonl
from envs.retrieval.integrity import load_checked, require_intact, write_manifest

logger = logging.getLogger(__name__)

LUCENE_PARAMS: dict[str, Any] = {"method": "lucene", "k1": 0.9, "b": 0.4}
_META_NAME = "agentr1_meta.json"
_CORPUS_NAME = "passages.jsonl"
_FORMAT_VERSION = 1
NUMBA_MIN_PASSAGES = 20_000  # "auto" picks numba from this corpus size up


def numba_available() -> bool:
    """Whether bm25s can use its numba scorer here."""
    return importlib.util.find_spec("numba") is not None


def _stemmer() -> Any:
    import Stemmer  # PyStemmer

    return Stemmer.Stemmer("english")


class BM25Retriever:
    """BM25 over a list of passages, with an on-disk index cache.

    ``persist=False`` keeps the index in memory only (the per-question distractor corpora are
    tiny and built in milliseconds). ``backend`` is ``"auto"`` (numba when importable),
    ``"numba"`` or ``"numpy"``.
    """

    name = "bm25"

    def __init__(self, passages: Sequence[Passage], *, cache_dir: str | os.PathLike[str] | None = None,
                 persist: bool = True, backend: str = "auto", k1: float = 0.9, b: float = 0.4,
                 method: str = "lucene", show_progress: bool = False, _index_dir: Path | None = None):
        if not passages:
            raise ValueError("BM25Retriever needs at least one passage")
        if backend not in ("auto", "numba", "numpy"):
            raise ValueError(f"backend must be 'auto', 'numba' or 'numpy', got {backend!r}")
        self.passages = list(passages)
        self.params = {"method": method, "k1": float(k1), "b": float(b)}
        if backend == "auto":  # numba's one-off JIT compile (~15 s) only pays off on large corpora
            backend = "numba" if numba_available() and len(self.passages) >= NUMBA_MIN_PASSAGES else "numpy"
        self.backend = backend
        self.show_progress = show_progress
        self._lock = threading.Lock()  # numba's parallel workqueue must not be entered from two threads at once
        self._stem = _stemmer()
        self.index_dir: Path | None = _index_dir
        if _index_dir is not None:
            self._model = self._load(_index_dir)
        elif persist:
            root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
            key = corpus_fingerprint(self.passages) + "-" + _params_key(self.params)
            self.index_dir = root / "indexes" / f"bm25s-{key}"
            self._model = self._load_or_build(self.index_dir)
        else:
            self._model = self._build()
        if self.backend == "numba":
            self._warm_up()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_corpus_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> BM25Retriever:
        """Index (or load the cached index of) a JSONL corpus."""
        return cls(load_corpus(path), **kwargs)

    @classmethod
    def from_index(cls, index_dir: str | os.PathLike[str], *, backend: str = "auto") -> BM25Retriever:
        """Open an index directory written by ``build`` / the ``build-index`` command."""
        index_dir = Path(index_dir)
        meta_path = index_dir / _META_NAME
        if not meta_path.exists():
            raise RetrievalError(f"{index_dir} is not a bm25 index built by agentr1-gym (no {_META_NAME})")
        require_intact(index_dir, rebuild_hint="rebuild it with `python -m envs.retrieval build-index`")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        passages = load_corpus(index_dir / _CORPUS_NAME)
        return cls(passages, backend=backend, _index_dir=index_dir, **meta["params"])

    @classmethod
    def build(cls, passages: Sequence[Passage], out_dir: str | os.PathLike[str], *, show_progress: bool = True,
              **kwargs: Any) -> BM25Retriever:
        """Build an index into ``out_dir`` (atomically) and return a retriever over it."""
        out_dir = Path(out_dir)
        retriever = cls(passages, persist=False, show_progress=show_progress, **kwargs)
        retriever._save(out_dir)
        retriever.index_dir = out_dir
        return retriever

    def _build(self) -> Any:
        import bm25s

        texts = [f"{p.title}\n{p.text}" if p.title else p.text for p in self.passages]
        tokens = bm25s.tokenize(texts, stopwords="en", stemmer=self._stem, show_progress=self.show_progress)
        model = bm25s.BM25(backend=self.backend, **self.params)
        model.index(tokens, show_progress=self.show_progress)
        return model

    def _load(self, index_dir: Path) -> Any:
        import bm25s

        model = bm25s.BM25.load(str(index_dir), mmap=True, load_corpus=False, show_progress=False,
                                backend=self.backend)
        return model

    def _load_or_build(self, index_dir: Path) -> Any:
        model, problem = self._load_checked(index_dir)
        if model is not None:
            logger.info("loaded bm25 index from %s", index_dir)
            return model
        if index_dir.exists():
            logger.warning("bm25 index cache %s failed its integrity check (%s); rebuilding", index_dir, problem)
        logger.info("building bm25 index for %d passages", len(self.passages))
        model = self._build()
        self._model = model
        try:
            self._save(index_dir)
        except OSError:
            logger.warning("could not save bm25 index to %s; using it in memory", index_dir, exc_info=True)
            return model
        loaded, _ = self._load_checked(index_dir)  # serve from the mmap'd copy like every later run
        return model if loaded is None else loaded

    def _load_checked(self, index_dir: Path) -> tuple[Any | None, str | None]:
        return load_checked(index_dir, self._load)

    def _save(self, index_dir: Path) -> None:
        with atomic_directory(index_dir) as tmp:
            self._model.save(str(tmp), show_progress=False)
            write_corpus_jsonl(self.passages, tmp / _CORPUS_NAME)
            meta = {"format": _FORMAT_VERSION, "params": self.params, "num_passages": len(self.passages),
                    "fingerprint": corpus_fingerprint(self.passages)}
            (tmp / _META_NAME).write_text(json.dumps(meta), encoding="utf-8")
            write_manifest(tmp)  # last: a directory without a manifest is never trusted

    def _warm_up(self) -> None:
        """Compile the numba scorer now (~15 s once per process), not inside a step's tool timeout."""
        token = next(iter(self._model.vocab_dict.values()), None)
        if token is not None:
            with self._lock:
                self._model.retrieve([[int(token)]], k=1, show_progress=False)

    # ------------------------------------------------------------------ search
    def _query_ids(self, queries: Sequence[str]) -> list[list[int]]:
        import bm25s

        tokenized = bm25s.tokenize(list(queries), stopwords="en", stemmer=self._stem, return_ids=False,
                                   show_progress=False)
        vocab = self._model.vocab_dict
        return [[vocab[t] for t in toks if t in vocab] for toks in tokenized]

    def search(self, query: str, k: int = 5) -> list[Passage]:
        return self.search_many([query], k)[0]

    def search_many(self, queries: Sequence[str], k: int = 5) -> list[list[Passage]]:
        queries = query_batch(queries, k)
        results: list[list[Passage]] = [[] for _ in queries]
        ids = self._query_ids(queries)
        todo = [i for i, q in enumerate(ids) if q]
        if not todo:
            return results
        k_eff = min(k, len(self.passages))
        with self._lock:
            docs, scores = self._model.retrieve([ids[i] for i in todo], k=k_eff, show_progress=False,
                                                n_threads=0)
        for row, i in enumerate(todo):
            hits = []
            for doc, score in zip(docs[row].tolist(), scores[row].tolist(), strict=True):
                if score <= 0.0:  # Lucene returns only documents that match a query term
                    continue
                p = self.passages[int(doc)]
                hits.append(p.scored(float(score)))
            results[i] = hits
        return results

    def __len__(self) -> int:
        return len(self.passages)

    def close(self) -> None:
        """Drop the index (releases the mmap)."""
        with contextlib.suppress(AttributeError):
            del self._model


def _params_key(params: dict[str, Any]) -> str:
    return f"{params['method']}-k{params['k1']:g}-b{params['b']:g}"
