"""Every retrieval backend against the same small corpus (the shipped fictional sample corpus)."""

import itertools
import json
import os
import socket
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from envs.qa.datasets import SAMPLE_CORPUS_PATH
from envs.retrieval import (
    Passage,
    RetrievalError,
    Retriever,
    clear_shared_retrievers,
    format_passages,
    load_corpus,
    make_retriever,
    shared_retriever,
    split_contents,
    to_contents,
)
from envs.retrieval.bm25 import BM25Retriever
from envs.retrieval.http import HttpRetriever

# query -> the title that must rank first on the sample corpus
QUERIES = {
    "Who founded Velmora Textiles?": "Velmora Textiles",
    "Idris Hallowell birthplace harbour town": "Idris Hallowell",
    "opera composer Mirela Danescu cello": "Mirela Danescu",
    "capital of Tervania": "Tervania",
    "river Selk Pale Ocean": "Selk",
    "badminton player national titles": "Hollis Brandt",
    "sloop Meridian Hart explorer": "Jonah Verrin",
}


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(SAMPLE_CORPUS_PATH)


@pytest.fixture(scope="module")
def bm25(corpus, tmp_path_factory):
    return BM25Retriever(corpus, cache_dir=tmp_path_factory.mktemp("cache"))


def _check_rankings(retriever: Retriever, k: int = 5) -> list[list[Passage]]:
    results = retriever.search_many(list(QUERIES), k)
    assert len(results) == len(QUERIES)
    for (query, title), hits in zip(QUERIES.items(), results, strict=True):
        assert hits, query
        assert hits[0].title == title, (query, [h.title for h in hits])
        assert len(hits) <= k
        assert all(a.score >= b.score for a, b in itertools.pairwise(hits)), "results must be best first"
    single = retriever.search(next(iter(QUERIES)), k)
    assert [p.id for p in single] == [p.id for p in results[0]]
    return results


# ---------------------------------------------------------------- bm25s
def test_bm25_rankings_and_protocol(bm25):
    assert isinstance(bm25, Retriever)
    _check_rankings(bm25)
    assert bm25.search("the of and a", 5) == []          # only stopwords: nothing matches
    assert bm25.search("", 5) == [] and bm25.search("zzqxj unknownword", 5) == []
    assert len(bm25.search("Quessel", 1000)) < len(bm25)  # k beyond the corpus, only matching passages
    with pytest.raises(ValueError):
        bm25.search("x", 0)


def test_bm25_index_is_saved_atomically_and_reloaded(corpus, tmp_path, monkeypatch):
    first = BM25Retriever(corpus, cache_dir=tmp_path)
    index_dir = first.index_dir
    assert index_dir is not None and (index_dir / "agentr1_meta.json").exists()
    assert [p.name for p in index_dir.parent.iterdir()] == [index_dir.name], "no temporary directories left behind"

    def no_rebuild(self):
        raise AssertionError("the cached index should have been loaded, not rebuilt")

    monkeypatch.setattr(BM25Retriever, "_build", no_rebuild)
    second = BM25Retriever(corpus, cache_dir=tmp_path)
    assert second.index_dir == index_dir
    assert [p.id for p in second.search("Karsholm", 3)] == [p.id for p in first.search("Karsholm", 3)]
    reopened = BM25Retriever.from_index(index_dir)
    assert [p.title for p in reopened.search("Karsholm", 3)] == [p.title for p in first.search("Karsholm", 3)]


def test_bm25_rebuilds_a_corrupt_cache(corpus, tmp_path):
    index_dir = BM25Retriever(corpus, cache_dir=tmp_path).index_dir
    for f in index_dir.glob("*.npy"):
        f.write_bytes(b"garbage")
    again = BM25Retriever(corpus, cache_dir=tmp_path)
    assert again.search("Tervania", 1)[0].title == "Tervania"


def test_bm25_changed_corpus_gets_a_new_index(corpus, tmp_path):
    a = BM25Retriever(corpus, cache_dir=tmp_path)
    b = BM25Retriever(corpus[:-1], cache_dir=tmp_path)
    assert a.index_dir != b.index_dir


