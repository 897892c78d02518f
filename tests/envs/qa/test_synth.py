"""SynthHop: the world and its corpus, the questions and their guarantees, the env, the no-search baselines."""

from __future__ import annotations

import collections
import json
import re
import subprocess
import sys

import gymnasium as gym
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import envs
from envs.qa import synth
from envs.qa.rewards import score_answer
from envs.qa.scoring import normalize_answer
from envs.retrieval.corpus import corpus_fingerprint
from envs.testing import check_env_conformance

DEFAULT = synth.WorldConfig()
SMALL = synth.WorldConfig(passages=600)


def world(config: synth.WorldConfig = DEFAULT) -> synth.World:
    return synth.build_world(config)


def items(split: str = "train", n: int = 400, config: synth.WorldConfig = DEFAULT, **knobs) -> list[dict]:
    return synth.generate_items(config, synth.QuestionConfig(split=split, **knobs), n)


# ------------------------------------------------------------------ the world and its corpus
def test_the_world_is_a_pure_function_of_its_config():
    a, b = synth._build(DEFAULT), synth._build(DEFAULT)
    assert corpus_fingerprint(a.passages) == corpus_fingerprint(b.passages)
    assert corpus_fingerprint(synth._build(synth.WorldConfig(seed=1)).passages) != corpus_fingerprint(a.passages)
    assert synth.build_world(DEFAULT) is synth.build_world(synth.WorldConfig())  # built once per process


def test_the_world_and_its_questions_do_not_depend_on_the_process():
    code = ("import json, sys; from envs.qa import synth; from envs.retrieval.corpus import corpus_fingerprint; "
            "w = synth.build_world(synth.WorldConfig(passages=600)); "
            "q = synth.generate_items(synth.WorldConfig(passages=600), synth.QuestionConfig(split='test'), 20); "
            "print(json.dumps([corpus_fingerprint(w.passages), q]))")
    outputs = {subprocess.run([sys.executable, "-c", code], env={"PYTHONHASHSEED": str(h), "PATH": ""},
                              capture_output=True, text=True, check=True).stdout for h in (1, 2)}
    assert len(outputs) == 1
    fingerprint, questions = json.loads(outputs.pop())
    assert fingerprint == corpus_fingerprint(world(SMALL).passages) and questions == items("test", 20, SMALL)


def test_corpus_size_titles_and_passage_length():
    w = world()
    assert len(w.passages) == 10_000 == len(w.entities)
    assert len({p.title for p in w.passages}) == 10_000 and len({p.id for p in w.passages}) == 10_000
    assert {e.kind for e in w.entities} == set(synth.ENTITY_KINDS)
    for p in w.passages:
        assert len(p.text) <= 200 and 1 <= len(re.findall(r"[.;]\s|[.]$", p.text)) <= 3
    assert collections.Counter(e.split for e in w.entities)["test"] == pytest.approx(2_000, abs=10)


def test_paraphrase_changes_wording_not_facts():
    plain, varied = world(SMALL), world(synth.WorldConfig(passages=600, paraphrase=1.0))
    assert [e.facts for e in plain.entities] == [e.facts for e in varied.entities]
    assert all(a.text != b.text for a, b in zip(plain.passages, varied.passages, strict=True))
    for entity, passage in zip(varied.entities, varied.passages, strict=True):
        for fact in entity.facts:
            assert varied.value(entity, fact) in passage.text  # every fact stays a verbatim span


def test_distractors_make_names_share_words():
    def shared(d: float) -> float:
        w = world(synth.WorldConfig(passages=2_000, distractors=d))
        words = collections.Counter(x for e in w.entities for x in synth._name_words(e.name))
        return sum(c for c in words.values() if c > 1) / sum(words.values())

    assert shared(0.0) < shared(0.5) < shared(0.9)


def test_relations_stay_within_a_split():
    w = world()
    for e in w.entities:
        for fact in e.facts:
            if synth.FACT[(e.kind, fact)].target:
                assert w.follow(e, fact).split == e.split


# ------------------------------------------------------------------ names: invented, short
def _real_words() -> set[str]:
    """First names, surnames and place names of every Faker locale, and the english-words lists."""
    import importlib
    import pkgutil

    english_words = pytest.importorskip("english_words")
    pytest.importorskip("faker")
    import faker.providers.address as address
    import faker.providers.person as person

    words = set(english_words.get_english_words_set(["web2", "gcide"], lower=True))
    for package, wanted in ((person, ("first_name", "last_name")),
                            (address, ("cit", "countr", "state", "province", "region", "street_name", "town"))):
        for module in pkgutil.iter_modules(package.__path__):
            provider = getattr(importlib.import_module(f"{package.__name__}.{module.name}"), "Provider", None)
            for attribute in dir(provider) if provider else ():
                values = getattr(provider, attribute) if any(w in attribute for w in wanted) else None
                if isinstance(values, list | tuple | set | frozenset | dict):
                    words.update(w.lower() for v in values if isinstance(v, str) for w in re.split(r"[\s-]+", v))
    return words


