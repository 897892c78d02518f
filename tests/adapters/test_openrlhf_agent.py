"""The generated OpenRLHF agent file, loaded and run by OpenRLHF's own code against a scripted engine.

What this proves: the file loads through OpenRLHF 0.11.2's loader (its ``_load_agent_executor``,
taken from ``vllm_engine.py`` by source because that module imports vLLM and Ray), and
``MultiTurnAgentExecutor.execute`` plays whole episodes with our agent instance: the token stream is
exactly the chat template's rendering of the conversation, action ranges cover the model's tokens
only, rewards sum to the env's episode reward, logs keep a fixed key set, env steps leave the event
loop free. What it does not prove: anything about vLLM itself (the fake engine mimics its
``RequestOutput``: stop tokens kept in ``token_ids``, dropped from ``text``) or GPU training.
"""

from __future__ import annotations

import ast
import asyncio
import copy
import importlib.util
import math
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("openrlhf.utils.agent")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

import envs  # noqa: E402
from adapters.episodes import EpisodeSpec, make_env  # noqa: E402
from adapters.openrlhf.dataset import prompt_rows, write_agent_file  # noqa: E402

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# DeepSeek-R1-distill-like: the end-of-turn marker is the EOS itself, with nothing after it.
R1_LIKE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}"
    "{% elif m['role'] == 'user' %}<|User|>{{ m['content'] }}"
    "{% else %}<|Assistant|>{{ m['content'] }}<|end|>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|Assistant|><think>\n{% endif %}"
)


def _tokenizer(template: str, eos: str, specials: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = ["Kofi has 56 shells. How many are there at the end? The answer is \\boxed{94}.",
              '<tool_call>{"name": "calculator", "arguments": {"expression": "(56 + 13) + 25"}}</tool_call>',
              "<tool_response>\n94\n</tool_response> You are a careful assistant. Solve the problem step by step."]
    tok.train_from_iterator(corpus * 4, trainer=trainer)
    others = [s for s in specials if s != eos]
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, bos_token=others[0], pad_token=others[0],
                                   additional_special_tokens=others[1:], chat_template=template)


@pytest.fixture(scope="module")
def chatml():
    return _tokenizer(CHATML, "<|im_end|>", ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])


@pytest.fixture(scope="module")
def r1_like():
    return _tokenizer(R1_LIKE, "<|end|>", ["<|begin|>", "<|User|>", "<|Assistant|>", "<|end|>"])


def _load_with_openrlhf(path: Path):
    """OpenRLHF's own ``_load_agent_executor``, extracted from ``vllm_engine.py`` (which imports vLLM)."""
    origin = importlib.util.find_spec("openrlhf").submodule_search_locations[0]
    source = Path(origin, "trainer", "ray", "vllm_engine.py").read_text()
    func = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == "_load_agent_executor")
    namespace: dict = {}
    exec("from openrlhf.utils.agent import AgentExecutorBase\n" + ast.unparse(func), namespace)  # noqa: S102
    return namespace["_load_agent_executor"](str(path))


class FakeEngine:
    """Stands in for OpenRLHF's vLLM actor: ``generate(token_ids, params)`` -> a RequestOutput-like object.

    ``policy(prompt_text) -> (text, how)`` scripts the model; ``how`` is ``"eos"`` (stopped on the EOS
    token, which vLLM keeps in ``token_ids`` but not in ``text``), ``"stop_string"`` (no EOS) or
    ``"length"``. Generation respects ``max_tokens`` like vLLM.
    """

    def __init__(self, tokenizer, policy):
        self.tokenizer, self.policy = tokenizer, policy
        self.prompts: list[str] = []

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        prompt = self.tokenizer.decode(prompt_token_ids, skip_special_tokens=False)
        self.prompts.append(prompt)
        text, how = self.policy(prompt)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        finish = "stop"
        if how == "eos":
            ids = ids + [self.tokenizer.eos_token_id]
        if len(ids) > sampling_params.max_tokens:
            ids, finish = ids[: sampling_params.max_tokens], "length"
        elif how == "length":
            finish = "length"
        text = self.tokenizer.decode([i for i in ids if i != self.tokenizer.eos_token_id], skip_special_tokens=False)
        await asyncio.sleep(0)
        return SimpleNamespace(outputs=[SimpleNamespace(token_ids=ids, text=text, finish_reason=finish, logprobs=None)])


def _sampling_params():
    return SimpleNamespace(max_tokens=None, logprobs=None, temperature=1.0)


