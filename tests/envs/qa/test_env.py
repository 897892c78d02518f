"""The multi-hop QA environments: conformance, rewards, turn limits, data formats, retrieval failures."""

import json
import socket
import time

import gymnasium as gym
import pytest

import envs
from envs.core.data import DataError
from envs.qa.datasets import SAMPLE_CORPUS_PATH, SAMPLE_PATH, load_hf, load_items, normalize_item
from envs.qa.env import QAEnv, render_template
from envs.retrieval import Passage
from envs.testing import check_env_conformance

QA_IDS = ["AgentR1/HotpotQA-v0", "AgentR1/2WikiMultihopQA-v0", "AgentR1/Musique-v0"]
OFFLINE = {"data_path": "sample", "corpus": "sample"}


def make(**kwargs):
    return envs.make("hotpotqa", **{**OFFLINE, **kwargs})


def call(query):
    return '<tool_call>{"name": "search", "arguments": {"query": %s}}</tool_call>' % json.dumps(query)


@pytest.mark.parametrize("env_id", QA_IDS)
def test_conformance_offline(env_id):
    from envs.core.registry import suite_envs

    offline = {e.env_id: e.offline_kwargs for e in suite_envs()}[env_id]
    report = check_env_conformance(env_id, make_kwargs=offline)
    assert "golden answer" in report.checks and report.golden_return > 1.0


@pytest.mark.parametrize("kwargs", [{"corpus": "distractor"}, {"corpus": "dataset", "observation_style": "hermes"},
                                    {"max_tool_turns": 1, "top_k": 2, "outcome_metric": "f1"}])
def test_conformance_variants(kwargs):
    check_env_conformance("hotpotqa-v0", make_kwargs={**OFFLINE, **kwargs}, run_gymnasium_checker=False)


def test_aliases_resolve():
    for alias, env_id in [("hotpotqa", QA_IDS[0]), ("2wiki-v0", QA_IDS[1]), ("2wikimultihopqa-v0", QA_IDS[1]),
                          ("musique-v0", QA_IDS[2])]:
        assert envs.resolve_env_id(alias) == env_id


def test_golden_episode_metrics_and_components():
    env = make()
    prompt, info = env.reset(seed=0, options={"index": 0})
    assert "In which town was the founder of Velmora Textiles born?" in prompt and "<answer>" in prompt
    assert info["tools"][0]["function"]["name"] == "search"
    steps = [env.step(a) for a in env.unwrapped.demonstration()]
    first_obs, first_reward, _, _, first_info = steps[0]
    assert first_obs.startswith("<information>Doc 1(Title: ") and first_obs.endswith("</information>")
    assert first_info["reward_components"]["tool_call_valid"] == pytest.approx(0.05)
    assert first_info["reward_components"]["retrieval_hit"] == pytest.approx(0.1)  # both gold titles at once
    *_, (obs, reward, terminated, truncated, info) = steps
    assert terminated and not truncated and obs == ""
    metrics = info["metrics"]
    assert {k: metrics[k] for k in ("acc", "em", "f1", "format", "turns", "retrieval_recall")} == {
        "acc": 1.0, "em": 1.0, "f1": 1.0, "format": 1.0, "turns": 2.0, "retrieval_recall": 1.0}
    assert info["reward_components"]["outcome"] == 1.0


@pytest.mark.parametrize(("final", "outcome", "fmt", "acc"), [
    ("<answer>Karsholm</answer>", 1.0, 1.0, 1.0),
    ("<think>hm</think>\n<answer>the harbour town of Karsholm</answer>", 0.0, 1.0, 1.0),  # cover-EM yes, EM no
    ("Karsholm", -0.5, 0.5, 0.0),                          # no answer tags: format 0.5 -> outcome -0.5
    ("<answer></answer>", -0.5, 0.5, 0.0),
    ("<answer>Karsholm</answer><answer>x</answer>", -0.5, 0.5, 0.0),  # two answers: the last counts
])
def test_outcome_is_gated_by_format(final, outcome, fmt, acc):
    env = make()
    env.reset(seed=0, options={"index": 0})
    *_, info = env.step(final)
    assert info["reward_components"]["outcome"] == pytest.approx(outcome)
    assert info["metrics"]["format"] == fmt and info["metrics"]["acc"] == acc


def test_a_malformed_tool_call_costs_the_format_check():
    env = make()
    env.reset(seed=0, options={"index": 0})
    _, reward, terminated, _, info = env.step("<tool_call>{not json</tool_call>")
    assert not terminated and info["reward_components"] == {"invalid_action": pytest.approx(-0.1)}
    *_, info = env.step("<answer>Karsholm</answer>")
    assert info["metrics"]["format"] == 0.5 and info["reward_components"]["outcome"] == pytest.approx(-0.5)


