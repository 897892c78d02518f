"""Envs by id on other machines: ``envs.make(..., env_url=)``, ``$AGENTR1_ENV_URL`` and ``--env-url``.

One real ``python -m envs serve`` process on loopback serves Arithmetic-v0 (generated items) and
GSM8K-v0 (an item list) on shipped data. Proven here: the one rule in ``envs.make`` (explicit URL,
else the variable, ``""`` forces local), that a remote env's episodes equal the local env's, and
that the reference trainer's rollout, the generated OpenRLHF agent (run by OpenRLHF's
``MultiTurnAgentExecutor``) and the three trainer CLIs reach the server.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest

import envs
from adapters.episodes import EnvPool, EpisodeSpec, iter_episode_specs, make_env
from envs.core.registry import ENV_URL_VARIABLE
from envs.remote import RemoteEnv, RemoteEnvError

GSM8K_KWARGS = {"dataset": "gsm8k-sample"}


@pytest.fixture(scope="module")
def server(module_server_factory):
    return module_server_factory("AgentR1/Arithmetic-v0", "AgentR1/GSM8K-v0", "--offline", "--max-sessions", "64")


@pytest.fixture(scope="module")
def dead_url():
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _demo_episode(env, seed: int, options=None):
    """Play the env's golden actions; return (summed reward, final info, step tuples)."""
    env.reset(seed=seed, options=options)
    total, steps = 0.0, []
    for action in env.unwrapped.demonstration():
        step = env.step(action)
        steps.append(step)
        total += step[1]
        if step[2] or step[3]:
            return total, step[4], steps
    raise AssertionError("the demonstration did not end the episode")


@pytest.mark.parametrize(("env_id", "kwargs"), [("arithmetic-v0", {}), ("gsm8k-v0", GSM8K_KWARGS)])
def test_env_url_plays_exactly_like_the_local_env(server, env_id, kwargs):
    local, far = envs.make(env_id, env_url="", **kwargs), envs.make(env_id, env_url=server.url, **kwargs)
    try:
        assert isinstance(far.unwrapped, RemoteEnv) and not isinstance(local.unwrapped, RemoteEnv)
        assert far.unwrapped.reward_weights == local.unwrapped.reward_weights
        local_items = getattr(local.unwrapped, "items", None)
        if local_items is None:
            assert far.unwrapped.items is None
        else:  # the item list travels: its length with the session, the items over the task API
            assert len(far.unwrapped.items) == len(local_items) and far.unwrapped.items[3] == local_items[3]
        for seed in (0, 7):
            total_local, info_local, steps_local = _demo_episode(local, seed)
            total_far, info_far, steps_far = _demo_episode(far, seed)
            assert steps_far == steps_local and total_far == total_local > 0
            assert info_far["metrics"] == info_local["metrics"] and info_far["metrics"]["acc"] == 1.0
    finally:
        local.close()
        far.close()


def test_the_variable_is_the_default_and_an_explicit_url_wins(server, dead_url, monkeypatch):
    monkeypatch.setenv(ENV_URL_VARIABLE, f" {dead_url} , {server.url} ")  # a dead server first: sessions fail over to the live one
    env = make_env("arithmetic-v0")
    try:
        assert isinstance(env.unwrapped, RemoteEnv) and env.unwrapped.url.startswith(server.url.replace("http", "ws"))
        assert _demo_episode(env, 1)[1]["metrics"]["acc"] == 1.0
    finally:
        env.close()
    # a CLI's prompt rows, written from the server's item list, are the local rows
    with_variable = list(iter_episode_specs("gsm8k-v0", GSM8K_KWARGS, seed=3))
    monkeypatch.delenv(ENV_URL_VARIABLE)
    assert with_variable == list(iter_episode_specs("gsm8k-v0", GSM8K_KWARGS, seed=3)) and len(with_variable) == 10
    assert not isinstance(envs.make("arithmetic-v0", env_url="").unwrapped, RemoteEnv)  # "" forces local
    monkeypatch.setenv(ENV_URL_VARIABLE, server.url)
    with pytest.raises(RemoteEnvError, match="no env server accepted"):
        envs.make("arithmetic-v0", env_url=[dead_url])
    # make-kwargs the server does not serve are refused when the env is made, never silently replaced
    with pytest.raises(RemoteEnvError, match="digits"):
        envs.make("arithmetic-v0", digits=5)
    # the remote env itself is never wrapped in another remote env
    inner = envs.make("AgentR1/Remote-v0", url=server.url, env_id="arithmetic-v0")
    assert isinstance(inner.unwrapped, RemoteEnv)
    inner.close()