def test_the_name_grammar_makes_no_real_name_or_word():
    real = _real_words()
    assert len(real) > 300_000
    grammar = re.compile(synth.STEM_PATTERN)
    # Every real word the grammar can make is excluded, and nothing else is.
    assert {w for w in real if grammar.fullmatch(w)} == set(synth._REAL_WORDS)
    for config in (DEFAULT, synth.WorldConfig(seed=1, passages=2_000, distractors=0.0)):
        w = world(config)
        invented = {x for e in w.entities for x in synth._name_words(e.name)}
        invented |= {str(e.facts["river"]).lower() for e in w.entities if e.kind == "town"}
        assert all(grammar.fullmatch(x) or x[:-4] and grammar.fullmatch(x[:-4]) or grammar.fullmatch(x[:-2])
                   for x in invented)  # a stem, or a province's stem + suffix
        assert not invented & real


# ------------------------------------------------------------------ questions
@pytest.mark.parametrize("split", synth.SPLITS)
def test_items_are_pure_functions_of_their_index(split):
    first = items(split, 50)
    fresh = synth.SynthQuestions(synth._build(DEFAULT), synth.QuestionConfig(split=split))
    assert [fresh.item(i) for i in (49, 3, 0)] == [first[49], first[3], first[0]]
    first = items(split, 1000)
    assert len({it["question"] for it in first}) == len({it["id"] for it in first}) == 1000  # distinct questions


def test_train_and_test_share_no_question_and_no_entity():
    w = world()
    split_of = {e.name: e.split for e in w.entities}
    rivers = {str(e.facts["river"]) for e in w.entities if e.kind == "town"}  # values, not entities
    train, test = items("train", 3000), items("test", 1000)
    assert not {it["question"] for it in train} & {it["question"] for it in test}
    for split, group in (("train", train), ("test", test)):
        assert {split_of[t] for it in group for t in it["supporting_titles"]} == {split}
        answers = {it["answers"][0] for it in group} - rivers
        assert {split_of.get(a, split) for a in answers} == {split}  # entity answers too
    train_gold = {t for it in train for t in it["supporting_titles"]}
    assert not train_gold & {t for it in test for t in it["supporting_titles"]}


def _check_item(item: dict, w: synth.World, config: synth.QuestionConfig) -> None:
    passages = {p.title: p.text for p in w.passages}
    gold, answer = item["supporting_titles"], item["answers"][0]
    assert item["hops"] == len(gold) == len(item["evidence"]) and item["hops"] in config.hops
    assert item["type"] in config.kinds and (item["type"] == "single") == (item["hops"] == 1)
    assert any(answer in passages[t] for t in gold)  # a short span, verbatim in a gold passage
    assert not synth._leaks(answer, item["question"])  # never guessable from the question
    assert normalize_answer(answer) not in normalize_answer(item["question"])
    assert item["question"].endswith("?") and gold[0].lower() in item["question"].lower()  # it names what to search
    for fact, title in zip(item["evidence"], gold, strict=True):
        assert title in fact or item["type"] == "comparison"
    for k in range(len(gold) - 1):  # each passage read names the next one (a chain), except comparisons' restarts
        if item["type"] != "comparison" or (item["hops"] == 3 and k == 1):
            assert gold[k + 1] in passages[gold[k]]
    context = {c["title"]: c["text"] for c in item["context"]}
    assert len(context) == len(item["context"]) == len(gold) + config.context_distractors
    assert set(gold) <= set(context) and all(passages[t] == text for t, text in context.items())


def test_every_item_is_answerable_from_its_gold_passages():
    w = world()
    for split in synth.SPLITS:
        config = synth.QuestionConfig(split=split)
        for item in synth.generate_items(DEFAULT, config, 600):
            _check_item(item, w, config)


def _year(text: str) -> int:
    (year,) = re.findall(r"\b\d{3,4}\b", text)
    return int(year)


def test_comparisons_pick_the_right_winner():
    w = world()
    passages = {p.title: p.text for p in w.passages}
    checked = 0
    for item in items("test", 400, hops=2, kinds=("comparison",)):
        a, b = item["supporting_titles"]
        earliest = any(word in item["question"] for word in ("elder", "older", "earlier"))
        years = {t: _year(passages[t]) for t in (a, b)}
        winner = (min if earliest else max)(years, key=years.get)
        loser = a if winner == b else b
        assert item["answers"][0] in passages[winner] and item["answers"][0] not in passages[loser]
        checked += 1
    assert checked == 400


