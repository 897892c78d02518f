"""Dense (WordLlama + faiss) and hybrid retrieval: real indexes over the shipped corpus and a few thousand
generated passages, searched directly, through the QA env's tool, the server and the HTTP client."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")
pytest.importorskip("wordllama")

from envs.qa.datasets import SAMPLE_CORPUS_PATH  # noqa: E402
from envs.retrieval import Passage, RetrievalError, load_corpus, make_retriever  # noqa: E402
from envs.retrieval.bm25 import BM25Retriever  # noqa: E402
from envs.retrieval.corpus import JsonlRows, line_offsets  # noqa: E402
from envs.retrieval.dense import DenseRetriever  # noqa: E402
from envs.retrieval.embedders import WordLlamaEmbedder, make_embedder, model_defaults, normalize_rows  # noqa: E402
from envs.retrieval.hybrid import HybridRetriever, fuse  # noqa: E402
from envs.retrieval.integrity import MANIFEST_NAME, IndexIntegrityError, check_manifest  # noqa: E402

QUERIES = {
    "Who founded Velmora Textiles?": "Velmora Textiles",
    "capital of Tervania": "Tervania",
    "river Selk Pale Ocean": "Selk",
    "badminton player national titles": "Hollis Brandt",
}


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(SAMPLE_CORPUS_PATH)


@pytest.fixture(scope="module")
def embedder():
    return WordLlamaEmbedder()


@pytest.fixture(scope="module")
def generated():
    """A generated SynthHop world of 3,000 passages and 400 of its questions (1-3 hops)."""
    from envs.qa.synth import corpus_and_questions

    passages, items = corpus_and_questions(0, passages=3_000, num_questions=400)
    return items, passages


@pytest.fixture(scope="module")
def dense(corpus, embedder, tmp_path_factory):
    return DenseRetriever.from_passages(corpus, embedder=embedder, cache_dir=tmp_path_factory.mktemp("dense"))


def _ranking(retriever, queries=tuple(QUERIES), k=5):
    return [[(p.id, round(p.score, 4)) for p in hits] for hits in retriever.search_many(list(queries), k)]


# ---------------------------------------------------------------- embedders
def test_wordllama_loads_offline_and_makes_unit_vectors(embedder):
    vectors = embedder.encode_queries(["capital of Tervania", "a river", ""])
    assert vectors.shape == (3, 256) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors[:2], axis=1), 1.0, atol=1e-5)
    assert np.isfinite(vectors).all()  # an empty text is a zero vector, never NaN
    assert embedder.spec() == {"kind": "wordllama", "config": "l2_supercat", "dim": 256, "normalize": True}
    small = make_embedder("wordllama", dim=64)
    assert small.encode_passages(["x y"]).shape == (1, 64)
    assert np.array_equal(normalize_rows(np.zeros((1, 4), np.float32)), np.zeros((1, 4), np.float32))


def test_model_family_conventions():
    assert (model_defaults("intfloat/e5-base-v2").query_prefix, model_defaults("e5-large-v2").passage_prefix) == \
        ("query: ", "passage: ")
    bge = model_defaults("BAAI/bge-base-en-v1.5")
    assert bge.query_prefix.startswith("Represent this sentence") and bge.passage_prefix == ""
    assert model_defaults("thenlper/gte-base").query_prefix == "" and model_defaults("gte-base").normalize


# ---------------------------------------------------------------- the dense index
def test_dense_rankings_on_the_shipped_corpus(dense):
    for (query, title), hits in zip(QUERIES.items(), dense.search_many(list(QUERIES), 5), strict=True):
        assert hits[0].title == title, (query, [h.title for h in hits])
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert dense.search_many([], 3) == [] and len(dense.search("capital", 100)) == len(dense)
    with pytest.raises(ValueError):
        dense.search("x", 0)


def test_flat_index_is_exact_over_generated_passages(generated, embedder):
    """Every passage searched by its own text comes first, and scores equal brute-force inner products."""
    _, passages = generated
    assert len(passages) > 2_500
    retriever = DenseRetriever.from_passages(passages, embedder=embedder, persist=False)
    picks = np.random.default_rng(1).choice(len(passages), 60, replace=False)
    queries = [passages[i].contents for i in picks]
    hits = retriever.search_many(queries, 10)
    vectors = embedder.encode_passages([p.contents for p in passages])
    brute = embedder.encode_queries(queries) @ vectors.T
    for i, found, row in zip(picks, hits, brute, strict=True):
        assert found[0].score == pytest.approx(float(row.max()), abs=1e-4)
        assert found[0].contents == passages[i].contents or found[0].score == pytest.approx(float(row[i]), abs=1e-4)
        assert [p.score for p in found] == pytest.approx(sorted(row, reverse=True)[:10], abs=1e-4)


@pytest.mark.parametrize("index_type", ["IVF16,Flat", "HNSW32"])
def test_ann_index_types(generated, embedder, index_type):
    _, passages = generated
    retriever = DenseRetriever.from_passages(passages, embedder=embedder, index_type=index_type, persist=False,
                                             nprobe=16 if index_type.startswith("IVF") else None)
    probe = passages[7].contents
    assert retriever.search(probe, 3)[0].contents == probe


def test_bad_index_settings_are_clear_errors(corpus, embedder):
    with pytest.raises(ValueError, match="index_factory"):
        DenseRetriever.from_passages(corpus, embedder=embedder, index_type="NotAnIndex", persist=False)
    with pytest.raises(ValueError, match="as many vectors as lists"):
        DenseRetriever.from_passages(corpus, embedder=embedder, index_type="IVF1024,Flat", persist=False)
    with pytest.raises(ValueError, match="nprobe applies to IVF"):
        DenseRetriever.from_passages(corpus, embedder=embedder, persist=False, nprobe=4)
    with pytest.raises(ValueError, match="no GPU"):
        DenseRetriever.from_passages(corpus, embedder=embedder, persist=False, use_gpu=True)


# ---------------------------------------------------------------- caches and integrity (as for bm25)
def test_cache_is_reused_and_every_corruption_is_rebuilt(corpus, embedder, tmp_path, monkeypatch):
    first = DenseRetriever.from_passages(corpus, embedder=embedder, cache_dir=tmp_path)
    expected, index_dir = _ranking(first), first.index_dir
    assert index_dir.parent == tmp_path / "indexes" and check_manifest(index_dir) is None
    files = sorted(p.name for p in index_dir.iterdir() if p.name != MANIFEST_NAME)
    assert files == ["agentr1_meta.json", "index.faiss", "offsets.npy", "passages.jsonl"]

    def no_embedding(*args, **kwargs):
        raise AssertionError("a valid cache must not be rebuilt")

    with monkeypatch.context() as m:
        m.setattr(embedder, "encode_passages", no_embedding)
        assert _ranking(DenseRetriever.from_passages(corpus, embedder=embedder, cache_dir=tmp_path)) == expected

    corruptions = {"flip": lambda p: p.write_bytes(_flipped(p.read_bytes())),
                   "truncate": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
                   "delete": lambda p: p.unlink()}
    for name in [*files, MANIFEST_NAME]:
        for kind, corrupt in corruptions.items():
            work = tmp_path / f"{name}-{kind}"
            shutil.copytree(tmp_path / "indexes", work / "indexes")
            corrupt(work / "indexes" / index_dir.name / name)
            assert check_manifest(work / "indexes" / index_dir.name) is not None, (name, kind)
            again = DenseRetriever.from_passages(corpus, embedder=embedder, cache_dir=work)
            assert _ranking(again) == expected and check_manifest(again.index_dir) is None, (name, kind)


def _flipped(data: bytes) -> bytes:
    data = bytearray(data)
    data[len(data) // 2] ^= 0x5A
    return bytes(data)


def test_read_only_index_directory_fails_its_integrity_check_clearly(corpus, embedder, tmp_path):
    out = tmp_path / "idx"
    built = DenseRetriever.build(corpus, out, embedder=embedder, show_progress=False)
    reopened = DenseRetriever.from_index(out)  # the embedder comes back from the saved spec
    assert _ranking(reopened) == _ranking(built) and isinstance(reopened.rows, JsonlRows)
    for name in ("index.faiss", "passages.jsonl", "offsets.npy"):
        copy = tmp_path / f"bad-{name}"
        shutil.copytree(out, copy)
        (copy / name).write_bytes(_flipped((copy / name).read_bytes()))
        with pytest.raises(IndexIntegrityError, match="integrity check"):
            DenseRetriever.from_index(copy)
    with pytest.raises(ValueError, match="other vectors"):
        DenseRetriever.from_index(out, embedder="wordllama", embedder_options={"dim": 128})
    with pytest.raises(RetrievalError, match="not a dense index"):
        DenseRetriever.from_index(tmp_path)


# ---------------------------------------------------------------- Search-R1's prebuilt files, as they are
def _search_r1_files(tmp_path: Path, corpus: list[Passage], embedder) -> tuple[Path, Path, list[dict]]:
    """An ``e5_Flat.index`` + ``wiki-18.jsonl`` pair in Search-R1's layout (rows {"id", "contents"})."""
    rows = [{"id": str(i), "contents": f'"{p.title}"\n{p.text}'} for i, p in enumerate(corpus)]
    rows[0] = {"id": "0", "contents": f"{corpus[0].title}\n{corpus[0].text}  "}  # unquoted title, trailing spaces
    rows[1] = {**rows[1], "source": "wiki-18"}  # an extra field
    corpus_path = tmp_path / "wiki-18.jsonl"
    corpus_path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    index = faiss.IndexFlatIP(embedder.dim)
    index.add(embedder.encode_passages([r["contents"] for r in rows]))
    index_path = tmp_path / "e5_Flat.index"
    faiss.write_index(index, str(index_path))
    return index_path, corpus_path, rows


