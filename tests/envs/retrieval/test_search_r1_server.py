"""The retrieval server driven the way Search-R1's own client drives it, with the reference server's answers.

Search-R1's ``_batch_search`` posts ``{"queries": [...], "topk": 3, "return_scores": True}`` with
``requests`` and reads ``.json()["result"]`` without looking at the status code, so any 4xx ends its
training run. Its reference server validates with pydantic ``QueryRequest(queries: List[str], topk:
Optional[int] = None, return_scores: bool = False)``, falls back to its default when ``not topk``,
accepts any batch size and returns corpus rows as stored. Facts: REFERENCE.md section 13.
"""

import json
import logging
from typing import List, Optional  # noqa: UP035 - the reference model's own annotations

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("faiss")
pytest.importorskip("wordllama")
requests = pytest.importorskip("requests")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from pydantic import BaseModel, ValidationError  # noqa: E402

from envs.retrieval import make_retriever  # noqa: E402
from envs.retrieval.corpus import passages_from_items  # noqa: E402
from envs.retrieval.server import BackgroundServer, BadRequest, ServerLimits, parse_request  # noqa: E402

DEFAULT_TOPK = 3  # Search-R1's launch default (--topk 3)


class QueryRequest(BaseModel):
    """The reference server's request model: its field types, written from the schema facts."""

    queries: List[str]  # noqa: UP006
    topk: Optional[int] = None  # noqa: UP045
    return_scores: bool = False


@pytest.fixture(scope="module")
def world():
    from envs.multiagent.team_qa import generate_item

    rng = np.random.default_rng(3)
    items = [generate_item(rng) for _ in range(300)]
    return [it["question"] for it in items], passages_from_items(items)


@pytest.fixture(scope="module")
def dense(world, tmp_path_factory):
    return make_retriever("dense", passages=world[1], cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def server(dense):
    with BackgroundServer(dense, default_topk=DEFAULT_TOPK, chunk_queries=512) as srv:
        yield srv


def batch_search(url: str, queries: list, topk=DEFAULT_TOPK, return_scores=True) -> dict:  # noqa: ANN001
    """What Search-R1's client does: one POST with requests, the JSON read whatever the status."""
    payload = {"queries": queries, "topk": topk, "return_scores": return_scores}
    return requests.post(url + "/retrieve", json=payload, timeout=60).json()


def _ids(result) -> list[list[str]]:  # noqa: ANN001
    return [[entry["document"]["id"] for entry in hits] for hits in result]


def test_an_empty_batch_gets_an_empty_result(server):
    assert batch_search(server.url, []) == {"result": []}
    response = requests.post(server.url + "/retrieve", json={"queries": []}, timeout=10)
    assert response.status_code == 200 and response.json() == {"result": []}


def test_a_whole_grpo_batch_of_2560_queries_is_answered(server, dense, world):
    questions = world[0]
    queries = [questions[i % len(questions)] + ("" if i < len(questions) else f" {i}") for i in range(2_560)]
    answer = batch_search(server.url, queries)
    assert len(answer["result"]) == 2_560 and all(len(hits) == DEFAULT_TOPK for hits in answer["result"])
    assert _ids(answer["result"]) == [[p.id for p in hits] for hits in dense.search_many(queries, DEFAULT_TOPK)]
    assert all(isinstance(e["score"], float) and e["document"]["contents"] for hits in answer["result"] for e in hits)


def test_an_over_long_query_is_truncated_and_its_batch_answered(server, dense, world, caplog):
    questions = world[0][:6]
    long = ("river " * 1_000)[:5_000]
    queries = questions[:3] + [long] + questions[3:]
    with caplog.at_level(logging.WARNING, logger="envs.retrieval.server"):
        answer = batch_search(server.url, queries)
    assert len(answer["result"]) == 7
    expected = dense.search_many(questions[:3] + [long[:ServerLimits().max_query_chars]] + questions[3:], DEFAULT_TOPK)
    assert _ids(answer["result"]) == [[p.id for p in hits] for hits in expected]
    assert any("truncated 1 over-long queries to 4096 characters" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("topk", "expected"), [(0, DEFAULT_TOPK), (None, DEFAULT_TOPK), (150, 150), ("2", 2),
                                                (True, 1), (2.0, 2), (5, 5)])
def test_every_topk_form_the_reference_accepts(server, topk, expected):
    answer = batch_search(server.url, ["In which country is the city where Kalo was born?"], topk=topk)
    assert len(answer["result"][0]) == expected


@pytest.mark.parametrize(("flag", "scored"), [(True, True), (1, True), ("true", True), ("yes", True), (False, False),
                                              (0, False), ("false", False)])
def test_every_return_scores_form_the_reference_accepts(server, flag, scored):
    hits = batch_search(server.url, ["capital"], topk=2, return_scores=flag)["result"][0]
    assert len(hits) == 2
    assert all(set(h) == {"document", "score"} for h in hits) if scored else all("contents" in h for h in hits)


_JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 2_000), st.floats(allow_nan=False, allow_infinity=False),
                         st.text(max_size=6), st.sampled_from(["2", " 7 ", "0", "true", "yes", "off", "1.0", "2.5"]),
                         st.lists(st.integers(), max_size=2))


