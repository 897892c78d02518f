"""Reading dataset records from local files, with errors that name the file, the line and the field.

One numbering convention in every message:

* a record of a **text file** (``.jsonl``, ``.json``, ``.csv``, each optionally ``.gz``) is named
  ``path:LINE``, the **1-based line on which the record starts**, as editors and compilers count
  (blank lines count; a CSV header is line 1);
* a record **without lines** (a Parquet row, a Hub dataset row, an item passed in code) is named
  ``source: row N``, its **0-based index**, the number ``reset(options={"index": N})`` takes.

A directory stands for the data files in it (``*.jsonl``, ``*.json``, ``*.csv``, ``*.parquet``, at
most two levels down, in name order); with ``split=`` only those whose path names that split
(``test.jsonl``, ``data/test-00000-of-00001.parquet``, ``validation/part-0.jsonl``).
"""

from __future__ import annotations

import bisect
import csv
import gzip
import io
import json
import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple


class DataError(ValueError):
    """A data file or item that cannot be used; the message says where and why."""


class Record(NamedTuple):
    """One record and where it came from (``path:LINE`` or ``source: row N``; module docstring)."""

    where: str
    data: dict[str, Any]


DATA_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".csv", ".csv.gz", ".parquet")


def locate(source: str, row: int | str | None = None) -> str:
    """The location prefix of a message: ``source`` itself (already ``path:LINE``) or ``source: row N``."""
    return source if row is None else f"{source}: row {row}"


def data_suffix(path: Path) -> str:
    """``.jsonl``, ``.jsonl.gz``, ``.csv`` ...: the suffix that decides how ``path`` is read."""
    return "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix


# ---------------------------------------------------------------------------------------- reading
def read_records(path: str | Path, *, split: str | None = None) -> list[Record]:
    """Every record of a data file or directory, each with its location (module docstring)."""
    path = Path(path).expanduser()
    if path.is_dir():
        files = data_files(path, split=split)
        return [record for file in files for record in _read_file(file)]
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    return _read_file(path)


def load_records(path: str | Path, *, split: str | None = None) -> list[dict[str, Any]]:
    """``read_records`` without the locations."""
    return [record.data for record in read_records(path, split=split)]


def data_files(directory: Path, *, split: str | None = None) -> list[Path]:
    """The data files a directory stands for (module docstring); ``DataError`` if there are none."""
    found = sorted(p for pattern in ("*", "*/*") for p in directory.glob(pattern)
                   if p.is_file() and data_suffix(p) in DATA_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(directory).parts))
    if split is not None:
        chosen = [p for p in found if split in _name_tokens(p.relative_to(directory))]
        if not chosen and found:
            names = ", ".join(str(p.relative_to(directory)) for p in found[:10])
            raise DataError(f"{directory}: no data file for split {split!r} among {names}")
        found = chosen
    if not found:
        raise DataError(f"{directory}: no data files ({', '.join(DATA_SUFFIXES)}) in this directory")
    return found


def _name_tokens(relative: Path) -> set[str]:
    stem = str(relative)[: -len(data_suffix(relative))]
    return set(re.split(r"[-_./\\]", stem))


