"""Our agent loop, loaded and run by verl 0.9.1's own ``AgentLoopWorker`` against a scripted server.

What this proves, on CPU: verl's worker, built from verl's own generated trainer config with
``agent_loop_config_path`` pointing at ``adapters/verl/agent_loop.yaml``, loads our loop from that
file and plays whole multi-turn episodes of every offline env (the env's demonstration, returned
by a server manager whose outputs are verl ``TokenOutput``s: stop token kept, as vLLM does); the
token stream is exactly the chat template's rendering of the conversation; the response mask
covers the model's tokens and nothing else; ``rm_scores`` carry the env's episode reward; the
logged extras keep one key set; cut episodes are scored by ``envs.end_unfinished``; the CLI's
overrides all exist in verl's config. Not proven here: vLLM/SGLang serving, Ray, FSDP training.
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest

pytest.importorskip("verl.experimental.agent_loop.agent_loop")
transformers = pytest.importorskip("transformers")

import numpy as np  # noqa: E402

import envs  # noqa: E402
from adapters.episodes import EpisodeSpec, make_env  # noqa: E402
from adapters.verl import AGENT_LOOP_CONFIG, verl_rows, write_parquet  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer):
    return tiny_tokenizer


def _config(model_dir, loop_config=AGENT_LOOP_CONFIG, **rollout):
    import verl
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(os.path.join(os.path.dirname(verl.__file__), "trainer/config/_generated_ppo_trainer.yaml"))
    OmegaConf.update(cfg, "actor_rollout_ref.model.path", str(model_dir))
    OmegaConf.update(cfg, "actor_rollout_ref.rollout.name", "vllm")
    OmegaConf.update(cfg, "actor_rollout_ref.rollout.agent.agent_loop_config_path", str(loop_config))
    OmegaConf.update(cfg, "data.max_prompt_length", 2048)
    OmegaConf.update(cfg, "data.max_response_length", rollout.pop("response_length", 4096))
    for key, value in rollout.items():
        OmegaConf.update(cfg, f"actor_rollout_ref.rollout.{key}", value)
    return cfg


class ScriptedServer:
    """verl's ``server_manager`` stand-in: replays a script of actions as ``TokenOutput``s (stop token kept)."""

    def __init__(self, tokenizer, actions, *, eos=True):
        self.tokenizer, self.actions, self.eos = tokenizer, list(actions), eos
        self.outputs: list[list[int]] = []
        self.prompts: list[list[int]] = []

    async def generate(self, request_id, prompt_ids, sampling_params, **_):
        from verl.workers.rollout.replica import TokenOutput

        self.prompts.append(list(prompt_ids))
        action = self.actions[min(len(self.outputs), len(self.actions) - 1)]
        ids = self.tokenizer.encode(action, add_special_tokens=False)[: sampling_params["max_tokens"]]
        if self.eos and len(ids) < sampling_params["max_tokens"]:
            ids.append(self.tokenizer.eos_token_id)
        self.outputs.append(ids)
        return TokenOutput(token_ids=ids, log_probs=None, stop_reason="completed")


def _objects(values):
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _batch(rows):
    from verl.protocol import DataProto

    non_tensors = {"raw_prompt": _objects([r["prompt"] for r in rows]),
                   "agent_name": np.array([r["agent_name"] for r in rows], dtype=object),
                   "extra_info": np.array([r["extra_info"] for r in rows], dtype=object),
                   "index": np.arange(len(rows))}
    return DataProto.from_dict(tensors=None, non_tensors=non_tensors, meta_info={"global_steps": 1, "validate": False})


def _run(config, server, rows):
    from omegaconf import DictConfig
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker, _agent_loop_registry

    worker = AgentLoopWorker(config, server)
    entry = _agent_loop_registry["agentr1"]
    assert isinstance(entry, DictConfig)  # what the worker read from our YAML file (the decorator gives a dict)
    assert entry["_target_"] == "adapters.verl.agent_loop.AgentR1AgentLoop"
    return worker, asyncio.run(worker.generate_sequences(_batch(rows)))


