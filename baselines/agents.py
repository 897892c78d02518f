"""The Agent-R1 paper's evaluation baselines on the QA envs: Naive RAG and Base Tool Call.

* **Base Tool Call**: the instruct model plays the env as is (its prompt, its search tool, several
  turns), with no RL. This is exactly the suite's ordinary rollout; the class exists so the
  baseline has a name on the command line (``--agent tool-call``).
* **Naive RAG**: retrieve once with the question (the env's own search tool, so the same backend,
  ``top_k`` and passage formatting), put the passages in the prompt, and answer in a single turn.
  The answer is scored by the env exactly like a policy's final turn (EM / F1 / cover-EM, format).

Both return ``baselines.grpo.rollout.Episode`` objects, so ``baselines.evaluate`` summarises them
like any other run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from baselines.grpo.rollout import ChatFormat, Episode, Generator, Sampling, run_episodes
from envs.core.parsing import ToolCall
from envs.core.records import EpisodeRecorder
from envs.core.tools import run_tool

logger = logging.getLogger(__name__)

NAIVE_RAG_TEMPLATE = (
    "Answer the question using the passages below. Give only the answer, as short as possible, inside "
    "<answer> and </answer>, for example <answer>Paris</answer>.\n"
    "<information>\n{passages}\n</information>\n"
    "Question: {question}"
)


class BaseToolCallAgent:
    """The model with the env's tool, no RL: the env's own multi-turn rollout."""

    name = "tool-call"

    def __init__(self, chat: ChatFormat):
        self.chat = chat

    def run(self, generator: Generator, envs: Sequence[Any], resets: Sequence[Mapping[str, Any]], groups: Sequence[int],
            sampling: Sampling, max_episode_tokens: int) -> list[Episode]:
        return run_episodes(generator, self.chat, envs, resets, groups, sampling, max_episode_tokens)


class NaiveRAGAgent:
    """Retrieve once with the question, answer in one turn (Agent-R1's Naive RAG baseline)."""

    name = "naive-rag"

    def __init__(self, chat: ChatFormat, *, template: str = NAIVE_RAG_TEMPLATE, tool_name: str = "search"):
        self.chat = chat
        self.template = template
        self.tool_name = tool_name

    def prompt_messages(self, env: Any, info: Mapping[str, Any]) -> list[dict[str, str]]:
        """The single-turn prompt: the env's system prompt (if any), then passages and question."""
        base = env.unwrapped
        if self.tool_name not in getattr(base, "tools", {}):
            raise ValueError(f"naive RAG needs an env with a {self.tool_name!r} tool; {base.spec.id if base.spec else base} has none")
        question = str(info["item"]["question"])
        result = run_tool(base.tools, ToolCall(name=self.tool_name, arguments={"query": question}))
        passages = result.content if result.ok else "No results found."
        messages = [m for m in info["messages"] if m["role"] == "system"]
        messages.append({"role": "user", "content": self.template.format(passages=passages, question=question)})
        return messages

    def run(self, generator: Generator, envs: Sequence[Any], resets: Sequence[Mapping[str, Any]], groups: Sequence[int],
            sampling: Sampling, max_episode_tokens: int) -> list[Episode]:
        episodes: list[Episode] = []
        logs: list[EpisodeRecorder] = []
        for i, reset_kwargs in enumerate(resets):
            _, info = envs[i].reset(**reset_kwargs)
            messages = self.prompt_messages(envs[i], info)
            prompt = self.chat.encode(self.chat.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True))
            logs.append(EpisodeRecorder(info, messages=messages))  # what the model saw, not the env's prompt
            episodes.append(Episode(group=int(groups[i]), prompt_ids=prompt, item=dict(info.get("item", {})),
                                    log=logs[-1]))
        budgets = [max(1, min(sampling.max_new_tokens, max_episode_tokens - ep.length)) for ep in episodes]
        outputs = generator.generate([ep.prompt_ids for ep in episodes], budgets, sampling)
        for i, (ep, log, out) in enumerate(zip(episodes, logs, outputs, strict=True)):
            ep.append(out, model=True, turn=0)
            text = self.chat.decode(out)
            ep.responses.append(text)
            obs, reward, terminated, truncated, info = envs[i].step(text)
            log.step(text, obs, reward, terminated, truncated, info)
            rewards, infos = [float(reward)], [info]
            if not (terminated or truncated):
                # a single-turn baseline: a tool call here is not run; the env scores what it can
                answer = text.split("<tool_call>")[0].split("<search>")[0]
                obs, reward, terminated, truncated, info = envs[i].step(answer)
                log.step(answer, obs, reward, terminated, truncated, info)
                rewards.append(float(reward))
                infos.append(info)
            ep.turn_rewards = [sum(rewards)]
            for step_info in infos:
                for name, value in step_info.get("reward_components", {}).items():
                    ep.components[name] = ep.components.get(name, 0.0) + float(value)
            ep.metrics = {k: float(v) for k, v in infos[-1].get("metrics", {}).items() if isinstance(v, int | float)}
            ep.terminated, ep.truncated, ep.done = bool(terminated), bool(truncated), True
        return episodes


def make_agent(name: str, *, chat: ChatFormat) -> BaseToolCallAgent | NaiveRAGAgent:
    """``"tool-call"`` or ``"naive-rag"``."""
    if name == "tool-call":
        return BaseToolCallAgent(chat)
    if name == "naive-rag":
        return NaiveRAGAgent(chat)
    raise ValueError(f"unknown agent {name!r}; choose 'tool-call' or 'naive-rag'")