def test_search_r1_index_and_corpus_load_as_they_are(corpus, embedder, tmp_path):
    index_path, corpus_path, rows = _search_r1_files(tmp_path, corpus, embedder)
    retriever = make_retriever("dense", index=index_path, corpus_path=corpus_path, cache_dir=tmp_path / "c",
                               embedder=embedder)
    assert retriever.search("Who founded Velmora Textiles?", 3)[0].title == "Velmora Textiles"
    for hits in retriever.search_many(list(QUERIES), 5):
        for p in hits:
            assert p.row == rows[int(p.id)]  # row i of the index is line i of the corpus, kept as stored
    assert check_manifest(next((tmp_path / "c" / "indexes").iterdir())) is None  # line offsets cached
    hybrid = make_retriever("hybrid", index=index_path, corpus_path=corpus_path, cache_dir=tmp_path / "c",
                            embedder=embedder)
    assert hybrid.search("capital of Tervania", 1)[0].title == "Tervania"
    short = tmp_path / "short.jsonl"
    short.write_text("".join(json.dumps(r) + "\n" for r in rows[:-1]), encoding="utf-8")
    with pytest.raises(RetrievalError, match="row i of the index must be row i"):
        make_retriever("dense", index=index_path, corpus_path=short, cache_dir=tmp_path / "c", embedder=embedder)
    with pytest.raises(ValueError, match="pass the corpus"):
        make_retriever("dense", index=index_path)


