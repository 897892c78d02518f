"""Data files: every error names the file, the line (1-based) and the field; one numbering for all formats."""

import gzip
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from envs.core.data import DataError, load_records, read_records, require_fields
from envs.math.datasets import load_math_items
from envs.qa.datasets import load_items
from envs.retrieval.corpus import load_corpus

BAD_BYTE = b"\xff"


@pytest.mark.parametrize("name", ["d.jsonl", "d.json", "d.csv", "d.jsonl.gz"])
def test_a_non_utf8_byte_names_the_file_and_line(tmp_path, name):
    lines = {
        "d.jsonl": [b'{"problem": "p", "answer": "1"}', b"", b'{"problem": "caf' + BAD_BYTE + b'", "answer": "2"}'],
        "d.json": [b"[", b'  {"problem": "p", "answer": "1"},', b'  {"problem": "caf' + BAD_BYTE + b'", "answer": "2"}', b"]"],
        "d.csv": [b"problem,answer", b"p,1", b"caf" + BAD_BYTE + b",2"],
    }
    raw = b"\n".join(lines["d.jsonl" if name.endswith(".gz") else name]) + b"\n"
    path = tmp_path / name
    path.write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    with pytest.raises(DataError) as err:
        load_records(path)
    assert not isinstance(err.value, UnicodeDecodeError)
    assert str(err.value).startswith(f"{path}:3: not valid UTF-8 (byte 0xff")


def test_every_format_locates_a_record_by_the_line_it_starts_on(tmp_path):
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
    pretty = tmp_path / "d.json"
    pretty.write_text(json.dumps([{"a": 1}, {"a": 2}], indent=2), encoding="utf-8")  # objects open on lines 2 and 5
    wrapped = tmp_path / "w.json"
    wrapped.write_text('{"version": 1,\n "data": [\n  {"a": 1},\n  {"a": 2}]}', encoding="utf-8")
    table = tmp_path / "d.csv"
    table.write_text('a,b\n1,"two\nlines"\n3,x\n', encoding="utf-8")  # the first row spans lines 2-3
    assert [r.where for r in read_records(jsonl)] == [f"{jsonl}:1", f"{jsonl}:3"]
    assert [r.where for r in read_records(pretty)] == [f"{pretty}:2", f"{pretty}:5"]
    assert [r.where for r in read_records(wrapped)] == [f"{wrapped}:3", f"{wrapped}:4"]
    assert [(r.where, r.data) for r in read_records(table)] == [
        (f"{table}:2", {"a": "1", "b": "two\nlines"}), (f"{table}:4", {"a": "3", "b": "x"})]


def test_syntax_errors_and_field_errors_use_the_same_numbering(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[\n  {"problem": "p", "answer": "1"},\n  {"problem": "q"}\n]', encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{path}:3: missing field 'answer' \(fields present: problem\)$"):
        load_math_items(path)
    path.write_text('[\n  {"problem": "p", "answer": "1"},\n  {"problem": "q", }\n]', encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{path}:3: invalid JSON"):
        load_math_items(path)
    lines = tmp_path / "lines.json"  # JSON Lines under a .json name: say so
    lines.write_text('{"a": 1}\n{"a": 2}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r":2: invalid JSON .*name the file \.jsonl"):
        load_records(lines)


def test_csv_with_more_values_than_columns_names_the_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("problem,answer\np,1\nq,2,surplus\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{path}:3: 3 values but the header"):
        load_records(path)


def test_fields_present_never_lists_the_missing_or_empty_field():
    with pytest.raises(DataError) as err:
        require_fields({"question": "   ", "answer": None, "id": 3}, ["answer"], source="f.jsonl:4")
    assert str(err.value) == "f.jsonl:4: missing field 'answer' (fields present: id)"  # blank text holds nothing
    with pytest.raises(DataError, match=r"^f\.jsonl:4: field 'question' is empty$"):
        require_fields({"question": "   "}, ["question"], source="f.jsonl:4")
    with pytest.raises(DataError, match=r"^hub\[test\]: row 7: missing field 'q' \(fields present: none\)$"):
        require_fields({"q": None}, ["q"], source="hub[test]", row=7)


def test_qa_and_corpus_loaders_name_file_line_and_field(tmp_path):
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": "q?", "answer": "a"}) + "\n" + json.dumps({"query": None, "answer": "b"}) + "\n")
    with pytest.raises(DataError) as err:
        load_items("hotpotqa", data_path=qa)
    assert str(err.value).startswith(f"{qa}:2: missing field 'question'") and "query" not in str(err.value)
    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"id": "a", "text": "x"}) + "\n" + json.dumps({"id": "a", "text": "y"}) + "\n")
    with pytest.raises(DataError, match=rf"^{corpus}:2: duplicate passage id 'a' \(first at {corpus}:1\)$"):
        load_corpus(corpus)


def test_an_empty_math_file_names_its_path(tmp_path):
    for name, text in (("empty.jsonl", ""), ("blank.jsonl", "\n\n"), ("empty.json", "[]"), ("header.csv", "problem,answer\n")):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        with pytest.raises(DataError, match=rf"^{path}: no problems"):
            load_math_items(path)


def test_a_directory_stands_for_its_data_files_and_split_picks_among_them(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "test-00000-of-00001.jsonl").write_text(json.dumps({"problem": "t", "answer": "1"}) + "\n")
    (tmp_path / "data" / "train-00000-of-00001.jsonl").write_text(json.dumps({"problem": "r", "answer": "2"}) + "\n")
    (tmp_path / "README.md").write_text("not data")
    assert [i["problem"] for i in load_math_items(tmp_path, split="test")] == ["t"]
    assert [i["problem"] for i in load_math_items(tmp_path)] == ["t", "r"]
    with pytest.raises(DataError, match="no data file for split 'validation'"):
        load_math_items(tmp_path, split="validation")
    (tmp_path / "nothing-here").mkdir()
    with pytest.raises(DataError, match="nothing-here: no data files"):
        load_records(tmp_path / "nothing-here")


def test_a_damaged_gzip_file_is_a_data_error(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"a": 1}\n')[:-6])
    with pytest.raises(DataError, match=rf"^{path}: not a complete gzip file"):
        load_records(path)


_records = st.lists(st.one_of(st.none(), st.dictionaries(st.text(max_size=4), st.text(max_size=6) | st.integers(),
                                                          max_size=3)), max_size=8)


@given(_records, st.sampled_from([None, 1, 3]))
def test_locations_are_the_lines_records_start_on(tmp_path_factory, rows, indent):
    """Property: jsonl (with blank lines as None) and json (any indent) name each record by its first line."""
    folder = tmp_path_factory.mktemp("prop")
    jsonl = folder / "p.jsonl"
    jsonl.write_text("\n".join("" if r is None else json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    expected = [(f"{jsonl}:{n}", r) for n, r in enumerate(rows, 1) if r is not None]
    assert [(r.where, r.data) for r in read_records(jsonl)] == expected
    objects = [r for r in rows if r is not None]
    pretty = folder / "p.json"
    text = json.dumps(objects, indent=indent, ensure_ascii=False)
    pretty.write_text(text, encoding="utf-8")
    got = read_records(pretty)
    assert [r.data for r in got] == objects
    for record in got:  # the named line holds the start of that record's object
        line = int(record.where.rsplit(":", 1)[1])
        assert text.split("\n")[line - 1].lstrip(" [").startswith("{")