def _replay(spec, actions):
    """The conversation and episode reward the env itself gives for ``actions``."""
    env = make_env(spec.env_id, spec.make_kwargs)
    _, info = env.reset(seed=spec.seed, options={"item": spec.item})
    messages, total, components = list(info["messages"]), 0.0, {}
    for action in actions:
        messages.append({"role": "assistant", "content": action})
        _, reward, terminated, truncated, info = env.step(action)
        total += reward
        if terminated or truncated:
            components = info["episode_reward_components"]
            break
        messages.extend(info["new_messages"])
    env.close()
    return messages, total, components


def _unpadded(out, i):
    prompt = out.batch["prompts"][i]
    attention = out.batch["attention_mask"][i]
    width = prompt.shape[0]
    prompt_ids = prompt[attention[:width].bool()].tolist()
    response_valid = attention[width:].bool()
    response_ids = out.batch["responses"][i][response_valid].tolist()
    mask = out.batch["response_mask"][i][response_valid].tolist()
    return prompt_ids, response_ids, mask


OFFLINE_ENVS = [e for e in envs.suite_envs() if e.offline_kwargs is not None]


def test_verl_loads_our_loop_from_the_config_file_and_plays_every_offline_env(tiny_model_dir, tokenizer):
    assert OFFLINE_ENVS
    for entry in OFFLINE_ENVS:
        row = verl_rows(entry.env_id, entry.offline_kwargs, count=1)[0]
        spec = EpisodeSpec.from_label(row["extra_info"]["agentr1"])
        env = make_env(spec.env_id, spec.make_kwargs)
        env.reset(seed=spec.seed, options={"item": spec.item})
        actions = env.unwrapped.demonstration()
        env.close()
        server = ScriptedServer(tokenizer, actions)
        _, out = _run(_config(tiny_model_dir), server, [row])
        messages, reward, components = _replay(spec, actions)
        prompt_ids, response_ids, mask = _unpadded(out, 0)
        # the whole stream is the template's rendering of the conversation (up to the model's last stop token)
        rendered = tokenizer.apply_chat_template(messages, tokenize=False)
        assert tokenizer.decode(prompt_ids + response_ids, skip_special_tokens=False) == rendered.removesuffix("\n"), entry.env_id
        assert tokenizer.decode(prompt_ids) == tokenizer.apply_chat_template(messages[: len(row["prompt"])], tokenize=False,
                                                                             add_generation_prompt=True)
        # mask 1 exactly on what the server generated
        assert [t for t, m in zip(response_ids, mask) if m] == [t for ids in server.outputs for t in ids]
        assert len(server.outputs) == len(actions)
        assert float(out.batch["rm_scores"][0].sum()) == pytest.approx(reward, abs=1e-6), entry.env_id
        assert sum(out.non_tensor_batch["turn_scores"][0]) == pytest.approx(reward, abs=1e-6)
        for name, value in components.items():
            assert out.non_tensor_batch[f"reward/{name}"][0] == pytest.approx(value)
        assert out.non_tensor_batch["acc"][0] == 1.0, entry.env_id  # the demonstration is correct
        assert out.non_tensor_batch["end_reason"][0] != "budget"


def test_the_python_tool_runs_in_the_loop(tiny_model_dir, tokenizer):
    kwargs = {"calculator": False, "python": {"wall_s": 10}}
    row = verl_rows("arithmetic-v0", kwargs, count=1)[0]
    spec = EpisodeSpec.from_label(row["extra_info"]["agentr1"])
    env = make_env(spec.env_id, spec.make_kwargs)
    env.reset(seed=spec.seed, options={"item": spec.item})
    actions = env.unwrapped.demonstration()  # a ```python block computing the answer, then the boxed answer
    env.close()
    _, out = _run(_config(tiny_model_dir), ScriptedServer(tokenizer, actions), [row])
    messages, reward, _ = _replay(spec, actions)
    assert messages[-2]["content"] == f"```output\n{spec.item['answer']}\n```"
    prompt_ids, response_ids, _ = _unpadded(out, 0)
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    assert tokenizer.decode(prompt_ids + response_ids, skip_special_tokens=False) == rendered.removesuffix("\n")
    assert float(out.batch["rm_scores"][0].sum()) == pytest.approx(reward, abs=1e-6)
    assert out.non_tensor_batch["acc"][0] == 1.0 and out.non_tensor_batch["tool_calls"][0] == 1.0


