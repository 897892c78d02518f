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
from pathlib import Path
from typing import Any

from envs.core.data import DataError, locate, present_fields
from envs.core.io import atomic_open, default_cache_dir  # noqa: F401  (re-exported: indexes go under indexes/)
from envs.retrieval.base import Passage, split_contents

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
    return Passage(id=str(pid), title="" if title is None else str(title), text=str(text))


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
        for part in (p.id, p.title, p.text):
            data = part.encode("utf-8")
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)
    return digest.hexdigest()[:20]


def write_corpus_jsonl(passages: Iterable[Passage], path: str | Path, *, contents: bool = False) -> Path:
    """Write passages as JSONL atomically; ``contents=True`` adds Search-R1's ``contents`` field."""
    with atomic_open(path, "w") as fh:
        for p in passages:
            row: dict[str, Any] = {"id": p.id, "title": p.title, "text": p.text}
            if contents:
                row["contents"] = p.contents
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return Path(path)

