"""Lazy, shared, fail-fast data for every env family.

Every loader the envs can reach (local files, the Hub, each family's item loader) is wrapped with a
counter, so "no dataset load" is observed, not assumed.
"""

import collections
import http.server
import json
import threading

import gymnasium as gym
import pytest

import envs.core.data as core_data
import envs.math.datasets as math_datasets
import envs.math.env as math_env
import envs.multiagent.team_qa as team_qa
import envs.qa.datasets as qa_datasets
import envs.qa.env as qa_env
import envs.retrieval.factory as factory
from envs.core.data import DataError
from envs.core.env import SHARED_ITEMS
from envs.core.registry import suite_envs
from envs.qa.datasets import SAMPLE_CORPUS_PATH

N = 64
QA_ITEM = {"id": "own-1", "question": "Which river flows through Dunmarrow?", "answer": "Selk",
           "supporting_titles": ["Dunmarrow"],
           "context": [{"title": "Dunmarrow", "text": "Dunmarrow lies on the river Selk."},
                       {"title": "Tervania", "text": "Tervania is a republic whose capital is Dunmarrow."}]}
MATH_ITEM = {"problem": "What is 2 + 3?", "answer": "5"}
ARITHMETIC_ITEM = {"question": "What is 2 + 3?", "answer": "5"}


@pytest.fixture
def loads(monkeypatch):
    """Counts of every data load (calls pass through); shared caches start empty."""
    counts: collections.Counter[str] = collections.Counter()

    def counted(module, name):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            counts[name] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    for module, name in [(core_data, "_read_file"), (math_datasets, "_load_hub"), (qa_datasets, "load_hf"),
                         (math_env, "load_math_items"), (qa_env, "load_items"), (team_qa, "_load_team_items")]:
        counted(module, name)
    SHARED_ITEMS.clear()
    qa_env._DATASET_CORPORA.clear()
    team_qa._SHARED_ITEMS.clear()
    factory.clear_shared_retrievers()
    yield counts
    SHARED_ITEMS.clear()
    qa_env._DATASET_CORPORA.clear()
    team_qa._SHARED_ITEMS.clear()
    factory.clear_shared_retrievers()


def search(query):
    return f"<search>{query}</search>"


# ------------------------------------------------------------------ injected items: no load at all
@pytest.mark.parametrize(("env_id", "kwargs", "item"), [
    ("AgentR1/Arithmetic-v0", {}, ARITHMETIC_ITEM),
    ("AgentR1/Math-v0", {}, MATH_ITEM),  # default data: open-rs from the Hub, never touched
    ("AgentR1/MATH500-v0", {"data_path": "/nowhere/on/this/worker.jsonl"}, MATH_ITEM),
    ("AgentR1/HotpotQA-v0", {"corpus": "distractor"}, QA_ITEM),
    ("AgentR1/Musique-v0", {"data_path": "/nowhere/musique.jsonl", "corpus": "distractor"}, QA_ITEM),
])
def test_many_instances_with_injected_items_load_no_data(loads, env_id, kwargs, item):
    made = [gym.make(env_id, **kwargs) for _ in range(N)]
    for env in made:
        obs, _ = env.reset(seed=0, options={"item": dict(item)})
        assert item.get("question", item.get("problem")) in obs
    if env_id.startswith("AgentR1/H") or env_id.startswith("AgentR1/Mu"):  # search the item's own paragraphs
        obs, *_ = made[0].step(search("Dunmarrow river"))
        assert "Title: Dunmarrow" in obs
    assert sum(loads.values()) == 0, loads
    assert not any(getattr(env.unwrapped, "items_loaded", False) for env in made[1:])


def test_team_qa_with_a_data_file_reads_it_once_and_only_when_it_draws(loads, tmp_path):
    from envs.multiagent import team_qa_env

    path = tmp_path / "team.jsonl"
    path.write_text("".join(json.dumps({**QA_ITEM, "id": f"t{i}"}) + "\n" for i in range(3)))
    made = [team_qa_env(data_path=str(path)) for _ in range(N)]
    for env in made:
        env.reset(seed=0, options={"item": dict(QA_ITEM)})
    assert sum(loads.values()) == 0
    made[0].reset(seed=1)
    made[1].reset(seed=2)
    assert loads["_load_team_items"] == 1 and made[0].game.items is made[1].game.items
    made[0].game.item["context"].clear()  # an episode's item is its own copy
    assert made[1].game.items[0]["context"]


