"""``AgentR1/Remote-v0`` against one server hosting every offline env: the conformance kit, local parity, vectors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.remote import RemoteEnv, RemoteEnvError
from envs.testing import ADVERSARIAL_ACTIONS, check_env_conformance

OFFLINE = {e.env_id: dict(e.offline_kwargs) for e in envs.suite_envs() if e.offline_kwargs is not None}
# The full kit where it is fast; the math ids spend it on math-verify's worst inputs, which the env's own
# tests run locally, so over the wire they (and the ids that share a class) get the inputs that stress
# the transport: huge, binary, NUL and surrogates, emoji, deep nesting.
FULL_KIT = {"AgentR1/Arithmetic-v0", "AgentR1/HotpotQA-v0"}
WITH_CHECKER = {"AgentR1/Math-v0", "AgentR1/MATH500-v0", "AgentR1/Musique-v0"}
WIRE_STRESS = tuple(a for a in ADVERSARIAL_ACTIONS if len(a) >= 100_000 or "\x00" in a or "\ud800" in a)[:6]


@pytest.fixture(scope="module")
def server(module_server_factory):
    return module_server_factory(*OFFLINE, "--offline", "--max-sessions", "256")


def remote(server, env_id: str, **kwargs) -> gym.Env:
    return gym.make("AgentR1/Remote-v0", url=server.url, env_id=env_id, **kwargs)


@pytest.mark.parametrize("env_id", sorted(OFFLINE))
def test_conformance_kit_over_the_wire(server, env_id):
    kwargs = {"url": server.url, "env_id": env_id}
    if env_id in FULL_KIT:
        report = check_env_conformance("AgentR1/Remote-v0", make_kwargs=kwargs)
    else:
        report = check_env_conformance("AgentR1/Remote-v0", make_kwargs=kwargs, seeds=(0,),
                                       adversarial_actions=(*WIRE_STRESS, ""),
                                       run_gymnasium_checker=env_id in WITH_CHECKER)
    assert "golden answer" in report.checks and report.golden_return > 0


@pytest.mark.parametrize("env_id", sorted(OFFLINE))
def test_remote_plays_exactly_like_local(server, env_id):
    local, far = gym.make(env_id, **OFFLINE[env_id]), remote(server, env_id)
    try:
        for seed in (0, 3):
            a, b = local.reset(seed=seed), far.reset(seed=seed)
            assert a == b
            actions = ["<tool_call>{\"name\": \"search\", \"arguments\": {\"query\": \"founder\"}}</tool_call>",
                       "😀 \\boxed{", *local.unwrapped.demonstration()]
            assert far.unwrapped.demonstration() == actions[2:]
            for action in actions:
                step_local, step_far = local.step(action), far.step(action)
                assert step_local == step_far
                if step_local[2] or step_local[3]:
                    break
    finally:
        local.close()
        far.close()


def test_remote_renders_like_local(server, capsys):
    env_id = "AgentR1/Arithmetic-v0"
    local = gym.make(env_id, render_mode="ansi", **OFFLINE[env_id])
    far = remote(server, env_id, render_mode="ansi")
    human = remote(server, env_id, render_mode="human")
    try:
        for env in (local, far, human):
            env.reset(seed=2)
            env.step(local.unwrapped.demonstration()[0])
        text = local.render()
        assert text and "[assistant]" in text and far.render() == text
        capsys.readouterr()  # "human" mode may also print on reset/step; what render() itself prints is checked
        assert human.render() is None and capsys.readouterr().out == text + "\n"
    finally:
        for env in (local, far, human):
            env.close()


def test_options_item_index_and_data_errors_travel(server):
    env = remote(server, "math-v0")
    item = {"problem": "What is 6 times 7?", "answer": "42"}
    local = gym.make("AgentR1/Math-v0", **OFFLINE["AgentR1/Math-v0"])
    try:
        assert env.reset(options={"item": item}) == local.reset(options={"item": item})
        _, reward, terminated, _, info = env.step("\\boxed{42}")
        assert terminated and info["metrics"]["acc"] == 1.0 and reward > 0
        assert env.reset(options={"index": 2})[1]["item"] == local.reset(options={"index": 2})[1]["item"]
        with pytest.raises(envs.DataError):
            env.reset(options={"item": {"problem": "no answer"}})
        with pytest.raises(IndexError):
            env.reset(options={"index": 10_000})
    finally:
        env.close()
        local.close()


def test_misuse_raises_what_the_local_env_raises(server):
    env = remote(server, "arithmetic")
    with pytest.raises(gym.error.ResetNeeded):
        env.step("1")
    env.reset(seed=0)
    *_, info = env.step(env.unwrapped.demonstration()[-1])
    with pytest.raises(gym.error.ResetNeeded):
        env.unwrapped.step("again")
    assert env.unwrapped.state()["step_count"] == 1 and env.unwrapped.state()["terminated"] is True
    env.close()


def test_make_vec_sync_and_async(server):
    for mode in ("sync", "async"):
        vec = gym.make_vec("AgentR1/Remote-v0", num_envs=2, vectorization_mode=mode,
                           url=server.url, env_id="AgentR1/Arithmetic-v0")
        try:
            obs, info = vec.reset(seed=[5, 6])
            local = [gym.make("AgentR1/Arithmetic-v0").reset(seed=s)[0] for s in (5, 6)]
            assert list(obs) == local
            obs, reward, terminated, truncated, info = vec.step(["\\boxed{1}", "\\boxed{2}"])
            assert isinstance(reward, np.ndarray) and reward.shape == (2,) and terminated.all()
        finally:
            vec.close()


def test_server_refuses_other_ids_and_kwargs_with_a_clear_error(server):
    with pytest.raises(RemoteEnvError, match="does not serve"):
        RemoteEnv(server.url, env_id="AgentR1/NoSuchEnv-v0")
    key, value = next(iter(OFFLINE["AgentR1/Math-v0"].items()))
    with pytest.raises(RemoteEnvError, match=f"differs in {key}"):
        RemoteEnv(server.url, env_id="AgentR1/Math-v0", env_kwargs={key: f"not-{value}"})
    env = RemoteEnv(server.url, env_id="math500-v0", env_kwargs=OFFLINE["AgentR1/MATH500-v0"])  # agrees: fine
    assert env.env_id == "AgentR1/MATH500-v0"
    env.close()


def test_sessions_are_freed_when_clients_close(server):
    before = server.active_sessions()
    many = [RemoteEnv(server.url, env_id="arithmetic") for _ in range(8)]
    assert server.active_sessions() == before + 8
    for env in many:
        env.close()
    assert server.active_sessions(expect=before) == before


def test_end_unfinished_is_forwarded(server):
    env_id = "AgentR1/HotpotQA-v0"
    far = remote(server, env_id)
    far.reset(seed=0)
    if not hasattr(envs.TextEnv, "end_unfinished"):  # the TextEnv API lands with branch i9env
        with pytest.raises(NotImplementedError):
            far.unwrapped.end_unfinished("budget")
        far.close()
        return
    local = gym.make(env_id, **OFFLINE[env_id])
    local.reset(seed=0)
    search = '<tool_call>{"name": "search", "arguments": {"query": "founder"}}</tool_call>'
    assert local.step(search) == far.step(search)
    assert far.unwrapped.end_unfinished("budget") == local.unwrapped.end_unfinished("budget")
    with pytest.raises(gym.error.ResetNeeded):
        far.step("after the end")
    far.close()
    local.close()


def test_http_routes_mcp_and_task_api(server):
    default = next(iter(OFFLINE))  # the first env on the command line
    assert server.get("/metadata")["name"] == default
    assert set(server.get("/schema")) == {"action", "observation", "state"}
    assert server.get("/state")["step_count"] == 0
    first = server.post("/reset", {"seed": 0, "options": {"index": 1}})
    local = gym.make(default, **OFFLINE[default])
    prompt, _ = local.reset(seed=0, options={"index": 1})
    assert first["observation"]["text"] == prompt and first["done"] is False
    answer = local.unwrapped.demonstration()[-1]
    scored = server.post("/step", {"action": {"message": answer}, "seed": 0, "options": {"index": 1}})
    assert scored["done"] and scored["observation"]["terminated"] and "metrics" in scored["metadata"]
    tools = server.post("/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"})["result"]["tools"]
    assert [t["name"] for t in tools] == ["search"] and tools[0]["inputSchema"]["required"] == ["query"]
    hit = server.post("/mcp", {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                               "params": {"name": "search", "arguments": {"query": "Velmora Textiles founder"}}})
    assert hit["result"]["isError"] is False and "Doc 1" in hit["result"]["content"][0]["text"]
    bad = server.post("/mcp", {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "search"}})
    assert bad["result"]["isError"] is True  # missing argument: a tool result, as the env would report it
    names = server.get("/list_environments")
    assert "Math-v0" in names and "Arithmetic-v0" in names
    items = local.unwrapped.items
    assert server.get("/HotpotQA-v0/splits")[0]["num_tasks"] == len(gym.make(
        "AgentR1/HotpotQA-v0", **OFFLINE["AgentR1/HotpotQA-v0"]).unwrapped.items)
    assert server.post(f"/{default.split('/')[-1]}/num_tasks", {"split": "default"}) == {"num_tasks": len(items)}
    assert server.post(f"/{default.split('/')[-1]}/task", {"split": "default", "index": 1})["task"] == items[1]
    assert len(server.post(f"/{default.split('/')[-1]}/task_range", {"start": 0, "stop": 2})["tasks"]) == 2
    assert server.get("/Arithmetic-v0/splits") == []  # procedural: no dataset split
    local.close()


def test_recorded_sessions_match_the_local_episodes(server, tmp_path, monkeypatch):
    """Opt-in recording: every episode a session plays (answered, cut, abandoned) is one record,
    turn for turn what the same actions give locally."""
    from envs.core.records import RECORD_SESSIONS_VARIABLE, play_actions, read_episode_records

    env_id, path = "AgentR1/HotpotQA-v0", tmp_path / "sessions.jsonl"
    search = '<tool_call>{"name": "search", "arguments": {"query": "founder"}}</tool_call>'
    monkeypatch.setenv(RECORD_SESSIONS_VARIABLE, str(path))
    far = envs.make(env_id, env_url=server.url)  # the variable reaches envs made for any CLI's --env-url
    local = gym.make(env_id, **OFFLINE[env_id])
    try:
        far.reset(seed=0)
        plays = [[search, *far.unwrapped.demonstration()], [search]]
        expected = [play_actions(local, plays[0], seed=0), play_actions(local, plays[1], seed=1, options={"index": 1})]
        for action in plays[0]:
            far.step(action)
        far.reset(seed=1, options={"index": 1})  # this one is cut at a budget, as a trainer would
        far.step(search)
        far.unwrapped.end_unfinished("budget")
        far.reset(seed=2)
        far.step(search)  # abandoned: the session closes mid-episode
    finally:
        far.close()
        local.close()
    records = list(read_episode_records(path))
    assert [r.end_reason for r in records] == ["answer", "budget", "abandoned"]
    for got, want in zip(records, expected, strict=False):
        assert [t.to_dict() for t in got.turns] == [t.to_dict() for t in want.turns]
        assert got.metrics == want.metrics and got.prompt == want.prompt
    assert records[0].source["kind"] == "remote" and records[0].source["env"] == env_id
    assert records[0].source["url"].startswith("ws://") and records[1].source["index"] == 1
    assert records[2].turns[0].action == search and not records[2].metrics
    gym.make("AgentR1/Remote-v0", url=server.url, env_id=env_id, record_path=str(tmp_path / "off.jsonl")).close()
    assert not (tmp_path / "off.jsonl").exists()  # nothing played, nothing written