def _read_file(path: Path) -> list[Record]:
    suffix = data_suffix(path)
    if suffix in (".jsonl", ".jsonl.gz"):
        return _read_jsonl(path)
    if suffix in (".json", ".json.gz"):
        return _read_json(path)
    if suffix in (".csv", ".csv.gz"):
        return _read_csv(path)
    if suffix == ".parquet":
        return _read_parquet(path)
    raise DataError(f"{path}: unsupported file type {suffix!r} (use {', '.join(DATA_SUFFIXES)})")


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (gzip.BadGzipFile, EOFError) as exc:
        raise DataError(f"{path}: not a complete gzip file ({exc})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc


def _decode(raw: bytes, path: Path) -> str:
    """UTF-8 text (a leading byte-order mark is dropped); a bad byte is reported with its line."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {column}); "
                        "save the file as UTF-8") from None


def _read_jsonl(path: Path) -> list[Record]:
    text = _decode(_read_bytes(path), path)
    records = []
    # split on "\n" only: str.splitlines would also split inside strings at U+2028 and friends
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(value, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(value).__name__}")
        records.append(Record(f"{path}:{lineno}", value))
    return records


class _Lines:
    """Offset -> 1-based line number for one text."""

    def __init__(self, text: str):
        self._starts = [0, *(m.end() for m in re.finditer("\n", text))]

    def line(self, offset: int) -> int:
        return bisect.bisect_right(self._starts, offset)


def _read_json(path: Path) -> list[Record]:
    """A list of objects, or an object with a ``data`` list; each record located by its first line."""
    text = _decode(_read_bytes(path), path)
    lines = _Lines(text)
    try:
        elements = _json_list_elements(text)
    except json.JSONDecodeError as exc:
        hint = " (one object per line is JSON Lines: name the file .jsonl)" if exc.msg == "Extra data" else ""
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno}){hint}") from None
    if elements is None:
        raise DataError(f"{path}: expected a list of objects (or an object with a 'data' list)")
    records = []
    for offset, value in elements:
        if not isinstance(value, dict):
            raise DataError(f"{path}:{lines.line(offset)}: expected an object, got {type(value).__name__}")
        records.append(Record(f"{path}:{lines.line(offset)}", value))
    return records


_WS = re.compile(r"[ \t\n\r]*")


def _json_list_elements(text: str) -> list[tuple[int, Any]] | None:
    """``(offset, value)`` of each element of the top-level list (or of its ``data`` list); else None."""
    decoder = json.JSONDecoder()

    def skip(i: int) -> int:
        return _WS.match(text, i).end()  # type: ignore[union-attr]

    def fail(msg: str, i: int) -> json.JSONDecodeError:
        return json.JSONDecodeError(msg, text, i)

    def elements(i: int) -> tuple[list[tuple[int, Any]], int]:
        out: list[tuple[int, Any]] = []
        i = skip(i + 1)
        if text.startswith("]", i):
            return out, i + 1
        while True:
            value, end = decoder.raw_decode(text, i)
            out.append((i, value))
            i = skip(end)
            if text.startswith(",", i):
                i = skip(i + 1)
            elif text.startswith("]", i):
                return out, i + 1
            else:
                raise fail("Expecting ',' delimiter", i)

    def finish(result: list[tuple[int, Any]] | None, i: int) -> list[tuple[int, Any]] | None:
        if skip(i) != len(text):
            raise fail("Extra data", skip(i))
        return result

    i = skip(0)
    if text.startswith("[", i):
        found, end = elements(i)
        return finish(found, end)
    if not text.startswith("{", i):
        value, end = decoder.raw_decode(text, i)  # raises for anything that is not JSON
        return finish(None, end)
    result: list[tuple[int, Any]] | None = None
    i = skip(i + 1)
    while not text.startswith("}", i):
        key, i = decoder.raw_decode(text, i)
        i = skip(i)
        if not isinstance(key, str) or not text.startswith(":", i):
            raise fail("Expecting property name and ':'", i)
        i = skip(i + 1)
        if key == "data" and text.startswith("[", i):
            result, i = elements(i)
        else:
            value, i = decoder.raw_decode(text, i)
            if key == "data":
                result = None
        i = skip(i)
        if text.startswith(",", i):
            i = skip(i + 1)
        elif not text.startswith("}", i):
            raise fail("Expecting ',' delimiter", i)
    return finish(result, i + 1)


def _read_csv(path: Path) -> list[Record]:
    """Rows as objects keyed by the header; a row starts on the line after the previous one ended."""
    text = _decode(_read_bytes(path), path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            return []
        records, start = [], reader.line_num + 1
        for values in reader:
            if values:
                if len(values) > len(header):
                    raise DataError(f"{path}:{start}: {len(values)} values but the header (line 1) names "
                                    f"{len(header)} columns")
                row = dict(zip(header, values, strict=False))
                row.update(dict.fromkeys(header[len(values):]))  # missing trailing values
                records.append(Record(f"{path}:{start}", row))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None
    return records


def _read_parquet(path: Path) -> list[Record]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DataError(f"{path}: reading parquet needs pyarrow (pip install 'agentr1-gym[data]')") from exc
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path}: not a readable parquet file ({type(exc).__name__}: {exc})") from exc
    return [Record(locate(str(path), i), row) for i, row in enumerate(rows)]


# ---------------------------------------------------------------------------------------- checking
def present_fields(record: Mapping[str, Any], *, leaving_out: str | None = None) -> str:
    """The fields of ``record`` that hold something (not None, not blank text), for messages."""
    names = [str(k) for k, v in record.items()
             if k != leaving_out and v is not None and not (isinstance(v, str) and not v.strip())]
    return ", ".join(sorted(names)) or "none"


def require_fields(record: Mapping[str, Any], fields: Iterable[str], *, source: str, row: int | str | None = None) -> None:
    """Raise ``DataError`` at ``locate(source, row)`` naming the first of ``fields`` missing or empty."""
    for name in fields:
        value = record.get(name)
        if value is None:
            raise DataError(f"{locate(source, row)}: missing field {name!r} "
                            f"(fields present: {present_fields(record, leaving_out=name)})")
        if isinstance(value, str) and not value.strip():
            raise DataError(f"{locate(source, row)}: field {name!r} is empty")


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


# ---------------------------------------------------------------------------------------- sources
def file_version(path: str | Path) -> tuple[Any, ...]:
    """What changes when a local file (or a directory's data files) changes: part of a cache key."""
    p = Path(path).expanduser()
    try:
        if p.is_dir():
            return (str(p.resolve()), *(file_version(f) for f in data_files(p)))
        st = p.stat()
    except (OSError, DataError):
        return (str(p), None)
    return (str(p.resolve()), st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class DataSource:
    """Where an env's items come from; ``ItemListEnv`` loads them on first need, once per process.

    Envs whose sources have equal ``key`` (and whose ``files`` are unchanged) share one loaded copy.
    ``load`` returns the records; ``name`` (a dataset name or a path) is what messages show.
    """

    name: str
    key: Hashable
    load: Callable[[], Sequence[Mapping[str, Any]]] = field(compare=False, repr=False)
    files: tuple[str, ...] = ()

    def cache_key(self) -> tuple[Any, ...]:
        return (self.key, *(file_version(f) for f in self.files))