def _scripted(rows, transcripts_key="<|im_start|>assistant"):
    """A policy that plays each row's env demonstration: it finds the row by its question."""
    scripts = {}
    for row in rows:
        spec = EpisodeSpec.from_label(row["label"])
        env = make_env(spec.env_id, spec.make_kwargs)
        env.reset(seed=spec.seed, options={"item": spec.item})
        scripts[row["prompt"][-1]["content"]] = env.unwrapped.demonstration()
        env.close()

    def policy(prompt: str):
        key = next(k for k in scripts if k in prompt)
        turn = prompt.count(transcripts_key) - 1
        return scripts[key][turn], "eos"

    return policy, scripts


@pytest.fixture(scope="module")
def arithmetic_agent(tmp_path_factory):
    out = tmp_path_factory.mktemp("orlhf")
    path = write_agent_file(out / "agent.py", [("AgentR1/Arithmetic-v0", {})], step_timeout=30)
    return _load_with_openrlhf(path)


def _run(executor, tokenizer, row, engine, max_length=4096):
    prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    return asyncio.run(executor.execute(prompt, row["label"], _sampling_params(), max_length, tokenizer, engine))


def _direct_episode(row, actions):
    """Play ``actions`` on the env directly: (total reward, final info, messages)."""
    spec = EpisodeSpec.from_label(row["label"])
    env = make_env(spec.env_id, spec.make_kwargs)
    _, info = env.reset(seed=spec.seed, options={"item": spec.item})
    messages, total = list(info["messages"]), 0.0
    for action in actions:
        _, reward, term, trunc, info = env.step(action)
        total += reward
        messages.append({"role": "assistant", "content": action})
        messages += info["new_messages"]
        if term or trunc:
            break
    env.close()
    return total, info, messages


def test_loaded_class_is_openrlhf_executor(arithmetic_agent):
    from openrlhf.utils.agent import AgentExecutorBase, MultiTurnAgentExecutor

    assert isinstance(arithmetic_agent, MultiTurnAgentExecutor) and isinstance(arithmetic_agent, AgentExecutorBase)
    assert "env/acc" in arithmetic_agent.config.log_keys()
    assert "env/reward/tool_call_valid" in arithmetic_agent.config.log_keys()


def test_demonstration_episodes_match_chat_template_and_env_reward(arithmetic_agent, chatml):
    rows = prompt_rows("arithmetic-v0", count=4, seed=3)
    policy, scripts = _scripted(rows)
    for row in rows:
        engine = FakeEngine(chatml, policy)
        result = _run(arithmetic_agent, chatml, row, engine)
        actions = scripts[row["prompt"][-1]["content"]]
        total, info, messages = _direct_episode(row, actions)
        assert len(actions) == 2  # a calculator call, then the answer
        assert result["reward"] == pytest.approx(total)
        assert result["scores"].item() == 1.0 if hasattr(result["scores"], "item") else result["scores"] == 1.0
        logs = result["extra_logs"]
        assert logs["env/acc"] == 1.0 and logs["env/finished"] == 1.0 and logs["env/env_error"] == 0.0
        assert logs["env/turns"] == 1.0
        for name, value in info["episode_reward_components"].items():
            assert logs[f"env/reward/{name}"] == pytest.approx(value)
        assert sorted(logs) == sorted(arithmetic_agent.config.log_keys())
        # the whole token stream is the chat template's rendering of the conversation (the final
        # "\n" after the last <|im_end|> is template text the model never generates)
        stream = chatml.decode(result["observation_tokens"], skip_special_tokens=False)
        assert stream + "\n" == chatml.apply_chat_template(messages, tokenize=False)
        # action ranges hold exactly the model's tokens: each action and its EOS
        spans = [chatml.decode(result["observation_tokens"][a:b], skip_special_tokens=False) for a, b in result["action_ranges"]]
        assert spans == [a + "<|im_end|>" for a in actions]


PYTHON = {"calculator": False, "python": {"wall_s": 10}}


def test_python_tool_episodes_run_the_code_in_the_sandbox(tmp_path, chatml):
    executor = _load_with_openrlhf(write_agent_file(tmp_path / "agent.py", [("AgentR1/Arithmetic-v0", PYTHON)],
                                                    step_timeout=60))
    rows = prompt_rows("arithmetic-v0", PYTHON, count=2, seed=4)
    policy, scripts = _scripted(rows)
    for row in rows:
        result = _run(executor, chatml, row, FakeEngine(chatml, policy))
        actions = scripts[row["prompt"][-1]["content"]]
        total, info, messages = _direct_episode(row, actions)
        answer = EpisodeSpec.from_label(row["label"]).item["answer"]
        assert "```python\nprint(" in actions[0] and messages[-2]["content"] == f"```output\n{answer}\n```"
        assert result["reward"] == pytest.approx(total) and result["extra_logs"]["env/acc"] == 1.0
        stream = chatml.decode(result["observation_tokens"], skip_special_tokens=False)
        assert stream + "\n" == chatml.apply_chat_template(messages, tokenize=False)
        assert f"```output\n{answer}\n```" in stream  # the sandbox's answer reached the model's context


