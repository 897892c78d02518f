r"""Math datasets: the Open-RS training sets, the standard evaluation sets, local files, shipped samples.

``load_math_items(dataset, split=None, limit=None)`` returns items ``{"problem", "answer", ...}``:

* a registered name (``open-rs``, ``open-s1``, ``open-deepscaler``, ``math500``, ``aime24``, ``amc23``,
  ``minerva``, ``olympiadbench``, ``gsm8k``; see ``DATASETS``), loaded through Hugging Face
  ``datasets`` (imported only here, only when needed);
* ``"sample"`` / ``"gsm8k-sample"``: small sets the project wrote itself, shipped in ``envs/data``;
* a path to a local ``.jsonl`` / ``.json`` / ``.csv`` / ``.parquet`` file, or a directory of them
  (``split=`` picks the files named after a split; see ``envs.core.data``). A path that does not
  exist fails at once, without trying the Hub.

Field names are mapped to ``problem`` / ``answer`` (``question``, ``final_answer``, a ``\boxed{}`` in
``solution``, GSM8K's ``#### answer`` ...). A record that cannot be used raises ``DataError`` naming
the file and line (``path:LINE``, 1-based) or the dataset and row (``name[split]: row N``, 0-based),
and the field.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envs.core.data import DataError, file_version, locate, read_records, require_fields
from envs.core.parsing import extract_last_boxed

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
PROBLEM_FIELDS = ("problem", "question", "Problem", "Question", "prompt")
ANSWER_FIELDS = ("answer", "final_answer", "Answer", "expected_answer", "ground_truth", "gold")
SOLUTION_FIELDS = ("solution", "Solution")


def gsm8k_answer(text: str) -> str:
    """GSM8K's final answer: what follows ``####``, without thousands separators."""
    _, sep, answer = str(text).rpartition("####")
    if not sep:
        raise ValueError("no '####' marker")
    answer = answer.strip().replace(",", "")
    if not answer:
        raise ValueError("nothing after '####'")
    return answer


@dataclass(frozen=True)
class DatasetSpec:
    """Where a named dataset lives on the Hugging Face Hub and how its rows map to items."""

    name: str
    hf_path: str
    split: str
    config: str | None = None
    answer_transform: Callable[[str], str] | None = None
    description: str = ""


DATASETS: dict[str, DatasetSpec] = {
    s.name: s
    for s in (
        DatasetSpec("open-rs", "knoveleng/open-rs", "train", description="Open-RS training set, 7,000 mixed problems"),
        DatasetSpec("open-s1", "knoveleng/open-s1", "train", description="Open-RS experiment 1, 18,615 problems"),
        DatasetSpec("open-deepscaler", "knoveleng/open-deepscaler", "train", description="~21k DeepScaleR problems"),
        DatasetSpec("math500", "HuggingFaceH4/MATH-500", "test", description="MATH-500 (500)"),
        DatasetSpec("aime24", "HuggingFaceH4/aime_2024", "train", description="AIME 2024 (30)"),
        DatasetSpec("amc23", "knoveleng/AMC-23", "train", description="AMC 2023 (40)"),
        DatasetSpec("minerva", "knoveleng/Minerva-Math", "train", description="Minerva math (272)"),
        DatasetSpec("olympiadbench", "knoveleng/OlympiadBench", "train", description="OlympiadBench (675)"),
        DatasetSpec("gsm8k", "openai/gsm8k", "test", config="main", answer_transform=gsm8k_answer,
                    description="GSM8K (answer after ####)"),
    )
}
_ALIASES = {"math-500": "math500", "aime-24": "aime24", "aime2024": "aime24", "amc-23": "amc23",
            "minerva-math": "minerva", "olympiad-bench": "olympiadbench", "openrs": "open-rs"}
SAMPLES: dict[str, tuple[str, str | None]] = {  # name -> (file in envs/data, answer format)
    "sample": ("math_sample.jsonl", None),
    "gsm8k-sample": ("math_gsm8k_sample.jsonl", "gsm8k"),
}


