"""Team multi-hop QA under PettingZoo: API conformance, golden episodes, rewards, robustness."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pettingzoo = pytest.importorskip("pettingzoo")
from pettingzoo.test import api_test, parallel_api_test  # noqa: E402

from envs.multiagent import team_qa_env, team_qa_parallel_env  # noqa: E402
from envs.multiagent.team_qa import ANSWERER, RESEARCHER, generate_item  # noqa: E402
from envs.retrieval.base import Passage  # noqa: E402

HOTPOT_RAW = {  # the shape of an HF hotpot_qa (distractor) row
    "id": "x1", "question": "Which city hosts the Lumen Institute founded by Ada Kerr?", "answer": "Port Vell",
    "context": {"title": ["Ada Kerr", "Lumen Institute", "Rivers"],
                "sentences": [["Ada Kerr founded the Lumen Institute."], ["The Lumen Institute is in Port Vell.", " It opened in 1901."],
                              ["Rivers flow."]]},
    "supporting_facts": {"title": ["Ada Kerr", "Lumen Institute"], "sent_id": [0, 0]},
}


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PettingZoo warns that text observations are not numpy arrays
        fn(*args, **kwargs)


def test_aec_api():
    _quiet(api_test, team_qa_env(), num_cycles=300)


def test_parallel_api():
    _quiet(parallel_api_test, team_qa_parallel_env(), num_cycles=300)


def test_api_on_hotpotqa_shaped_items():
    _quiet(api_test, team_qa_env(items=[HOTPOT_RAW]), num_cycles=100)
    _quiet(parallel_api_test, team_qa_parallel_env(items=[HOTPOT_RAW]), num_cycles=100)


def _play_aec(env, script=None):
    """Play an AEC episode (the demonstration unless ``script`` is given); return final infos and rewards."""
    script = script or {a: list(v) for a, v in env.demonstration().items()}
    totals = {a: 0.0 for a in env.possible_agents}
    final = {}
    for agent in env.agent_iter(100):
        obs, reward, term, trunc, info = env.last()
        totals[agent] += reward
        if term or trunc:
            final[agent] = info
            env.step(None)
            continue
        env.step(script[agent].pop(0) if script[agent] else "")
    return final, totals


@pytest.mark.parametrize("seed", range(6))
def test_aec_demonstration_wins_and_rewards_add_up(seed):
    env = team_qa_env()
    env.reset(seed=seed)
    final, totals = _play_aec(env)
    for agent in (RESEARCHER, ANSWERER):
        metrics = final[agent]["metrics"]
        assert metrics["acc"] == 1.0 and metrics["f1"] == 1.0 and metrics["support_recall"] == 1.0
        assert totals[agent] == pytest.approx(sum(final[agent]["episode_reward_components"].values()))
    # The QA envs' table: one valid-search bonus, all gold titles found, the shared outcome.
    assert final[RESEARCHER]["episode_reward_components"] == pytest.approx(
        {"tool_call_valid": 0.05, "retrieval_hit": 0.1, "outcome": 1.0, "format": 0.0})
    assert final[ANSWERER]["episode_reward_components"] == pytest.approx({"format": 0.0, "outcome": 1.0})
    assert final[ANSWERER]["metrics"]["format"] == 1.0 and final[ANSWERER]["metrics"]["unfinished"] == 0.0


def test_answerer_sees_only_notes_not_search_results():
    env = team_qa_env()
    env.reset(seed=3)
    demo = env.demonstration()
    env.step(demo[RESEARCHER][0])  # searches: results go to the researcher
    assert env.agent_selection == RESEARCHER
    assert "<information>" in env.observe(RESEARCHER)["text"]
    assert "<information>" not in str(env.infos[ANSWERER]["messages"])
    env.step("<note>The answer might be in the second document.</note>")
    assert env.agent_selection == ANSWERER
    assert env.observe(ANSWERER)["text"].startswith("Note from the researcher:")
    env.step("<ask>Which country is that city in?</ask>")
    assert env.agent_selection == RESEARCHER
    assert "The answerer asks: Which country" in env.observe(RESEARCHER)["text"]


def test_wrong_answer_and_penalties():
    env = team_qa_env()
    env.reset(seed=4)
    final, totals = _play_aec(env, {RESEARCHER: ["I think I know.", "<note>guess</note>", "<note>still a guess</note>"],
                                    ANSWERER: ["hmm", "<answer>Atlantis</answer>"]})
    assert final[ANSWERER]["metrics"]["acc"] == 0.0 and final[ANSWERER]["metrics"]["notes"] == 2.0
    assert final[RESEARCHER]["episode_reward_components"] == pytest.approx(
        {"idle_turn": -0.1, "outcome": 0.0, "format": 0.0})
    assert final[ANSWERER]["episode_reward_components"] == pytest.approx({"idle_turn": -0.1, "format": 0.0, "outcome": 0.0})
    assert totals[ANSWERER] == pytest.approx(-0.1) and totals[RESEARCHER] == pytest.approx(-0.1)


def test_repeated_and_empty_searches_are_penalised():
    env = team_qa_env()
    env.reset(seed=5)
    env.step("<search>x y</search><search>  </search>")
    env.step("<search>X  y</search>")  # the same query up to case and spacing (the QA rule)
    assert env.infos[RESEARCHER]["reward_components"] == pytest.approx({"repeated_query": -0.05})
    env.step("<search>X  y</search>")  # the identical call: not run again
    assert env.infos[RESEARCHER]["reward_components"] == pytest.approx({"repeated_call": -0.05})
    assert "already searched" in env.observe(RESEARCHER)["text"]


def test_step_budget_truncates_both_agents():
    env = team_qa_env(max_steps=3)
    env.reset(seed=0)
    for _ in range(3):
        env.step("<search>something new %d</search>" % np.random.default_rng().integers(1 << 30))
    assert all(env.truncations.values()) and not any(env.terminations.values())
    metrics = env.infos[ANSWERER]["metrics"]
    assert metrics["answered"] == 0.0 and metrics["truncated"] == 1.0 and metrics["unfinished"] == 1.0
    # Unfinished, as in every env: the QA no-answer outcome (-0.5), bonuses forfeited, the penalty.
    researcher = env.infos[RESEARCHER]["episode_reward_components"]
    assert researcher["process_forfeit"] == pytest.approx(-researcher["tool_call_valid"] - researcher.get("retrieval_hit", 0))
    assert researcher["outcome"] == pytest.approx(-0.5) and researcher["unfinished"] == pytest.approx(-0.3)
    assert env.infos[ANSWERER]["episode_reward_components"] == pytest.approx(
        {"outcome": -0.5, "format": 0.0, "unfinished": -0.3})


def test_parallel_demonstration():
    env = team_qa_parallel_env(max_rounds=4)
    obs, infos = env.reset(seed=2)
    demo = env.demonstration()
    assert obs[RESEARCHER]["text"].startswith("Question:")
    obs, rew, term, trunc, infos = env.step({RESEARCHER: demo[RESEARCHER][0], ANSWERER: ""})  # answerer waits
    assert rew[ANSWERER] == 0.0 and rew[RESEARCHER] == pytest.approx(0.15)
    obs, rew, term, trunc, infos = env.step({RESEARCHER: demo[RESEARCHER][1], ANSWERER: ""})
    assert obs[ANSWERER]["text"].startswith("Note from the researcher")  # the note arrives the next round
    obs, rew, term, trunc, infos = env.step({RESEARCHER: "<note>that is all</note>", ANSWERER: demo[ANSWERER][0]})
    assert all(term.values()) and env.agents == []
    assert infos[ANSWERER]["metrics"]["acc"] == 1.0
    assert rew[ANSWERER] == pytest.approx(1.0) and rew[RESEARCHER] == pytest.approx(1.0)


def test_seeds_and_index_are_deterministic():
    a, b = team_qa_env(), team_qa_env()
    a.reset(seed=11)
    b.reset(seed=11)
    assert a.item == b.item
    b.reset(seed=12)
    assert a.item != b.item
    a.reset(options={"index": 3})
    b.reset(seed=99, options={"index": 3})
    assert a.item == b.item


def test_generated_items_are_answerable_from_their_support():
    rng = np.random.default_rng(0)
    for _ in range(50):
        item = generate_item(rng)
        texts = {c["title"]: c["text"] for c in item["context"]}
        assert set(item["supporting_titles"]) <= set(texts)
        assert any(item["answer"] in texts[t] for t in item["supporting_titles"])
        assert len({c["title"] for c in item["context"]}) == len(item["context"])


def test_hotpotqa_items_and_a_shared_retriever():
    class FixedRetriever:
        def __init__(self):
            self.queries = []

        def search(self, query, k=5):
            self.queries.append(query)
            return [Passage("1", "Lumen Institute", "The Lumen Institute is in Port Vell.")]

        def search_many(self, queries, k=5):
            return [self.search(q, k) for q in queries]

    retriever = FixedRetriever()
    env = team_qa_env(items=[HOTPOT_RAW], retriever=retriever)
    env.reset(seed=0)
    assert env.item["supporting_titles"] == ["Ada Kerr", "Lumen Institute"]
    assert env.item["context"][1]["text"].startswith("The Lumen Institute is in Port Vell.")
    final, _ = _play_aec(env, {RESEARCHER: ["<search>Lumen Institute city</search>", "<note>It is in Port Vell.</note>"],
                               ANSWERER: ["<answer>port vell</answer>"]})
    assert retriever.queries == ["Lumen Institute city"]
    assert final[ANSWERER]["metrics"]["acc"] == 1.0 and final[ANSWERER]["metrics"]["support_recall"] == 0.5


def test_a_retrieval_outage_is_not_charged():
    from envs.retrieval.base import RetrievalError

    class Outage:
        def search(self, query, k=5):
            raise RetrievalError("server unreachable")

        def search_many(self, queries, k=5):
            raise RetrievalError("server unreachable")

    env = team_qa_env(retriever=Outage())
    env.reset(seed=0)
    env.step("<search>anything</search>")
    assert env.infos[RESEARCHER]["reward_components"] == {}
    env.step("<search>anything</search>")  # retrying is no repeat
    assert env.infos[RESEARCHER]["reward_components"] == {}
    env.step("<note>no luck</note>")
    env.step("<answer>x</answer>")
    assert env.infos[ANSWERER]["metrics"]["env_error"] == 2.0


def test_failing_retriever_becomes_a_penalty():
    class Down:
        def search(self, query, k=5):
            raise RuntimeError("server down")

        def search_many(self, queries, k=5):
            raise RuntimeError("server down")

    env = team_qa_env(retriever=Down())
    env.reset(seed=0)
    env.step("<search>anything</search>")
    assert env.infos[RESEARCHER]["reward_components"] == pytest.approx({"tool_error": -0.05})
    assert "failed" in env.observe(RESEARCHER)["text"] or "Error" in env.observe(RESEARCHER)["text"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=300) | st.sampled_from(["<search>", "<note></note>", "<answer>", "<ask>?</ask>",
                                                          "<search>a</search><note>b</note>", "\x00", "</think><answer>x</answer>"]),
                min_size=1, max_size=14))
def test_any_text_is_a_legal_move(actions):
    env = team_qa_env(max_steps=6)
    env.reset(seed=1)
    start = time.monotonic()
    for action in actions:
        if not env.agents:
            break
        agent = env.agent_selection
        if env.terminations[agent] or env.truncations[agent]:
            env.step(None)
            continue
        env.step(action)
        assert env.observation_space(env.agent_selection).contains(env.observe(env.agent_selection))
    assert time.monotonic() - start < 5


def test_reward_weights_are_validated():
    with pytest.raises(ValueError, match="unknown reward component"):
        team_qa_env(reward_weights={RESEARCHER: {"nope": 1.0}})
    with pytest.raises(ValueError, match="agent names"):
        team_qa_env(reward_weights={"player_9": {}})
    with pytest.raises(ValueError, match="outcome_metric"):
        team_qa_env(outcome_metric="bleu")
    env = team_qa_env(reward_weights={ANSWERER: {"format": 0.5}})
    env.reset(seed=0)
    final, _ = _play_aec(env)
    assert final[ANSWERER]["episode_reward_components"] == pytest.approx({"format": 0.5, "outcome": 1.0})


@pytest.mark.parametrize(("answer", "em", "f1", "acc"), [("the Port Vell.", 1.0, 1.0, 1.0), ("Vell", 1.0, 1.0, 1.0),
                                                        ("Port", 0.0, 2 / 3, 0.0),
                                                        ("The Port-Vell!", 0.0, 0.0, 1.0)])  # "vell" in "portvell"
def test_outcome_uses_official_em_and_f1_with_aliases(answer, em, f1, acc):
    env = team_qa_env(items=[{**HOTPOT_RAW, "aliases": ["Vell"]}])
    env.reset(seed=0)
    final, _ = _play_aec(env, {RESEARCHER: ["<note>x</note>"], ANSWERER: [f"<answer>{answer}</answer>"]})
    metrics = final[ANSWERER]["metrics"]
    # acc is cover-EM, as in the QA envs; the outcome reward is EM.
    assert metrics["em"] == em and metrics["acc"] == acc and metrics["f1"] == pytest.approx(f1)
    assert final[RESEARCHER]["episode_reward_components"]["outcome"] == em  # the outcome is shared


def test_team_qa_scores_with_the_qa_envs_scorer():
    """One scorer: the shared outcome is what a QA env would give the answerer's final response."""
    from envs.qa.rewards import score_answer

    env = team_qa_env(items=[HOTPOT_RAW])
    outcomes = []
    for response in ("<answer>Port Vell</answer>", "<think>hm</think><answer>the harbour of Port Vell</answer>",
                     "<answer></answer>", "<answer>x</answer><answer>y</answer>"):
        env.reset(seed=0)
        final, _ = _play_aec(env, {RESEARCHER: ["<note>x</note>"], ANSWERER: [response]})
        expected = score_answer(response, ["Port Vell"], tools_ok=True)
        assert final[RESEARCHER]["episode_reward_components"]["outcome"] == pytest.approx(expected.outcome)
        assert {k: final[ANSWERER]["metrics"][k] for k in expected.metrics()} == expected.metrics()
        outcomes.append(expected.outcome)
    assert outcomes == [1.0, 0.0, -0.5, -0.5]  # EM gated by format; the second is cover-EM only


@pytest.mark.parametrize("seed", range(3))
def test_demonstration_beats_degenerate_team_play_and_unfinished_is_lowest(seed):
    """The reward audit's ordering for both agents: spam < unfinished < wrong answer < demonstration."""

    def team_return(script, max_steps=8):
        env = team_qa_env(max_steps=max_steps)
        env.reset(seed=seed)
        return _play_aec(env, script)[1]

    demo = team_return(None)
    spam = team_return({RESEARCHER: ["".join(f"<search>q{t} {k}</search>" for k in range(3)) for t in range(8)],
                        ANSWERER: []})
    wrong = team_return({RESEARCHER: ["<search>anything</search>", "<note>guess</note>"],
                         ANSWERER: ["<answer>Atlantis</answer>"]})
    for agent in (RESEARCHER, ANSWERER):
        assert spam[agent] < wrong[agent] < demo[agent]