def test_jsonl_rows_skip_blank_lines_and_report_bad_ones(tmp_path):
    path = tmp_path / "c.jsonl"
    data = b'{"id": "a", "contents": "\\"T\\"\\nx"}\n\n  \n{"id": "b", "text": "y"}\nnot json\n{"id": "c", "text": "z"}'
    path.write_bytes(data)
    starts = [0] + [i + 1 for i, byte in enumerate(data) if byte == 10]
    assert line_offsets(path, chunk_bytes=7).tolist() == [s for s in starts if data[s:].split(b"\n")[0].strip()]
    rows = JsonlRows.open(path, cache_dir=tmp_path)
    assert len(rows) == 4 and (rows[0].title, rows[0].text) == ("T", "x") and rows[3].id == "c" and rows[-1].id == "c"
    with pytest.raises(RetrievalError, match="row 2"):
        rows[2]
    with pytest.raises(IndexError):
        rows[4]


# ---------------------------------------------------------------- hybrid
def test_fusion_rule():
    a = [Passage("x", "", "", 10.0), Passage("y", "", "", 5.0)]
    b = [Passage("y", "", "", 0.9), Passage("z", "", "", 0.5), Passage("y", "", "", 0.1)]
    assert [p.id for p in fuse(a, b, 3, dense_weight=0.0)] == ["x", "y", "z"]
    # bm25 part: x 1.0, y 0.5 (scaled by the best); dense: y 0.9, z 0.5, x missing -> the lowest cosine, 0.5
    assert [p.id for p in fuse(a, b, 3, dense_weight=1.0)] == ["y", "x", "z"]  # x and z tie at 0.5: bm25 rank
    mixed = fuse(a, b, 3, dense_weight=0.5)
    assert [p.id for p in mixed] == ["x", "y", "z"]
    assert [p.score for p in mixed] == pytest.approx([0.5 * 1.0 + 0.5 * 0.5, 0.5 * 0.5 + 0.5 * 0.9, 0.5 * 0.5])
    assert fuse([], [], 3) == [] and [p.id for p in fuse([], b, 2)] == ["y", "z"]