def test_a_prebuilt_index_serves_injected_items_and_is_shared(loads, tmp_path, monkeypatch):
    from envs.retrieval.bm25 import BM25Retriever
    from envs.retrieval.corpus import load_corpus

    index = tmp_path / "index"
    BM25Retriever.build(load_corpus(SAMPLE_CORPUS_PATH), index, show_progress=False)
    loads.clear()
    built = collections.Counter()
    original = factory.make_retriever
    monkeypatch.setattr(factory, "make_retriever", lambda *a, **k: built.update(["x"]) or original(*a, **k))
    made = [gym.make("AgentR1/HotpotQA-v0", index=str(index)) for _ in range(N)]
    assert built["x"] == 0  # construction opens nothing
    for env in made:
        env.reset(seed=0, options={"item": dict(QA_ITEM)})
    assert built["x"] == 1 and len({id(env.unwrapped._retriever) for env in made}) == 1
    obs, *_ = made[0].step(search("Velmora Textiles founder"))
    assert "Title: Velmora Textiles" in obs
    assert loads["load_items"] == loads["_load_hub"] == loads["load_hf"] == 0  # the dataset is never read


class _OnePassageServer(http.server.BaseHTTPRequestHandler):
    """A Search-R1 ``/retrieve`` endpoint that always answers the same passage."""

    def do_POST(self):  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        hit = {"document": {"id": "1", "contents": '"Dunmarrow"\nDunmarrow lies on the river Selk.'}, "score": 1.0}
        payload = json.dumps({"result": [[hit] for _ in body["queries"]]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def test_an_http_retriever_serves_injected_items(loads):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OnePassageServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        made = [gym.make("AgentR1/HotpotQA-v0", retriever="http", retriever_url=url) for _ in range(N)]
        for env in made:
            env.reset(seed=0, options={"item": dict(QA_ITEM)})
        obs, *_ = made[-1].step(search("Dunmarrow"))
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert "Title: Dunmarrow" in obs and sum(loads.values()) == 0


# ------------------------------------------------------------------ a dataset loads once, shared
@pytest.mark.parametrize(("env_id", "kwargs", "loader"), [
    ("AgentR1/HotpotQA-v0", {"data_path": "sample", "corpus": "distractor"}, "load_items"),
    ("AgentR1/Math-v0", {"data_path": "sample"}, "load_math_items"),
    ("AgentR1/GSM8K-v0", {"dataset": "gsm8k-sample"}, "load_math_items"),  # the older kwarg name
])
def test_the_dataset_loads_on_the_first_draw_once_for_all_instances(loads, env_id, kwargs, loader):
    made = [gym.make(env_id, **kwargs) for _ in range(N)]
    assert sum(loads.values()) == 0
    for i, env in enumerate(made):
        env.reset(seed=i, options={"index": 1} if i % 2 else None)
    assert loads[loader] == 1
    assert len({id(env.unwrapped.items) for env in made}) == 1


def test_threads_building_and_drawing_at_once_load_once(loads):
    barrier, errors = threading.Barrier(16), []

    def worker(seed):
        try:
            env = gym.make("AgentR1/HotpotQA-v0", data_path="sample", corpus="distractor")
            barrier.wait()
            env.reset(seed=seed)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and loads["load_items"] == 1


def test_corpus_dataset_reads_the_dataset_once_and_shares_one_index(loads, tmp_path):
    made = [gym.make("AgentR1/HotpotQA-v0", data_path="sample", corpus="dataset", cache_dir=str(tmp_path))
            for _ in range(8)]
    for env in made:
        env.reset(seed=0, options={"item": dict(QA_ITEM)})  # corpus='dataset' is the dataset's paragraphs
    assert loads["load_items"] == 1 and len({id(env.unwrapped._retriever) for env in made}) == 1
    obs, *_ = made[0].step(search("Velmora Textiles founder"))
    assert "Title: Velmora Textiles" in obs


def test_a_changed_file_is_read_again_for_later_instances(loads, tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"problem": "p", "answer": "1"}) + "\n")
    first = gym.make("AgentR1/Math-v0", data_path=str(path))
    first.reset(seed=0)
    path.write_text(json.dumps({"problem": "p", "answer": "1"}) + "\n" + json.dumps({"problem": "q", "answer": "2"}) + "\n")
    later = gym.make("AgentR1/Math-v0", data_path=str(path))
    later.reset(seed=0)
    assert len(first.unwrapped.items) == 1 and len(later.unwrapped.items) == 2


