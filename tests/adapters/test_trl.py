"""TRL 1.16.0's own ``GRPOTrainer`` trains a tiny Qwen2 model through our ``environment_factory`` classes.

What this proves, on CPU: TRL accepts the generated class (tools from the env's schemas, Qwen2.5's
chat template as TRL ships it), runs at least 3 optimizer steps on Arithmetic-v0 with the
calculator and on Math-v0, a tool call the model writes reaches the env and is run by it, every
rollout is scored by the env, and TRL's logged per-component rewards, weighted by the env's
weights, add up to its logged reward and to the env's episode reward. The small unit tests pin
the scoring of what TRL's parser does not understand (tag-form and malformed calls, cut
rollouts). Not proven here: vLLM generation, learning progress, multi-GPU.
"""

from __future__ import annotations

import json
import math
import os

import pytest

trl = pytest.importorskip("trl")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from adapters.episodes import make_env  # noqa: E402
from adapters.trl import make_trl_environment, trl_rows  # noqa: E402
from adapters.trl.environment import final_turn_text, tool_method  # noqa: E402
from envs.core.parsing import parse_turn  # noqa: E402

ARITHMETIC = {"digits": 1, "num_operations": 1, "operations": "+"}
MATH = {"dataset": "sample"}


def _qwen25_template() -> str:
    from trl.chat_template_utils import qwen2_5_chat_template

    return qwen2_5_chat_template


