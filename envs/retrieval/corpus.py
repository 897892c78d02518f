"""Corpora for retrieval: JSONL files, all paragraphs of a QA dataset, or one question's own context.

A corpus is a list of ``Passage`` (score 0). Three modes feed the QA environments:

* a JSONL file with ``id``, ``title``, ``text`` per line (Search-R1's ``contents`` form is read too);
* every paragraph of a dataset's questions' contexts, de-duplicated (Agent-R1's HotpotQA recipe);
* the distractor setting: only the current question's context paragraphs.

Index caches are keyed by ``corpus_fingerprint`` so a changed corpus never reuses a stale index.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from envs.core.data import DataError, locate, present_fields
from envs.core.io import atomic_open, default_cache_dir  # noqa: F401  (re-exported: indexes go under indexes/)
from envs.retrieval.base import Passage, RetrievalError, split_contents, to_document


def passage_from_record(record: Mapping[str, Any], *, source: str, row: int, where: str | None = None) -> Passage:
    """One corpus row as a ``Passage``: ``id``/``title``/``text``, or Search-R1's ``id``/``contents``.

    A row without an id gets ``row``; errors start with ``where`` (``path:LINE``), else ``source: row N``.
    """
    pid = record.get("id", record.get("doc_id", record.get("_id", record.get("docid"))))
    if pid is None or str(pid) == "":
        pid = str(row)
    text = record.get("text")
    title = record.get("title")
    if text is None and record.get("contents") is not None:
        parsed_title, text = split_contents(str(record["contents"]))
        title = title if title is not None else parsed_title
    if text is None or not str(text).strip():
        present = present_fields(record, leaving_out="text")
        raise DataError(f"{where or locate(source, row)}: a corpus row needs 'text' (or 'contents'); "
                        f"fields present: {present}")
    passage = Passage(id=str(pid), title="" if title is None else str(title), text=str(text))
    rebuilt = {"id": passage.id, "title": passage.title, "text": passage.text}
    if dict(record) not in (rebuilt, to_document(passage)):
        passage = replace(passage, row=dict(record))  # served as stored, not rebuilt from id/title/text
    return passage


def load_corpus(path: str | Path) -> list[Passage]:
    """Read a JSONL (or JSON list) corpus; duplicate ids are an error because results are keyed by id."""
    from envs.core.data import read_records

    path = Path(path)
    records = read_records(path)
    passages = [passage_from_record(r.data, source=str(path), row=i, where=r.where) for i, r in enumerate(records)]
    seen: dict[str, str] = {}
    for record, p in zip(records, passages, strict=True):
        if p.id in seen:
            raise DataError(f"{record.where}: duplicate passage id {p.id!r} (first at {seen[p.id]})")
        seen[p.id] = record.where
    if not passages:
        raise DataError(f"{path}: the corpus is empty")
    return passages


def passages_from_context(context: Iterable[Mapping[str, Any]], *, id_prefix: str = "") -> list[Passage]:
    """A question's context paragraphs (``[{"title", "text"}]``) as passages, duplicates dropped."""
    out: list[Passage] = []
    seen: set[tuple[str, str]] = set()
    for para in context:
        key = (str(para.get("title", "")), str(para.get("text", "")))
        if key in seen or not key[1].strip():
            continue
        seen.add(key)
        out.append(Passage(id=f"{id_prefix}{len(out)}", title=key[0], text=key[1]))
    return out


def passages_from_items(items: Iterable[Mapping[str, Any]]) -> list[Passage]:
    """All context paragraphs of a dataset, de-duplicated by (title, text): Agent-R1's corpus recipe."""
    contexts = (para for item in items for para in item.get("context") or ())
    return passages_from_context(contexts, id_prefix="p")


def corpus_fingerprint(passages: Sequence[Passage]) -> str:
    """A short content hash of a corpus (ids, titles, texts, in order)."""
    digest = hashlib.sha256()
    for p in passages:
        parts = [p.id, p.title, p.text]
        if p.row is not None:  # a stored row is served as stored, so it is part of the corpus
            parts.append(json.dumps(p.row, sort_keys=True, ensure_ascii=False, default=str))
        for part in parts:
            data = part.encode("utf-8")
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)
    return digest.hexdigest()[:20]


def write_corpus_jsonl(passages: Iterable[Passage], path: str | Path, *, contents: bool = False) -> Path:
    """Write passages as JSONL atomically (stored rows as stored); ``contents=True`` adds Search-R1's ``contents``."""
    with atomic_open(path, "w") as fh:
        for p in passages:
            row: dict[str, Any] = dict(p.row) if p.row is not None else {"id": p.id, "title": p.title, "text": p.text}
            if contents:
                row.setdefault("contents", p.contents)
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return Path(path)



