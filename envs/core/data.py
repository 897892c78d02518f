"""Loading dataset items from local files, with errors that name the file, row and field."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """A data file or item that cannot be used; the message says where and why."""


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """Read ``.jsonl``, ``.json`` (a list, or an object with a ``data`` list), ``.csv`` or ``.parquet``."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    if suffix in (".jsonl", ".jsonl.gz"):
        return _read_jsonl(path)
    if suffix == ".json":
        return _read_json(path)
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            return [dict(row) for row in csv.DictReader(fh)]
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise DataError(f"{path}: reading parquet needs pyarrow (pip install 'agentr1-gym[data]')") from exc
        return pq.read_table(path).to_pylist()
    raise DataError(f"{path}: unsupported file type {suffix!r} (use .jsonl, .json, .csv or .parquet)")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    records = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            records.append(record)
    return records


def _read_json(path: Path) -> list[dict[str, Any]]:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON at line {exc.lineno} ({exc.msg})") from exc
    if isinstance(payload, dict) and isinstance(payload.get("data"), list):
        payload = payload["data"]
    if not isinstance(payload, list):
        raise DataError(f"{path}: expected a list of objects")
    for i, record in enumerate(payload):
        if not isinstance(record, dict):
            raise DataError(f"{path}: row {i}: expected an object, got {type(record).__name__}")
    return payload


def require_fields(record: Mapping[str, Any], fields: Iterable[str], *, source: str, row: int | str) -> None:
    """Raise ``DataError`` naming ``source``, ``row`` and the field if any of ``fields`` is missing or empty."""
    for name in fields:
        value = record.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            present = ", ".join(sorted(map(str, record))) or "none"
            raise DataError(f"{source}: row {row}: missing or empty field {name!r} (fields present: {present})")


def rename_fields(record: Mapping[str, Any], aliases: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Copy ``record`` with each canonical field filled from the first alias present."""
    out = dict(record)
    for canonical, names in aliases.items():
        if out.get(canonical) in (None, ""):
            for name in names:
                if record.get(name) not in (None, ""):
                    out[canonical] = record[name]
                    break
    return out
