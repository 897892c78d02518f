"""Episode records: built from real episodes, round-tripped through JSONL, old items.jsonl still read."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import envs  # noqa: F401  (registers the ids)
from envs.core.data import DataError
from envs.core.records import (
    EpisodeRecord,
    EpisodeRecorder,
    TurnRecord,
    append_episode_records,
    play_actions,
    read_episode_records,
)

SEARCH = '<tool_call>{"name": "search", "arguments": {"query": "founder"}}</tool_call>'


@pytest.fixture(scope="module")
def qa_env():
    env = gym.make("AgentR1/HotpotQA-v0", **next(e.offline_kwargs for e in envs.suite_envs()
                                                   if e.env_id == "AgentR1/HotpotQA-v0"))
    yield env
    env.close()


def test_a_tool_episode_records_every_turn_like_the_env_reports_it(qa_env):
    _, info = qa_env.reset(seed=1)
    recorder = EpisodeRecorder(info, source={"kind": "test"})
    steps = []
    for action in [SEARCH, *qa_env.unwrapped.demonstration()]:
        result = qa_env.step(action)
        steps.append((action, result))
        recorder.step(action, result[0], result[1], result[2], result[3], result[4])
        if result[2] or result[3]:
            break
    record = recorder.record(correct=True)
    assert record.prompt == info["messages"] and record.item["question"] == info["item"]["question"]
    assert [t.action for t in record.turns] == [a for a, _ in steps]
    assert [t.observation for t in record.turns] == [r[0] for _, r in steps]
    assert [t.reward_components for t in record.turns] == [r[4]["reward_components"] for _, r in steps]
    assert record.turns[0].tool_calls[0]["name"] == "search" and record.turns[0].tool_calls[0]["status"] == "ok"
    assert record.turns[0].observation.startswith("<information>")
    assert record.reward == pytest.approx(sum(r[1] for _, r in steps))
    assert record.reward_components == pytest.approx(steps[-1][1][4]["episode_reward_components"])
    assert record.metrics == steps[-1][1][4]["metrics"] and record.end_reason == "answer"
    assert record.terminated and not record.truncated and record.success and not record.unfinished


def test_a_cut_episode_ends_with_a_turn_the_model_did_not_take(qa_env):
    record = play_actions(qa_env, [SEARCH], seed=2, source={"kind": "test"})
    assert [t.action for t in record.turns] == [SEARCH, None]
    assert record.end_reason == "budget" and record.truncated and record.unfinished
    assert record.turns[-1].reward_components["unfinished"] < 0
    assert record.metrics["unfinished"] == 1.0 and record.success is False
    assert record.responses == [SEARCH]


def test_round_trip_through_jsonl_and_concurrent_appends(qa_env, tmp_path):
    record = play_actions(qa_env, [SEARCH, "<answer>x</answer>"], seed=0, source={"kind": "test", "n": 0})
    assert EpisodeRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    path = tmp_path / "episodes.jsonl"
    writers = [subprocess.Popen([sys.executable, "-c", _APPEND_MANY, str(path), json.dumps(record.to_dict()), str(w)])
               for w in range(4)]
    assert [w.wait(timeout=120) for w in writers] == [0] * 4
    lines = path.read_text().splitlines()
    assert len(lines) == 4 * 25 and all(json.loads(line)["turns"] for line in lines)  # no interleaved lines
    assert sorted(r.source["writer"] for r in read_episode_records(path)) == sorted(w for w in range(4) for _ in range(25))


_APPEND_MANY = """
import json, sys
from envs.core.records import append_episode_records
path, data, writer = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
for _ in range(25):
    append_episode_records(path, [{**data, "source": {"writer": writer}}])
"""


def test_evaluate_items_old_and_new_are_read(tmp_path):
    old = {"index": 3, "item": {"question": "q?", "answer": "4"}, "num_correct": 1, "pass@1": 0.5, "success_metric": "acc",
           "samples": [{"responses": ["<tool_call>x</tool_call>", "\\boxed{4}"], "reward": 1.1, "correct": True,
                        "response_tokens": 12, "metrics": {"acc": 1.0, "turns": 1.0}, "reward_components": {"answer": 1.0, "format": 0.1}},
                       {"responses": ["\\boxed{5}"], "reward": 0.1, "correct": False, "response_tokens": 4,
                        "metrics": {"acc": 0.0}, "reward_components": {"format": 0.1}}]}
    new_sample = EpisodeRecord(prompt=[{"role": "user", "content": "q?"}], turns=[TurnRecord("\\boxed{4}", "", 1.0, {"answer": 1.0})],
                               metrics={"acc": 1.0}, end_reason="answer", terminated=True, correct=True).to_dict()
    del new_sample["item"]
    new = {"index": 4, "item": {"question": "q2?"}, "samples": [new_sample]}
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps(old) + "\n" + json.dumps(new) + "\n{\"truncated line")
    records = list(read_episode_records(path))
    assert [r.source["index"] for r in records] == [3, 3, 4] and [r.source["sample"] for r in records] == [0, 1, 0]
    assert records[0].responses == ["<tool_call>x</tool_call>", "\\boxed{4}"] and records[0].reward == pytest.approx(1.1)
    assert records[0].reward_components == {"answer": 1.0, "format": 0.1} and records[0].end_reason == "answer"
    assert [r.success for r in records] == [True, False, True]
    assert records[1].item == {"question": "q?", "answer": "4"} and records[2].item == {"question": "q2?"}
    path.write_text(json.dumps({"index": 1, "samples": [{"no": "turns"}]}) + "\n")
    with pytest.raises(DataError, match=r"items.jsonl:1"):
        list(read_episode_records(path))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(), min_size=1, max_size=4), st.dictionaries(st.text(min_size=1), st.floats(allow_nan=False), max_size=3))
def test_any_text_round_trips(actions, components):
    record = EpisodeRecord(prompt=[{"role": "user", "content": actions[0]}],
                           turns=[TurnRecord(a, a[::-1], 0.5, components) for a in actions], item={"q": actions[-1]})
    line = json.dumps(record.to_dict(), ensure_ascii=False)
    assert EpisodeRecord.from_dict(json.loads(line)) == record