@pytest.mark.slow
def test_bm25_numba_scorer_agrees_with_numpy(corpus):
    pytest.importorskip("numba")
    numpy_hits = BM25Retriever(corpus, persist=False, backend="numpy").search_many(list(QUERIES), 5)
    numba_hits = BM25Retriever(corpus, persist=False, backend="numba").search_many(list(QUERIES), 5)
    assert [[p.id for p in h] for h in numba_hits] == [[p.id for p in h] for h in numpy_hits]


# ---------------------------------------------------------------- pyserini (Lucene)
@pytest.fixture(scope="module")
def lucene(corpus, tmp_path_factory):
    pytest.importorskip("pyserini", reason="pyserini is not installed (pip install --no-deps pyserini==1.6.0)")
    pytest.importorskip("jnius_config", reason="pyjnius is not installed")  # (importing jnius would start a JVM)
    from envs.retrieval.pyserini_backend import JavaUnavailableError, PyseriniRetriever, find_java_home

    try:
        find_java_home()
    except JavaUnavailableError as exc:
        pytest.skip(f"no Java 21+ runtime can be had here: {exc}")
    return PyseriniRetriever.from_passages(corpus, cache_dir=tmp_path_factory.mktemp("lucene"))


@pytest.mark.slow
def test_pyserini_rankings_match_bm25(lucene, bm25):
    lucene_results = _check_rankings(lucene)
    bm25_results = bm25.search_many(list(QUERIES), 5)
    for a, b in zip(lucene_results, bm25_results, strict=True):
        assert a[0].id == b[0].id
        overlap = len({p.id for p in a} & {p.id for p in b}) / max(len(a), len(b))
        assert overlap >= 0.6
        assert a[0].text == b[0].text and a[0].title == b[0].title  # stored raw documents round-trip
    assert lucene.search("", 3) == []
    assert isinstance(lucene.search('AND OR ( "unbalanced', 3), list)  # query syntax never raises
    assert lucene.search("zzqxj", 3) == []


@pytest.mark.slow
def test_pyserini_lucene_searcher_gives_the_same_rankings(lucene):
    import importlib.util

    from envs.retrieval.pyserini_backend import PyseriniRetriever

    missing = [m for m in ("torch", "scipy", "sklearn", "openai", "tiktoken", "onnxruntime")
               if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"pyserini's Python search stack needs {', '.join(missing)} (not installed)")

    via_pyserini = PyseriniRetriever(lucene.index, engine="pyserini")  # pyserini's own LuceneSearcher class
    assert type(via_pyserini._searcher).__name__ == "LuceneSearcher"
    ours, theirs = lucene.search_many(list(QUERIES), 5), via_pyserini.search_many(list(QUERIES), 5)
    assert [[(p.id, p.score) for p in h] for h in ours] == [[(p.id, p.score) for p in h] for h in theirs]


# ---------------------------------------------------------------- HTTP client + server
@pytest.fixture(scope="module")
def server(bm25):
    from envs.retrieval.server import BackgroundServer

    srv = BackgroundServer(bm25, host="127.0.0.1", port=0).start()
    yield srv
    srv.stop()


def test_http_client_matches_the_backend(server, bm25):
    client = HttpRetriever(server.url, timeout=5)
    remote = _check_rankings(client)
    local = bm25.search_many(list(QUERIES), 5)
    assert [[(p.id, p.title, p.text) for p in h] for h in remote] == [[(p.id, p.title, p.text) for p in h] for h in local]
    assert [p.score for h in remote for p in h] == pytest.approx([p.score for h in local for p in h])