def test_a_batch_of_mixed_episodes_keeps_one_key_set(tiny_model_dir, tokenizer):
    rows = verl_rows("arithmetic-v0", count=3)
    server = ScriptedServer(tokenizer, ["I think it is \\boxed{0}."])
    _, out = _run(_config(tiny_model_dir), server, rows)
    assert out.batch["rm_scores"].shape[0] == 3
    keys = out.meta_info["reward_extra_keys"]
    assert {"acc", "format", "turns", "unfinished", "reward/answer"} <= set(keys)
    assert all(len(out.non_tensor_batch[k]) == 3 for k in keys)


def test_cut_episodes_are_scored_unfinished(tiny_model_dir, tokenizer):
    row = verl_rows("arithmetic-v0", count=1)[0]
    spec = EpisodeSpec.from_label(row["extra_info"]["agentr1"])
    calls = [f'<tool_call>{{"name": "calculator", "arguments": {{"expression": "{i} + 1"}}}}</tool_call>' for i in range(9)]
    # verl's own turn limit (max_assistant_turns) cuts the episode before the env's max_turns
    server = ScriptedServer(tokenizer, calls)
    _, out = _run(_config(tiny_model_dir, **{"multi_turn.max_assistant_turns": 2}), server, [row])
    assert out.non_tensor_batch["end_reason"][0] == "max_turns" and out.non_tensor_batch["unfinished"][0] == 1.0
    assert len(server.outputs) == 2
    assert sum(out.non_tensor_batch["turn_scores"][0]) == pytest.approx(float(out.batch["rm_scores"][0].sum()), abs=1e-6)
    # the response budget runs out in the middle of a turn: no stop token, scored as "budget"
    server = ScriptedServer(tokenizer, ["Let me think about this for a long while " * 20], eos=False)
    _, out = _run(_config(tiny_model_dir, response_length=32), server, [row])
    _, response_ids, mask = _unpadded(out, 0)
    assert len(response_ids) == 32 and all(mask)
    assert out.non_tensor_batch["end_reason"][0] == "budget" and out.non_tensor_batch["unfinished"][0] == 1.0
    _, finished_reward, _ = _replay(spec, [f"\\boxed{{{spec.item['answer']}}}"])
    assert float(out.batch["rm_scores"][0].sum()) < finished_reward


def test_a_per_turn_cap_in_the_yaml_entry_bounds_every_turn(tiny_model_dir, tokenizer, tmp_path):
    from adapters.verl.__main__ import write_agent_loop_config

    row = verl_rows("arithmetic-v0", count=1)[0]
    seen = []

    class Recording(ScriptedServer):
        async def generate(self, request_id, prompt_ids, sampling_params, **kw):
            seen.append(sampling_params["max_tokens"])
            return await super().generate(request_id, prompt_ids, sampling_params, **kw)

    server = Recording(tokenizer, ["Let me think about this for a long while " * 5])
    loop_config = write_agent_loop_config(tmp_path / "loop.yaml", max_tokens_per_turn=6)
    _, out = _run(_config(tiny_model_dir, loop_config), server, [row])
    assert seen and all(m == 6 for m in seen) and all(len(ids) <= 6 for ids in server.outputs)
    assert out.non_tensor_batch["acc"][0] == 0.0


def _has_key(cfg, dotted: str) -> bool:
    from omegaconf import OmegaConf

    parent, _, leaf = dotted.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return node is not None and leaf in list(node.keys())  # ("in" is False for mandatory "???" values)