def test_pool_keeps_envs_of_different_servers_apart(server):
    pool = EnvPool()
    far = pool.acquire("AgentR1/Arithmetic-v0", {}, env_url=server.url)
    pool.release("AgentR1/Arithmetic-v0", {}, far, env_url=server.url)
    local = pool.acquire("AgentR1/Arithmetic-v0", {}, env_url="")
    assert not isinstance(local.unwrapped, RemoteEnv)
    assert pool.acquire("AgentR1/Arithmetic-v0", {}, env_url=[server.url]) is far
    pool.close()
    local.close()
    far.close()


def test_import_envs_stays_light_until_a_remote_env_is_made():
    code = ("import sys, envs; envs.env_server_urls('http://x:1'); "
            "print([m for m in ('websockets', 'envs.remote') if m in sys.modules])")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


# ---------------------------------------------------------------------- trainers
class _Answers:
    """A generator that answers each prompt's arithmetic question correctly in one turn."""

    def __init__(self, chat, answers):
        self.chat, self.answers = chat, answers

    def generate(self, prompts, budgets, sampling):
        out = []
        for prompt, budget in zip(prompts, budgets, strict=True):
            text = self.chat.tokenizer.decode(prompt)
            answer = next(a for q, a in self.answers.items() if q in text)
            out.append(self.chat.encode(f"The answer is \\boxed{{{answer}}}.")[:budget] + [self.chat.stop_ids[0]])
        return out


def test_reference_trainer_rolls_out_through_the_server(server, tiny_model_dir, tmp_path):
    from baselines.grpo.config import make_config
    from baselines.grpo.rollout import run_episodes
    from baselines.grpo.trainer import GRPOTrainer

    cfg = make_config("arithmetic_cpu", model=str(tiny_model_dir), output_dir=str(tmp_path), steps=1, prompts_per_step=2,
                      group_size=2, max_new_tokens=48, max_episode_tokens=1024, env_url=server.url, resume=False, tensorboard=False,
                      progress=False)
    cfg.env_kwargs = {}  # the server serves Arithmetic-v0's defaults, not the preset's
    trainer = GRPOTrainer(cfg, device="cpu")
    local = [envs.make(trainer.env_id, env_url="") for _ in trainer.envs]
    try:
        assert all(isinstance(e.unwrapped, RemoteEnv) for e in trainer.envs)
        resets, groups = trainer.step_resets(0)
        questions = {}
        for env, reset in zip(local, resets, strict=True):
            item = env.reset(**reset)[1]["item"]
            questions[item["question"]] = item["answer"]
        generator = _Answers(trainer.chat, questions)
        far_eps = run_episodes(generator, trainer.chat, trainer.envs, resets, groups, trainer.sampling, cfg.max_episode_tokens)
        local_eps = run_episodes(generator, trainer.chat, local, resets, groups, trainer.sampling, cfg.max_episode_tokens)
        for far, near in zip(far_eps, local_eps, strict=True):
            assert far.tokens == near.tokens and far.reward == near.reward and far.metrics == near.metrics
            assert far.metrics["acc"] == 1.0 and far.metrics.get("env_error", 0.0) == 0.0
    finally:
        trainer.close()
        for env in local:
            env.close()


def _engine(tokenizer, actions):
    """OpenRLHF's vLLM actor stand-in: turn ``i`` writes ``actions[i]`` and stops on the EOS (kept in token_ids)."""
    calls = []

    async def generate(prompt_token_ids, sampling_params, multi_modal_data=None):
        text = actions[len(calls)]
        calls.append(text)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        return SimpleNamespace(outputs=[SimpleNamespace(token_ids=ids, text=text, finish_reason="stop", logprobs=None)])

    return SimpleNamespace(generate=generate)