def _recall(found, gold, k):
    return float(np.mean([len(g & {p.id for p in hits[:k]}) / len(g) for hits, g in zip(found, gold, strict=True)]))


def test_hybrid_default_is_never_worse_than_bm25(generated, corpus, embedder):
    from envs.qa.datasets import load_items

    items, passages = generated
    cases = [(items, passages)]
    sample_items = load_items("hotpotqa", data_path="sample")
    cases.append((sample_items, corpus))
    for case_items, case_passages in cases:
        by_title: dict[str, set[str]] = {}
        for p in case_passages:
            by_title.setdefault(p.title, set()).add(p.id)
        questions = [it for it in case_items if it["supporting_titles"]]
        gold = [set().union(*(by_title.get(t, set()) for t in it["supporting_titles"])) for it in questions]
        bm25 = BM25Retriever(case_passages, persist=False, backend="numpy")
        hybrid = HybridRetriever(bm25, DenseRetriever.from_passages(case_passages, embedder=embedder, persist=False))
        texts = [it["question"] for it in questions]
        sparse, fused = bm25.search_many(texts, 10), hybrid.search_many(texts, 10)
        for k in (1, 5, 10):
            assert _recall(fused, gold, k) >= _recall(sparse, gold, k), (len(case_passages), k)


# ---------------------------------------------------------------- CLI, env tool, server + client
def test_cli_builds_and_searches_dense_and_hybrid(tmp_path, capsys):
    from envs.retrieval.__main__ import main

    for backend in ("dense", "hybrid"):
        out = tmp_path / backend
        assert main(["build-index", "--backend", backend, "--corpus", str(SAMPLE_CORPUS_PATH), "--out", str(out)]) == 0
        assert main(["search", "--backend", backend, "--index", str(out), "-k", "2", "capital of Tervania"]) == 0
        assert capsys.readouterr().out.split("index written to")[1].splitlines()[1].startswith("Doc 1(Title: Tervania)")
    assert main(["search", "--backend", "hybrid", "--corpus", str(SAMPLE_CORPUS_PATH), "--cache-dir", str(tmp_path),
                 "--dense-weight", "0.5", "-k", "1", "river Selk"]) == 0
    assert capsys.readouterr().out.startswith("Doc 1(Title: Selk)")
    with pytest.raises(SystemExit, match="applies to --backend dense or hybrid"):
        main(["search", "--backend", "bm25", "--corpus", str(SAMPLE_CORPUS_PATH), "--embedder", "x", "q"])


