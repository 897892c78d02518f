import subprocess
import sys


def _run(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "envs", *args], capture_output=True, text=True, check=True, timeout=300).stdout


def test_list_shows_registered_ids():
    assert "AgentR1/Arithmetic-v0" in _run("list")


def test_demo_plays_an_episode_with_a_penalty_and_a_correct_answer():
    out = _run("demo", "--env", "arithmetic-v0", "--episodes", "2")
    assert '"invalid_action": -0.1' in out and '"answer": 1.0' in out
    assert out.count("acc 1") == 2  # episode 0 golden, episode 1 opens with a malformed call