def test_openrlhf_agent_file_carries_the_url_and_plays_on_the_server(server, tiny_tokenizer, tmp_path):
    tokenizer = tiny_tokenizer
    pytest.importorskip("openrlhf.utils.agent")
    from adapters.openrlhf.dataset import prompt_rows, write_agent_file

    path = write_agent_file(tmp_path / "agent.py", [("AgentR1/GSM8K-v0", GSM8K_KWARGS)], step_timeout=30,
                            env_url=server.url)
    assert f"env_url=({server.url!r},)" in path.read_text()
    spec = importlib.util.spec_from_file_location("agentr1_generated_agent", path)  # as OpenRLHF loads the file
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    executor = module.AgentExecutor()
    assert executor.config.env_url == (server.url,)
    row = prompt_rows("gsm8k-v0", GSM8K_KWARGS, count=1, seed=2, start=4)[0]
    episode = EpisodeSpec.from_label(row["label"])
    local = make_env(episode.env_id, episode.make_kwargs, env_url="")
    local.reset(seed=episode.seed, options={"item": episode.item})
    actions = local.unwrapped.demonstration()
    total = sum(local.step(a)[1] for a in actions)
    local.close()
    before = server.active_sessions()
    prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    params = SimpleNamespace(max_tokens=None, logprobs=None, temperature=1.0)
    result = asyncio.run(executor.execute(prompt, row["label"], params, 4096, tokenizer, _engine(tokenizer, actions)))
    assert result["reward"] == pytest.approx(total) and total > 0
    logs = result["extra_logs"]
    assert logs["env/acc"] == 1.0 and logs["env/env_error"] == 0.0 and logs["env/finished"] == 1.0
    assert server.active_sessions() == before + 1  # the agent's env is a session there (pooled for the next sample)


def test_trainer_clis_take_env_url_in_dry_runs(server, tiny_model_dir, tmp_path, capsys):
    pytest.importorskip("openrlhf")
    from adapters.openrlhf.__main__ import main as openrlhf_main

    assert openrlhf_main(["--env", "arithmetic-v0", "--model", "m", "--num-prompts", "2", "--output-dir",
                          str(tmp_path / "o"), "--env-url", f"{server.url},{server.url}", "--dry-run"]) == 0
    assert f"env_url=({server.url!r}, {server.url!r})" in (tmp_path / "o" / "agent.py").read_text()
    capsys.readouterr()
    yaml = pytest.importorskip("yaml")
    from adapters.verl.__main__ import main as verl_main

    assert verl_main(["--env", "arithmetic-v0", "--model", "m", "--num-prompts", "2", "--output-dir",
                      str(tmp_path / "v"), "--env-url", server.url, "--dry-run"]) == 0
    entry = yaml.safe_load((tmp_path / "v" / "agent_loop.yaml").read_text())[0]  # the loop's constructor kwargs
    assert entry["env_url"] == server.url and entry["_target_"].endswith("AgentR1AgentLoop")
    capsys.readouterr()
    pytest.importorskip("trl")
    from adapters.trl.__main__ import main as trl_main

    # the tiny model's template renders no tool calls: TRL scores with reward functions, stepping envs there
    assert trl_main(["--env", "gsm8k-v0", "--offline", "--model", str(tiny_model_dir), "--num-prompts", "2",
                     "--output-dir", str(tmp_path / "t"), "--env-url", server.url, "--dry-run"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["reward_funcs"] and report["rows"] == 2
    for argv in (["--env-url", server.url], []):
        from baselines.evaluate import build_parser

        assert build_parser().parse_args(["--env", "arithmetic-v0", "--model", "m", *argv]).env_url == (argv[1:] or [None])[0]


def test_evaluate_reads_a_remote_envs_protocol_from_its_family(server):
    pytest.importorskip("torch")
    from baselines.evaluate import env_family, protocol_for

    local, far = envs.make("gsm8k-v0", env_url="", **GSM8K_KWARGS), envs.make("gsm8k-v0", env_url=server.url, **GSM8K_KWARGS)
    try:
        assert protocol_for(env_family("AgentR1/GSM8K-v0", far)) == protocol_for(local) != {}
        assert env_family("AgentR1/GSM8K-v0", far).recommended_sampling == local.unwrapped.recommended_sampling
    finally:
        local.close()
        far.close()
