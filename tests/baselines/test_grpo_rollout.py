"""Multi-turn rollouts: the token stream, and the loss mask that keeps observations out."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import envs  # noqa: E402
from baselines.grpo.algorithms import turn_advantages  # noqa: E402
from baselines.grpo.rollout import ChatFormat, Sampling, run_episodes  # noqa: E402
from baselines.grpo.trainer import batch_tensors  # noqa: E402

ITEM = {"question": "Ada has 3 apples. Ada gets 4 more. How many apples does Ada have now?", "answer": "7",
        "expression": "3 + 4"}
TOOL_TURN = '<tool_call>{"name": "calculator", "arguments": {"expression": "3 + 4"}}</tool_call>'
FINAL_TURN = "The answer is \\boxed{7}."


class ScriptedGenerator:
    """Writes the given turns in order (each ended by the stop token), like a model would."""

    def __init__(self, chat: ChatFormat, turns: list[str], *, stop: bool = True):
        self.chat, self.turns, self.stop, self.calls = chat, turns, stop, 0

    def generate(self, prompts, budgets, sampling):
        text = self.turns[min(self.calls, len(self.turns) - 1)]
        self.calls += 1
        ids = self.chat.encode(text) + ([self.chat.stop_ids[0]] if self.stop else [])
        return [ids[:b] for b in budgets]


def _play(tokenizer, turns, *, stop=True, max_tokens=2048, **make_kwargs):
    chat = ChatFormat(tokenizer)
    env = envs.make("arithmetic-v0", digits=1, num_operations=1, **{"calculator": True, **make_kwargs})
    episodes = run_episodes(ScriptedGenerator(chat, turns, stop=stop), chat, [env],
                            [{"seed": 0, "options": {"item": ITEM}}], [0], Sampling(max_new_tokens=64), max_tokens)
    return chat, env, episodes[0]


def test_loss_mask_covers_exactly_the_model_tokens(tiny_tokenizer):
    chat, env, ep = _play(tiny_tokenizer, [TOOL_TURN, FINAL_TURN])
    eos = chat.stop_ids[0]
    model_ids = [t for t, m in zip(ep.tokens, ep.action_mask, strict=True) if m]
    assert model_ids == chat.encode(TOOL_TURN) + [eos] + chat.encode(FINAL_TURN) + [eos]
    observation = tiny_tokenizer.decode([t for t, m in zip(ep.tokens, ep.action_mask, strict=True) if not m])
    assert "<tool_response>" in observation and "7" in observation
    assert "<tool_response>" not in tiny_tokenizer.decode(model_ids)
    assert ep.responses == [TOOL_TURN, FINAL_TURN]
    assert ep.terminated and not ep.cut
    assert ep.metrics["acc"] == 1.0 and ep.metrics["turns"] == 1.0
    assert ep.components == pytest.approx({"tool_call_valid": 0.05, "answer": 1.0, "format": 0.1})
    assert ep.turn_rewards == pytest.approx([0.05, 1.1])
    assert set(ep.token_turn[i] for i, m in enumerate(ep.action_mask) if m) == {0, 1}


def test_token_stream_is_the_chat_template_rendering(tiny_tokenizer):
    chat, env, ep = _play(tiny_tokenizer, [TOOL_TURN, FINAL_TURN])
    messages = env.unwrapped._state.messages
    rendered = tiny_tokenizer.apply_chat_template(messages, tools=[t.schema() for t in env.unwrapped.tools.values()],
                                                  tokenize=False)
    stream = tiny_tokenizer.decode(ep.prompt_ids + ep.tokens)
    assert rendered.startswith(stream)
    assert rendered[len(stream):] == chat._close_rest  # only the final turn's closing newline is missing


def test_python_tool_turns_run_the_code_and_keep_its_output_out_of_the_loss(tiny_tokenizer):
    code_turn = "Let me compute it.\n```python\nprint(3 + 4)\n```"
    chat, env, ep = _play(tiny_tokenizer, [code_turn, FINAL_TURN], calculator=False, python={"wall_s": 10})
    eos = chat.stop_ids[0]
    assert [t for t, m in zip(ep.tokens, ep.action_mask, strict=True) if m] == (
        chat.encode(code_turn) + [eos] + chat.encode(FINAL_TURN) + [eos])
    observation = tiny_tokenizer.decode([t for t, m in zip(ep.tokens, ep.action_mask, strict=True) if not m])
    assert "```output\n7\n```" in observation  # run in the sandbox, shown to the model, never trained on
    assert ep.metrics["acc"] == 1.0 and ep.components == pytest.approx({"tool_call_valid": 0.05, "answer": 1.0,
                                                                        "format": 0.1})
    tools = [t.schema() for t in env.unwrapped.tools.values()]
    assert [t["function"]["name"] for t in tools] == ["python"]
    rendered = tiny_tokenizer.apply_chat_template(env.unwrapped._state.messages, tools=tools, tokenize=False)
    assert rendered.startswith(tiny_tokenizer.decode(ep.prompt_ids + ep.tokens))  # the prompt holds its schema


def test_turn_without_stop_token_is_closed_by_the_template(tiny_tokenizer):
    chat, env, ep = _play(tiny_tokenizer, [TOOL_TURN, FINAL_TURN], stop=False)
    stream = tiny_tokenizer.decode(ep.prompt_ids + ep.tokens)
    assert TOOL_TURN + chat.turn_close + "<|im_start|>user" in stream
    assert ep.metrics["acc"] == 1.0


def test_batch_tensors_mask_excludes_observations(tiny_tokenizer):
    chat, env, ep = _play(tiny_tokenizer, [TOOL_TURN, FINAL_TURN])
    advantages = turn_advantages([[ep.turn_rewards]], "grpo", turn_level=True, scale_by_std=False)
    ids, attn, positions, mask, adv, resp = batch_tensors([ep], advantages[0], tiny_tokenizer.pad_token_id)
    assert resp == len(ep.tokens)
    assert ids[0, -resp:].tolist() == ep.tokens
    assert mask[0].tolist() == [float(m) for m in ep.action_mask]
    assert all(a == 0.0 for a, m in zip(adv[0].tolist(), ep.action_mask, strict=True) if not m)
    assert positions[0, -1].item() == ep.length - 1
    # a dropped episode (an infrastructure fault) keeps its row but trains on nothing
    _, _, _, mask, adv, _ = batch_tensors([ep, ep], [advantages[0][0], None], tiny_tokenizer.pad_token_id)
    assert mask[0].sum() > 0 and mask[1].sum() == 0 and adv[1].abs().sum() == 0


def test_env_error_episodes_are_left_out_of_their_group():
    from baselines.grpo.config import GRPOConfig
    from baselines.grpo.rollout import Episode
    from baselines.grpo.trainer import episode_advantages_for

    def episode(reward, error=0.0):
        ep = Episode(group=0, prompt_ids=[1])
        ep.append([2, 3], model=True, turn=0)
        ep.turn_rewards, ep.metrics = [reward], {"env_error": error}
        return ep

    group = [episode(1.0), episode(0.0), episode(0.0, error=1.0)]  # the fault scored neutral (0)
    kept = episode_advantages_for(group, 1, GRPOConfig(group_size=3, scale_by_std=False))
    assert kept == [[0.5], [-0.5], None]  # baseline over the two real episodes only
    charged = episode_advantages_for(group, 1, GRPOConfig(group_size=3, scale_by_std=False, drop_env_errors=False))
    assert charged[2] == [pytest.approx(-1 / 3)]


def test_episode_cut_at_the_token_budget_is_ended_by_the_env(tiny_tokenizer):
    chat, env, ep = _play(tiny_tokenizer, [TOOL_TURN] * 5, max_tokens=0)
    assert ep.cut and ep.truncated and ep.tokens == [] and ep.metrics["acc"] == 0.0
    assert ep.metrics["unfinished"] == 1.0 and ep.turn_token_counts() == [0]
    first_turn = len(chat.encode(TOOL_TURN)) + 1
    _, _, probe = _play(tiny_tokenizer, [TOOL_TURN], max_tokens=0)
    limit = len(probe.prompt_ids) + first_turn + 5  # room for the first turn, not for its observation
    chat, env, ep = _play(tiny_tokenizer, [TOOL_TURN] * 5, max_tokens=limit)
    assert ep.cut and ep.responses == [TOOL_TURN]
    assert ep.metrics["acc"] == 0.0 and ep.metrics["unfinished"] == 1.0
    # the tool turn's reward, then the env's unfinished score (process bonus forfeited, penalty)
    assert len(ep.turn_rewards) == 2 and ep.turn_rewards[0] == pytest.approx(0.05)
    assert ep.reward < 0 and ep.turn_token_counts() == [first_turn, 0]
    assert ep.components["unfinished"] < 0
    with pytest.raises(Exception, match="over"):  # the env's episode is over, as after a last step
        env.step(FINAL_TURN)


def _play_qa(tokenizer, turns, max_tokens):
    entry = next(e for e in envs.suite_envs() if e.env_id == "AgentR1/HotpotQA-v0")
    env = envs.make(entry.env_id, **entry.offline_kwargs)
    chat = ChatFormat(tokenizer)
    episodes = run_episodes(ScriptedGenerator(chat, turns), chat, [env], [{"seed": 0, "options": {"index": 0}}], [0],
                            Sampling(max_new_tokens=256), max_tokens)
    env.close()
    return episodes[0]


def test_budget_cut_hotpotqa_episode_scores_below_a_finished_wrong_answer(tiny_tokenizer):
    search = '<think>Look it up.</think>\n<tool_call>{"name": "search", "arguments": {"query": "Velmora Textiles founder"}}</tool_call>'
    wrong = "<think>I think so.</think>\n<answer>Oslo</answer>"
    finished = _play_qa(tiny_tokenizer, [search, wrong], 8192)
    assert finished.terminated and not finished.cut and finished.metrics["acc"] == 0.0
    assert finished.metrics["format"] > 0  # a valid, well-formatted wrong answer
    probe = _play_qa(tiny_tokenizer, [search], 0)
    cut = _play_qa(tiny_tokenizer, [search] * 5, len(probe.prompt_ids) + len(ChatFormat(tiny_tokenizer).encode(search)) + 8)
    assert cut.cut and cut.metrics["unfinished"] == 1.0 and len(cut.responses) == 1
    assert cut.reward < finished.reward