def test_wrong_answer_and_malformed_call(arithmetic_agent, chatml):
    row = prompt_rows("arithmetic-v0", count=1, seed=11)[0]
    script = ["<tool_call>{not json}</tool_call>", "The answer is \\boxed{-1}."]
    engine = FakeEngine(chatml, lambda p: (script[p.count("<|im_start|>assistant") - 1], "eos"))
    result = _run(arithmetic_agent, chatml, row, engine)
    total, info, _ = _direct_episode(row, script)
    assert result["reward"] == pytest.approx(total)
    logs = result["extra_logs"]
    assert logs["env/acc"] == 0.0 and logs["env/invalid_actions"] == 1.0
    assert logs["env/reward/invalid_action"] == pytest.approx(-0.1)
    assert float(result["scores"]) == 0.0


def test_turn_cut_by_stop_string_gets_the_whole_end_marker(arithmetic_agent, chatml):
    row = prompt_rows("arithmetic-v0", count=1, seed=5)[0]
    policy, scripts = _scripted([row])
    engine = FakeEngine(chatml, lambda p: (policy(p)[0], "stop_string"))
    result = _run(arithmetic_agent, chatml, row, engine)
    _, _, messages = _direct_episode(row, scripts[row["prompt"][-1]["content"]])
    stream = chatml.decode(result["observation_tokens"], skip_special_tokens=False)
    # the feedback closes the unterminated turn itself: the stream is still the template's rendering
    assert stream + "<|im_end|>\n" == chatml.apply_chat_template(messages, tokenize=False)


def test_template_whose_turn_end_is_the_eos(tmp_path, r1_like):
    path = write_agent_file(tmp_path / "agent.py", [("AgentR1/Arithmetic-v0", {})])
    executor = _load_with_openrlhf(path)
    row = prompt_rows("arithmetic-v0", count=1, seed=8)[0]
    policy, scripts = _scripted([row], transcripts_key="<|Assistant|>")
    result = _run(executor, r1_like, row, FakeEngine(r1_like, policy))
    _, _, messages = _direct_episode(row, scripts[row["prompt"][-1]["content"]])
    stream = r1_like.decode(result["observation_tokens"], skip_special_tokens=False)
    # each turn was generated after the generation prompt "<|Assistant|><think>\n", which the template's
    # rendering of past turns leaves out; otherwise nothing stray sits between an action's EOS and the next turn
    expected = r1_like.apply_chat_template(messages, tokenize=False).replace("<|Assistant|>", "<|Assistant|><think>\n")
    assert stream == expected
    assert result["extra_logs"]["env/acc"] == 1.0


def test_budget_exhausted_episode_keeps_fixed_log_keys(arithmetic_agent, chatml):
    row = prompt_rows("arithmetic-v0", count=1, seed=2)[0]
    policy, _ = _scripted([row])
    prompt_len = len(chatml(chatml.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True),
                            add_special_tokens=False)["input_ids"])
    engine = FakeEngine(chatml, policy)
    first_action = policy(chatml.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True))[0]
    action_len = len(chatml(first_action, add_special_tokens=False)["input_ids"]) + 1
    result = _run(arithmetic_agent, chatml, row, engine, max_length=prompt_len + action_len + 3)
    logs = result["extra_logs"]
    assert sorted(logs) == sorted(arithmetic_agent.config.log_keys())
    assert logs["env/finished"] == 0.0 and logs["env/acc"] == 0.0
    # the executor stopped the episode: the env ended it as unfinished (penalty, process bonus forfeited)
    assert logs["env/unfinished"] == 1.0 and logs["env/reward/unfinished"] < 0
    components = [v for k, v in logs.items() if k.startswith("env/reward/")]
    assert result["reward"] == pytest.approx(sum(components), abs=1e-6) and result["reward"] < 0


def _qa_executor(tmp_path, **config):
    entry = next(e for e in envs.suite_envs() if e.env_id == "AgentR1/HotpotQA-v0")
    kwargs = dict(entry.offline_kwargs)
    executor = _load_with_openrlhf(write_agent_file(tmp_path / "agent.py", [(entry.env_id, kwargs)], **config))
    return executor, prompt_rows(entry.env_id, kwargs, count=1, seed=0)[0]


