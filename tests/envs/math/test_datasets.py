"""Math data loading: shipped samples, local files, Hub field mapping, errors naming file/row/field."""

import json
import sys
import types

import pytest
from hypothesis import given
from hypothesis import strategies as st

from envs.core.data import DataError
from envs.math import datasets as mds
from envs.math.datasets import DATASETS, gsm8k_answer, load_math_items, normalize_record


def test_shipped_sample_covers_the_answer_kinds():
    items = load_math_items("sample")
    assert 20 <= len(items) <= 60
    assert all(item["problem"].strip() and item["answer"].strip() for item in items)
    kinds = {item["kind"] for item in items}
    assert {"integer", "fraction", "sqrt", "interval", "set", "tuple", "percent", "text", "matrix"} <= kinds
    assert len(load_math_items("sample", limit=5)) == 5


def test_gsm8k_sample_answers_come_after_the_marker():
    items = load_math_items("gsm8k-sample")
    assert items[0]["answer"] == "33"
    assert all("####" not in item["answer"] and "," not in item["answer"] for item in items)
    assert gsm8k_answer("so 1,550 in all\n#### 1,550") == "1550"
    with pytest.raises(ValueError):
        gsm8k_answer("no marker")


def _write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_local_files_with_other_field_names(tmp_path):
    path = _write_jsonl(tmp_path / "mine.jsonl", [
        {"question": "1+1?", "final_answer": ["2"]},
        {"problem": "Half of 1?", "solution": "It is $\\boxed{\\frac{1}{2}}$."},
        {"problem": "3*3?", "answer": 9},
        {"problem": "boxed gold", "answer": "\\boxed{7}"},
    ])
    items = load_math_items(str(path))
    assert [i["answer"] for i in items] == ["2", "\\frac{1}{2}", "9", "7"]
    assert items[0]["problem"] == "1+1?"
    json_path = tmp_path / "mine.json"
    json_path.write_text(json.dumps([{"problem": "p", "answer": "1"}]), encoding="utf-8")
    assert load_math_items(json_path)[0]["answer"] == "1"
    gsm = _write_jsonl(tmp_path / "gsm.jsonl", [{"question": "q", "answer": "work\n#### 12"}])
    assert load_math_items(gsm, answer_format="gsm8k")[0]["answer"] == "12"


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"problem": ["p1", "p2"], "answer": ["1", "2"]}), path)
    assert [i["answer"] for i in load_math_items(path)] == ["1", "2"]


@pytest.mark.parametrize(("row", "field"), [
    ({"problem": "p"}, "answer"),
    ({"answer": "1"}, "problem"),
    ({"problem": "p", "answer": "   "}, "answer"),
    ({"problem": "p", "answer": ["1", "2"]}, "answer"),
    ({"problem": "p", "answer": {"x": 1}}, "answer"),
    ({"problem": 5, "answer": "1"}, "problem"),
])
def test_bad_rows_name_file_line_and_field(tmp_path, row, field):
    path = _write_jsonl(tmp_path / "bad.jsonl", [{"problem": "fine", "answer": "1"}, row])
    with pytest.raises(DataError) as err:
        load_math_items(path)
    message = str(err.value)
    assert message.startswith(f"{path}:2: ") and repr(field) in message  # the second line, 1-based
    if "fields present" in message:
        assert field not in message.split("fields present:")[1]


def test_bad_gsm8k_answer_names_row_and_field(tmp_path):
    path = _write_jsonl(tmp_path / "g.jsonl", [{"question": "q", "answer": "no marker here"}])
    with pytest.raises(DataError, match=r"g\.jsonl:1: field 'answer'"):
        load_math_items(path, answer_format="gsm8k")


