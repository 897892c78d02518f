import subprocess
import sys
from importlib.metadata import EntryPoint

import gymnasium as gym
import pytest

import envs
from envs.core import registry


def test_ids_aliases_and_prefixed_module_form():
    assert envs.resolve_env_id("arithmetic-v0") == "AgentR1/Arithmetic-v0"
    assert envs.resolve_env_id("Arithmetic-v0") == "AgentR1/Arithmetic-v0"
    assert envs.resolve_env_id("AgentR1/Arithmetic-v0") == "AgentR1/Arithmetic-v0"
    assert isinstance(envs.make("arithmetic").unwrapped, envs.TextEnv)
    assert gym.make("envs:AgentR1/Arithmetic-v0").spec.id == "AgentR1/Arithmetic-v0"
    with pytest.raises(gym.error.NameNotFound, match="no environment named 'nope-v0'"):
        envs.resolve_env_id("nope-v0")


def test_registration_is_idempotent_and_conflicts_are_errors():
    envs.register_env("AgentR1/Arithmetic-v0", "envs.arithmetic.env:ArithmeticEnv", aliases=["arithmetic-v0"], offline_kwargs={})
    with pytest.raises(ValueError, match="already registered"):
        envs.register_env("AgentR1/Arithmetic-v0", "elsewhere:Env")
    with pytest.raises(ValueError, match="alias 'arithmetic-v0' already names"):
        envs.register_env("Test/Other-v0", "envs.arithmetic.env:ArithmeticEnv", aliases=["arithmetic-v0"])


def test_plugins_register_through_entry_points(monkeypatch, tmp_path):
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(
        "from envs import register_env\n"
        "def register():\n"
        "    register_env('Plugin/Hello-v0', 'envs.arithmetic.env:ArithmeticEnv', aliases=['hello-v0'], offline_kwargs={})\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    broken = EntryPoint("broken", "no_such_module_xyz:register", registry.PLUGIN_GROUP)
    good = EntryPoint("hello", "my_plugin:register", registry.PLUGIN_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [broken, good] if group == registry.PLUGIN_GROUP else [])
    assert registry.load_plugins() == ["hello"]
    assert envs.resolve_env_id("hello-v0") == "Plugin/Hello-v0"


def test_import_envs_stays_light():
    code = "import sys, envs; heavy = [m for m in ('torch', 'transformers', 'vllm', 'ray', 'datasets', 'fastapi', 'pyserini') if m in sys.modules]; print(heavy)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