# ---------------------------------------------------------------------------- large corpora, read by line
_OFFSETS_NAME = "offsets.npy"


def line_offsets(path: str | Path, *, chunk_bytes: int = 1 << 24) -> Any:
    """Byte offsets of the non-blank lines of a file (an int64 numpy array), found in one chunked scan."""
    import numpy as np

    path = Path(path)
    size = path.stat().st_size
    newlines = []
    with open(path, "rb") as fh:
        pos = 0
        while chunk := fh.read(chunk_bytes):
            newlines.append(np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10) + pos)
            pos += len(chunk)
    ends = np.concatenate(newlines + [np.array([size], dtype=np.int64)]).astype(np.int64)
    starts = np.concatenate([np.array([0], dtype=np.int64), ends[:-1] + 1])
    keep = ends - starts > 0
    short = np.flatnonzero(keep & (ends - starts <= 8))  # only short lines can be blank: look at those
    if short.size:
        with open(path, "rb") as fh:
            for i in short:
                fh.seek(int(starts[i]))
                if not fh.read(int(ends[i] - starts[i])).strip():
                    keep[i] = False
    return starts[keep]


class JsonlRows(Sequence[Passage]):
    """A JSONL corpus read on demand: row ``i`` is the ``i``-th non-blank line, parsed when asked for.

    Search-R1's ``wiki-18.jsonl`` has 21 million rows; holding them as Python objects would take tens
    of GB, so only the byte offset of each line is kept (8 bytes a row) and lines are read through
    ``mmap``. Rows keep their stored form (``Passage.row``). A line that is not a corpus row raises
    ``RetrievalError`` when it is read (the corpus file is at fault, not the query).
    """

    def __init__(self, path: str | Path, offsets: Any):
        import mmap

        self.path = Path(path)
        self.offsets = offsets
        self._size = self.path.stat().st_size
        with open(self.path, "rb") as fh:
            self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if self._size else b""

    @classmethod
    def open(cls, path: str | Path, *, cache_dir: str | Path | None = None) -> JsonlRows:
        """Open a JSONL corpus, its line offsets cached (with an integrity manifest) under ``cache_dir``."""
        from envs.core.io import atomic_directory
        from envs.retrieval.integrity import load_checked, write_manifest

        path = Path(path).expanduser().resolve()
        stat = path.stat()
        key = hashlib.sha256(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:20]
        root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        cached = root / "indexes" / f"rows-{key}"
        offsets, _ = load_checked(cached, load_offsets)
        if offsets is None:
            offsets = line_offsets(path)
            try:
                with atomic_directory(cached) as tmp:
                    save_offsets(offsets, tmp)
                    (tmp / "source.json").write_text(json.dumps({"path": str(path), "size": stat.st_size}))
                    write_manifest(tmp)
            except OSError:
                pass  # a read-only cache: the scan is repeated next time, nothing else is lost
        return cls(path, offsets)

    def __len__(self) -> int:
        return int(len(self.offsets))

    def line(self, i: int) -> bytes:
        start = int(self.offsets[i])
        end = self._map.find(b"\n", start)
        return self._map[start:self._size if end < 0 else end]

    def __getitem__(self, i: int) -> Passage:  # type: ignore[override]
        if not -len(self) <= i < len(self):
            raise IndexError(f"row {i} of {len(self)}")
        i = i % len(self)
        try:
            record = json.loads(self.line(i))
            if not isinstance(record, Mapping):
                raise DataError("a corpus row must be a JSON object")
            return passage_from_record(record, source=str(self.path), row=i)
        except (ValueError, DataError) as exc:
            raise RetrievalError(f"{self.path}: row {i} (byte {int(self.offsets[i])}) is not a corpus row: "
                                 f"{str(exc)[:200]}") from None

    def close(self) -> None:
        if not isinstance(self._map, bytes):
            self._map.close()


def save_offsets(offsets: Any, directory: Path) -> None:
    """Write line offsets into an index directory (``load_offsets`` reads them back)."""
    import numpy as np

    np.save(directory / _OFFSETS_NAME, np.asarray(offsets, dtype=np.int64))


def load_offsets(directory: Path) -> Any:
    import numpy as np

    return np.load(directory / _OFFSETS_NAME, mmap_mode="r")
