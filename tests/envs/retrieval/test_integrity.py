"""Every corruption of an on-disk index ends in a correct ranking (cache: rebuilt) or a clear error (read-only)."""

import json
import shutil
from pathlib import Path

import pytest

from envs.qa.datasets import SAMPLE_CORPUS_PATH
from envs.retrieval import load_corpus
from envs.retrieval.bm25 import BM25Retriever
from envs.retrieval.integrity import MANIFEST_NAME, IndexIntegrityError, check_manifest, write_manifest

QUERIES = ["Who founded Velmora Textiles?", "capital of Tervania", "river Selk Pale Ocean", "badminton player national titles"]


def _flip(path: Path) -> None:  # same size, one byte changed in the middle
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x5A
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _delete(path: Path) -> None:
    path.unlink()


CORRUPTIONS = {"flip": _flip, "truncate": _truncate, "delete": _delete}
MANIFEST_CASES = {
    "missing": lambda p: p.unlink(),
    "not json": lambda p: p.write_text("{not json"),
    "wrong layout": lambda p: p.write_text(json.dumps({"format": 1, "files": []})),
    "wrong checksum": lambda p: p.write_text(json.dumps(
        {"format": 1, "files": {k: {**v, "sha256": "0" * 64} for k, v in json.loads(p.read_text())["files"].items()}})),
}


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(SAMPLE_CORPUS_PATH)


@pytest.fixture(scope="module")
def pristine(corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("pristine")
    retriever = BM25Retriever(corpus, cache_dir=root)
    return root, retriever.index_dir, _ranking(retriever)


def _ranking(retriever):
    return [[(p.id, round(p.score, 5)) for p in hits] for hits in retriever.search_many(QUERIES, 5)]


def _cases(index_dir: Path):
    files = sorted(p.name for p in index_dir.iterdir() if p.name != MANIFEST_NAME)
    assert len(files) >= 6  # bm25s arrays, vocabulary, params, passages, our metadata
    for name in files:
        for kind in CORRUPTIONS:
            yield f"{name}:{kind}", name, CORRUPTIONS[kind]
    for kind, fn in MANIFEST_CASES.items():
        yield f"manifest:{kind}", MANIFEST_NAME, fn


def test_every_corruption_of_the_cache_is_rebuilt_to_the_correct_ranking(pristine, corpus, tmp_path):
    root, index_dir, expected = pristine
    outcomes = {}
    for case, name, corrupt in _cases(index_dir):
        work = tmp_path / case.replace(":", "_").replace(" ", "_")
        shutil.copytree(root, work)
        cached = work / index_dir.relative_to(root)
        corrupt(cached / name)
        assert check_manifest(cached) is not None, f"{case} went unnoticed"
        again = BM25Retriever(corpus, cache_dir=work)
        outcomes[case] = _ranking(again) == expected and check_manifest(cached) is None
        again.close()
    assert len(outcomes) >= 22 and all(outcomes.values()), [c for c, ok in outcomes.items() if not ok]


def test_every_corruption_of_a_read_only_index_is_a_clear_error(pristine, tmp_path):
    _, index_dir, expected = pristine
    assert _ranking(BM25Retriever.from_index(index_dir)) == expected
    for case, name, corrupt in _cases(index_dir):
        copy = tmp_path / case.replace(":", "_").replace(" ", "_")
        shutil.copytree(index_dir, copy)
        corrupt(copy / name)
        if name == "agentr1_meta.json" and not (copy / name).exists():
            with pytest.raises(Exception, match="not a bm25 index"):
                BM25Retriever.from_index(copy)
            continue
        with pytest.raises(IndexIntegrityError, match="integrity check") as info:
            BM25Retriever.from_index(copy)
        assert str(copy) in str(info.value), case


def test_manifest_records_every_file(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"abc")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("x")
    manifest = write_manifest(tmp_path)
    assert set(manifest["files"]) == {"a.bin", "sub/b.txt"} and manifest["files"]["a.bin"]["size"] == 3
    assert check_manifest(tmp_path) is None
    (tmp_path / "sub" / "b.txt").write_text("y")  # same size, different content
    assert "checksum" in check_manifest(tmp_path)