def test_dataset_rows_and_cli_overrides(tmp_path):
    import pyarrow.parquet as pq
    import verl
    from omegaconf import OmegaConf

    from adapters.verl.__main__ import PRESETS, main

    rows = verl_rows("hotpotqa-v0", {"data_path": "sample", "corpus": "sample", "retriever": "bm25"}, count=2)
    table = pq.read_table(write_parquet(tmp_path / "d.parquet", rows)).to_pylist()
    assert table[0]["agent_name"] == "agentr1" and table[0]["prompt"] == rows[0]["prompt"]
    assert EpisodeSpec.from_label(table[1]["extra_info"]["agentr1"]).item == EpisodeSpec.from_label(
        rows[1]["extra_info"]["agentr1"]).item
    cfg = OmegaConf.load(os.path.join(os.path.dirname(verl.__file__), "trainer/config/_generated_ppo_trainer.yaml"))
    for preset in PRESETS.values():
        for key in preset:
            assert _has_key(cfg, key), key
    assert main(["--env", "math-v0", "--offline", "--model", "m", "--output-dir", str(tmp_path / "run"), "--dry-run"]) == 0
    command = (tmp_path / "run" / "command.txt").read_text()
    assert "actor_rollout_ref.rollout.n=6" in command and "actor_rollout_ref.actor.kl_loss_coef=0.04" in command
    assert f"agent_loop_config_path={tmp_path / 'run' / 'agent_loop.yaml'}" in command
    for arg in command.split()[3:]:
        key = arg.strip("'").split("=", 1)[0]
        assert _has_key(cfg, key), key
    assert json.loads(pq.read_table(tmp_path / "run" / "train.parquet").to_pylist()[0]["extra_info"]["agentr1"])["env_id"] == "AgentR1/Math-v0"
    assert "max_tokens_per_turn" not in (tmp_path / "run" / "agent_loop.yaml").read_text()
    assert main(["--env", "hotpotqa-v0", "--offline", "--model", "m", "--output-dir", str(tmp_path / "qa"), "--dry-run"]) == 0
    assert "actor_rollout_ref.rollout.n=5" in (tmp_path / "qa" / "command.txt").read_text()
    loop = OmegaConf.load(tmp_path / "qa" / "agent_loop.yaml")
    assert loop[0]["name"] == "agentr1" and loop[0]["max_tokens_per_turn"] == 1024


def test_qa_cli_trains_on_the_train_split_and_validates_on_validation(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from adapters.verl.__main__ import main

    def specs(path):
        return [EpisodeSpec.from_label(r["extra_info"]["agentr1"]) for r in pq.read_table(path).to_pylist()]

    monkeypatch.chdir(tmp_path)  # a relative --output-dir is made absolute: the command runs from any directory
    assert main(["--env", "hotpotqa-v0", "--offline", "--model", "m", "--num-prompts", "3", "--output-dir", "qa",
                 "--dry-run"]) == 0
    out = tmp_path / "qa"
    train, val = specs(out / "train.parquet"), specs(out / "val.parquet")
    assert len(train) == 3 and {s.make_kwargs["split"] for s in train} == {"train"}
    assert train[0].make_kwargs["data_path"] == "sample"  # --offline: the shipped sample
    assert val and {s.make_kwargs["split"] for s in val} == {"validation"}
    command = (out / "command.txt").read_text()
    assert f"data.train_files={out / 'train.parquet'} " in command and f"data.val_files={out / 'val.parquet'} " in command
    # no evaluation split in the recipe (open-rs): verl validates on the training file, as before
    assert main(["--env", "math-v0", "--offline", "--model", "m", "--output-dir", str(out / "m"), "--dry-run"]) == 0
    assert f"data.val_files={out / 'm' / 'train.parquet'} " in (out / "m" / "command.txt").read_text()
    assert not (out / "m" / "val.parquet").exists()


def test_cli_trains_the_presets_paper_model_unless_model_is_given(tmp_path):
    from adapters.verl.__main__ import main

    for env, model in (("hotpotqa-v0", "Qwen/Qwen2.5-1.5B-Instruct"), ("math-v0", "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B")):
        assert main(["--env", env, "--offline", "--num-prompts", "2", "--output-dir", str(tmp_path / env), "--dry-run"]) == 0
        assert f"actor_rollout_ref.model.path={model} " in (tmp_path / env / "command.txt").read_text()