def _post(url, payload):
    req = urllib.request.Request(url + "/retrieve", data=json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def test_server_speaks_search_r1_and_skyrl(server):
    body = _post(server.url, {"queries": ["capital of Tervania", "Quessel"], "topk": 2, "return_scores": True})
    assert len(body["result"]) == 2 and len(body["result"][0]) == 2
    entry = body["result"][0][0]
    assert set(entry) == {"document", "score"} and isinstance(entry["score"], float)
    assert split_contents(entry["document"]["contents"]) == ("Tervania", entry["document"]["text"])
    skyrl = _post(server.url, {"query": "capital of Tervania", "topk": 1})  # singular query, bare documents
    assert len(skyrl["result"]) == 1 and skyrl["result"][0][0]["title"] == "Tervania"


def test_http_client_does_not_retry_a_rejected_request(server):
    client = HttpRetriever(server.url, timeout=5, retries=3, backoff=5.0)
    start = time.monotonic()
    with pytest.raises(RetrievalError, match="rejected"):
        client.search_many(["anything"] * 9_000, k=1)  # beyond the server's max_queries (8,192): 413
    assert time.monotonic() - start < 2.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dead_server_gives_a_clear_error_in_bounded_time():
    client = HttpRetriever(f"http://127.0.0.1:{_free_port()}", timeout=1.0, retries=2, backoff=0.05)
    start = time.monotonic()
    with pytest.raises(RetrievalError, match="unavailable"):
        client.search("who founded Velmora Textiles", 3)
    assert time.monotonic() - start <= client.max_call_seconds + 1.0


def test_silent_server_times_out_in_bounded_time():
    with socket.socket() as listener:  # accepts connections (kernel backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        client = HttpRetriever(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.6, retries=3, backoff=0.05)
        start = time.monotonic()
        with pytest.raises(RetrievalError, match=r"did not answer within 0.6s \(1 attempt"):
            client.search("q", 3)
        elapsed = time.monotonic() - start
    assert 0.55 <= elapsed <= 0.6 + 0.3  # a frozen server costs the deadline once, not once per retry


def test_http_client_retries_server_errors():
    calls = []

    class Flaky(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            calls.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            if len(calls) == 1:
                self.send_response(503)
                self.end_headers()
                return
            body = {"result": [[{"document": {"id": "7", "contents": to_contents("T", "text")}, "score": 1.5}]]}
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        hits = HttpRetriever(f"http://127.0.0.1:{httpd.server_port}", timeout=2, retries=2, backoff=0.01).search("q", 3)
    finally:
        httpd.shutdown()
    assert hits == [Passage("7", "T", "text", 1.5)]
    assert len(calls) == 2 and calls[0] == {"queries": ["q"], "topk": 3, "return_scores": True}


def test_http_client_rejects_off_protocol_answers():
    from envs.retrieval.http import parse_response

    with pytest.raises(RetrievalError):
        parse_response({"nope": []}, 1, 3)
    with pytest.raises(RetrievalError):
        parse_response({"result": []}, 1, 3)
    with pytest.raises(RetrievalError):
        parse_response({"result": [["just a string"]]}, 1, 3)
    assert parse_response({"result": [[{"id": "1", "contents": '"A"\nb'}]]}, 1, 3) == [[Passage("1", "A", "b", 0.0)]]


# ---------------------------------------------------------------- factory, helpers
def test_shared_retriever_is_one_instance_per_config(tmp_path):
    clear_shared_retrievers()
    a = shared_retriever("bm25", corpus_path=SAMPLE_CORPUS_PATH, cache_dir=tmp_path)
    b = shared_retriever("bm25", corpus_path=SAMPLE_CORPUS_PATH, cache_dir=tmp_path)
    c = shared_retriever("bm25", passages=load_corpus(SAMPLE_CORPUS_PATH)[:10], cache_dir=tmp_path)
    assert a is b and a is not c
    with pytest.raises(ValueError, match="unknown retriever backend"):
        make_retriever("faiss", corpus_path=SAMPLE_CORPUS_PATH)
    with pytest.raises(ValueError, match="retriever_url"):
        make_retriever("http")
    clear_shared_retrievers()


def test_contents_round_trip_and_formatting():
    assert split_contents(to_contents("A \"quoted\" title", "body\nmore")) == ('A "quoted" title', "body\nmore")
    assert split_contents("no title line") == ("", "no title line")
    text = format_passages([Passage("1", "T1", "x" * 50), Passage("2", "T2", "short")], max_chars_per_passage=10)
    assert text.splitlines() == ["Doc 1(Title: T1) xxxxxxxxxx ...", "Doc 2(Title: T2) short"]


def test_package_import_stays_light():
    import subprocess
    import sys

    code = ("import sys, envs, envs.retrieval, envs.qa; heavy = [m for m in ('bm25s', 'numba', 'fastapi', 'pyserini', "
            "'torch', 'datasets', 'jnius', 'faiss', 'wordllama', 'sentence_transformers') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[3],
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])})
    assert out.stdout.strip() == "[]", out.stderr