def test_cli_serves_search_r1_files(corpus, embedder, tmp_path, capsys):
    from envs.retrieval.__main__ import main

    index_path, corpus_path, _ = _search_r1_files(tmp_path, corpus, embedder)
    assert main(["search", "--backend", "dense", "--index", str(index_path), "--corpus", str(corpus_path),
                 "--embedder", "wordllama", "--cache-dir", str(tmp_path), "-k", "1", "capital of Tervania"]) == 0
    assert capsys.readouterr().out.startswith("Doc 1(Title: Tervania)")


@pytest.mark.parametrize("backend", ["dense", "hybrid"])
def test_qa_env_searches_with_dense_and_hybrid(backend, tmp_path):
    import envs

    env = envs.make("AgentR1/HotpotQA-v0", data_path="sample", retriever=backend, cache_dir=tmp_path,
                    disable_env_checker=True)
    env.reset(seed=0, options={"index": 0})
    question = env.unwrapped.item["question"]
    obs, reward, terminated, truncated, info = env.step(f"<search>{question}</search>")
    assert obs.startswith("<information>Doc 1(Title: ") and not terminated and reward > 0
    env.close()


def test_team_qa_takes_a_dense_retriever(dense):
    pytest.importorskip("pettingzoo")
    from envs.multiagent.team_qa import TeamQAEnv

    env = TeamQAEnv(retriever=dense, top_k=2)
    env.reset(seed=0)
    env.step("<search>capital of Tervania</search>")
    text = env.observe(env.agent_selection)["text"]
    assert "Doc 1(Title: Tervania)" in text


def test_server_and_http_client_serve_the_dense_index(dense):
    pytest.importorskip("fastapi")
    from envs.retrieval.http import HttpRetriever
    from envs.retrieval.server import BackgroundServer

    with BackgroundServer(dense) as server:
        remote = HttpRetriever(server.url, timeout=10).search_many(list(QUERIES), 5)
    local = dense.search_many(list(QUERIES), 5)
    assert [[(p.id, p.title, p.text) for p in h] for h in remote] == [[(p.id, p.title, p.text) for p in h] for h in local]
    assert [p.score for h in remote for p in h] == pytest.approx([p.score for h in local for p in h], abs=1e-5)


# ---------------------------------------------------------------- sentence-transformers, with a model built here
def _tiny_sentence_transformer(root: Path) -> Path:
    """A 2-layer BERT with a 60-word vocabulary, saved as a local model directory (no hub download)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "query", ":", "passage", "capital", "of", "tervania",
             "river", "selk", "who", "founded", "velmora", "textiles", "the", "a", "is", "in"]
    words += [f"w{i}" for i in range(60 - len(words))]
    path = root / "tiny-e5-v2"  # "e5" in the name: the e5 prefixes apply
    path.mkdir()
    (path / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt")).save_pretrained(path)
    config = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(path)
    return path


def test_sentence_transformers_embedder_applies_its_family_conventions(corpus, tmp_path):
    pytest.importorskip("sentence_transformers")
    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    path = _tiny_sentence_transformer(tmp_path)
    model = make_embedder(str(path), device="cpu", max_length=64)
    assert (model.query_prefix, model.passage_prefix, model.normalize, model.dim) == ("query: ", "passage: ", True, 32)
    raw = SentenceTransformer(str(path), device="cpu")
    expected = raw.encode(["query: capital of tervania"], convert_to_numpy=True)
    assert np.allclose(model.encode_queries(["capital of tervania"]), expected / np.linalg.norm(expected), atol=1e-5)
    expected = raw.encode(["passage: capital of tervania"], convert_to_numpy=True)
    assert np.allclose(model.encode_passages(["capital of tervania"]), expected / np.linalg.norm(expected), atol=1e-5)
    out = tmp_path / "idx"
    built = DenseRetriever.build(corpus, out, embedder=model, show_progress=False)
    reopened = DenseRetriever.from_index(out, embedder_options={"device": "cpu"})
    assert reopened.embedder.spec() == model.spec() and _ranking(reopened) == _ranking(built)