@settings(max_examples=400, deadline=None)
@given(topk=_JSON_VALUES, return_scores=_JSON_VALUES)
def test_the_request_is_accepted_exactly_when_the_reference_accepts_it(topk, return_scores):
    limits = ServerLimits(default_topk=DEFAULT_TOPK, max_topk=1_000)
    payload = {"queries": ["q"], "topk": topk, "return_scores": return_scores}
    try:
        reference = QueryRequest.model_validate(payload)
    except ValidationError:
        with pytest.raises(BadRequest) as refused:
            parse_request(json.dumps(payload).encode(), limits)
        assert refused.value.status == 422
        return
    ours = parse_request(json.dumps(payload).encode(), limits)
    wanted = reference.topk if reference.topk else DEFAULT_TOPK  # the reference: `if not request.topk`
    if wanted < 0:
        wanted = DEFAULT_TOPK  # the reference fails the whole batch here (faiss k < 0): we answer the default
    assert ours.topk == min(wanted, limits.max_topk)
    assert ours.return_scores is reference.return_scores


def test_rows_come_back_exactly_as_stored(tmp_path):
    rows = [
        {"id": "0", "contents": "Selk\nSelk is a river that flows into the Pale Ocean."},  # unquoted title line
        {"id": "1", "contents": "A single line about the capital of Tervania"},  # no title line at all
        {"id": "2", "contents": '"Tervania"\n  Tervania is a country; its capital is Dunmarrow.  '},  # whitespace
        {"id": "3", "contents": '"Dunmarrow"\nDunmarrow is the capital city of Tervania.', "url": "x", "rank": 7},
        {"id": "4", "title": "Quessel", "text": "Quessel is a harbour town."},  # our own form: contents added
    ]
    path = tmp_path / "wiki.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    retriever = make_retriever("dense", corpus_path=path, cache_dir=tmp_path)
    with BackgroundServer(retriever) as srv:
        answer = batch_search(srv.url, ["capital of Tervania", "river Pale Ocean"], topk=5)
        bare = batch_search(srv.url, ["harbour town"], topk=5, return_scores=False)
    for hits in answer["result"]:
        assert len(hits) == 5
        for entry in hits:
            stored = rows[int(entry["document"]["id"])]
            if "contents" in stored:
                assert entry["document"] == stored
            else:
                assert entry["document"] == {**stored, "contents": '"Quessel"\nQuessel is a harbour town.'}
    assert {doc["id"] for doc in bare["result"][0]} == {"0", "1", "2", "3", "4"}


def test_protections_never_touch_a_search_r1_request(server):
    limits = ServerLimits()
    assert limits.max_queries >= 8_192 and limits.max_body_bytes >= limits.max_queries * limits.max_query_chars
    over = requests.post(server.url + "/retrieve", json={"queries": ["q"] * (limits.max_queries + 1)}, timeout=30)
    assert over.status_code == 413 and "max-queries" in over.json()["detail"]
