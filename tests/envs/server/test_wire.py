"""The wire format and frame parsing, without a server."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from envs.remote import ws_url
from envs.server import wire
from envs.server.protocol import parse_action, parse_reset

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
# Text a model can emit and a JSON frame can carry (lone surrogates are not valid UTF-8 text).
frame_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)


@given(text=frame_text, reward=st.floats(allow_nan=False, allow_infinity=False), terminated=st.booleans(),
       truncated=st.booleans(), extra=st.dictionaries(st.text(max_size=8), json_values, max_size=4))
def test_step_results_survive_a_frame_round_trip(text, reward, terminated, truncated, extra):
    info = {**extra, "reward_components": {"outcome": reward}, "new_messages": [{"role": "user", "content": text}]}
    frame = json.loads(wire.frame("observation", wire.observation_data(text, reward, terminated, truncated, info,
                                                                        reset=False)))
    assert frame["type"] == "observation"
    data = frame["data"]
    assert data["done"] == (terminated or truncated)
    assert data["observation"]["messages"] == info["new_messages"]
    assert wire.step_result(data) == (text, reward, terminated, truncated, info)


def test_observation_carries_components_metrics_and_both_flags():
    info = {"messages": [{"role": "user", "content": "q"}], "reward_components": {"format": 0.5},
            "metrics": {"acc": 1.0}}
    reset = wire.observation_data("q", None, False, False, info, reset=True)
    assert reset["reward"] is None and reset["observation"]["messages"] == info["messages"]
    final = wire.observation_data("", 0.5, False, True, info, reset=False)["observation"]
    assert final["metrics"] == {"acc": 1.0} and final["truncated"] and not final["terminated"]
    assert final["metadata"] == info


def test_to_jsonable_keeps_json_and_converts_the_rest():
    value = {"a": (1, 2), "b": {3, 1}, "c": np.float32(0.5), "d": np.int64(7), 4: object, "e": float("inf")}
    out = wire.to_jsonable(value)
    assert out["a"] == [1, 2] and out["b"] == [1, 3] and out["c"] == 0.5 and out["d"] == 7
    assert out["4"].startswith("<class") and out["e"] == float("inf")
    json.dumps(out)


@pytest.mark.parametrize(("data", "expected"), [
    ({}, (None, None, {})),
    ({"seed": 3, "episode_id": "e", "options": {"index": 1}}, (3, "e", {"index": 1})),
    ({"seed": 0, "index": 2}, (0, None, {"index": 2})),  # OpenEnv clients send reset kwargs flat
    ({"options": {"item": {"q": 1}}, "index": 2}, (None, None, {"index": 2, "item": {"q": 1}})),
])
def test_parse_reset(data, expected):
    assert parse_reset(data) == expected


@pytest.mark.parametrize("data", [[1], "x", {"seed": -1}, {"seed": 1.5}, {"seed": True}, {"episode_id": 5},
                                  {"episode_id": "x" * 256}, {"options": [1]}])
def test_parse_reset_refuses_bad_data(data):
    with pytest.raises(ValueError):
        parse_reset(data)


def test_parse_action():
    assert parse_action({"message": "hi"}) == "hi"
    assert parse_action({"message": "", "metadata": {"k": 1}}) == ""
    for bad in ({}, {"message": 1}, {"message": "x", "other": 1}, "x", None, [1]):
        with pytest.raises(ValueError, match="message"):
            parse_action(bad)


@pytest.mark.parametrize(("url", "expected"), [
    ("http://h:8000", "ws://h:8000/ws"), ("https://h/prefix/", "wss://h/prefix/ws"), ("ws://h:1/ws", "ws://h:1/ws"),
    ("h:9", "ws://h:9/ws"), ("http://h:1/envs/Math-v0", "ws://h:1/envs/Math-v0/ws"),
])
def test_ws_url(url, expected):
    assert ws_url(url) == expected


def test_ws_url_refuses_other_schemes():
    with pytest.raises(ValueError):
        ws_url("ftp://h")


def test_serve_command_line_refuses_what_it_cannot_serve(capsys):
    from envs.__main__ import main
    from envs.server.cli import env_table

    import envs

    offline = {e.env_id: e.offline_kwargs for e in envs.suite_envs()}
    brief = {"system_prompt": "Be brief."}
    assert env_table(["math-v0", "hotpotqa"], brief, offline=True) == {
        "AgentR1/Math-v0": {**offline["AgentR1/Math-v0"], **brief},
        "AgentR1/HotpotQA-v0": {**offline["AgentR1/HotpotQA-v0"], **brief}}
    assert env_table(["math-v0"], brief, offline=False) == {"AgentR1/Math-v0": brief}
    assert main(["serve", "no-such-env-v0", "--port", "0"]) == 2
    assert main(["serve", "math-v0", "--env-kwargs", '{"no_such_kwarg": 1}', "--port", "0"]) == 2
    assert "cannot serve" in capsys.readouterr().err
