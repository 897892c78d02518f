"""Multi-hop QA data: Hugging Face datasets, local files in the datasets' own formats, the shipped sample.

Every source is normalised to one item form::

    {"id": str, "question": str, "answers": [str, ...],        # gold answer first, then aliases
     "supporting_titles": [str, ...],                           # may be empty (unknown)
     "context": [{"title": str, "text": str}, ...],             # may be empty (no distractor setting)
     "type": str}

Formats read: HotpotQA on the Hub (``context{title,sentences}``), the original HotpotQA / 2Wiki
JSON (``context`` as ``[title, [sentences]]`` pairs, ``_id``), MuSiQue JSONL (``paragraphs`` with
``is_supporting``, ``answer_aliases``), ``corag/multihopqa`` (``query``, ``answers``: no context),
and anything already in the item form. Local data is a file or a directory of files
(``envs.core.data``); a path that does not exist fails at once, without trying the Hub. Errors name
the file and 1-based line (``path:LINE``) or the Hub split and 0-based row (``name: row N``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from envs.core.data import DataError, locate, present_fields, read_records

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
SAMPLE_PATH = DATA_DIR / "qa_sample.jsonl"
SAMPLE_CORPUS_PATH = DATA_DIR / "qa_corpus.jsonl"

# dataset key -> (HF dataset name, config, default split)
HF_SOURCES: dict[str, tuple[str, str, str]] = {
    "hotpotqa": ("hotpotqa/hotpot_qa", "distractor", "validation"),
    "2wikimultihopqa": ("corag/multihopqa", "2wikimultihopqa", "validation"),
    "musique": ("corag/multihopqa", "musique", "validation"),
}


def _join_sentences(sentences: Any) -> str:
    if isinstance(sentences, str):
        return sentences.strip()
    return " ".join(str(s).strip() for s in sentences or () if str(s).strip())


def _context(record: Mapping[str, Any], *, where: str) -> list[dict[str, str]]:
    ctx = record.get("context")
    if ctx is None and isinstance(record.get("paragraphs"), list):  # MuSiQue
        return [{"title": str(p.get("title", "")), "text": str(p.get("paragraph_text", p.get("text", "")))}
                for p in record["paragraphs"] if isinstance(p, Mapping)]
    if ctx is None or ctx == "":
        return []
    if isinstance(ctx, Mapping) and "title" in ctx:  # HF: {"title": [...], "sentences": [[...]]}
        titles, sentences = list(ctx.get("title") or []), list(ctx.get("sentences") or [])
        if len(titles) != len(sentences):
            raise DataError(f"{where}: context has {len(titles)} titles but {len(sentences)} paragraphs")
        return [{"title": str(t), "text": _join_sentences(s)} for t, s in zip(titles, sentences, strict=True)]
    if isinstance(ctx, list):
        out = []
        for para in ctx:
            if isinstance(para, Mapping):  # already {"title", "text"} (or "sentences")
                text = para.get("text", para.get("paragraph_text", para.get("sentences", "")))
                out.append({"title": str(para.get("title", "")), "text": _join_sentences(text)})
            elif isinstance(para, list | tuple) and len(para) == 2:  # original JSON: [title, [sentences]]
                out.append({"title": str(para[0]), "text": _join_sentences(para[1])})
            else:
                raise DataError(f"{where}: cannot read a context paragraph: {para!r:.120}")
        return out
    raise DataError(f"{where}: field 'context' has an unknown form ({type(ctx).__name__})")


def _supporting_titles(record: Mapping[str, Any]) -> list[str]:
    titles: list[str] = []
    facts = record.get("supporting_facts")
    if isinstance(facts, Mapping):
        titles = [str(t) for t in facts.get("title") or ()]
    elif isinstance(facts, list):
        titles = [str(f[0]) for f in facts if isinstance(f, list | tuple) and f]
    elif isinstance(record.get("paragraphs"), list):
        titles = [str(p.get("title", "")) for p in record["paragraphs"] if isinstance(p, Mapping) and p.get("is_supporting")]
    elif isinstance(record.get("supporting_titles"), list):
        titles = [str(t) for t in record["supporting_titles"]]
    return list(dict.fromkeys(t for t in titles if t))


def _answers(record: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    for key in ("answer", "answers", "answer_aliases", "golden_answers", "aliases"):
        value = record.get(key)
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, Mapping):  # e.g. {"text": [...]} or {"value": ..., "aliases": [...]}
            for sub in ("text", "value", "aliases", "normalized_aliases"):
                v = value.get(sub)
                found.extend([v] if isinstance(v, str) else [x for x in v or () if isinstance(x, str)])
        elif isinstance(value, list | tuple):
            found.extend(str(v) for v in value if isinstance(v, str | int | float))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            found.append(str(value))
    return list(dict.fromkeys(a.strip() for a in found if a and a.strip()))


def normalize_item(record: Mapping[str, Any], *, source: str, row: int | str | None = None,
                   default_id: str | None = None) -> dict[str, Any]:
    """One record of any supported format in the item form (see the module docstring).

    Errors start with ``locate(source, row)``; a record without an id gets ``default_id`` (else ``row``).
    """
    where = locate(source, row)
    question = record.get("question", record.get("query"))
    if question is None:
        raise DataError(f"{where}: missing field 'question' (fields present: {present_fields(record)})")
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}: field 'question' is empty or not text")
    answers = _answers(record)
    if not answers:
        raise DataError(f"{where}: no gold answer (looked for answer, answers, answer_aliases; "
                        f"fields present: {present_fields(record)})")
    fallback = default_id if default_id is not None else row
    item_id = record.get("id", record.get("_id", record.get("query_id", fallback)))
    return {
        "id": str(item_id),
        "question": question.strip(),
        "answers": answers,
        "supporting_titles": _supporting_titles(record),
        "context": _context(record, where=where),
        "type": str(record.get("type") or ""),
    }


def normalize_items(records: Iterable[Mapping[str, Any]], *, source: str, max_items: int | None = None) -> list[dict[str, Any]]:
    """Rows of a Hub split (or any sequence) as items; errors say ``source: row N`` (0-based)."""
    out = []
    for i, record in enumerate(records):
        if max_items is not None and len(out) >= max_items:
            break
        if not isinstance(record, Mapping):
            raise DataError(f"{locate(source, i)}: expected an object, got {type(record).__name__}")
        out.append(normalize_item(record, source=source, row=i))
    if not out:
        raise DataError(f"{source}: no questions")
    return out


def load_local(path: str | Path, *, max_items: int | None = None, split: str | None = None) -> list[dict[str, Any]]:
    """A local ``.json`` / ``.jsonl`` / ``.csv`` / ``.parquet`` file (or a directory of them), any supported format.

    Errors name the file and line; items without an id get their 0-based position in the file.
    """
    records = read_records(path, split=split)
    if max_items is not None:
        records = records[:max_items]
    out = [normalize_item(r.data, source=r.where, default_id=str(i)) for i, r in enumerate(records)]
    if not out:
        raise DataError(f"{path}: no questions (the file is empty)")
    return out


def load_hf(name: str, config: str | None, split: str, *, max_items: int | None = None) -> list[dict[str, Any]]:
    """A split from the Hugging Face Hub (needs ``datasets`` and network or a local HF cache)."""
    try:
        import datasets
    except ImportError as exc:
        raise DataError("loading from the Hub needs `pip install datasets` (agentr1-gym[data])") from exc
    selection = split if max_items is None else f"{split}[:{int(max_items)}]"
    try:
        ds = datasets.load_dataset(name, config, split=selection)
    except Exception as exc:  # network, auth, unknown config: say which dataset and how to work offline
        raise DataError(f"could not load {name} ({config}, {split}) from the Hub: {type(exc).__name__}: {exc}. "
                        "Pass data_path=... to use a local file.") from exc
    return normalize_items(ds, source=f"{name}/{config}:{split}", max_items=max_items)


def local_path(data_path: str | Path) -> Path:
    """The file or directory ``data_path`` names (``"sample"``: the shipped sample)."""
    return SAMPLE_PATH if str(data_path) == "sample" else Path(data_path).expanduser()


def check_hub_source(dataset: str, hf_name: str | None) -> None:
    """Fail (without I/O) unless ``dataset`` is a known Hub dataset or ``hf_name`` names one."""
    if dataset not in HF_SOURCES and hf_name is None:
        raise DataError(f"unknown dataset {dataset!r}; pass hf_name=... or data_path=...")


def load_items(dataset: str, *, data_path: str | Path | None = None, split: str | None = None,
               hf_name: str | None = None, hf_config: str | None = None,
               max_items: int | None = None) -> list[dict[str, Any]]:
    """Items for ``dataset`` (``hotpotqa``, ``2wikimultihopqa``, ``musique``) from a file, the sample, or the Hub."""
    if data_path is not None:
        return load_local(local_path(data_path), max_items=max_items, split=split)
    check_hub_source(dataset, hf_name)
    default_name, default_config, default_split = HF_SOURCES.get(dataset, (hf_name, hf_config, "validation"))
    return load_hf(hf_name or default_name, hf_config if hf_config is not None else default_config,
                   split or default_split, max_items=max_items)