def test_kinds_hops_and_their_phrasing():
    got = collections.Counter((it["type"], it["hops"]) for it in items("train", 1400))
    assert set(got) == {("single", 1), ("bridge", 2), ("bridge", 3), ("compositional", 2), ("compositional", 3),
                        ("comparison", 2), ("comparison", 3)}
    assert {it["hops"] for it in items("train", 100, hops=2)} == {2}
    assert [it["hops"] for it in items("train", 6, hops=(1, 2))] == [1, 2, 1, 2, 1, 2]  # a curriculum's mix
    bridge = items("test", 30, hops=2, kinds=("bridge",))
    compositional = items("test", 30, hops=2, kinds=("compositional",))
    assert all(re.search(r"\b(who|where|that)\b", it["question"]) for it in bridge)
    assert all(" of " in it["question"] for it in compositional)
    assert all(not it["answers"][0].isdigit() for it in compositional)  # compositional answers are entities
    assert all(re.fullmatch(r"\d+", it["answers"][0]) or it["answers"][0] in {
        str(e.facts["river"]) for e in world().entities if e.kind == "town"} for it in bridge)


def test_paraphrase_varies_questions():
    plain = items("test", 60, hops=1)
    varied = items("test", 60, hops=1, config=synth.WorldConfig(paraphrase=1.0))
    assert [it["answers"] for it in plain] == [it["answers"] for it in varied]
    assert sum(a["question"] != b["question"] for a, b in zip(plain, varied, strict=True)) == 60


@pytest.mark.parametrize(("knobs", "match"), [({"split": "dev"}, "split"), ({"hops": 4}, "hops"),
                                              ({"hops": ()}, "hops"), ({"kinds": ("trivia",)}, "kinds"),
                                              ({"hops": 1, "kinds": ("bridge",)}, "no question kind"),
                                              ({"passages": 10}, "passages"), ({"distractors": 2}, "distractors"),
                                              ({"test_fraction": 1.0}, "test_fraction")])
def test_bad_knobs_fail_with_their_name(knobs, match):
    with pytest.raises(ValueError, match=match):
        synth.configs(**knobs)
    with pytest.raises(ValueError, match=match):
        gym.make("AgentR1/SynthHop-v0", **knobs)
    with pytest.raises(TypeError, match="unknown SynthHop knob"):
        synth.configs(hop=2)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10**6), passages=st.integers(100, 800), distractors=st.floats(0, 1),
       paraphrase=st.floats(0, 1), split=st.sampled_from(synth.SPLITS),
       hops=st.sets(st.sampled_from(synth.HOPS), min_size=1).map(tuple), index=st.integers(0, 10**6))
def test_any_small_world_gives_valid_items(seed, passages, distractors, paraphrase, split, hops, index):
    config = synth.WorldConfig(seed=seed, passages=passages, distractors=distractors, paraphrase=paraphrase)
    questions = synth.QuestionConfig(split=split, hops=hops)
    generator = synth.SynthQuestions(synth._build(config), questions)
    for i in (0, index):
        _check_item(generator.item(i), generator.world, questions)


def test_corpus_and_questions_for_benchmarks():
    passages, questions = synth.corpus_and_questions(seed=0, passages=600, num_questions=40, hops=2)
    titles = {p.title for p in passages}
    assert len(passages) == 600 and len(questions) == 40
    assert all(set(q["supporting_titles"]) <= titles and q["answers"] and q["hops"] == 2 for q in questions)
    assert questions == items("test", 40, SMALL, hops=2)


# ------------------------------------------------------------------ search is necessary, and enough
def _shape(question: str) -> str:
    """The question with its names taken out: what kind of answer it asks for."""
    return re.sub(r"\b[A-Z][\w']*", "X", question)


def test_a_policy_that_never_searches_scores_near_zero():
    train, test = items("train", 10_000), items("test", 1_000)
    by_shape: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for it in train:
        by_shape[_shape(it["question"])][it["answers"][0]] += 1
    overall = collections.Counter(it["answers"][0] for it in train).most_common(1)[0][0]

    def acc(guess) -> float:
        return sum(score_answer(f"<answer>{guess(it)}</answer>", it["answers"], tools_ok=True).scores["acc"]
                   for it in test) / len(test)

    frequent = acc(lambda it: (by_shape.get(_shape(it["question"])) or collections.Counter([overall]))
                   .most_common(1)[0][0])
    from_question = acc(lambda it: it["question"])  # cover-EM: right if the gold is anywhere in the question
    assert frequent < 0.02 and from_question == 0.0