def test_f1_outcome_and_require_think():
    env = make(outcome_metric="f1")
    env.reset(seed=0, options={"index": 4})  # gold: Ferrowood Park
    *_, info = env.step("<answer>Ferrowood</answer>")
    assert info["reward_components"]["outcome"] == pytest.approx(2 / 3)
    strict = make(require_think=True)
    strict.reset(seed=0, options={"index": 4})
    *_, info = strict.step("<answer>Ferrowood Park</answer>")
    assert info["metrics"]["format"] == 0.5 and info["metrics"]["em"] == 1.0


def test_repeated_queries_and_retrieval_hits():
    env = make()
    env.reset(seed=0, options={"index": 2})  # Tervania -> Dunmarrow -> Selk
    _, _, _, _, info = env.step("<search>capital of Tervania</search>")
    assert "tool_call_valid" in info["reward_components"] and "retrieval_hit" in info["reward_components"]
    _, _, _, _, info = env.step(call("Capital of  TERVANIA?"))  # same query up to case/punctuation/spacing
    assert info["reward_components"] == {"repeated_query": pytest.approx(-0.05)}
    _, _, _, _, info = env.step(call("Capital of  TERVANIA?"))  # the identical call again
    assert info["reward_components"] == {"repeated_call": pytest.approx(-0.05)}
    assert "already made this exact call" in env.unwrapped.transcript()


def test_many_searches_earn_the_valid_call_bonus_once_per_episode():
    env = make(max_tool_turns=3)
    env.reset(seed=0, options={"index": 0})
    spam = "".join(f"<search>Velmora Textiles question {i}</search>" for i in range(8))
    _, reward, _, _, info = env.step(spam)
    assert len(info["tool_calls"]) == 8 and all(c["status"] == "ok" for c in info["tool_calls"])
    assert info["reward_components"]["tool_call_valid"] == pytest.approx(0.05)  # not 8 x 0.05
    _, _, _, _, info = env.step("<search>Idris Hallowell</search>")  # nor again in a new turn
    assert "tool_call_valid" not in info["reward_components"]
    *_, info = env.step("<answer>wrong</answer>")
    assert info["episode_reward_components"]["tool_call_valid"] == pytest.approx(0.05)


def test_http_tool_timeout_covers_the_clients_retries():
    env = make(retriever="http", retriever_url=_dead_url(), http_timeout=5.0, http_retries=5)
    client = env.unwrapped._retriever
    # else a dead server would surface as a tool timeout (a penalty) instead of "unavailable"
    assert env.unwrapped.tools["search"].timeout > client.max_call_seconds
    assert make(retriever="http", retriever_url=_dead_url(), search_timeout=1.5).unwrapped.tools["search"].timeout == 1.5


def test_bad_arguments_and_unknown_tools_are_penalised():
    env = make()
    env.reset(seed=0, options={"index": 0})
    _, _, _, _, info = env.step('<tool_call>{"name": "search", "arguments": {"q": "x"}}</tool_call>')
    assert info["reward_components"] == {"tool_error": pytest.approx(-0.05)}
    obs, _, _, _, info = env.step('<tool_call>{"name": "search", "arguments": {"query": "   "}}</tool_call>')
    assert "empty" in obs and info["reward_components"] == {"tool_error": pytest.approx(-0.05)}
    _, _, _, _, info = env.step('<tool_call>{"name": "browse", "arguments": {}}</tool_call>')
    assert info["reward_components"] == {"tool_error": pytest.approx(-0.05)}
    *_, info = env.step("<answer>Karsholm</answer>")
    assert info["metrics"]["format"] == 0.5  # unknown tool / bad arguments: tool-call syntax check fails


def test_turn_limit_and_last_search_notice():
    env = make(max_tool_turns=2)
    env.reset(seed=0, options={"index": 0})
    obs1, *_ = env.step("<search>Velmora Textiles</search>")
    obs2, *_ = env.step("<search>Idris Hallowell</search>")
    assert "last search" not in obs1 and "last search" in obs2
    obs3, reward, terminated, truncated, info = env.step("<search>Karsholm</search>")
    assert truncated and not terminated
    assert info["metrics"]["acc"] == 0.0 and info["metrics"]["turns"] == 3.0
    assert info["reward_components"]["outcome"] == pytest.approx(-0.5)
    assert info["metrics"]["retrieval_recall"] == 1.0


