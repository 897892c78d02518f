"""The python tool in the envs: call forms, state, limits, rewards through the contract, lifetimes."""

import os
import re

import gymnasium as gym
import pytest

import envs  # noqa: F401 - registers the ids
from envs.core.parsing import ToolCall
from envs.core.tools import run_tool
from envs.sandbox.bubblewrap import BubblewrapProvider
from envs.testing import check_env_conformance, check_reward_audit
from envs.tools.python_tool import PythonToolConfig, python_tool

FAST = {"wall_s": 2, "cpu_s": 2, "episode_s": 20}
AUDIT = {"wall_s": 1, "cpu_s": 1, "episode_s": 20}  # the infinite-loop policy waits out every call
# A problem the sympy tool cannot touch (it evaluates expressions; this needs a search), with its answer.
DIGIT_SUM = {"problem": "How many integers from 1 to 10,000 have digits that add up to 20?", "answer": "633"}
FENCE = "`" * 3


def _math(**kwargs):
    return gym.make("AgentR1/Math-v0", items=[DIGIT_SUM], tools=("python",), python={**FAST, **kwargs.pop("python", {})},
                    **kwargs)


def _code(source: str) -> str:
    return f"Let me compute it.\n{FENCE}python\n{source}\n{FENCE}"


def test_a_golden_episode_solves_a_sympy_free_problem_with_code():
    env = _math()
    prompt, info = env.reset(seed=0)
    assert "python" in prompt and [t["function"]["name"] for t in info["tools"]] == ["python"]
    observation, reward, terminated, _, info = env.step(_code(
        "count = 0\nfor n in range(1, 10_001):\n    if sum(int(d) for d in str(n)) == 20:\n        count += 1\nprint(count)"))
    assert not terminated and observation.startswith(f"{FENCE}output\n") and info["tool_calls"][0]["status"] == "ok"
    printed = re.search(r"output\n(\d+)\n", observation).group(1)  # the policy reads the number the code printed
    _, final_reward, terminated, _, info = env.step(f"<think>\nThe program counted them.\n</think>\n\n"
                                                    f"The answer is $\\boxed{{{printed}}}$.")
    assert terminated and info["metrics"]["acc"] == 1.0 and info["metrics"]["tool_calls"] == 1.0
    wrong, _, _ = _play(env, [f"<think>\nGuess.\n</think>\n\nThe answer is $\\boxed{{600}}$."])
    assert reward + final_reward > wrong
    env.close()


def _play(env, actions, seed=0):
    env.reset(seed=seed)
    total, info, observation = 0.0, {}, ""
    for action in actions:
        observation, reward, terminated, truncated, info = env.step(action)
        total += reward
        if terminated or truncated:
            break
    return total, info, observation


def test_both_call_forms_and_what_a_call_shows():
    env = _math()
    env.reset(seed=0)
    observation, *_ = env.step('<tool_call>{"name": "python", "arguments": {"code": "x = [1, 2]\\nprint(len(x))\\nx * 2"}}'
                               "</tool_call>")
    assert observation == "<tool_response>\n2\n[1, 2, 1, 2]\n</tool_response>"  # output, then the last value
    observation, reward, _, _, info = env.step(_code("def f(n):\n    return 1 / n\nf(0)"))
    assert observation.startswith(f"{FENCE}output\nTraceback") and "ZeroDivisionError" in observation
    assert info["reward_components"] == {"tool_error": pytest.approx(-0.05)}  # a code error is the model's
    assert info["tool_calls"][0]["metadata"]["execution"] == "error"
    env.close()


def test_errors_as_their_last_line_and_output_cut_like_torl():
    env = _math(python={"errors": "last_line", "max_output_chars": 64})
    env.reset(seed=0)
    observation, *_ = env.step(_code("import math\nmath.sqrt(-1)"))
    assert observation == f"{FENCE}output\nValueError: math domain error\n{FENCE}"
    observation, *_ = env.step(_code("print('a' * 1000 + 'END')"))
    assert observation.count("a") <= 64 and observation.rstrip(f"`\n").endswith("END") and "output cut" in observation
    env.close()


def test_fresh_state_by_default_and_a_notebook_when_persistent():
    fresh, notebook = _math(), _math(python={"persistent": True})
    for env in (fresh, notebook):
        env.reset(seed=0)
        env.step(_code("x = 21"))
    assert "NameError" in fresh.step(_code("print(x * 2)"))[0]
    assert notebook.step(_code("print(x * 2)"))[0] == f"{FENCE}output\n42\n{FENCE}"
    notebook.reset(seed=0)  # a new episode: a new interpreter
    assert "NameError" in notebook.step(_code("print(x)"))[0]
    fresh.close(), notebook.close()


