"""Episode labels, prompt iteration and the env pool shared by the trainer adapters."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.episodes import EnvPool, EpisodeSpec, episode_log_keys, iter_episode_specs

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
