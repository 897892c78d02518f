"""The generated OpenRLHF agent file inside OpenRLHF 0.11.2's ``MultiTurnAgentExecutor`` on a real vLLM AsyncLLM.

The engine handle is OpenRLHF's own ``RolloutRayActor.generate`` (its source, taken from
``openrlhf/trainer/ray/vllm_engine.py``) bound to a plain object holding an ``AsyncLLM``: the
actor class itself is a ``@ray.remote`` class whose ``async __init__`` needs a running Ray cluster
(it reads the GCS address and the GPU ids Ray assigned), which this CPU tier does not start.

The tiny model never writes a tool call by itself, so each episode's *first* turn is constrained by
vLLM's structured outputs (a regex) to a well-formed tool call; every later turn is free sampling.
That makes every episode multi-turn, with tool observations from the real env (the calculator;
HotpotQA's BM25 search over the shipped sample corpus). Checked per episode: the token stream is
the chat template's rendering of the conversation, every action range holds exactly one model turn
(its text and its stop token), and the summed reward equals replaying the actions on a fresh env.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import re
from pathlib import Path

import pytest

from adapters.episodes import EpisodeSpec, make_env
from adapters.openrlhf.dataset import prompt_rows, write_agent_file
from envs.core.chat import template_kwargs
from envs.core.registry import suite_envs

CALL_REGEX = {
    "AgentR1/Arithmetic-v0": r'<tool_call>\{"name": "calculator", "arguments": \{"expression": "[1-9][0-9]? [+*] [1-9]"\}\}</tool_call>',
    "AgentR1/HotpotQA-v0": r'<tool_call>\{"name": "search", "arguments": \{"query": "[a-z]{2,8}( [a-z]{2,8}){0,2}"\}\}</tool_call>',
}
TURN_CAP = 96  # --rollout.max_new_tokens
MAX_LEN = 1024  # --data.max_len


def _openrlhf_source(name: str):
    origin = importlib.util.find_spec("openrlhf").submodule_search_locations[0]
    return ast.parse(Path(origin, "trainer", "ray", "vllm_engine.py").read_text()), origin


def _load_agent(path: Path):
    tree, _ = _openrlhf_source("_load_agent_executor")
    func = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_load_agent_executor")
    namespace: dict = {}
    exec("from openrlhf.utils.agent import AgentExecutorBase\n" + ast.unparse(func), namespace)  # noqa: S102
    return namespace["_load_agent_executor"](str(path))


def _openrlhf_generate():
    """``RolloutRayActor.generate`` from OpenRLHF's source, as a plain async function."""
    tree, _ = _openrlhf_source("RolloutRayActor")
    actor = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "RolloutRayActor")
    method = next(n for n in actor.body if isinstance(n, ast.AsyncFunctionDef) and n.name == "generate")
    namespace: dict = {}
    exec("from copy import deepcopy\nfrom vllm.inputs import TokensPrompt\nfrom vllm.utils import random_uuid\n"  # noqa: S102
         + ast.unparse(method), namespace)
    return namespace["generate"]


class Engine:
    """What ``RolloutRayActor`` is to the executor: ``self.llm`` and OpenRLHF's ``generate``."""

    generate_impl = None

    def __init__(self, llm, tokenizer):
        self.llm, self.tokenizer = llm, tokenizer
        self._mm_pad_token_ids = None
        self.calls = 0

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        from vllm.sampling_params import StructuredOutputsParams

        self.calls += 1
        prompt = self.tokenizer.decode(prompt_token_ids, skip_special_tokens=False)
        if prompt.count("<|im_start|>assistant") == 1:  # the first turn: force a tool call
            env_id = "AgentR1/HotpotQA-v0" if "search" in prompt else "AgentR1/Arithmetic-v0"
            sampling_params.structured_outputs = StructuredOutputsParams(regex=CALL_REGEX[env_id])
        return await type(self).generate_impl(self, prompt_token_ids, sampling_params, multi_modal_data)


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    from transformers import AutoTokenizer
    from vllm import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM

    Engine.generate_impl = _openrlhf_generate()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    # AsyncLLM's output handler lives on the event loop that first uses it: one loop for the module
    loop = asyncio.new_event_loop()

    async def start():
        return AsyncLLM.from_engine_args(AsyncEngineArgs(model=str(tiny_model_dir), dtype="float32",
                                                         enforce_eager=True, max_model_len=MAX_LEN, seed=0))

    llm = loop.run_until_complete(start())
    engine = Engine(llm, tokenizer)
    engine.loop = loop
    yield engine
    llm.shutdown()
    loop.close()