def test_episodes_cannot_change_the_shared_items(loads):
    a, b = (gym.make("AgentR1/HotpotQA-v0", data_path="sample", corpus="distractor") for _ in range(2))
    _, info = a.reset(seed=0, options={"index": 0})
    a.unwrapped.item["answers"].append("poisoned")
    info["item"]["context"].clear()
    b.reset(seed=0, options={"index": 0})
    assert "poisoned" not in b.unwrapped.item["answers"] and b.unwrapped.item["context"]


# ------------------------------------------------------------------ failing fast
@pytest.mark.parametrize("env_id", sorted(e.env_id for e in suite_envs() if e.env_id.startswith("AgentR1/")))
def test_unknown_kwargs_fail_at_make_naming_the_accepted_ones(loads, env_id):
    with pytest.raises(TypeError) as err:
        gym.make(env_id, no_such_kwarg=1)
    message = str(err.value)
    assert "'no_such_kwarg'" in message and "it accepts:" in message and "max_turns" in message
    if "Arithmetic" not in env_id:
        assert "data_path" in message.split("it accepts:")[1]
    assert sum(loads.values()) == 0


@pytest.mark.parametrize(("env_id", "name"), [("AgentR1/MATH500-v0", "missing.jsonl"), ("AgentR1/Math-v0", "no-dir/"),
                                              ("AgentR1/HotpotQA-v0", "missing.json")])
def test_a_missing_local_path_fails_at_once_without_the_hub(loads, tmp_path, env_id, name):
    path = f"{tmp_path}/{name}"
    env = gym.make(env_id, data_path=path, **({"corpus": "distractor"} if "Hotpot" in env_id else {}))
    with pytest.raises(DataError, match="no such file or directory"):
        env.reset(seed=0)
    assert loads["_load_hub"] == loads["load_hf"] == 0


def test_data_path_wins_over_the_ids_registered_dataset(loads):
    env = gym.make("AgentR1/MATH500-v0", data_path="gsm8k-sample")  # the spec says dataset='math500'
    env.reset(seed=0)
    assert env.unwrapped.dataset_name == "gsm8k-sample" and loads["_load_hub"] == 0
    assert gym.spec("AgentR1/MATH500-v0").kwargs["dataset"] == "math500"


def test_an_empty_math_file_names_its_path_through_the_env(loads, tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    env = gym.make("AgentR1/Math-v0", data_path=str(path))
    with pytest.raises(DataError, match=rf"^{path}: no problems"):
        env.reset(seed=0)


class _AcceptingVerifier:
    def __init__(self):
        self.validated = []

    def validate(self, items):
        self.validated.extend(items)
        return type("Report", (), {"ok": True})()


def test_validate_loads_at_construction_by_request(loads):
    verifier = _AcceptingVerifier()
    gym.make("AgentR1/Math-v0", data_path="sample", validate=True, limit=2, verifier=verifier)
    assert loads["load_math_items"] == 1 and len(verifier.validated) == 2


def test_a_tokenizer_named_by_string_loads_on_first_use_once(monkeypatch):
    import sys
    import types

    calls = []
    fake = types.ModuleType("transformers")
    fake.AutoTokenizer = types.SimpleNamespace(from_pretrained=lambda name: calls.append(name) or object())
    monkeypatch.setitem(sys.modules, "transformers", fake)
    monkeypatch.setattr(math_env, "_TOKENIZERS", math_env.SharedValues())
    made = [gym.make("AgentR1/Math-v0", tokenizer="org/some-tokenizer") for _ in range(N)]
    assert calls == []
    assert made[0].unwrapped.tokenizer is made[-1].unwrapped.tokenizer and calls == ["org/some-tokenizer"]


def test_team_qa_names_its_accepted_kwargs(loads):
    from envs.multiagent import team_qa_env, team_qa_parallel_env

    for make in (team_qa_env, team_qa_parallel_env):
        with pytest.raises(TypeError, match=r"'no_such_kwarg'; it accepts: .*data_path"):
            make(no_such_kwarg=1)
    assert sum(loads.values()) == 0