def test_observation_cap_and_top_k():
    env = make(top_k=2, max_observation_chars=120, passage_chars=None)
    env.reset(seed=0, options={"index": 0})
    obs, *_ = env.step("<search>Velmora Textiles founder</search>")
    assert obs.endswith("[observation truncated]") and len(obs) <= 120 + len("\n[observation truncated]")
    env = make(top_k=2)
    env.reset(seed=0, options={"index": 0})
    obs, *_ = env.step("<search>Velmora Textiles founder</search>")
    assert "Doc 2(" in obs and "Doc 3(" not in obs


def test_retriever_is_shared_between_env_instances():
    a, b = make(), make()
    assert a.unwrapped._retriever is b.unwrapped._retriever


class _SlowRetriever:
    def search(self, query, k=5):
        return self.search_many([query], k)[0]

    def search_many(self, queries, k=5):
        time.sleep(3)
        return [[Passage("1", "T", "x")] for _ in queries]


def test_a_hanging_backend_hits_the_tool_timeout():
    env = make(retriever=_SlowRetriever(), search_timeout=0.3)
    env.reset(seed=0, options={"index": 0})
    start = time.monotonic()
    obs, _, _, _, info = env.step("<search>anything</search>")
    assert time.monotonic() - start < 2.0
    assert "timed out" in obs and info["reward_components"] == {"tool_error": pytest.approx(-0.05)}


def _dead_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_dead_retrieval_server_becomes_an_observation():
    env = make(retriever="http", retriever_url=_dead_url(), http_timeout=0.5, http_retries=1)
    env.reset(seed=0, options={"index": 0})
    start = time.monotonic()
    obs, reward, terminated, truncated, info = env.step("<search>Velmora Textiles</search>")
    assert time.monotonic() - start < env.unwrapped.tools["search"].timeout
    assert "unavailable" in obs and not terminated and not truncated
    assert reward == 0.0 and info["reward_components"] == {}  # not the model's fault: no penalty
    *_, info = env.step(env.unwrapped.demonstration()[-1])
    assert info["metrics"]["acc"] == 1.0 and info["metrics"]["retrieval_unavailable"] == 1.0


def test_env_over_a_live_retrieval_server():
    from envs.retrieval.factory import shared_retriever
    from envs.retrieval.server import BackgroundServer

    backend = shared_retriever("bm25", corpus_path=SAMPLE_CORPUS_PATH)
    with BackgroundServer(backend) as server:
        check_env_conformance("hotpotqa", make_kwargs={**OFFLINE, "retriever": "http", "retriever_url": server.url},
                              run_gymnasium_checker=False)


# ---------------------------------------------------------------- data formats
def test_sample_data_is_coherent():
    items = load_items("hotpotqa", data_path=SAMPLE_PATH)
    assert len(items) >= 20
    for item in items:
        titles = {p["title"] for p in item["context"]}
        assert set(item["supporting_titles"]) <= titles and len(item["supporting_titles"]) == 2
        if item["type"] == "bridge":  # the answer is written in the second-hop paragraph
            last = next(p for p in item["context"] if p["title"] == item["supporting_titles"][-1])
            assert item["answers"][0].lower() in last["text"].lower()


def test_original_hotpotqa_json_format(tmp_path):
    record = {"_id": "x1", "question": "Which river flows through the capital of Tervania?", "answer": "Selk",
              "type": "bridge", "supporting_facts": [["Tervania", 1], ["Dunmarrow", 1]],
              "context": [["Tervania", ["Tervania is a republic.", " Its capital is Dunmarrow."]],
                          ["Dunmarrow", ["Dunmarrow lies on the river Selk."]],
                          ["Elsewhere", ["An unrelated paragraph."]]]}
    path = tmp_path / "hotpot_dev_distractor_v1.json"
    path.write_text(json.dumps([record]))
    env = envs.make("hotpotqa", data_path=str(path), corpus="dataset", cache_dir=str(tmp_path))
    env.reset(seed=0)
    item = env.unwrapped.item
    assert item["id"] == "x1" and item["supporting_titles"] == ["Tervania", "Dunmarrow"]
    assert item["context"][0]["text"] == "Tervania is a republic. Its capital is Dunmarrow."
    *_, info = [env.step(a) for a in env.unwrapped.demonstration()][-1]
    assert info["metrics"]["acc"] == 1.0 and info["metrics"]["retrieval_recall"] == 1.0