def load_math_items(dataset: str | Path, *, split: str | None = None, limit: int | None = None,
                    answer_format: str | None = None) -> list[dict[str, Any]]:
    """Items ``{"problem", "answer", ...}`` from a name, a sample or a local file (module doc).

    ``answer_format="gsm8k"`` reads answers after ``####`` from a local file too.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if answer_format not in (None, "gsm8k"):
        raise ValueError(f"unknown answer_format {answer_format!r} (use 'gsm8k' or leave it unset)")
    key = registered_name(dataset)
    if key in SAMPLES:
        filename, sample_format = SAMPLES[key]
        return _cut(_load_local(DATA_DIR / filename, answer_format or sample_format, None), limit)
    if key in DATASETS:
        spec = DATASETS[key]
        return _cut(_load_hub(spec.name, split or spec.split), limit)
    path = Path(dataset).expanduser()
    if path.exists() or path.suffix in (".jsonl", ".json", ".csv", ".parquet", ".gz") or _looks_like_path(str(dataset)):
        return _cut(_load_local(path, answer_format, split), limit)
    known = ", ".join([*DATASETS, *SAMPLES])
    raise DataError(f"unknown math dataset {str(dataset)!r}: not a registered name ({known}) and no such file "
                    "or directory")


def registered_name(dataset: str | Path) -> str | None:
    """The registered or sample name ``dataset`` stands for (aliases resolved), or None for a path."""
    key = str(dataset).lower()
    key = _ALIASES.get(key, key)
    return key if key in DATASETS or key in SAMPLES else None


def _looks_like_path(text: str) -> bool:
    return text.startswith((".", "~", "/")) or "\\" in text or text.endswith("/")


def _cut(items: Any, limit: int | None) -> list[dict[str, Any]]:
    return [dict(item) for item in (items if limit is None else items[:limit])]


def _load_local(path: Path, answer_format: str | None, split: str | None) -> tuple[dict[str, Any], ...]:
    """Read and normalise a local file or directory, once per (version, format, split)."""
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    return _load_local_cached(file_version(path), answer_format, split, str(path))


@functools.lru_cache(maxsize=32)
def _load_local_cached(version: tuple[Any, ...], answer_format: str | None, split: str | None,
                       shown: str) -> tuple[dict[str, Any], ...]:
    transform = gsm8k_answer if answer_format == "gsm8k" else None
    items = tuple(normalize_record(record.data, source=record.where, answer_transform=transform)
                  for record in read_records(shown, split=split))
    if not items:
        raise DataError(f"{shown}: no problems in it (the file is empty)")
    return items


@functools.lru_cache(maxsize=16)
def _load_hub(name: str, split: str) -> tuple[dict[str, Any], ...]:
    """Load once per process: trainers build many envs on the same data."""
    spec = DATASETS[name]
    try:
        import datasets
    except ImportError as exc:
        raise DataError(f"{spec.hf_path}: loading Hub datasets needs `datasets` (pip install 'agentr1-gym[data]')") from exc
    source = f"{spec.hf_path}[{split}]"
    try:
        loaded = datasets.load_dataset(spec.hf_path, spec.config) if spec.config else datasets.load_dataset(spec.hf_path)
    except Exception as exc:
        raise DataError(f"{spec.hf_path}: could not load the dataset ({type(exc).__name__}: {exc}). Without network "
                        "access, use dataset='sample' or a local file.") from exc
    if split in loaded:
        rows = loaded[split]
    elif len(loaded) == 1:  # community uploads name their only split differently
        only = next(iter(loaded))
        logger.info("%s has no split %r; using its only split %r", spec.hf_path, split, only)
        rows, source = loaded[only], f"{spec.hf_path}[{only}]"
    else:
        raise DataError(f"{spec.hf_path}: no split {split!r}; available: {', '.join(loaded)}")
    items = normalize_records(rows, source=source, answer_transform=spec.answer_transform)
    if not items:
        raise DataError(f"{source}: the split has no rows")
    for item in items:
        item.setdefault("source", spec.name)
    return tuple(items)


def normalize_records(rows: Any, *, source: str, answer_transform: Callable[[str], str] | None = None) -> list[dict[str, Any]]:
    """Map every row to an item with ``problem`` and ``answer``; ``DataError`` names source, row, field."""
    return [normalize_record(row, source=source, row=i, answer_transform=answer_transform) for i, row in enumerate(rows)]


def normalize_record(record: Mapping[str, Any], *, source: str, row: int | str | None = None,
                     answer_transform: Callable[[str], str] | None = None) -> dict[str, Any]:
    """One record as an item (see ``normalize_records``); errors start with ``locate(source, row)``."""
    where = locate(source, row)
    if not isinstance(record, Mapping):
        raise DataError(f"{where}: expected an object with 'problem' and 'answer', got {type(record).__name__}")
    item = dict(record)
    if _empty(item.get("problem")):
        item["problem"] = next((record[f] for f in PROBLEM_FIELDS if not _empty(record.get(f))), None)
    if _empty(item.get("answer")):
        item["answer"] = next((record[f] for f in ANSWER_FIELDS if not _empty(record.get(f))), None)
    if _empty(item.get("answer")):
        solution = next((record[f] for f in SOLUTION_FIELDS if isinstance(record.get(f), str)), None)
        if solution is not None:
            item["answer"] = extract_last_boxed(solution)
    require_fields(item, ("problem", "answer"), source=source, row=row)
    if not isinstance(item["problem"], str):
        raise DataError(f"{where}: field 'problem' must be text, got {type(item['problem']).__name__}")
    answer = item["answer"]
    if isinstance(answer, (list, tuple)):
        if len(answer) != 1 or _empty(answer[0]):
            raise DataError(f"{where}: field 'answer' is a list of {len(answer)} values; expected one")
        answer = answer[0]
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise DataError(f"{where}: field 'answer' must be text or a number, got {type(answer).__name__}")
    answer = str(answer).strip()
    if answer_transform is not None:
        try:
            answer = answer_transform(answer)
        except ValueError as exc:
            raise DataError(f"{where}: field 'answer': {exc}") from None
    elif "\\boxed" in answer:
        answer = extract_last_boxed(answer) or answer
    if not answer:
        raise DataError(f"{where}: field 'answer' is empty")
    item["answer"] = answer
    return item


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def dataset_names() -> list[str]:
    """Every name ``load_math_items`` accepts besides paths."""
    return [*DATASETS, *SAMPLES]