def _offline(env_id: str) -> dict:
    entry = next(e for e in suite_envs() if e.env_id == env_id)
    return dict(entry.offline_kwargs or {})


def _replay(label: str, actions: list[str]):
    spec = EpisodeSpec.from_label(label)
    env = make_env(spec.env_id, spec.make_kwargs)
    _, info = env.reset(seed=spec.seed, options={"item": spec.item})
    messages, tools, total, done = list(info["messages"]), info["tools"], 0.0, False
    for action in actions:
        _, reward, term, trunc, info = env.step(action)
        total += reward
        messages.append({"role": "assistant", "content": action})
        done = term or trunc
        if done:
            break
        messages += info["new_messages"]
    env.close()
    return total, done, messages, tools


@pytest.mark.parametrize("env_id", ["AgentR1/Arithmetic-v0", "AgentR1/HotpotQA-v0"])
def test_multi_turn_episodes_on_async_vllm(engine, env_id, tmp_path):
    from vllm import SamplingParams

    kwargs = _offline(env_id) if env_id.endswith("HotpotQA-v0") else {}
    executor = _load_agent(write_agent_file(tmp_path / "agent.py", [(env_id, kwargs)], step_timeout=60))
    rows = prompt_rows(env_id, kwargs, count=4, seed=1)
    tok = engine.tokenizer

    async def play():
        jobs = []
        for row in rows:
            prompt = tok.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
            params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=TURN_CAP, seed=None)
            jobs.append(executor.execute(prompt, row["label"], params, MAX_LEN, tok, engine))
        return await asyncio.gather(*jobs)

    calls_before = engine.calls
    results = engine.loop.run_until_complete(play())
    eos = tok.eos_token
    for row, result in zip(rows, results, strict=True):
        stream = result["observation_tokens"]
        ranges = result["action_ranges"]
        assert len(ranges) >= 2, "the forced tool call must lead to a second turn"
        action_texts = [tok.decode(stream[a:b], skip_special_tokens=False) for a, b in ranges]
        assert re.fullmatch(CALL_REGEX[env_id] + re.escape(eos), action_texts[0]), action_texts[0]
        actions = [t[: -len(eos)] if t.endswith(eos) else t for t in action_texts]
        total, done, messages, tools = _replay(row["label"], actions)
        assert result["reward"] == pytest.approx(total)
        # the prompt carries the env's tool schemas, as every trainer renders it (envs.core.chat)
        rendered = tok.apply_chat_template(messages, tokenize=False, **template_kwargs(tools))
        decoded = tok.decode(stream, skip_special_tokens=False)
        # the stream stops right after the last action: the template's text after it is never generated
        assert rendered.startswith(decoded), (decoded, rendered)
        last_end = ranges[-1][1]
        assert last_end == len(stream)
        # everything outside the action ranges is template / observation text (action mask 0)
        mask = [0] * len(stream)
        for a, b in ranges:
            mask[a:b] = [1] * (b - a)
        assert sum(mask) == sum(b - a for a, b in ranges)
        outside = tok.decode([t for t, m in zip(stream, mask, strict=True) if not m], skip_special_tokens=False)
        assert outside.count("<|im_start|>user") == 1 + (len(ranges) - 1)  # the prompt, then one observation per turn
        logs = result["extra_logs"]
        assert sorted(logs) == sorted(executor.config.log_keys())
        assert logs["env/finished"] == float(done)
    assert engine.calls - calls_before >= 2 * len(rows)