def test_musique_and_corag_formats(tmp_path):
    musique = normalize_item({"id": "m1", "question": "q?", "answer": "Lindemark", "answer_aliases": ["Lindemark City"],
                              "paragraphs": [{"idx": 0, "title": "Norvalia", "paragraph_text": "Capital Lindemark.",
                                              "is_supporting": True},
                                             {"idx": 1, "title": "Other", "paragraph_text": "No.", "is_supporting": False}]},
                             source="t", row=0)
    assert musique["answers"] == ["Lindemark", "Lindemark City"] and musique["supporting_titles"] == ["Norvalia"]
    assert musique["context"][0] == {"title": "Norvalia", "text": "Capital Lindemark."}
    corag = {"query": "In which town was the director of Salt Over Winter born?", "answers": ["Brevik"],
             "query_id": "c1", "context_doc_ids": ["1"], "subqueries": [], "subanswers": []}
    path = tmp_path / "corag.jsonl"
    path.write_text(json.dumps(corag) + "\n")
    with pytest.raises(DataError, match="no context paragraphs"):
        envs.make("musique-v0", data_path=str(path), corpus="dataset")
    env = envs.make("musique-v0", data_path=str(path), corpus=str(SAMPLE_CORPUS_PATH))
    env.reset(seed=0)
    assert env.unwrapped.item["supporting_titles"] == []
    *_, info = [env.step(a) for a in env.unwrapped.demonstration()][-1]
    assert info["metrics"]["acc"] == 1.0 and "retrieval_recall" not in info["metrics"]


def test_bad_records_name_the_row(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"question": "q?", "answer": "a"}) + "\n" + json.dumps({"question": "q2"}) + "\n")
    with pytest.raises(DataError, match="row 1: no gold answer"):
        load_items("hotpotqa", data_path=path)
    env = make()
    with pytest.raises(DataError, match="question"):
        env.reset(options={"item": {"answer": "x"}})
    obs, _ = env.reset(options={"item": {"question": "Where is Quessel?", "answer": "Marrin Sea"}})
    assert "Where is Quessel?" in obs


def test_hub_loading_uses_the_documented_names(monkeypatch):
    datasets = pytest.importorskip("datasets")
    seen = {}

    def fake_load_dataset(name, config, split):
        seen.update(name=name, config=config, split=split)
        return [{"id": "h1", "question": "q?", "answer": "yes", "type": "comparison", "level": "hard",
                 "supporting_facts": {"title": ["A", "B"], "sent_id": [0, 0]},
                 "context": {"title": ["A", "B"], "sentences": [["a1", "a2"], ["b1"]]}}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    items = load_items("hotpotqa", max_items=3)
    assert seen == {"name": "hotpotqa/hotpot_qa", "config": "distractor", "split": "validation[:3]"}
    assert items[0]["context"][1] == {"title": "B", "text": "b1"} and items[0]["answers"] == ["yes"]
    load_items("musique")
    assert seen == {"name": "corag/multihopqa", "config": "musique", "split": "validation"}

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="data_path"):
        load_hf("corag/multihopqa", "2wikimultihopqa", "validation")


def test_prompt_template_and_config_errors():
    assert render_template("{question} {\"json\": 1} {top_k}", question="Q", top_k=3) == 'Q {"json": 1} 3'
    env = make(prompt_template="Q: {question} (max {max_searches} searches)", max_tool_turns=3)
    obs, _ = env.reset(seed=0, options={"index": 0})
    assert obs == "Q: In which town was the founder of Velmora Textiles born? (max 3 searches)"
    for bad in ({"top_k": 0}, {"outcome_metric": "bleu"}, {"observation_style": "xml"},
                {"corpus": "distractor", "retriever": "http", "retriever_url": "http://127.0.0.1:1"},
                {"corpus": "/no/such/corpus.jsonl"}, {"reward_weights": {"nope": 1.0}}):
        with pytest.raises((ValueError, DataError)):
            make(**bad)
    assert isinstance(QAEnv.default_reward_weights, dict)
    assert gym.spec("AgentR1/HotpotQA-v0").entry_point == "envs.qa.env:HotpotQAEnv"


@pytest.mark.slow
def test_env_on_the_pyserini_backend(tmp_path):
    pytest.importorskip("pyserini", reason="pyserini is not installed (pip install --no-deps pyserini==1.6.0)")
    pytest.importorskip("jnius_config", reason="pyjnius is not installed")
    from envs.retrieval.pyserini_backend import JavaUnavailableError, find_java_home

    try:
        find_java_home()
    except JavaUnavailableError as exc:
        pytest.skip(f"no Java 21+ runtime can be had here: {exc}")
    env = make(retriever="pyserini", cache_dir=str(tmp_path))
    env.reset(seed=0, options={"index": 2})
    steps = [env.step(a) for a in env.unwrapped.demonstration()]
    first = steps[0][0]
    assert first.startswith("<information>Doc 1(Title: ") and "(Title: Tervania)" in first and "(Title: Dunmarrow)" in first
    assert steps[-1][4]["metrics"]["acc"] == 1.0 and steps[-1][4]["metrics"]["retrieval_recall"] == 1.0
