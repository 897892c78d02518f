"""The installed suite lives beside PyPI's ``envs``, ``adapters`` (AdapterHub) and ``baselines`` (OpenAI).

A fresh virtual environment gets the three distributions from PyPI, then the suite's wheel, built
from its sdist. Every file of the three must keep its RECORD hash; all four must import and work in
one process; every console script must run as documented; an entry-point plugin must register.
Then a second environment gets the three and an editable install of the checkout, which must expose
nothing but ``agentr1_gym`` either. The environments see this one's packages behind their own
site-packages (shared dependencies, no second download); AdapterHub's own pins (transformers 4.57)
are installed in front of them.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
NEIGHBOURS = ["envs==1.4", "adapters==1.3.0", "baselines==0.1.5"]
ADAPTERHUB_PINS = ["transformers==4.57.6", "huggingface_hub==0.36.2", "tokenizers==0.22.2"]  # adapters 1.3.0's
SOURCE = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "scripts/packaging", "envs", "adapters", "baselines"]
CONSOLE_SCRIPTS = ["agentr1-gym", "agentr1-math", "agentr1-retrieval", "agentr1-evaluate", "agentr1-grpo",
                   "agentr1-openrlhf", "agentr1-trl", "agentr1-verl"]

PLUGIN = '''
def register():
    from agentr1_gym.envs import register_env

    register_env("Demo/Arithmetic-v0", "agentr1_gym.envs.arithmetic.env:ArithmeticEnv", aliases=["demo-v0"],
                 offline_kwargs={})
'''

# Run inside an environment: PyPI's three, untouched and working, next to the suite, in one process.
SIDE_BY_SIDE = r'''
import base64, hashlib, importlib.metadata as md, os, sys
from pathlib import Path

site_dir = Path(sys.argv[1])
for name in ("envs", "adapters", "baselines"):
    dist = md.distribution(name)
    for f in dist.files:
        if f.hash is not None:
            digest = base64.urlsafe_b64encode(hashlib.sha256(f.locate().read_bytes()).digest()).rstrip(b"=").decode()
            assert digest == f.hash.value, f"{name}: {f} was changed"

import gymnasium as gym
import agentr1_gym

assert Path(agentr1_gym.envs.__file__).is_relative_to(Path(sys.argv[2])), agentr1_gym.envs.__file__
offline = {e.env_id: e.offline_kwargs for e in agentr1_gym.suite_envs()}

def golden(env_id):
    env = gym.make(env_id, **offline[env_id])
    env.reset(seed=0)
    for action in env.unwrapped.demonstration():
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            env.close()
            return info["metrics"]["acc"]

assert golden("AgentR1/HotpotQA-v0") == 1.0
assert golden("Demo/Arithmetic-v0") == 1.0  # the plugin, registered by `import agentr1_gym`
from agentr1_gym.envs.math.verify import MathVerifier
assert MathVerifier(fast_path=False).verify("\\frac12", "so \\boxed{0.5}").correct  # in a worker process

import envs, adapters, baselines, baselines.logger
for module in (envs, adapters, baselines):
    assert Path(module.__file__).parent.parent == site_dir, module.__file__
os.environ["AGENTR1_SIDE_BY_SIDE"] = "7"
assert envs.env("AGENTR1_SIDE_BY_SIDE", var_type="integer") == 7
assert adapters.__version__ == "1.3.0" and adapters.LoRAConfig(r=4).r == 4
assert golden("AgentR1/Arithmetic-v0") == 1.0
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("envs", "adapters", "baselines")
                and not Path(getattr(sys.modules[m], "__file__", None) or site_dir / "x").is_relative_to(site_dir))
assert not leaked, leaked
print("side by side: ok")
'''


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, args))}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _pip(python: Path, *args: str) -> None:
    _run([sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check", "-q", "install",
          "--no-deps", *args])


def _environment(path: Path, front: list[Path]) -> tuple[Path, Path]:
    """A venv whose own site-packages comes first, then ``front``, then this interpreter's packages."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(path)])
    python = path / "bin" / "python"
    site_dir = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    here = [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    (site_dir / "a_front.pth").write_text("".join(f"{p}\n" for p in front))
    (site_dir / "z_shared.pth").write_text("".join(f"{p}\n" for p in dict.fromkeys(here)))
    return python, site_dir


def _add_plugin(site_dir: Path) -> None:
    (site_dir / "agentr1_demo_plugin.py").write_text(PLUGIN)
    info = site_dir / "agentr1_demo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: agentr1-demo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[agentr1_gym.envs]\ndemo = agentr1_demo_plugin:register\n")


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> dict[str, Path]:
    """The sdist and the wheel built from it, from a copy of the checkout; AdapterHub's pinned dependencies."""
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "source"
    for name in SOURCE:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    env = {**os.environ, "PYTHONPATH": str(source / "scripts" / "packaging")}
    hook = "import sys, agentr1_build; print(getattr(agentr1_build, sys.argv[1])(sys.argv[2]))"
    sdist = _run([sys.executable, "-c", hook, "build_sdist", "dist"], cwd=source, env=env).stdout.splitlines()[-1]
    # PEP 660's hook, as pip calls it for `pip install -e .` (here outside the fresh environments)
    (tmp / "editable").mkdir()
    editable = _run([sys.executable, "-c", hook, "build_editable", str(tmp / "editable")], cwd=source,
                    env=env).stdout.splitlines()[-1]
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp / "wheels"),
          str(source / "dist" / sdist)])
    deps = tmp / "adapterhub-deps"
    _run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "install", "--no-deps", "--target",
          str(deps), *ADAPTERHUB_PINS])
    return {"tmp": tmp, "source": source, "wheel": next((tmp / "wheels").glob("agentr1_gym-*.whl")), "deps": deps,
            "editable": tmp / "editable" / editable}


