"""One episode's prompt, rendered by every trainer and adapter: identical text and token ids.

Paths: the reference GRPO trainer's rollout, ``baselines.evaluate`` (its CLI function, with the
generator replaced by a recorder), the OpenRLHF agent run by OpenRLHF 0.11.2's
``MultiTurnAgentExecutor``, and SkyRL's generator call (``apply_chat_template(messages,
add_generation_prompt=True, tokenize=True)`` on ``init``'s messages) with the baked tool template.
The tokenizer is the project's tiny Qwen2-style one, whose template renders tool schemas. The env
runs with its calculator, and again with the python tool added (its schema reaches every path).
"""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import json
from types import SimpleNamespace

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import envs  # noqa: E402
from adapters.episodes import EpisodeSpec  # noqa: E402
from envs.core.chat import encode, episode_prompt  # noqa: E402

ENV = "AgentR1/Arithmetic-v0"
ANSWER = "The answer is \\boxed{0}."
CONFIGURATIONS = {"calculator": {}, "calculator+python": {"python": {"wall_s": 5}}}


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from baselines.tiny import build_tiny_model

    return AutoTokenizer.from_pretrained(build_tiny_model())


@pytest.fixture(params=sorted(CONFIGURATIONS))
def kwargs(request):
    return CONFIGURATIONS[request.param]


@pytest.fixture
def spec(kwargs):
    from adapters.episodes import iter_episode_specs

    return next(iter_episode_specs(ENV, kwargs, count=1, seed=0))[0]


class Recorder:
    """A generator for the reference rollout: records each prompt, answers in one turn."""

    prompts: list[list[int]] = []

    def __init__(self, tokenizer, *args, **kwargs):
        self.tokenizer = tokenizer

    def generate(self, prompts, budgets, sampling):
        Recorder.prompts.extend(list(p) for p in prompts)
        ids = encode(self.tokenizer, ANSWER) + [self.tokenizer.convert_tokens_to_ids("<|im_end|>")]
        return [ids[:b] for b in budgets]


def _expected(tokenizer, spec):
    env = envs.make(ENV, **spec.make_kwargs)
    _, info = env.reset(seed=spec.seed, options={"item": spec.item})
    env.close()
    assert info["tools"] and "calculator" in episode_prompt(tokenizer, info)  # the tool block is rendered
    assert ('"name": "python"' in episode_prompt(tokenizer, info)) == ("python" in spec.make_kwargs)
    text = episode_prompt(tokenizer, info)
    return text, encode(tokenizer, text)


def _trainer_prompt(tokenizer, spec):
    from baselines.grpo.config import GRPOConfig
    from baselines.grpo.rollout import ChatFormat, Sampling, run_episodes

    chat = ChatFormat(tokenizer, include_tools=GRPOConfig().template_tools)
    Recorder.prompts = []
    env = envs.make(ENV, **spec.make_kwargs)
    run_episodes(Recorder(tokenizer), chat, [env], [{"seed": spec.seed, "options": {"item": spec.item}}], [0],
                 Sampling(max_new_tokens=32), 1024)
    env.close()
    return Recorder.prompts[0]


def _evaluate_prompt(tokenizer, kwargs, tmp_path, monkeypatch):
    from baselines import tiny
    from baselines.evaluate import build_parser, evaluate
    from baselines.grpo import rollout

    monkeypatch.setattr(rollout, "HFGenerator", lambda model, tok, stop_ids, batch_size: Recorder(tok))
    Recorder.prompts = []
    args = build_parser().parse_args(["--env", ENV, "--model", str(tiny.build_tiny_model()), "--limit", "1",
                                      "--env-kwargs", json.dumps(kwargs), "--output-dir", str(tmp_path)])
    evaluate(args)
    return Recorder.prompts[0]


def _openrlhf_prompt(tokenizer, spec, tmp_path):
    pytest.importorskip("openrlhf.utils.agent")
    from adapters.openrlhf.dataset import prompt_rows, write_agent_file

    path = write_agent_file(tmp_path / "agent.py", [(ENV, spec.make_kwargs)])
    module_spec = importlib.util.spec_from_file_location("agentr1_agent_file", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    executor = module.AgentExecutor()
    row = prompt_rows(ENV, spec.make_kwargs, count=1, seed=0)[0]
    seen = []

    class Engine:
        async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
            seen.append(list(prompt_token_ids))
            ids = encode(tokenizer, ANSWER) + [tokenizer.eos_token_id]
            return SimpleNamespace(outputs=[SimpleNamespace(token_ids=ids, text=ANSWER, finish_reason="stop", logprobs=None)])

    # OpenRLHF renders the dataset prompt itself (without tools); the agent replaces it with the env's
    dataset_prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    params = SimpleNamespace(max_tokens=None, logprobs=None, temperature=1.0)
    asyncio.run(executor.execute(dataset_prompt, row["label"], params, 1024, tokenizer, Engine()))
    assert EpisodeSpec.from_label(row["label"]).item == spec.item
    return seen[0]


def _skyrl_prompt(tokenizer, spec):
    pytest.importorskip("skyrl_gym")
    import skyrl_gym

    from adapters.skyrl_gym import skyrl_chat_template, skyrl_id, skyrl_rows

    row = skyrl_rows(ENV, spec.make_kwargs, count=1, seed=0)[0]
    env = skyrl_gym.make(skyrl_id(ENV), env_config={}, extras=row)
    messages, _ = env.init(copy.deepcopy(row["prompt"]))
    env.close()
    skyrl_tokenizer = copy.deepcopy(tokenizer)
    skyrl_tokenizer.chat_template = skyrl_chat_template(tokenizer, ENV, spec.make_kwargs)
    text = skyrl_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = skyrl_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    return text, list(ids)


def test_every_path_renders_the_same_prompt(tokenizer, kwargs, spec, tmp_path, monkeypatch):
    text, ids = _expected(tokenizer, spec)
    assert _trainer_prompt(tokenizer, spec) == ids
    assert _evaluate_prompt(tokenizer, kwargs, tmp_path / "eval", monkeypatch) == ids
    assert _openrlhf_prompt(tokenizer, spec, tmp_path) == ids
    skyrl_text, skyrl_ids = _skyrl_prompt(tokenizer, spec)
    assert skyrl_text == text and skyrl_ids == ids
    assert tokenizer.decode(ids) == text
