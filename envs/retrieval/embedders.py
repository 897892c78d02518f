"""Text embedders for dense retrieval: WordLlama (embedded, no download) and sentence-transformers.

An ``Embedder`` turns queries and passages into float32 row vectors; the dense index compares them
by inner product, so embedders that ``normalize`` make it cosine similarity. Queries and passages
are encoded separately because retrieval models are trained with different prefixes for each
(e5: ``query: `` / ``passage: ``; bge: an instruction before queries only).

* ``WordLlamaEmbedder``: static token embeddings shipped inside the ``wordllama`` wheel
  (``l2_supercat``, 256 dimensions), mean-pooled and normalised. Thousands of passages per second
  on one CPU core and nothing to download, so a dense retriever runs offline and in CI.
* ``SentenceTransformerEmbedder``: any sentence-transformers model by hub id or local path (e5, bge,
  gte, ...), with the prefixes and normalisation of its family (``model_defaults``), batched
  encoding with a progress bar, on the GPU when there is one. Weights load on the user's machine.

``make_embedder("wordllama")`` / ``make_embedder("e5-base-v2")`` / ``make_embedder("/path/model")``
picks one by name. ``spec()`` says everything that changes the vectors; index caches are keyed by it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "wordllama"

# Short names for the models the papers use; any other name is passed to sentence-transformers as is.
MODEL_ALIASES: dict[str, str] = {
    "e5-small-v2": "intfloat/e5-small-v2",
    "e5-base-v2": "intfloat/e5-base-v2",  # Search-R1's retriever
    "e5-large-v2": "intfloat/e5-large-v2",
    "bge-small-en-v1.5": "BAAI/bge-small-en-v1.5",
    "bge-base-en-v1.5": "BAAI/bge-base-en-v1.5",
    "bge-large-en-v1.5": "BAAI/bge-large-en-v1.5",
    "gte-small": "thenlper/gte-small",
    "gte-base": "thenlper/gte-base",
    "gte-large": "thenlper/gte-large",
}
BGE_QUERY_INSTRUCTION = "Represent this sentence for searching relevant passages: "


@dataclass(frozen=True)
class ModelDefaults:
    """How a model family wants its inputs: prefixes, normalisation, maximum tokens."""

    query_prefix: str = ""
    passage_prefix: str = ""
    normalize: bool = True
    max_length: int | None = None


def model_defaults(model: str) -> ModelDefaults:
    """The family conventions for ``model`` (by name): e5 prefixes both sides, bge instructs queries.

    These are the models' own model-card conventions (and what Search-R1's encoder does); gte and
    unknown models get no prefix. All three families are trained for cosine similarity.
    """
    name = model.lower().rsplit("/", 1)[-1]
    if "e5" in name.split("-"):
        return ModelDefaults("query: ", "passage: ")
    if name.startswith("bge") and "-en" in name:
        return ModelDefaults(BGE_QUERY_INSTRUCTION, "")
    return ModelDefaults()


@runtime_checkable
class Embedder(Protocol):
    """Queries and passages in, float32 vectors out (one row per text, ``dim`` columns)."""

    name: str
    dim: int
    normalize: bool

    def encode_queries(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray: ...

    def encode_passages(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray: ...

    def spec(self) -> dict[str, Any]:
        """Everything that changes the vectors (an index built with one spec is searched with the same)."""
        ...


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Unit-length rows (in place); a zero row (a text with no known token) stays zero instead of NaN."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.divide(vectors, norms, out=vectors, where=norms > 0)
    return vectors


class WordLlamaEmbedder:
    """WordLlama's shipped static embeddings: mean of token vectors, normalised (no download, CPU)."""

    def __init__(self, config: str = "l2_supercat", dim: int = 256, *, batch_size: int = 512):
        import wordllama
        from wordllama import WordLlama

        self.config, self.dim, self.batch_size = config, int(dim), int(batch_size)
        self.name = f"wordllama-{config}-{self.dim}"
        self.normalize = True
        try:
            # The wheel ships weights/ and tokenizers/, but 0.4.0 looks for its tokenizer under
            # tokenizer/ (singular) unless a cache directory has tokenizers/: name the package's own.
            # trunc_dim: the weights are Matryoshka-trained, so a prefix of the 256 dimensions still works.
            self._model = WordLlama.load(config=config, dim=256, trunc_dim=None if self.dim == 256 else self.dim,
                                         cache_dir=Path(wordllama.__file__).parent, disable_download=True)
        except (FileNotFoundError, ValueError) as exc:
            raise ValueError(f"WordLlama {config!r} at {dim} dimensions is not available offline: {exc}") from exc

    def _encode(self, texts: Sequence[str], show_progress: bool) -> np.ndarray:
        texts = [t if isinstance(t, str) else str(t) for t in texts]
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        if not show_progress or len(texts) <= self.batch_size:  # WordLlama batches internally
            return normalize_rows(self._model.embed(texts, norm=False, batch_size=self.batch_size))
        from tqdm.auto import tqdm

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in tqdm(range(0, len(texts), self.batch_size), desc=f"embedding ({self.name})", unit="batch"):
            chunk = texts[start:start + self.batch_size]
            out[start:start + len(chunk)] = self._model.embed(chunk, norm=False, batch_size=len(chunk))
        return normalize_rows(out)

    def encode_queries(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        return self._encode(texts, show_progress)

    def encode_passages(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        return self._encode(texts, show_progress)

    def spec(self) -> dict[str, Any]:
        return {"kind": "wordllama", "config": self.config, "dim": self.dim, "normalize": True}


class SentenceTransformerEmbedder:
    """A sentence-transformers model (e5, bge, gte, ...) with its family's prefixes and normalisation.

    ``model``: a hub id, an alias from ``MODEL_ALIASES`` or a local directory. Prefixes,
    normalisation and ``max_length`` default to ``model_defaults(model)``; pass them to override.
    ``device`` defaults to sentence-transformers' choice (CUDA when available).
    """

    def __init__(self, model: str, *, query_prefix: str | None = None, passage_prefix: str | None = None,
                 normalize: bool | None = None, max_length: int | None = None, batch_size: int = 128,
                 device: str | None = None, **model_kwargs: Any):
        from sentence_transformers import SentenceTransformer

        self.model_id = MODEL_ALIASES.get(model, model)
        defaults = model_defaults(self.model_id)
        self.query_prefix = defaults.query_prefix if query_prefix is None else query_prefix
        self.passage_prefix = defaults.passage_prefix if passage_prefix is None else passage_prefix
        self.normalize = defaults.normalize if normalize is None else bool(normalize)
        self.batch_size = int(batch_size)
        self._model = SentenceTransformer(self.model_id, device=device, **model_kwargs)
        max_length = defaults.max_length if max_length is None else max_length
        if max_length is not None:
            self._model.max_seq_length = int(max_length)
        self.max_length = int(self._model.max_seq_length) if self._model.max_seq_length else None
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = get_dim()  # renamed in sentence-transformers 6
        if dim is None:
            dim = int(self._model.encode(["x"], convert_to_numpy=True).shape[1])
        self.dim = int(dim)
        self.name = self.model_id.rstrip("/").rsplit("/", 1)[-1]
        self._lock = threading.Lock()  # one forward pass at a time: a server calls from worker threads

    def _encode(self, texts: Sequence[str], prefix: str, show_progress: bool) -> np.ndarray:
        texts = [t if isinstance(t, str) else str(t) for t in texts]
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode([prefix + t for t in texts], batch_size=self.batch_size,
                                         show_progress_bar=show_progress, convert_to_numpy=True,
                                         normalize_embeddings=False)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        return normalize_rows(vectors) if self.normalize else vectors

    def encode_queries(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        return self._encode(texts, self.query_prefix, show_progress)

    def encode_passages(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        return self._encode(texts, self.passage_prefix, show_progress)

    def spec(self) -> dict[str, Any]:
        return {"kind": "sentence-transformers", "model": self.model_id, "query_prefix": self.query_prefix,
                "passage_prefix": self.passage_prefix, "normalize": self.normalize, "max_length": self.max_length,
                "dim": self.dim}


def make_embedder(name: str | Embedder = DEFAULT_EMBEDDER, **options: Any) -> Embedder:
    """An embedder by name: ``wordllama`` (or ``wordllama:<config>``), else a sentence-transformers model."""
    if not isinstance(name, str):
        if not isinstance(name, Embedder):
            raise TypeError(f"embedder must be a name or an Embedder, got {type(name).__name__}")
        return name
    if name == "wordllama" or name.startswith("wordllama:"):
        config = name.partition(":")[2] or "l2_supercat"
        return WordLlamaEmbedder(config, **options)
    return SentenceTransformerEmbedder(name, **options)


def embedder_from_spec(spec: dict[str, Any], **options: Any) -> Embedder:
    """The embedder an index was built with, from the ``spec()`` saved beside it."""
    kind = spec.get("kind")
    if kind == "wordllama":
        return WordLlamaEmbedder(spec.get("config", "l2_supercat"), int(spec.get("dim", 256)), **options)
    if kind == "sentence-transformers":
        return SentenceTransformerEmbedder(spec["model"], query_prefix=spec.get("query_prefix"),
                                           passage_prefix=spec.get("passage_prefix"), normalize=spec.get("normalize"),
                                           max_length=spec.get("max_length"), **options)
    raise ValueError(f"unknown embedder kind {kind!r} in the index metadata")