def test_invalid_json_and_unknown_names(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"problem": "p", "answer": "1"}\n{not json\n', encoding="utf-8")
    with pytest.raises(DataError, match="broken.jsonl:2"):
        load_math_items(path)
    with pytest.raises(DataError, match="unknown math dataset"):
        load_math_items("no-such-dataset")
    with pytest.raises(DataError, match="no such file"):
        load_math_items(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError):
        load_math_items("sample", answer_format="weird")


class _FakeDatasets(types.ModuleType):
    """Stands in for Hugging Face ``datasets``: returns canned splits and records the calls."""

    def __init__(self, splits):
        super().__init__("datasets")
        self.splits = splits
        self.calls = []

    def load_dataset(self, path, config=None):
        self.calls.append((path, config))
        if isinstance(self.splits, Exception):
            raise self.splits
        return self.splits


@pytest.fixture
def fake_hub(monkeypatch):
    def install(splits):
        fake = _FakeDatasets(splits)
        monkeypatch.setitem(sys.modules, "datasets", fake)
        mds._load_hub.cache_clear()
        return fake

    yield install
    mds._load_hub.cache_clear()


def test_hub_loading_maps_fields_per_dataset(fake_hub):
    fake = fake_hub({"test": [{"question": "Q1", "answer": "steps\n#### 1,234"}]})
    items = load_math_items("gsm8k")
    assert fake.calls == [("openai/gsm8k", "main")]
    assert items == [{"question": "Q1", "answer": "1234", "problem": "Q1", "source": "gsm8k"}]

    fake = fake_hub({"train": [{"problem": "P", "solution": "... \\boxed{5}", "answer": "5"}]})
    assert load_math_items("open-rs")[0]["answer"] == "5"
    assert fake.calls == [("knoveleng/open-rs", None)]

    fake_hub({"only": [{"Problem": "P", "final_answer": ["$x=1$"]}]})  # a single, differently named split
    assert load_math_items("olympiadbench", limit=1)[0]["answer"] == "$x=1$"


def test_hub_errors_are_data_errors(fake_hub):
    fake_hub(ConnectionError("offline"))
    with pytest.raises(DataError, match="knoveleng/open-rs.*dataset='sample'"):
        load_math_items("open-rs")
    fake_hub({"a": [], "b": []})
    with pytest.raises(DataError, match="no split"):
        load_math_items("math500")
    fake_hub({"test": [{"problem": "p", "answer": "1"}, {"problem": "p"}]})
    with pytest.raises(DataError, match=r"HuggingFaceH4/MATH-500\[test\]: row 1: .*'answer'"):
        load_math_items("math500")


def test_registered_names_cover_the_paper():
    assert {"open-rs", "open-s1", "open-deepscaler", "math500", "aime24", "amc23", "minerva", "olympiadbench",
            "gsm8k"} <= set(DATASETS)
    assert DATASETS["math500"].hf_path == "HuggingFaceH4/MATH-500"
    assert DATASETS["aime24"].hf_path == "HuggingFaceH4/aime_2024"


def test_normalize_record_is_idempotent():
    item = normalize_record({"problem": "p", "answer": "\\boxed{3}"}, source="x", row=0)
    assert normalize_record(item, source="x", row=0) == item == {"problem": "p", "answer": "3"}


def test_local_files_are_read_once_per_version(tmp_path):
    path = _write_jsonl(tmp_path / "v.jsonl", [{"problem": "p", "answer": "1"}])
    first = load_math_items(path)
    first[0]["answer"] = "mutated by a caller"
    assert load_math_items(path)[0]["answer"] == "1"  # callers get copies
    _write_jsonl(path, [{"problem": "p", "answer": "2"}, {"problem": "q", "answer": "3"}])
    assert [i["answer"] for i in load_math_items(path)] == ["2", "3"]  # a changed file is re-read


_values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30),
                    st.lists(st.text(max_size=5), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@given(st.dictionaries(st.sampled_from(["problem", "question", "answer", "final_answer", "solution", "other"]), _values))
def test_any_row_is_an_item_or_a_data_error(row):
    try:
        item = normalize_record(row, source="fuzz.jsonl", row=3)
    except DataError as exc:
        assert str(exc).startswith("fuzz.jsonl: row 3")
    else:
        assert isinstance(item["problem"], str) and item["problem"].strip()
        assert isinstance(item["answer"], str) and item["answer"].strip()


def test_command_line_validate_and_check(tmp_path, capsys):
    from envs.math.__main__ import main

    assert main(["validate", "sample"]) == 0
    assert "36/36" in capsys.readouterr().out
    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"problem": "p", "answer": "1"}, {"problem": "q", "answer": "9^{9^{9^{9}}}"}])
    assert main(["validate", str(bad)]) == 1
    assert "row 1" in capsys.readouterr().out
    broken = _write_jsonl(tmp_path / "broken.jsonl", [{"problem": "p"}])
    assert main(["validate", str(broken)]) == 2
    assert "broken.jsonl:1: missing field 'answer'" in capsys.readouterr().err
    assert main(["check", "\\frac12", "so \\boxed{0.5}"]) == 0
    assert '"correct": true' in capsys.readouterr().out