def test_the_wheel_ships_one_top_level_package_with_every_file(build):
    names = zipfile.ZipFile(build["wheel"]).namelist()
    assert {n.split("/")[0] for n in names} == {"agentr1_gym", build["wheel"].name.split("-py3")[0] + ".dist-info"}
    files = [p.relative_to(build["source"]).as_posix() for package in ("envs", "adapters", "baselines")
             for p in (build["source"] / package).rglob("*") if p.is_file()]
    missing = sorted(f for f in files if f"agentr1_gym/{f}" not in names)  # data included: samples, presets, templates
    assert not missing, f"not in the wheel (add the file type to agentr1_build.DATA_PATTERNS): {missing}"
    entry_points = zipfile.ZipFile(build["wheel"]).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert all(f"{script} = agentr1_gym." in entry_points for script in CONSOLE_SCRIPTS)


@pytest.fixture(scope="module")
def wheel_env(build) -> dict[str, Path]:
    python, site_dir = _environment(build["tmp"] / "venv-wheel", [build["deps"]])
    _pip(python, *NEIGHBOURS)
    _pip(python, str(build["wheel"]))  # after PyPI's three: the order that used to overwrite them
    _add_plugin(site_dir)
    return {"python": python, "site": site_dir, "bin": python.parent}


def test_the_wheel_installs_beside_envs_adapters_and_baselines(wheel_env, tmp_path):
    out = _run([str(wheel_env["python"]), "-c", SIDE_BY_SIDE, str(wheel_env["site"]), str(wheel_env["site"])],
               cwd=tmp_path).stdout
    assert "side by side: ok" in out


def test_every_console_script_runs_from_the_wheel(wheel_env, tmp_path):
    run = lambda *args: _run([str(wheel_env["bin"] / args[0]), *args[1:]], cwd=tmp_path)  # noqa: E731
    listed = run("agentr1-gym", "list").stdout
    assert "AgentR1/HotpotQA-v0" in listed and "Demo/Arithmetic-v0" in listed
    assert "AgentR1/Math-v0" in _run([str(wheel_env["python"]), "-m", "agentr1_gym.envs", "list"], cwd=tmp_path).stdout
    assert "36/36 gold answers verify" in run("agentr1-math", "validate", "sample").stdout
    corpus = wheel_env["site"] / "agentr1_gym" / "envs" / "data" / "qa_corpus.jsonl"
    assert "Dunmarrow" in run("agentr1-retrieval", "search", "--corpus", str(corpus), "--cache-dir", str(tmp_path),
                              "-k", "1", "capital of Tervania").stdout
    # the design's command, verbatim but for the script name: the preset's paper model, no other flag
    done = run("agentr1-openrlhf", "--env", "math-v0", "--offline", "--dry-run")
    assert "--actor.model_name_or_path deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B" in done.stdout
    assert "model deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B (the open-rs preset's default" in done.stderr
    agent = (tmp_path / "runs" / "openrlhf" / "math-v0" / "agent.py").read_text()
    assert "from agentr1_gym.adapters.openrlhf.agent import" in agent
    done = run("agentr1-verl", "--env", "hotpotqa-v0", "--offline", "--dry-run")
    assert "actor_rollout_ref.model.path=Qwen/Qwen2.5-1.5B-Instruct" in done.stdout
    loop = (tmp_path / "runs" / "verl" / "HotpotQA-v0" / "agent_loop.yaml").read_text()
    assert "_target_: agentr1_gym.adapters.verl.agent_loop.AgentR1AgentLoop" in loop
    for script in ("agentr1-evaluate", "agentr1-grpo", "agentr1-trl"):
        assert run(script, "--help").stdout.startswith(f"usage: {script}")
    failed = subprocess.run([str(wheel_env["bin"] / "agentr1-openrlhf"), "--env", "nope-v0", "--dry-run"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert failed.returncode == 2 and failed.stderr.startswith("error: no environment named 'nope-v0'")
    assert len(failed.stderr.strip().splitlines()) == 1


def test_an_editable_install_exposes_only_agentr1_gym(build, tmp_path):
    python, site_dir = _environment(build["tmp"] / "venv-editable", [build["deps"]])
    _pip(python, *NEIGHBOURS)
    _pip(python, str(build["editable"]))
    _add_plugin(site_dir)
    installed = sorted(p.name for p in site_dir.iterdir() if "agentr1_gym" in p.name)
    assert installed == ["agentr1_gym", "agentr1_gym-0.1.0.dist-info"], installed
    assert all(str(build["source"]) not in p.read_text() for p in site_dir.glob("*.pth"))  # no path into the checkout
    out = _run([str(python), "-c", SIDE_BY_SIDE, str(site_dir), str(build["source"])], cwd=tmp_path).stdout
    assert "side by side: ok" in out
    listed = _run([str(python.parent / "agentr1-gym"), "list"], cwd=tmp_path).stdout
    assert "Demo/Arithmetic-v0" in listed
