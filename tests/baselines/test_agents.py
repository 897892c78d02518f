"""Agent-R1's evaluation baselines (Naive RAG, Base Tool Call) on the offline HotpotQA sample."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import envs  # noqa: E402
from baselines.agents import NaiveRAGAgent, make_agent  # noqa: E402
from baselines.grpo.rollout import ChatFormat, Sampling  # noqa: E402
from envs.core.registry import suite_envs  # noqa: E402

OFFLINE = next(e.offline_kwargs for e in suite_envs() if e.env_id == "AgentR1/HotpotQA-v0")


class OracleGenerator:
    """Answers each prompt's question with its gold answer, remembering which prompts it saw."""

    def __init__(self, chat: ChatFormat, items):
        self.chat, self.items, self.prompts = chat, items, []

    def generate(self, prompts, budgets, sampling):
        outs = []
        for p in prompts:
            text = self.chat.tokenizer.decode(p)
            self.prompts.append(text)
            item = next(it for it in self.items if it["question"] in text)
            outs.append(self.chat.encode(f"<answer>{item['answers'][0]}</answer>") + [self.chat.stop_ids[0]])
        return outs


def _envs(n):
    return [envs.make("hotpotqa-v0", **OFFLINE) for _ in range(n)]


def test_naive_rag_retrieves_once_and_answers_in_one_turn(tiny_tokenizer):
    chat = ChatFormat(tiny_tokenizer)
    pool = _envs(2)
    items = pool[0].unwrapped.items
    gen = OracleGenerator(chat, items)
    agent = make_agent("naive-rag", chat=chat)
    assert isinstance(agent, NaiveRAGAgent)
    episodes = agent.run(gen, pool, [{"seed": 0, "options": {"index": i}} for i in (0, 1)], [0, 1],
                         Sampling(max_new_tokens=32), 4096)
    assert len(gen.prompts) == 2  # one generation per question
    assert all("<information>" in p and "Doc 1(Title:" in p for p in gen.prompts)
    for ep in episodes:
        assert ep.metrics["em"] == 1.0 and ep.metrics["turns"] == 0.0 and ep.terminated
        assert ep.reward == pytest.approx(sum(ep.components.values()))
    for env in pool:
        env.close()


def test_base_tool_call_plays_the_env_prompt(tiny_tokenizer):
    chat = ChatFormat(tiny_tokenizer)
    pool = _envs(1)
    gen = OracleGenerator(chat, pool[0].unwrapped.items)
    episodes = make_agent("tool-call", chat=chat).run(gen, pool, [{"seed": 0, "options": {"index": 3}}], [0],
                                                      Sampling(max_new_tokens=32), 4096)
    assert "Doc 1(Title:" not in gen.prompts[0]  # nothing retrieved up front
    assert '"name": "search"' in gen.prompts[0]  # the env's prompt and tool schema
    assert episodes[0].metrics["em"] == 1.0
    pool[0].close()


def test_unknown_agent():
    with pytest.raises(ValueError):
        make_agent("react", chat=None)
