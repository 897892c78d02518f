"""Episode labels, prompt iteration and the env pool shared by the trainer adapters."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.episodes import (DEFAULT_PROCEDURAL_PROMPTS, PRESET_MODELS, EnvPool, EpisodeSpec, add_episode_arguments,
                               episode_log_keys, evaluation_make_kwargs, is_procedural, iter_episode_specs, make_env,
                               paper_recipe, policy_model, prompt_count, resolve_make_kwargs, training_make_kwargs)
from envs.core.data import DataError

json_values = st.recursive(st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False, allow_infinity=False)
                           | st.text(max_size=40), lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@settings(max_examples=100, deadline=None)
@given(item=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
       kwargs=st.dictionaries(st.text(max_size=10), json_values, max_size=3), seed=st.none() | st.integers(0, 2**31))
def test_label_round_trip(item, kwargs, seed):
    spec = EpisodeSpec("AgentR1/Arithmetic-v0", item, kwargs, seed)
    label = spec.to_label()
    assert EpisodeSpec.from_label(label) == spec
    assert EpisodeSpec.from_label(json.loads(label)) == spec


def test_labels_refuse_what_json_cannot_carry():
    with pytest.raises(ValueError, match="JSON"):
        EpisodeSpec("x", {"answer": {1, 2}}).to_label()
    with pytest.raises(ValueError, match="JSON"):
        EpisodeSpec("x", {"answer": float("nan")}).to_label()
    for bad in ["[]", '{"item": {}}', '{"env_id": "x", "item": 3}', '{"v": 99, "env_id": "x", "item": {}}']:
        with pytest.raises(ValueError):
            EpisodeSpec.from_label(bad)


def test_procedural_env_specs_are_deterministic_and_need_a_count():
    first = [s for s, _ in iter_episode_specs("arithmetic", count=5, seed=3)]
    again = [s for s, _ in iter_episode_specs("AgentR1/Arithmetic-v0", count=5, seed=3)]
    assert first == again and len({json.dumps(s.item, sort_keys=True) for s in first}) == 5
    shifted = [s for s, _ in iter_episode_specs("arithmetic", count=3, seed=3, start=2)]
    assert [s.item for s in shifted] == [s.item for s in first[2:5]]
    with pytest.raises(ValueError, match="count"):
        list(iter_episode_specs("arithmetic"))


def test_log_keys_cover_base_metrics_env_metrics_and_components():
    metrics, components = episode_log_keys("arithmetic-v0")
    assert metrics[:2] == ["acc", "format"] and "answered" in metrics
    assert {"answer", "format", "tool_call_valid", "invalid_action"} <= set(components)


def test_pool_reuses_released_envs_per_kwargs():
    pool = EnvPool(max_idle_per_key=1)
    a = pool.acquire("arithmetic", {"digits": 2})
    b = pool.acquire("arithmetic", {"digits": 2})
    assert a is not b
    pool.release("arithmetic", {"digits": 2}, a)
    pool.release("arithmetic", {"digits": 2}, b)  # over the idle limit: closed, not kept
    assert pool.acquire("arithmetic", {"digits": 2}) is a
    assert pool.acquire("arithmetic", {"digits": 3}) is not a
    pool.close()


def test_a_pooled_env_whose_first_reset_failed_plays_its_next_episode():
    # A bad item fails an agent's first reset; the env goes back to the pool and the next agent plays it.
    # Gymnasium's passive env checker (on by default in gym.make) would then crash that episode's first
    # step with a TypeError: it records the reset's data only on the first reset, which raised.
    pool = EnvPool()
    env = pool.acquire("arithmetic", {})
    with pytest.raises(DataError):
        env.reset(seed=0, options={"item": {"not": "an arithmetic item"}})
    pool.release("arithmetic", {}, env)
    env = pool.acquire("arithmetic", {})
    env.reset(seed=0)
    for action in env.unwrapped.demonstration():
        _, reward, terminated, truncated, info = env.step(action)
    assert terminated and info["metrics"]["acc"] == 1.0
    pool.close()


# --- what the trainer CLIs share: make-kwargs, procedural detection, recipe and data split ---

QA_OFFLINE = {"data_path": "sample", "corpus": "sample", "retriever": "bm25"}
# The paper recipe of every env the suite registers (an env missing here must train with no paper's recipe).
PAPER_RECIPES = {
    "AgentR1/Math-v0": "open-rs", "AgentR1/MATH500-v0": "open-rs", "AgentR1/AIME24-v0": "open-rs",
    "AgentR1/AMC23-v0": "open-rs", "AgentR1/Minerva-v0": "open-rs", "AgentR1/OlympiadBench-v0": "open-rs",
    "AgentR1/GSM8K-v0": "open-rs", "AgentR1/HotpotQA-v0": "agent-r1-qa", "AgentR1/2WikiMultihopQA-v0": "agent-r1-qa",
    "AgentR1/Musique-v0": "agent-r1-qa", "AgentR1/Arithmetic-v0": None,
}


def test_offline_make_kwargs_start_from_the_registered_ones_and_env_kwargs_win():
    assert resolve_make_kwargs("hotpotqa-v0", {}, offline=True) == QA_OFFLINE
    assert resolve_make_kwargs("AgentR1/HotpotQA-v0", {"retriever": "http", "top_k": 3}, offline=True) == {
        **QA_OFFLINE, "retriever": "http", "top_k": 3}
    assert resolve_make_kwargs("hotpotqa-v0", {"split": "train"}) == {"split": "train"}  # online: only what was given
    assert resolve_make_kwargs("math-v0", None, offline=True) == {"dataset": "sample"}
    with pytest.raises(SystemExit, match="JSON object"):
        resolve_make_kwargs("math-v0", ["split", "train"])  # type: ignore[arg-type]


def test_offline_is_refused_for_an_env_without_shipped_data(monkeypatch):
    import envs
    from envs.core.registry import SuiteEntry

    monkeypatch.setattr(envs, "suite_envs", lambda: [SuiteEntry("AgentR1/Math-v0", ("math-v0",), "", None)])
    with pytest.raises(SystemExit, match="no offline mode"):
        resolve_make_kwargs("math-v0", {}, offline=True)
    assert resolve_make_kwargs("math-v0", {"dataset": "sample"}) == {"dataset": "sample"}


def test_procedural_detection_and_prompt_counts():
    assert is_procedural("arithmetic-v0") and is_procedural("AgentR1/Arithmetic-v0", {"digits": 2})
    assert not is_procedural("math-v0", {"dataset": "sample"})
    assert not is_procedural("hotpotqa-v0", QA_OFFLINE)
    assert prompt_count("arithmetic-v0", {}, None) == DEFAULT_PROCEDURAL_PROMPTS
    assert prompt_count("arithmetic-v0", {}, None, procedural_default=7) == 7
    assert prompt_count("arithmetic-v0", {}, 3) == 3
    assert prompt_count("math-v0", {"dataset": "sample"}, None) is None  # every item
    assert prompt_count("math-v0", {"dataset": "sample"}, 5) == 5


def test_every_registered_env_has_its_paper_recipe():
    import envs

    registered = {e.env_id: e for e in envs.suite_envs()}
    assert set(PAPER_RECIPES) <= set(registered)
    for env_id, entry in registered.items():
        expected = PAPER_RECIPES.get(env_id)
        assert paper_recipe(env_id) == expected, env_id
        for alias in entry.aliases:
            assert paper_recipe(alias) == expected, alias
    assert paper_recipe("AgentR1/MathChat-v0") is None and paper_recipe("Other/HotpotQA-v0") is None
    assert paper_recipe("agentr1/hotpotqa-v1") == "agent-r1-qa"  # a later version, not registered here


def test_the_qa_recipe_trains_on_train_unless_env_kwargs_name_a_split():
    assert training_make_kwargs("hotpotqa-v0", "agent-r1-qa", {}, offline=True) == {**QA_OFFLINE, "split": "train"}
    assert training_make_kwargs("musique-v0", "agent-r1-qa", {"split": "validation"})["split"] == "validation"
    assert training_make_kwargs("hotpotqa-v0", "open-rs", {}) == {}  # no recipe split: the env's default
    assert training_make_kwargs("hotpotqa-v0", None, {"top_k": 2}) == {"top_k": 2}
    # an env is handed a recipe split only if it has it: arithmetic has train/test splits, no validation
    assert training_make_kwargs("arithmetic-v0", "agent-r1-qa", {"digits": 2}) == {"split": "train", "digits": 2}
    assert evaluation_make_kwargs("arithmetic-v0", "agent-r1-qa", {"digits": 2}) is None
    assert evaluation_make_kwargs("hotpotqa-v0", "agent-r1-qa", {**QA_OFFLINE, "split": "train"}) == {
        **QA_OFFLINE, "split": "validation"}
    assert evaluation_make_kwargs("math-v0", "open-rs", {"dataset": "sample"}) is None
    assert evaluation_make_kwargs("arithmetic-v0", "agent-r1-qa", {}) is None
    # the shipped sample has no splits: both splits read it, so offline runs work with the recipe's split
    specs = [s for s, _ in iter_episode_specs("hotpotqa-v0", training_make_kwargs("hotpotqa-v0", "agent-r1-qa", {},
                                                                                    offline=True), count=2)]
    assert len(specs) == 2 and all(s.make_kwargs["split"] == "train" for s in specs)


def test_common_cli_arguments():
    import argparse

    parser = add_episode_arguments(argparse.ArgumentParser(), "demo", presets=["b", "a"])
    ns = parser.parse_args(["--env", "hotpotqa-v0", "--model", "m", "--env-kwargs", '{"split": "train"}', "--offline",
                            "--num-prompts", "3"])
    assert ns.env_kwargs == {"split": "train"} and ns.offline and ns.num_prompts == 3 and ns.seed == 42
    assert ns.preset is None and ns.output_dir is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--env", "x", "--model", "m", "--preset", "c"])
    assert "runs/demo/<env>" in parser.format_help()
    assert parser.parse_args(["--env", "x"]).model is None  # the preset's model (policy_model)


def test_every_preset_trains_its_papers_model_unless_model_is_given(caplog):
    import logging

    from adapters.openrlhf.presets import PRESETS as OPENRLHF
    from adapters.trl.__main__ import PRESETS as TRL
    from adapters.verl.__main__ import PRESETS as VERL

    assert set(OPENRLHF) | set(TRL) | set(VERL) <= set(PRESET_MODELS)  # no trainer preset without a default policy
    assert PRESET_MODELS["open-rs"] == "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    assert PRESET_MODELS["agent-r1-qa"] == "Qwen/Qwen2.5-1.5B-Instruct"
    with caplog.at_level(logging.INFO, logger="adapters.episodes"):
        assert policy_model(None, "open-rs") == "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
        assert policy_model("runs/mine", "open-rs") == "runs/mine"
    assert "model deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B (the open-rs preset's default" in caplog.text
    assert "model runs/mine (--model)" in caplog.text
    with pytest.raises(SystemExit, match="names no model"):
        policy_model(None, "someone-elses")


def test_the_torl_recipe_and_the_reference_trainer_preset_agree():
    from adapters.episodes import TORL_MAKE_KWARGS
    from baselines.grpo.config import make_config

    preset = dict(make_config("torl").env_kwargs)
    assert preset.pop("dataset") == "open-rs" and preset == TORL_MAKE_KWARGS
    kwargs = training_make_kwargs("AgentR1/Math-v0", "torl", {"dataset": "sample"})
    assert kwargs["tools"] == ["python"] and kwargs["reward_preset"] == "torl" and kwargs["dataset"] == "sample"
    env = make_env("AgentR1/Math-v0", kwargs)
    try:
        prompt, info = env.reset(seed=0)
        assert "```python" in prompt and [t["function"]["name"] for t in info["tools"]] == ["python"]
        observation, *_ = env.step("```python\nprint(1/0)\n```")
        assert observation == "```output\nZeroDivisionError: division by zero\n```"  # ToRL shows the last line
    finally:
        env.close()