def test_an_infinite_loop_costs_a_tool_error_and_the_episode_budget_refuses_more():
    env = _math(python={"wall_s": 1, "episode_s": 1.5})
    env.reset(seed=0)
    observation, reward, _, _, info = env.step(_code("while True:\n    pass"))
    assert "time limit" in observation and info["tool_calls"][0]["status"] == "timeout" and reward == pytest.approx(-0.05)
    env.step(_code("import time\ntime.sleep(5)"))
    observation, _, _, _, info = env.step(_code("print(1)"))
    assert "spent" in observation and info["tool_calls"][0]["metadata"]["execution"] == "episode_budget"
    env.reset(seed=0)  # the budget is per episode
    assert env.step(_code("print(1)"))[0] == f"{FENCE}output\n1\n{FENCE}"
    env.close()


def test_a_sandbox_that_cannot_start_is_never_charged():
    config = PythonToolConfig.from_options({**FAST, "sandbox": BubblewrapProvider(bwrap="/nonexistent/bwrap")})
    env = gym.make("AgentR1/Arithmetic-v0", calculator=False, python=config)
    env.reset(seed=0)
    observation, reward, _, _, info = env.step(_code("print(1)"))
    assert "not your code's fault" in observation and info["tool_calls"][0]["status"] == "unavailable"
    assert reward == 0.0 and info["env_error"] is True
    _, _, _, _, info = env.step("The answer is \\boxed{0}.")
    assert info["metrics"]["env_error"] == 1.0
    env.close()


def test_an_episode_end_clears_the_sandbox_and_close_stops_it():
    env = _math()
    env.reset(seed=0)
    env.step(_code("import subprocess\nsubprocess.Popen(['/bin/sleep', '300'])\nopen('notes.txt', 'w').write('x')"))
    session = env.unwrapped.tools["python"].fn
    sandbox = session._sandbox
    scratch = sandbox._process.directory / "scratch"
    env.step(_code("x = 1"))
    assert [p.name for p in scratch.iterdir()] == ["notes.txt"]
    env.step("The answer is $\\boxed{1}$.")  # the final answer ends the episode: its files and processes go
    assert list(scratch.iterdir()) == [] and sandbox.started
    env.reset(seed=0)
    assert "FileNotFoundError" in env.step(_code("open('notes.txt').read()"))[0]
    assert session._sandbox is sandbox  # the same warm sandbox served the next episode
    pid = sandbox.pid
    env.close()
    assert session._sandbox is None and sandbox._closed and not scratch.exists()
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_options_are_checked():
    with pytest.raises(ValueError, match="unknown python tool option"):
        PythonToolConfig.from_options({"walltime": 3})
    with pytest.raises(ValueError, match="errors must be"):
        PythonToolConfig.from_options({"errors": "full"})
    with pytest.raises(ValueError, match="sandbox must be"):
        PythonToolConfig.from_options({"sandbox": "docker"})
    with pytest.raises(ValueError, match="add 'python' to tools"):
        gym.make("AgentR1/Math-v0", dataset="sample", python={"wall_s": 1})
    config = PythonToolConfig.from_options({"wall_s": 3, "persistent": True})
    assert config.limits.wall_s == 3 and config.persistent and config.limits.memory_mb == 1024


def test_the_tool_runs_through_run_tool_like_any_other():
    tool = python_tool(FAST)
    try:
        result = run_tool({"python": tool}, ToolCall("python", {"code": "sum(range(10))"}))
        assert result.ok and result.content == "45"
        bad = run_tool({"python": tool}, ToolCall("python", {"code": 5}))
        assert bad.status == "bad_arguments"
    finally:
        tool.release()


@pytest.mark.slow
@pytest.mark.parametrize("env_id, kwargs", [
    ("AgentR1/Arithmetic-v0", {"python": AUDIT}),
    ("AgentR1/Math-v0", {"dataset": "sample", "tools": ("python",), "python": AUDIT}),
], ids=["arithmetic+python", "math-python"])
def test_conformance_and_reward_audit_with_the_python_tool(env_id, kwargs):
    report = check_env_conformance(env_id, make_kwargs=kwargs, seeds=(0,))
    policies = {row.policy for row in report.audit}
    assert {"python spam", "python infinite loop", "python prints the answer, never answers"} <= policies
    assert all(row.ok for row in report.audit)


@pytest.mark.slow
def test_the_reward_audit_with_hermes_calls_only():
    rows = check_reward_audit("AgentR1/Arithmetic-v0", make_kwargs={"calculator": False,
                                                                    "python": {**AUDIT, "fenced": False}})
    assert {"python spam", "python infinite loop"} <= {r.policy for r in rows} and all(r.ok for r in rows)


@pytest.mark.slow
def test_the_torl_preset_passes_the_reward_audit():
    from adapters.episodes import TORL_MAKE_KWARGS

    kwargs = {**TORL_MAKE_KWARGS, "dataset": "sample", "python": {**TORL_MAKE_KWARGS["python"], **AUDIT}}
    rows = check_reward_audit("AgentR1/Math-v0", make_kwargs=kwargs)
    assert {r.policy for r in rows} >= {"python spam", "python infinite loop"} and all(r.ok for r in rows)
