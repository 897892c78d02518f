"""The learning benchmark's figures: last-number reading, per-run metrics from evaluation records, the
before/after table, and resuming a (task, seed) without redoing finished stages."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def learning():
    spec = importlib.util.spec_from_file_location("learning_benchmark", ROOT / "benchmarks" / "learning.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


@given(st.text(max_size=40), st.integers(-10**6, 10**6))
def test_last_number_is_the_last_one_written(learning, prefix, number):
    text = f"{prefix} so the answer is \\boxed{{{number:,}}}."
    assert learning.last_number(text) == str(number)


def test_last_number_of_text_without_numbers(learning):
    assert learning.last_number("no digits here") is None
    assert learning.last_number("") is None


def _sample(responses, correct, metrics):
    return {"responses": responses, "correct": correct, "response_tokens": 10, "metrics": metrics}


def _write_items(path: Path, records) -> Path:
    path.mkdir(parents=True)
    (path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_arithmetic_metrics_tell_the_box_from_the_skill(learning, tmp_path):
    def record(problem, answer, reply, correct, boxed):
        return {"item": {"question": f"Compute {problem}.", "answer": answer, "problem": problem},
                "samples": [_sample([reply], correct, {"format": float(boxed)})]}

    records = [record("3 + 4", "7", "3 + 4 is 7", False, False),  # the right sum, unboxed
               record("4 + 5", "9", "\\boxed{9}", True, True),
               record("4 + 5", "9", "\\boxed{8}", False, True),  # boxed, wrong
               record("1 + 1", "2", "I cannot", False, False)]  # no number at all
    m = learning.eval_metrics(_write_items(tmp_path / "eval", records), "arithmetic")
    assert m["acc"] == 0.25 and m["last_number_acc"] == 0.5 and m["format"] == 0.5
    assert m["distinct_boxed"] == 2.0 and m["problems"] == 3.0 and m["items"] == 4.0


def test_qa_metrics_count_searching_episodes(learning, tmp_path):
    searched = {"turns": 1.0, "retrieval_recall": 1.0, "em": 1.0, "f1": 1.0, "format": 1.0}
    guessed = {"turns": 0.0, "em": 0.0, "f1": 0.5, "format": 1.0}
    records = [{"item": {}, "samples": [_sample(["<search>x</search>", "<answer>y</answer>"], True, searched)]},
               {"item": {}, "samples": [_sample(["<answer>z</answer>"], False, guessed)]}]
    m = learning.eval_metrics(_write_items(tmp_path / "eval", records), "qa")
    assert m["search_share"] == 0.5 and m["retrieval_recall"] == 1.0  # recall over the episodes that searched
    assert m["acc"] == 0.5 and m["em"] == 0.5 and m["f1"] == 0.75


def _result(task, seed, start, end):
    return {"task": task, "seed": seed, "steps": 10, "rollouts_per_step": 32, "train_seconds": 600.0,
            "untouched": {"acc": 0.0}, "start": {"acc": start, "items": 200.0},
            "end": {"acc": end, "items": 200.0}}


def test_report_rows_and_the_worst_seed(learning):
    table = learning.report([_result("arith1", 0, 0.0, 0.9), _result("arith1", 1, 0.1, 0.5)])
    lines = table.splitlines()
    assert len(lines) == 2 + 2 + 1  # header, rule, two seeds, the mean
    assert "| 0.900 | +0.900 |" in lines[2] and "| 0.500 | +0.400 |" in lines[3]
    assert "mean of 2" in lines[4] and "| 0.700 | +0.650 (worst seed +0.400) |" in lines[4]


def test_a_finished_run_is_reported_not_redone(learning, tmp_path, monkeypatch):
    seed_dir = tmp_path / "arith1" / "seed0"
    seed_dir.mkdir(parents=True)
    done = {**_result("arith1", 0, 0.0, 0.9), "final": "ckpt", "start_model": "smollm2-135m", "budget_s": 60.0,
            "max_steps": None}
    (seed_dir / "result.json").write_text(json.dumps(done))

    def fail(*args, **kwargs):
        raise AssertionError("a finished stage ran again")

    monkeypatch.setattr(learning, "run_evaluation", fail)
    monkeypatch.setattr(learning, "train", fail)
    again = learning.run_task_seed(learning.TASKS["arith1"], 0, tmp_path, items=200, backend="hf", budget_s=60.0,
                                   steps=None, extra={})
    assert again["end"]["acc"] == 0.9
    assert [r["seed"] for r in learning.collect(tmp_path)] == [0]


def test_a_new_budget_trains_on_and_evaluates_again(learning, tmp_path, monkeypatch):
    seed_dir = tmp_path / "arith1" / "seed0"
    seed_dir.mkdir(parents=True)
    done = {**_result("arith1", 0, 0.0, 0.9), "final": "ckpt", "start_model": "smollm2-135m", "budget_s": 60.0}
    (seed_dir / "result.json").write_text(json.dumps(done))
    calls = []
    monkeypatch.setattr(learning, "train", lambda *a, **k: calls.append("train") or
                        {"final": "ckpt2", "steps": 20, "train_seconds": 120.0, "rollouts_per_step": 32})
    monkeypatch.setattr(learning, "run_evaluation", lambda task, model, out, **k: calls.append(model) or
                        {"acc": 0.95, "items": 200.0})
    again = learning.run_task_seed(learning.TASKS["arith1"], 0, tmp_path, items=200, backend="hf", budget_s=120.0,
                                   steps=None, extra={})
    assert calls == ["train", "ckpt2"] and again["end"]["acc"] == 0.95 and again["steps"] == 20
    assert json.loads((seed_dir / "result.json").read_text())["budget_s"] == 120.0


def test_a_lower_step_cap_than_a_run_trained_is_refused(learning, tmp_path):
    seed_dir = tmp_path / "arith1" / "seed0"
    seed_dir.mkdir(parents=True)
    done = {**_result("arith1", 0, 0.0, 0.9), "final": "ckpt", "start_model": "smollm2-135m", "budget_s": 60.0,
            "max_steps": None}
    (seed_dir / "result.json").write_text(json.dumps(done))
    with pytest.raises(SystemExit, match="already trained 10 steps"):
        learning.run_task_seed(learning.TASKS["arith1"], 0, tmp_path, items=200, backend="hf", budget_s=60.0,
                               steps=5, extra={})


def test_every_task_makes_its_env_and_its_warm_up_on_both_splits(learning):
    """A task (a recipe included) that cannot make its env or warm up must fail here, not an hour into a run."""
    import inspect

    import envs
    from baselines.warmup import warm_up

    for task in learning.TASKS.values():
        for split in ("train", "test"):
            env = envs.make(task.env, split=split, **task.env_kwargs)
            env.reset(seed=0)
            env.close()
        if task.warmup is not None:
            inspect.signature(warm_up).bind(learning.MODEL, task.env, task.env_kwargs, "out", **task.warmup)
        order = list(learning.TASKS)
        if task.start is not None:  # the task it starts from runs first
            assert order.index(task.start) < order.index(task.name)
