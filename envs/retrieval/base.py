"""The retrieval interface every backend implements: a query in, ranked ``Passage`` objects out.

Backends (embedded bm25s, pyserini/Lucene, the HTTP client) differ in where the index lives; the
environments only see ``Retriever.search`` / ``search_many``. A backend that cannot answer (server
down, index missing) raises ``RetrievalError`` with a message fit to show the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


class RetrievalError(RuntimeError):
    """A retrieval backend could not answer; the message says why in words a user (or model) can act on."""


@dataclass(frozen=True)
class Passage:
    """One retrieved (or indexable) passage.

    ``row`` is the corpus row as stored, kept only when ``id``/``title``/``text`` alone would not
    rebuild it (Search-R1's ``{"id", "contents"}`` rows, extra fields): a server returns it as stored.
    """

    id: str
    title: str
    text: str
    score: float = 0.0
    row: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    def scored(self, score: float) -> Passage:
        """This passage with ``score``: a copy of its fields, not a constructor call.

        Backends make one per hit (30,000 for a batch of 3,000 queries at top-10); the frozen
        dataclass's ``__init__`` costs ~5 us each, which was a quarter of a dense search's time.
        """
        copy = object.__new__(Passage)
        fields = copy.__dict__
        fields.update(self.__dict__)
        fields["score"] = score
        return copy

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "text": self.text, "score": self.score}

    @property
    def contents(self) -> str:
        """The Search-R1 wire form: ``"Title"`` on the first line, the text after it."""
        return to_contents(self.title, self.text)


@runtime_checkable
class Retriever(Protocol):
    """Anything that ranks passages for a query."""

    def search(self, query: str, k: int = 5) -> list[Passage]:
        """The top ``k`` passages for ``query``, best first (fewer if the corpus is small)."""
        ...

    def search_many(self, queries: Sequence[str], k: int = 5) -> list[list[Passage]]:
        """``search`` for a batch of queries (backends batch for throughput)."""
        ...


def query_batch(queries: Sequence[Any], k: int) -> list[str]:
    """The queries as strings, after checking ``k``: where every backend's ``search_many`` starts."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return [q if isinstance(q, str) else str(q) for q in queries]


def to_document(passage: Passage) -> dict[str, Any]:
    """A passage as a retrieval server returns it: the stored row, with ``id`` and ``contents`` added if absent.

    Search-R1's client reads ``document["contents"]``; nothing the corpus stored is rewritten or dropped.
    """
    if passage.row is None:
        return {"id": passage.id, "contents": passage.contents, "title": passage.title, "text": passage.text}
    document = dict(passage.row)
    document.setdefault("id", passage.id)
    document.setdefault("contents", passage.contents)
    return document


def to_contents(title: str, text: str) -> str:
    """``"\\"Title\\"\\ntext"``, as Search-R1's corpora and retrieval server write passages."""
    return f'"{title}"\n{text}'


def split_contents(contents: str) -> tuple[str, str]:
    """Inverse of ``to_contents``; a first line without quotes is still taken as the title."""
    head, sep, rest = contents.partition("\n")
    if not sep:
        return "", contents.strip()
    head = head.strip()
    if len(head) >= 2 and head[0] == head[-1] == '"':
        head = head[1:-1]
    return head, rest.strip()


def format_passages(passages: Sequence[Passage], *, max_chars_per_passage: int | None = None) -> str:
    """Search-R1's observation text: ``Doc 1(Title: T) text`` lines, one per passage."""
    lines = []
    for i, p in enumerate(passages, 1):
        text = p.text if max_chars_per_passage is None or len(p.text) <= max_chars_per_passage else (
            p.text[:max_chars_per_passage].rstrip() + " ...")
        lines.append(f"Doc {i}(Title: {p.title}) {text}")
    return "\n".join(lines)