def test_budget_cut_hotpotqa_episode_scores_below_a_finished_wrong_answer(tmp_path, chatml):
    """In OpenRLHF 0.11.2's own MultiTurnAgentExecutor: the loop stops a search episode for lack of
    budget (it never tells the agent); the agent ends it through the env, below a wrong answer."""
    executor, row = _qa_executor(tmp_path)
    search = '<think>Look it up.</think>\n<search>Velmora Textiles founder</search>'
    wrong = "<think>I think so.</think>\n<answer>Oslo</answer>"
    finished = _run(executor, chatml, row, FakeEngine(chatml, lambda p: ([search, wrong][p.count("<|im_start|>assistant") - 1], "eos")))
    assert finished["extra_logs"]["env/finished"] == 1.0 and finished["extra_logs"]["env/acc"] == 0.0
    assert finished["extra_logs"]["env/format"] > 0  # valid format, wrong answer
    prompt = chatml.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    budget = len(chatml(prompt, add_special_tokens=False)["input_ids"]) + len(chatml(search)["input_ids"]) + 4
    cut = _run(executor, chatml, row, FakeEngine(chatml, lambda p: (search, "eos")), max_length=budget)
    assert len(cut["action_ranges"]) == 1 and cut["extra_logs"]["env/finished"] == 0.0
    assert cut["extra_logs"]["env/unfinished"] == 1.0
    assert cut["reward"] < finished["reward"]


def test_env_error_episodes_are_flagged_and_dropped_when_configured(tmp_path, chatml, monkeypatch):
    from envs.arithmetic.env import ArithmeticEnv

    real_step = ArithmeticEnv.step

    def infra_fault(self, action):  # the env reports an infrastructure fault in its final metrics
        obs, reward, term, trunc, info = real_step(self, action)
        if "metrics" in info:
            info["metrics"] = {**info["metrics"], "env_error": 1.0}
        return obs, reward, term, trunc, info

    monkeypatch.setattr(ArithmeticEnv, "step", infra_fault)
    rows = prompt_rows("arithmetic-v0", count=1, seed=7)
    policy, _ = _scripted(rows)
    kept = _load_with_openrlhf(write_agent_file(tmp_path / "keep.py", [("AgentR1/Arithmetic-v0", {})]))
    result = _run(kept, chatml, rows[0], FakeEngine(chatml, policy))
    assert result["extra_logs"]["env/env_error"] == 1.0 and result["extra_logs"]["env/dropped"] == 0.0
    assert result["reward"] > 0  # the env never charged the fault; the model's correct answer stands
    dropping = _load_with_openrlhf(write_agent_file(tmp_path / "drop.py", [("AgentR1/Arithmetic-v0", {})],
                                                    drop_env_errors=True))
    result = _run(dropping, chatml, rows[0], FakeEngine(chatml, policy))
    assert result["reward"] == 0.0 and math.isnan(float(result["scores"]))
    assert result["extra_logs"]["env/dropped"] == 1.0
    assert sorted(result["extra_logs"]) == sorted(dropping.config.log_keys())


def test_env_steps_run_off_the_event_loop(arithmetic_agent, chatml, monkeypatch):
    from envs.arithmetic.env import ArithmeticEnv

    real_step = ArithmeticEnv.step
    active, peak, lock = [0], [0], threading.Lock()

    def slow_step(self, action):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.15)  # a blocking env call (a verifier, a retriever)
        with lock:
            active[0] -= 1
        return real_step(self, action)

    monkeypatch.setattr(ArithmeticEnv, "step", slow_step)
    rows = prompt_rows("arithmetic-v0", count=4, seed=20)
    policy, _ = _scripted(rows)

    async def main():
        ticks = 0
        done = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        tick_task = asyncio.create_task(ticker())
        results = await asyncio.gather(*[
            arithmetic_agent.execute(chatml.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True),
                                     r["label"], _sampling_params(), 4096, chatml, FakeEngine(chatml, policy))
            for r in rows])
        done.set()
        await tick_task
        return ticks, results

    ticks, results = asyncio.run(main())
    assert all(r["extra_logs"]["env/acc"] == 1.0 for r in results)
    assert peak[0] > 1  # the samples' env steps overlapped on worker threads
    assert ticks >= 10  # 2 x 0.15 s of blocking steps per sample, yet the loop kept ticking