def _demo_conversation(env, index: int) -> list[dict]:
    """One golden episode as chat messages, tool calls in the structured form TRL's template renders."""
    _, info = env.reset(seed=index, options={"index": index})
    messages = list(info["messages"])
    for action in env.unwrapped.demonstration():
        turn = parse_turn(action, tag_tools=env.unwrapped.tag_tools)
        observation = env.step(action)[0]
        if turn.tool_calls:
            messages.append({"role": "assistant", "content": turn.body.split("<tool_call>")[0].strip(),
                             "tool_calls": [{"type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                                            for c in turn.tool_calls]})
            content = observation.removeprefix("<tool_response>\n").removesuffix("\n</tool_response>")
            messages.append({"role": "tool", "name": turn.tool_calls[0].name, "content": content})
        else:
            messages.append({"role": "assistant", "content": action})
    return messages


def _texts(tools) -> list[str]:
    """Warm-up / tokenizer corpus: golden Arithmetic (with calculator) and Math episodes, Qwen2.5-rendered."""
    render = _Renderer()
    arithmetic, math_env = make_env("arithmetic-v0", ARITHMETIC), make_env("math-v0", MATH)
    texts = [render(_demo_conversation(arithmetic, 1000 + i), tools) for i in range(48)]
    texts += [render(_demo_conversation(math_env, i % len(math_env.unwrapped.items)), None) for i in range(8)]
    arithmetic.close(), math_env.close()
    return texts


class _Renderer:
    """Renders with the Qwen2.5 template before the tokenizer exists (jinja through transformers' helper)."""

    def __init__(self):
        from transformers.utils.chat_template_utils import render_jinja_template

        self._render = render_jinja_template

    def __call__(self, messages, tools) -> str:
        rendered, _ = self._render(conversations=[messages], tools=tools, chat_template=_qwen25_template())
        return rendered[0]


WARMUP = {"steps": 120, "batch": 6, "lr": 1e-2, "vocab": 1200, "v": 1}


@pytest.fixture(scope="module")
def tiny():
    return tiny_model_dir()


def tiny_model_dir():
    """A tiny Qwen2 model and a BPE tokenizer fitted to the rendered episodes, warmed up on golden tool calls.

    A random model never writes a well-formed ``<tool_call>``; a short causal-LM warm-up on golden
    episodes (loss on the assistant turns only; the numbers carry no arithmetic the model could
    learn in so few steps) makes most rollouts call the calculator. Built once per settings and
    cached like ``baselines.tiny`` (``envs.core.io.default_cache_dir``).
    """
    import hashlib

    from envs.core.io import atomic_directory, default_cache_dir

    schema_env = make_trl_environment("arithmetic-v0", processing_class=_Placeholder(), **ARITHMETIC)
    texts = _texts([getattr(schema_env, name) for name in schema_env.tool_names])
    key = hashlib.sha256(json.dumps({**WARMUP, "texts": texts}, sort_keys=True).encode()).hexdigest()[:12]
    target = default_cache_dir() / f"tiny-trl-qwen2-{key}"
    if not (target / "config.json").is_file():
        with atomic_directory(target) as tmp:
            _build_tiny(texts, tmp)
    return target


def _build_tiny(texts: list[str], out) -> None:
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts * 4, trainer=trainers.BpeTrainer(
        vocab_size=WARMUP["vocab"], special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        unk_token="<|endoftext|>", additional_special_tokens=["<|im_start|>"],
                                        clean_up_tokenization_spaces=False)
    tokenizer.chat_template = _qwen25_template()
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    header = tokenizer("<|im_start|>assistant\n")["input_ids"]
    samples = []
    for text in texts:  # (ids, labels): loss only on what follows an assistant header, up to its <|im_end|>
        ids = tokenizer(text)["input_ids"]
        labels, inside = [], False
        for i, token in enumerate(ids):
            labels.append(token if inside else -100)
            if ids[max(0, i - len(header) + 1): i + 1] == header:
                inside = True
            elif token == tokenizer.eos_token_id:
                inside = False
        samples.append((ids, labels))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=WARMUP["lr"])
        for _ in range(WARMUP["steps"]):
            batch = [samples[int(i)] for i in torch.randint(len(samples), (WARMUP["batch"],))]
            width = max(len(ids) for ids, _ in batch)
            pad = tokenizer.pad_token_id
            ids = torch.tensor([b + [pad] * (width - len(b)) for b, _ in batch])
            mask = torch.tensor([[1] * len(b) + [0] * (width - len(b)) for b, _ in batch])
            labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


class _Placeholder:
    """Stands in for a tokenizer where only the tool schemas are needed."""


def _train(model_dir, env_id, make_kwargs, output_dir, *, rows, max_completion_length, iterations=2):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    base = make_trl_environment(env_id, processing_class=tokenizer, **make_kwargs)
    seen_calls: list[tuple[str, dict]] = []
    results: list[dict] = []

    class Recording(base):  # the generated class, plus a record of what reached the env
        def _call_tool(self, name, arguments):
            seen_calls.append((name, dict(arguments)))
            return super()._call_tool(name, arguments)

        def _score(self, messages, completion_ids):
            result = super()._score(messages, completion_ids)
            results.append(result)
            return result

    args = GRPOConfig(output_dir=str(output_dir), per_device_train_batch_size=4, num_generations=4,
                      max_completion_length=max_completion_length, max_steps=3, learning_rate=1e-4, logging_steps=1,
                      report_to=[], use_cpu=True, bf16=False, save_strategy="no", beta=0.0, seed=0,
                      max_tool_calling_iterations=iterations, reward_weights=base.reward_weights,
                      dataloader_num_workers=0, disable_tqdm=True)
    # the reward functions accept the subclass (they check isinstance against the generated class)
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=base.reward_funcs, args=args,
                          train_dataset=Dataset.from_list(rows), environment_factory=Recording)
    trainer.train()
    return trainer, base, seen_calls, results


def _assert_logged_sums(trainer, env_cls):
    steps = [log for log in trainer.state.log_history if "reward" in log]
    assert len(steps) >= 3
    for log in steps:
        weighted = sum(w * log[f"rewards/{f.__name__}/mean"] for f, w in zip(env_cls.reward_funcs, env_cls.reward_weights))
        assert weighted == pytest.approx(log["reward"], abs=1e-5)
        assert log["env/episode_reward"] == pytest.approx(log["reward"], abs=1e-5)


def _assert_episode_results(results, env_cls):
    assert results, "no rollout was scored by the env"
    weights = dict(zip((f.__name__ for f in env_cls.reward_funcs), env_cls.reward_weights))
    for result in results:
        assert set(result["components"]) <= set(weights)
        assert sum(weights[c] * (v / weights[c]) for c, v in result["components"].items()) == pytest.approx(result["reward"])
        assert result["metrics"]["episode_reward"] == pytest.approx(result["reward"])


@pytest.mark.slow
def test_grpo_trains_on_arithmetic_with_the_calculator(tiny, tmp_path):
    model_dir = tiny
    rows = trl_rows("arithmetic-v0", ARITHMETIC, count=12)
    trainer, env_cls, seen_calls, results = _train(model_dir, "arithmetic-v0", ARITHMETIC, tmp_path, rows=rows,
                                                   max_completion_length=64)
    assert trainer.state.global_step == 3
    _assert_logged_sums(trainer, env_cls)
    _assert_episode_results(results, env_cls)
    assert [n for n, _ in seen_calls].count("calculator") >= 1, "no tool call reached the env"
    assert any(r["metrics"]["tool_calls"] >= 1 for r in results)
    assert max(log["tools/call_frequency"] for log in trainer.state.log_history if "reward" in log) > 0
    assert {f.__name__ for f in env_cls.reward_funcs} >= {"answer", "format", "tool_call_valid", "tool_error"}
    assert all(f"env/{k}" in trainer.state.log_history[0] for k in ("acc", "format", "turns", "tool_calls"))


@pytest.mark.slow
def test_grpo_trains_on_math(tiny, tmp_path):
    model_dir = tiny
    rows = trl_rows("math-v0", MATH)
    trainer, env_cls, seen_calls, results = _train(model_dir, "math-v0", MATH, tmp_path, rows=rows[:4] * 3,
                                                   max_completion_length=32)
    assert trainer.state.global_step == 3
    assert not seen_calls and env_cls.tool_names == ()
    assert {"accuracy", "format", "unfinished"} <= {f.__name__ for f in env_cls.reward_funcs}
    _assert_logged_sums(trainer, env_cls)
    _assert_episode_results(results, env_cls)
    assert len(results) == 12


# ---------------------------------------------------------------------------------------------- units
class _Chat:
    """A tokenizer stand-in with Qwen2.5's layout for the decoding helpers (decode/template/specials)."""

    all_special_tokens = ["<|im_end|>", "<|endoftext|>"]
    eos_token_id, pad_token_id = 1, 0

    def __init__(self, text: str):
        self.text = text

    def decode(self, ids, skip_special_tokens=False):
        return self.text

    def apply_chat_template(self, conversation, tokenize=False, add_generation_prompt=False, **_):
        out = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in conversation)
        return out + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def _episode(env_cls, text: str, messages: list[dict], ids=(5, 1), row=None):
    env = env_cls()
    env.reset(**(row or trl_rows(env_cls.env_id, env_cls.make_kwargs, count=1)[0]))
    env._tokenizer = _Chat(text)
    return env, env._finish(messages, list(ids))


@pytest.fixture
def arithmetic_cls():
    return make_trl_environment("arithmetic-v0", processing_class=_Chat(""), **ARITHMETIC)


def test_tool_methods_follow_the_schema():
    from transformers.utils import get_json_schema

    method = tool_method("search", "Search the corpus.", {"type": "object", "properties": {
        "query": {"type": "string", "description": "what to look for"},
        "k": {"type": "integer", "description": "how many"},
        "mode": {"type": "string", "enum": ["bm25", "dense"], "description": "backend"}}, "required": ["query"]})
    schema = get_json_schema(method)["function"]
    assert schema["name"] == "search" and schema["description"] == "Search the corpus."
    assert schema["parameters"]["required"] == ["query"]
    props = schema["parameters"]["properties"]
    assert props["query"] == {"type": "string", "description": "what to look for"}
    assert props["k"]["type"] == "integer" and props["mode"]["enum"] == ["bm25", "dense"]
    for bad in ("reset", "_private", "class"):
        with pytest.raises(ValueError):
            tool_method(bad, "x", {"type": "object", "properties": {}})


def test_the_python_tool_is_a_method_that_runs_code_in_the_sandbox():
    from transformers.utils import get_json_schema

    kwargs = {**MATH, "tools": ["python"], "python": {"wall_s": 10}}
    cls = make_trl_environment("math-v0", processing_class=_Placeholder(), **kwargs)
    assert cls.tool_names == ("python",)
    schema = get_json_schema(cls.python)["function"]
    assert schema["parameters"]["required"] == ["code"] and "sandbox" in schema["description"]
    env = cls()
    env.reset(**trl_rows("math-v0", kwargs, count=1)[0])
    assert env.python(code="import math\nprint(math.comb(10, 3))") == "120"
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        env.python(code="1 / 0")  # a failed call reaches TRL as an error (tools/failure_frequency)


def test_a_tool_call_steps_the_env_and_bad_arguments_are_charged(arithmetic_cls):
    env = arithmetic_cls()
    row = trl_rows("arithmetic-v0", ARITHMETIC, count=1)[0]
    env.reset(**row)
    item = json.loads(row["label"])["item"]
    assert env.calculator(expression=item["expression"]) == item["answer"]
    with pytest.raises(RuntimeError, match="bad arguments"):
        env.calculator(expr="1+1")  # reaches the env despite the wrong name: the signature is metadata only
    env._tokenizer = _Chat(f"The answer is \\boxed{{{item['answer']}}}.<|im_end|>")
    result = env._finish([{"role": "assistant", "content": "..."}], [5, 1])
    assert result["components"]["answer"] == 1.0 and result["components"]["tool_call_valid"] == pytest.approx(0.05)
    assert result["components"]["tool_error"] == pytest.approx(-0.05)
    assert result["metrics"]["tool_calls"] == 2.0 and result["metrics"]["acc"] == 1.0


def test_the_final_answer_is_read_from_the_raw_tokens_not_the_parsed_content(arithmetic_cls):
    text = "<|im_start|>assistant\n<think>\nsum\n</think>\nSo \\boxed{%s}.<|im_end|>"
    row = trl_rows("arithmetic-v0", ARITHMETIC, count=1)[0]
    answer = json.loads(row["label"])["item"]["answer"]
    # TRL's parsed content would be only "So \\boxed{..}." (reasoning split off); the env sees the whole turn
    assert final_turn_text(_Chat("call<|im_end|>\n<|im_start|>user\n<tool_response>\n3\n</tool_response><|im_end|>\n"
                                 + text % answer), [1]) == "<think>\nsum\n</think>\nSo \\boxed{%s}." % answer
    _, result = _episode(arithmetic_cls, (text % answer)[len("<|im_start|>assistant\n"):],
                         [{"role": "assistant", "content": "So"}], row=row)
    assert result["metrics"]["acc"] == 1.0 and result["end_reason"] == "answer"


def test_a_tag_form_call_trl_did_not_parse_is_run_by_the_env_then_the_episode_ends_unfinished(arithmetic_cls):
    _, result = _episode(arithmetic_cls, "Let me see <calculator>2+2</calculator><|im_end|>",
                         [{"role": "assistant", "content": "Let me see <calculator>2+2</calculator>"}])
    assert result["components"]["tool_call_valid"] == pytest.approx(0.05)
    assert result["metrics"]["acc"] == 0.0 and result["metrics"]["tool_calls"] == 1.0
    assert result["end_reason"] == "max_turns"


def test_a_malformed_call_is_charged_by_the_env(arithmetic_cls):
    _, result = _episode(arithmetic_cls, "<tool_call>{bad json</tool_call><|im_end|>",
                         [{"role": "assistant", "content": "<tool_call>{bad json</tool_call>"}])
    assert result["components"]["invalid_action"] == pytest.approx(-0.1)
    assert result["metrics"]["invalid_actions"] == 1.0


def test_calls_trl_answered_itself_are_replayed_to_the_env(arithmetic_cls):
    messages = [
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "web_search", "arguments": {"q": "x"}}},
            {"type": "function", "function": {"name": "calculator", "arguments": "2+2"}}]},
        {"role": "tool", "name": "web_search", "content": "{'error': 'Tool web_search not found.'}"},
        {"role": "tool", "name": "calculator", "content": "{'error': 'argument after ** must be a mapping'}"},
        {"role": "assistant", "content": "\\boxed{0}"}]
    _, result = _episode(arithmetic_cls, "\\boxed{0}<|im_end|>", messages)
    assert result["components"]["tool_error"] == pytest.approx(-0.05)  # the unknown tool
    assert result["components"]["invalid_action"] == pytest.approx(-0.1)  # arguments that are not an object
    assert result["metrics"]["tool_calls"] == 1.0 and result["metrics"]["invalid_actions"] == 1.0


