"""Corpus files and modes, and the ``python -m envs.retrieval`` command line."""

import json

import pytest

from envs.core.data import DataError
from envs.qa.datasets import SAMPLE_CORPUS_PATH, load_items
from envs.retrieval import Passage, load_corpus, passages_from_context, passages_from_items
from envs.retrieval.__main__ import main
from envs.retrieval.corpus import corpus_fingerprint, default_cache_dir, write_corpus_jsonl


def test_jsonl_corpus_forms(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [{"id": "a", "title": "A", "text": "alpha"}, {"id": 2, "contents": '"B"\nbeta'}, {"docid": "c", "text": "gamma"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert load_corpus(path) == [Passage("a", "A", "alpha"), Passage("2", "B", "beta"), Passage("c", "", "gamma")]
    path.write_text(json.dumps({"id": "a", "text": "x"}) + "\n" + json.dumps({"id": "a", "text": "y"}) + "\n")
    with pytest.raises(DataError, match="duplicate passage id"):
        load_corpus(path)
    path.write_text(json.dumps({"id": "a", "title": "no text"}) + "\n")
    with pytest.raises(DataError, match=r"c\.jsonl:1: a corpus row needs 'text'"):
        load_corpus(path)


def test_dataset_and_distractor_corpora():
    items = load_items("hotpotqa", data_path="sample")
    everything = passages_from_items(items)
    keys = [(p.title, p.text) for p in everything]
    assert len(keys) == len(set(keys)), "paragraphs shared between questions appear once"
    assert len({p.id for p in everything}) == len(everything)
    own = passages_from_context(items[0]["context"], id_prefix="q0-")
    assert {p.title for p in own} == {c["title"] for c in items[0]["context"]}
    assert {(p.title, p.text) for p in own} <= set(keys)


def test_fingerprint_and_atomic_write(tmp_path):
    passages = load_corpus(SAMPLE_CORPUS_PATH)
    out = write_corpus_jsonl(passages, tmp_path / "copy.jsonl", contents=True)
    assert [p.name for p in tmp_path.iterdir()] == ["copy.jsonl"]
    again = load_corpus(out)
    assert again == passages and corpus_fingerprint(again) == corpus_fingerprint(passages)
    assert corpus_fingerprint(passages[:-1]) != corpus_fingerprint(passages)
    assert json.loads(out.read_text().splitlines()[0])["contents"].startswith('"')


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AGENTR1_GYM_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"


def test_cli_build_index_then_search(tmp_path, capsys):
    out = tmp_path / "idx"
    assert main(["build-index", "--corpus", str(SAMPLE_CORPUS_PATH), "--backend", "bm25", "--out", str(out)]) == 0
    assert (out / "agentr1_meta.json").exists()
    assert "index written to" in capsys.readouterr().out
    assert main(["search", "--index", str(out), "-k", "2", "capital of Tervania"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Doc 1(Title: Tervania)") and "Doc 3(" not in printed
    assert main(["build-index", "--corpus", str(SAMPLE_CORPUS_PATH), "--cache-dir", str(tmp_path / "cache")]) == 0
    assert any((tmp_path / "cache" / "indexes").iterdir())


def test_cli_serve_answers_the_protocol(tmp_path):
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    from envs.retrieval.http import HttpRetriever

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).parents[3]
    proc = subprocess.Popen(
        [sys.executable, "-m", "envs.retrieval", "serve", "--corpus", str(SAMPLE_CORPUS_PATH), "--backend", "bm25",
         "--host", "127.0.0.1", "--port", str(port), "--cache-dir", str(tmp_path), "--log-level", "warning"],
        cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as resp:
                    assert json.loads(resp.read())["backend"] == "bm25"
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "the server did not come up in 30 s"
                time.sleep(0.2)
        hits = HttpRetriever(f"http://127.0.0.1:{port}", timeout=5).search("capital of Tervania", 3)
        assert hits[0].title == "Tervania" and len(hits) <= 3
    finally:
        proc.terminate()
        proc.wait(timeout=10)
