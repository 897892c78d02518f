"""Retrieval backends behind one interface: embedded bm25s, pyserini, dense (faiss), hybrid, HTTP client, a server.

``Retriever.search(query, k) -> list[Passage]`` is all an environment uses. Backends load lazily:
importing this package pulls in neither bm25s, numba, pyserini, faiss, the embedders nor fastapi.
"""

from envs.retrieval.base import Passage, RetrievalError, Retriever, format_passages, split_contents, to_contents
from envs.retrieval.corpus import default_cache_dir, load_corpus, passages_from_context, passages_from_items
from envs.retrieval.factory import BACKENDS, clear_shared_retrievers, make_retriever, shared_retriever

__all__ = [
    "BACKENDS", "Passage", "RetrievalError", "Retriever", "clear_shared_retrievers", "default_cache_dir",
    "format_passages", "load_corpus", "make_retriever", "passages_from_context", "passages_from_items",
    "shared_retriever", "split_contents", "to_contents",
]