def test_cut_rollouts_are_scored_unfinished(arithmetic_cls):
    still_calling = [{"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "calculator", "arguments": {"expression": "1+1"}}}]}]
    _, cut = _episode(arithmetic_cls, "", still_calling)
    assert cut["end_reason"] == "max_turns" and cut["metrics"]["acc"] == 0.0
    _, no_eos = _episode(arithmetic_cls, "The answer is \\boxed{", [{"role": "assistant", "content": "x"}], ids=(5, 6))
    assert no_eos["end_reason"] == "budget"
    row = trl_rows("arithmetic-v0", ARITHMETIC, count=1)[0]
    answer = json.loads(row["label"])["item"]["answer"]
    _, finished = _episode(arithmetic_cls, f"\\boxed{{{answer}}}<|im_end|>", [{"role": "assistant", "content": "x"}], row=row)
    assert finished["reward"] > no_eos["reward"] and math.isfinite(cut["reward"])


def test_plain_reward_functions_score_single_turn_completions():
    from adapters.trl.environment import plain_reward_functions

    funcs, weights = plain_reward_functions("math-v0", **MATH)
    rows = trl_rows("math-v0", MATH)[:2]
    gold = json.loads(rows[0]["label"])["item"]["answer"]
    completions = [[{"role": "assistant", "content": f"<think>\nok\n</think>\nSo $\\boxed{{{gold}}}$."}],
                   [{"role": "assistant", "content": "no idea"}]]
    logged = {}
    values = [f(completions=completions, label=[r["label"] for r in rows], log_metric=logged.__setitem__) for f in funcs]
    total = [sum(w * v[i] for w, v in zip(weights, values)) for i in range(2)]
    assert dict(zip((f.__name__ for f in funcs), (v[0] for v in values)))["accuracy"] == 1.0
    assert total[0] > total[1] and logged["env/acc"] == 0.5


def test_cli_dry_run_picks_the_environment_path_by_template(tiny, tmp_path, capsys):
    from adapters.trl.__main__ import PRESETS, main
    from baselines.tiny import build_tiny_model
    from trl import GRPOConfig

    assert main(["--env", "arithmetic-v0", "--model", str(tiny), "--num-prompts", "3", "--output-dir", str(tmp_path / "a"),
                 "--dry-run"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["environment_factory"] is True and report["preset"] == "small"
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["reward_weights"] and len((tmp_path / "a" / "train.jsonl").read_text().splitlines()) == 3
    for preset in PRESETS.values():  # every preset argument is a GRPOConfig field
        assert set(preset) <= set(GRPOConfig.__dataclass_fields__)
    chatml = str(build_tiny_model())  # its template renders no tool calls: TRL would refuse environment_factory
    assert main(["--env", "math-v0", "--offline", "--model", chatml, "--output-dir", str(tmp_path / "m"), "--dry-run"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["environment_factory"] is False and report["preset"] == "open-rs"
    assert report["grpo_config"]["num_generations"] == 6 and report["grpo_config"]["beta"] == 0.04
    with pytest.raises(SystemExit, match="cannot render tool calls"):
        main(["--env", "arithmetic-v0", "--model", chatml, "--num-prompts", "2", "--output-dir", str(tmp_path / "x"), "--dry-run"])


def test_cli_help_names_each_presets_default_model():
    from adapters.trl.__main__ import build_parser

    help_text = " ".join(build_parser().format_help().split())
    assert "open-rs: deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B" in help_text and "small: Qwen/Qwen2.5-0.5B-Instruct" in help_text


def test_cli_qa_preset_writes_rows_from_the_train_split(tmp_path, capsys):
    from adapters.episodes import EpisodeSpec
    from adapters.trl.__main__ import main
    from baselines.tiny import build_tiny_model

    chatml = str(build_tiny_model())  # with TRL's Qwen2.5 template, which renders the search tool's calls
    assert main(["--env", "hotpotqa-v0", "--offline", "--model", chatml, "--chat-template", "qwen2_5", "--num-prompts", "3",
                 "--output-dir", str(tmp_path / "qa"), "--dry-run"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["preset"] == "agent-r1-qa" and report["environment_factory"] is True
    assert report["grpo_config"]["num_generations"] == 5 and report["grpo_config"]["max_tool_calling_iterations"] == 5
    specs = [EpisodeSpec.from_label(json.loads(line)["label"]) for line in (tmp_path / "qa" / "train.jsonl").read_text().splitlines()]
    assert len(specs) == 3 and {s.make_kwargs["split"] for s in specs} == {"train"}
    assert specs[0].make_kwargs["data_path"] == "sample"  # --offline: the shipped sample
    main(["--env", "hotpotqa-v0", "--offline", "--model", chatml, "--chat-template", "qwen2_5", "--num-prompts", "1",
          "--env-kwargs", '{"split": "validation"}', "--output-dir", str(tmp_path / "v"), "--dry-run"])
    line = (tmp_path / "v" / "train.jsonl").read_text().splitlines()[0]
    assert EpisodeSpec.from_label(json.loads(line)["label"]).make_kwargs["split"] == "validation"