def _serve_raw(handler_body):
    """A raw TCP server running ``handler_body(conn)`` for each connection; returns (url, stop)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def loop():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=handler_body, args=(conn, stop), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()

    def close():
        stop.set()
        listener.close()

    return f"http://127.0.0.1:{listener.getsockname()[1]}", close


def _read_request(conn):
    """Read one whole HTTP request: closing with unread bytes would reset the connection (RST)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return
        body += chunk


def test_trickling_server_is_cut_off_in_bounded_time():
    def trickle(conn, stop):  # headers at once, then one body byte every 0.1 s: never a socket timeout
        with conn:
            _read_request(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
            while not stop.is_set():
                try:
                    conn.sendall(b" ")
                except OSError:
                    return
                time.sleep(0.1)

    url, close = _serve_raw(trickle)
    try:
        client = HttpRetriever(url, timeout=0.5, retries=1, backoff=0.05)
        start = time.monotonic()
        with pytest.raises(RetrievalError, match="did not answer within 0.5s"):
            client.search("q", 3)
        assert time.monotonic() - start <= 0.5 + 0.3
    finally:
        close()


def test_oversized_answer_is_refused():
    def huge(conn, stop):
        with conn:
            _read_request(conn)
            body = b'{"result": [[' + b" " * 300_000 + b"]]}"
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    url, close = _serve_raw(huge)
    try:
        with pytest.raises(RetrievalError, match="exceeds"):
            HttpRetriever(url, timeout=2, retries=0, max_response_bytes=100_000).search("q", 3)
        assert HttpRetriever(url, timeout=2, retries=0).search("q", 3) == []  # within the default limit
    finally:
        close()


@pytest.mark.slow
def test_pyserini_rebuilds_a_corrupt_cached_index(lucene, corpus, tmp_path):
    import shutil

    from envs.retrieval.pyserini_backend import PyseriniRetriever

    source = Path(lucene.index)
    index_dir = tmp_path / "indexes" / source.name  # a copy: the fixture's searcher keeps its files mapped
    shutil.copytree(source, index_dir)
    for f in index_dir.iterdir():
        if f.name != "agentr1_meta.json":
            f.write_bytes(b"garbage")
    again = PyseriniRetriever.from_passages(corpus, cache_dir=tmp_path)
    assert again.index == str(index_dir)
    assert again.search("capital of Tervania", 1)[0].title == "Tervania"


@pytest.mark.slow
def test_pyserini_searcher_in_a_forked_child_fails_fast(lucene):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the worker thread and the JVM did not come along
        code = 1
        try:
            lucene.search("capital of Tervania", 1)
        except RetrievalError as exc:
            code = 0 if "another process" in str(exc) else 2
        finally:
            os.write(write, bytes([code]))
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + 20
    import select

    ready, _, _ = select.select([read], [], [], max(0.0, deadline - time.monotonic()))
    if not ready:
        os.kill(pid, 9)
    os.waitpid(pid, 0)
    assert ready, "a search in a forked child hung"
    assert os.read(read, 1) == b"\x00"
    os.close(read)
    assert lucene.search("capital of Tervania", 1)[0].title == "Tervania"  # the parent's searcher still works


_RACE_BUILDER = """
import sys, time
from envs.retrieval.bm25 import BM25Retriever
from envs.retrieval import load_corpus
build = BM25Retriever._build
def slow_build(self):  # hold both processes inside the build so their saves collide
    model = build(self)
    time.sleep(1.0)
    return model
BM25Retriever._build = slow_build
r = BM25Retriever(load_corpus(sys.argv[1]), cache_dir=sys.argv[2])
print(r.search("capital of Tervania", 1)[0].title)
"""


def test_two_processes_building_the_same_bm25_index(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).parents[3]
    env = {**os.environ, "PYTHONPATH": str(root)}
    procs = [subprocess.Popen([sys.executable, "-c", _RACE_BUILDER, str(SAMPLE_CORPUS_PATH), str(tmp_path)],
                              cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert out.strip() == "Tervania"
    entries = sorted(p.name for p in (tmp_path / "indexes").iterdir())
    assert len(entries) == 1 and entries[0].startswith("bm25s-"), entries  # no temporary or moved-aside copies
    again = BM25Retriever(load_corpus(SAMPLE_CORPUS_PATH), cache_dir=tmp_path)
    assert again.index_dir == tmp_path / "indexes" / entries[0]
    assert again.search("capital of Tervania", 1)[0].title == "Tervania"
