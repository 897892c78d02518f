"""The evaluation CLI on CPU with the tiny model, and the pass@k estimator."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baselines.evaluate import k_values, pass_at_k, summarize
from envs.core.records import read_episode_records


def test_pass_at_k_by_hand():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)
    assert pass_at_k(5, 4, 2) == 1.0
    assert pass_at_k(4, 0, 4) == 0.0
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


@given(st.integers(1, 30).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_matches_sampling_without_replacement(args):
    n, c, k = args
    expected = 1.0 - (math.comb(n - c, k) / math.comb(n, k))
    value = pass_at_k(n, c, k)
    assert value == pytest.approx(expected)
    assert 0.0 <= value <= 1.0
    if k > 1:
        assert value >= pass_at_k(n, c, k - 1) - 1e-12


def test_k_values():
    assert k_values(1) == [1]
    assert k_values(6) == [1, 2, 4, 6]
    assert k_values(8) == [1, 2, 4, 8]


def test_summary_means_and_pass_rates():
    records = [
        {"num_correct": 1, "samples": [{"metrics": {"acc": 1.0}, "reward": 1.0, "response_tokens": 4},
                                       {"metrics": {"acc": 0.0}, "reward": 0.0, "response_tokens": 6}]},
        {"num_correct": 0, "samples": [{"metrics": {"acc": 0.0}, "reward": 0.5, "response_tokens": 2},
                                       {"metrics": {"acc": 0.0}, "reward": 0.5, "response_tokens": 4}]},
    ]
    s = summarize(records, 2)
    assert s["pass@1"] == pytest.approx(0.25) and s["pass@2"] == pytest.approx(0.5)
    assert s["mean"]["acc"] == pytest.approx(0.25) and s["mean"]["response_tokens"] == pytest.approx(4.0)


def test_cli_writes_items_and_summary(tiny_model_dir, tmp_path, capsys):
    from baselines.evaluate import main

    out = tmp_path / "eval"
    code = main(["--env", "arithmetic-v0", "--model", str(tiny_model_dir), "--samples", "3", "--limit", "4",
                 "--max-new-tokens", "12", "--output-dir", str(out),
                 "--env-kwargs", '{"digits": 1, "num_operations": 1, "operations": "+", "calculator": false}'])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.startswith("| env | model | items | samples | pass@1 | pass@2 | pass@3 |")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["items"] == 4 and summary["samples"] == 3
    assert {"pass@1", "pass@2", "pass@3"} <= set(summary)
    assert 0.0 <= summary["pass@1"] <= summary["pass@3"] <= 1.0
    assert summary["sampling"]["temperature"] == 0.6  # several samples and no env recommendation
    lines = (out / "items.jsonl").read_text().splitlines()
    assert len(lines) == 4
    rec = json.loads(lines[0])
    assert rec["index"] == 0 and len(rec["samples"]) == 3 and rec["item"]["answer"]
    assert rec["pass@1"] == pytest.approx(rec["num_correct"] / 3)
    # each sample is an episode record (envs.core.records): the conversation, per-turn components
    episodes = list(read_episode_records(out / "items.jsonl"))
    assert len(episodes) == 12 and {e.source["kind"] for e in episodes} == {"evaluate"}
    for episode, sample in zip(episodes[:3], rec["samples"], strict=True):
        assert episode.prompt[-1]["role"] == "user" and episode.item == rec["item"]
        assert episode.correct == sample["correct"] and episode.reward == pytest.approx(sample["reward"])
        assert episode.turns[0].action and sum(t.reward for t in episode.turns) == pytest.approx(sample["reward"])
        assert episode.response_tokens == sample["response_tokens"] > 0
        assert episode.responses == sample["responses"]  # the field older readers use
    assert (out / "summary.md").read_text().startswith("| env |")
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_cli_uses_the_math_protocol_offline(tiny_model_dir, tmp_path):
    from baselines.evaluate import build_parser, evaluate

    args = build_parser().parse_args(["--env", "AgentR1/AIME24-v0", "--offline", "--model", str(tiny_model_dir),
                                      "--limit", "2", "--max-new-tokens", "8", "--output-dir", str(tmp_path)])
    summary = evaluate(args)
    assert summary["sampling"]["temperature"] == 0.6 and summary["sampling"]["top_p"] == 0.95
    assert summary["items"] == 2 and "acc" in summary["mean"]
    # Open-RS's lighteval protocol: a 32,768-token context (the flag above only shortened each turn)
    assert summary["max_episode_tokens"] == 32768 and "Open-RS" in summary["protocol"]


def test_protocols_follow_the_papers():
    import envs
    from baselines.evaluate import protocol_for

    def entry(env_id):
        return next(e for e in envs.suite_envs() if e.env_id == env_id)

    math_env = envs.make("AgentR1/MATH500-v0", **entry("AgentR1/MATH500-v0").offline_kwargs)
    qa_env = envs.make("AgentR1/HotpotQA-v0", **entry("AgentR1/HotpotQA-v0").offline_kwargs)
    try:
        assert {k: protocol_for(math_env)[k] for k in ("temperature", "top_p", "max_new_tokens")} == {
            "temperature": 0.6, "top_p": 0.95, "max_new_tokens": 32768}
        qa = protocol_for(qa_env)
        assert qa["temperature"] == 0.0 and qa["max_new_tokens"] == 1024 and qa["max_episode_tokens"] == 8192
        assert protocol_for(envs.make("AgentR1/Arithmetic-v0")) == {}
    finally:
        math_env.close()
        qa_env.close()


def test_success_metric_is_fixed_per_run_when_a_first_sample_is_cut(tiny_model_dir, tmp_path, monkeypatch):
    """A sample cut at the token budget reports no ``em``: it must neither switch its item to ``acc``
    nor drop out of the ``em`` / ``f1`` means."""
    from baselines.evaluate import build_parser, evaluate
    from baselines.grpo import rollout
    from baselines.grpo.rollout import Episode
    from envs.core.records import EpisodeRecorder

    def scripted_run(generator, chat, envs, resets, groups, sampling, max_episode_tokens):
        episodes = []
        for i, group in enumerate(groups):
            ep = Episode(group=group, prompt_ids=[1], log=EpisodeRecorder({"messages": [{"role": "user", "content": "q"}]}))
            if i == 0:  # the first sample of the first item ran out of tokens
                ep.cut = True
                rollout._record(ep, -0.1, {"metrics": {"acc": 0.0, "format": 0.0, "truncated": 1.0}}, action=None,
                                truncated=True)
            else:  # cover-EM hit, exact match miss
                rollout._record(ep, 0.5, {"metrics": {"acc": 1.0, "em": 0.0, "f1": 0.5, "format": 1.0}}, action="a",
                                terminated=True)
            ep.done = True
            episodes.append(ep)
        return episodes

    monkeypatch.setattr(rollout, "run_episodes", scripted_run)
    args = build_parser().parse_args(["--env", "arithmetic-v0", "--model", str(tiny_model_dir), "--samples", "2",
                                      "--limit", "2", "--output-dir", str(tmp_path)])
    summary = evaluate(args)
    assert summary["success_metric"] == "em"
    assert summary["pass@1"] == 0.0 and summary["pass@2"] == 0.0
    assert summary["mean"]["em"] == 0.0 and summary["mean"]["f1"] == pytest.approx(0.5 * 3 / 4)
    assert summary["mean"]["acc"] == pytest.approx(3 / 4)
    records = [json.loads(line) for line in (tmp_path / "items.jsonl").read_text().splitlines()]
    assert [r["success_metric"] for r in records] == ["em", "em"] and [r["num_correct"] for r in records] == [0, 0]