def test_env_failure_ends_the_episode_without_raising(arithmetic_agent, chatml, monkeypatch):
    from envs.arithmetic.env import ArithmeticEnv

    def broken(self, action):
        raise RuntimeError("env bug")

    monkeypatch.setattr(ArithmeticEnv, "step", broken)
    row = prompt_rows("arithmetic-v0", count=1, seed=1)[0]
    result = _run(arithmetic_agent, chatml, row, FakeEngine(chatml, lambda p: ("\\boxed{1}", "eos")))
    assert result["reward"] == 0.0
    assert result["extra_logs"]["env/env_error"] == 1.0
    assert sorted(result["extra_logs"]) == sorted(arithmetic_agent.config.log_keys())


def test_bad_label_is_a_clear_error(arithmetic_agent, chatml):
    row = {"prompt": [{"role": "user", "content": "hi"}], "label": "not json"}
    with pytest.raises(ValueError, match="label is not JSON"):
        _run(arithmetic_agent, chatml, row, FakeEngine(chatml, lambda p: ("x", "eos")))


OFFLINE_ENVS = [e for e in envs.suite_envs() if e.offline_kwargs is not None]


@pytest.mark.parametrize("entry", OFFLINE_ENVS, ids=[e.env_id for e in OFFLINE_ENVS])
def test_every_offline_suite_env_plays_through_openrlhf(entry, chatml, tmp_path):
    """math-v0, hotpotqa-v0 and every other env with shipped data: demonstrations earn acc 1."""
    kwargs = dict(entry.offline_kwargs)
    env = make_env(entry.env_id, kwargs)
    count = 3 if getattr(env.unwrapped, "items", None) is None else min(3, len(env.unwrapped.items))
    env.close()
    rows = prompt_rows(entry.env_id, kwargs, count=count, seed=0)
    executor = _load_with_openrlhf(write_agent_file(tmp_path / "agent.py", [(entry.env_id, kwargs)]))
    policy, scripts = _scripted(rows)
    for row in rows:
        result = _run(executor, chatml, row, FakeEngine(chatml, policy), max_length=16384)
        total, info, messages = _direct_episode(row, scripts[row["prompt"][-1]["content"]])
        assert result["reward"] == pytest.approx(total)
        assert result["extra_logs"]["env/acc"] == 1.0
        assert result["extra_logs"]["env/finished"] == 1.0
        stream = chatml.decode(result["observation_tokens"], skip_special_tokens=False)
        assert stream + "\n" == chatml.apply_chat_template(messages, tokenize=False)


def test_sampling_params_are_not_shared_between_turns(arithmetic_agent, chatml):
    """OpenRLHF mutates ``max_tokens`` per turn; the engine must see the shrinking budget."""
    seen = []
    row = prompt_rows("arithmetic-v0", count=1, seed=4)[0]
    policy, _ = _scripted([row])

    class Recording(FakeEngine):
        async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
            seen.append((len(prompt_token_ids), copy.copy(sampling_params.max_tokens)))
            return await super().generate(prompt_token_ids, sampling_params, multi_modal_data)

    _run(arithmetic_agent, chatml, row, Recording(chatml, policy), max_length=2048)
    assert [n + budget for n, budget in seen] == [2048] * len(seen) and len(seen) == 2


def test_each_turn_is_capped_at_rollout_max_new_tokens(arithmetic_agent, chatml):
    """``--rollout.max_new_tokens`` arrives as ``sampling_params.max_tokens``; OpenRLHF's executor then
    overwrites it with the remaining episode budget, so the agent must keep it as the per-turn cap."""
    seen = []
    row = prompt_rows("arithmetic-v0", count=1, seed=4)[0]
    policy, _ = _scripted([row])

    class Recording(FakeEngine):
        async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
            seen.append(sampling_params.max_tokens)
            return await super().generate(prompt_token_ids, sampling_params, multi_modal_data)

    params = SimpleNamespace(max_tokens=6, logprobs=None, temperature=1.0)
    prompt = chatml.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    result = asyncio.run(arithmetic_agent.execute(prompt, row["label"], params, 2048, chatml, Recording(chatml, policy)))
    assert seen and all(budget == 6 for budget in seen), seen
    assert all(b - a <= 6 for a, b in result["action_ranges"])
    assert result["extra_logs"]["env/acc"] == 0.0  # the capped (cut) actions cannot solve the problem


def test_turn_end_cache_survives_tokenizer_copies(chatml):
    """OpenRLHF pickles the tokenizer into every Ray call: copies must hit the same cache entry."""
    import pickle

    from adapters.openrlhf import agent

    first = agent.turn_end(chatml)
    size = len(agent._TURN_ENDS)
    for _ in range(3):
        assert agent.turn_end(pickle.loads(pickle.dumps(chatml))) == first
    assert len(agent._TURN_ENDS) == size
    assert first.tail == "<|im_end|>\n"