def test_searching_the_named_entity_finds_the_gold_passage():
    from envs.retrieval.factory import shared_retriever

    retriever = shared_retriever("bm25", passages=world().passages, persist=False)
    test = items("test", 300)
    titles = [t for it in test for t in it["supporting_titles"]]
    hits = retriever.search_many(titles, 5)
    recall = sum(t in {p.title for p in found} for t, found in zip(titles, hits, strict=True)) / len(titles)
    assert recall >= 0.98
    single = [it for it in test if it["hops"] == 1]
    shown = retriever.search_many([it["supporting_titles"][0] for it in single], 5)
    assert sum(it["answers"][0] in " ".join(p.text for p in found) for it, found in zip(single, shown, strict=True)) \
        >= 0.95 * len(single)


# ------------------------------------------------------------------ the env
def test_registered_with_aliases_and_offline_defaults():
    assert envs.resolve_env_id("synthhop") == envs.resolve_env_id("synthhop-v0") == "AgentR1/SynthHop-v0"
    entry = next(e for e in envs.suite_envs() if e.env_id == "AgentR1/SynthHop-v0")
    assert entry.offline_kwargs == {}


@pytest.mark.parametrize("kwargs", [{}, {"split": "test", "hops": 1, "top_k": 3},
                                    {"hops": 3, "max_tool_turns": 2, "passages": 2_000},
                                    {"corpus": "distractor", "paraphrase": 1.0, "kinds": ("comparison",)}])
def test_conformance(kwargs):
    report = check_env_conformance("AgentR1/SynthHop-v0", make_kwargs=kwargs, run_gymnasium_checker=not kwargs)
    assert report.golden_return > 1.0


def test_golden_episode_walks_the_chain_and_scores_one():
    env = envs.make("AgentR1/SynthHop-v0", split="test", hops=2, kinds=("compositional",))
    prompt, info = env.reset(seed=0, options={"index": 0})
    item = info["item"]
    assert item["question"] in prompt and item["hops"] == 2 and item["split"] == "test"
    demo = env.unwrapped.demonstration()
    assert [re.search(r"<search>(.*)</search>", a).group(1) for a in demo[:-1]] == item["supporting_titles"]
    assert item["evidence"][0] in demo[1] and demo[-1].endswith(f"<answer>{item['answers'][0]}</answer>")
    total, observations = 0.0, []
    for action in demo:
        obs, reward, terminated, truncated, info = env.step(action)
        total += reward
        observations.append(obs)
    assert item["answers"][0] in observations[1]  # the second search shows the answer
    metrics = info["metrics"]
    assert terminated and metrics["acc"] == metrics["em"] == metrics["retrieval_recall"] == 1.0
    assert total == pytest.approx(1.15)  # outcome 1 + first valid search 0.05 + all gold found 0.1


def test_observations_fit_a_small_context():
    env = envs.make("AgentR1/SynthHop-v0")
    longest = 0
    for i in range(40):
        env.reset(options={"index": i})
        obs, *_ = env.step(f"<search>{env.unwrapped.item['supporting_titles'][0]}</search>")
        longest = max(longest, len(obs))
    assert longest < 1_200  # five passages: ~250 tokens


def test_splits_sizes_and_curriculum_through_the_env():
    test_env = envs.make("AgentR1/SynthHop-v0", split="test")
    test_env.reset(seed=0)
    assert len(test_env.unwrapped.items) == 1_000
    env = envs.make("AgentR1/SynthHop-v0", hops=1, num_items=50)
    env.reset(seed=0)
    assert len(env.unwrapped.items) == 50 and {it["hops"] for it in env.unwrapped.items} == {1}
    generated = items("train", 50, hops=1)
    assert env.unwrapped.items == tuple(env.unwrapped.prepare_item(it, source="x", row=None) for it in generated)


def test_never_searching_through_the_env_scores_near_zero():
    env = envs.make("AgentR1/SynthHop-v0", split="test")
    accs = []
    for i in range(200):
        env.reset(options={"index": i})
        *_, info = env.step("<think>I will guess.</think><answer>1850</answer>")
        accs.append(info["metrics"]["acc"])
    assert sum(accs) / len(accs) < 0.02


def test_team_qa_questions_come_from_the_same_generator():
    from envs.multiagent import team_qa_env

    env = team_qa_env()
    env.reset(seed=0, options={"index": 3})
    expected = synth.questions(*synth.configs(hops=2, context_distractors=6)).item(3)
    assert env.item["question"] == expected["question"] and env.item["answer"] == expected["answers"][0]
    env = team_qa_env(synth={"hops": 3, "split": "test"})
    env.reset(seed=1)
    assert env.item["hops"] == 3 and env.item["split"] == "test"
    with pytest.raises(TypeError, match="unknown SynthHop knob"):
        team_qa_env(synth={"hopz": 1})
