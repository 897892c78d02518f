"""A tiny randomly initialised Qwen2-architecture model with a locally trained tokenizer.

The suite cannot download models in CI, yet the trainer and the evaluation CLI must run end to end
on real ``transformers`` objects. ``build_tiny_model`` writes a Hugging Face directory (config,
safetensors weights, tokenizer, ChatML-like chat template) that ``AutoTokenizer`` and
``AutoModelForCausalLM`` load like any hub checkpoint. The tokenizer is a small byte-level BPE
trained on text the project generates itself (arithmetic problems, tool calls, chat markup) with
Qwen2's own pre-tokenizer, so it reloads identically as ``Qwen2Tokenizer``.

Even so ``\\boxed{7}`` takes several specific tokens, which random weights never emit, so GRPO would
see no reward at all. The randomly initialised model therefore gets a short language-model warm-up
(``pretrain_steps``) on generated chats in which some replies box a *random* number: it learns the
shape of an answer, not arithmetic. ``pretrain_steps=0`` keeps pure random weights.

Builds are cached by their settings under ``cache_dir`` (default ``$AGENTR1_GYM_CACHE`` or
``~/.cache/agentr1-gym``) and written atomically, so concurrent test processes can share them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from envs.core.io import default_cache_dir

logger = logging.getLogger(__name__)

BUILD_VERSION = 1  # bump when the corpus, template or tokenizer recipe changes

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# A ChatML-like template: system/user/assistant/tool turns, optional tool schemas in the system turn.
CHAT_TEMPLATE = """{%- if tools %}<|im_start|>system
{% if messages and messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}

{% endif %}Tools:
{% for t in tools %}{{ t | tojson }}
{% endfor %}<|im_end|>
{% elif messages and messages[0]['role'] == 'system' %}<|im_start|>system
{{ messages[0]['content'] }}<|im_end|>
{% endif %}
{%- for m in messages %}{% if not (loop.first and m['role'] == 'system') %}<|im_start|>{{ m['role'] }}
{{ m['content'] }}<|im_end|>
{% endif %}{% endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


@dataclass(frozen=True)
class TinySpec:
    """Sizes of the tiny model; every field is part of the cache key."""

    vocab_size: int = 512
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    # head dimension 32 (hidden 64 / 2 heads): vLLM's CPU attention refuses head dimensions below 32
    num_attention_heads: int = 2
    num_key_value_heads: int = 1
    max_position_embeddings: int = 1024
    corpus_items: int = 400
    pretrain_steps: int = 100  # language-model warm-up on ``pretraining_texts``; 0 keeps pure random weights
    pretrain_batch: int = 16
    pretrain_lr: float = 4e-3
    boxed_fraction: float = 0.4  # share of warm-up answers written as ``\\boxed{}``
    warmup_styles: tuple[str, ...] = ("word",)  # Arithmetic-v0 prompt styles the warm-up chats use
    restate_expression: bool = False  # boxed replies first restate the problem's expression ("3 + 5 = ...")
    seed: int = 0


# The starting model of the learning benchmark and its CI test: head dim 32 (vLLM's CPU attention needs
# >= 32); every warm-up reply restates the problem's expression, then boxes a random number.
LEARNING_SPEC = TinySpec(hidden_size=128, intermediate_size=256, num_attention_heads=4, num_key_value_heads=2,
                         pretrain_steps=600, boxed_fraction=1.0, warmup_styles=("word", "expression"),
                         restate_expression=True)

# Later fields enter the cache key only when they differ from these defaults, so existing builds stay valid.
_KEYED_WHEN_SET = {"restate_expression": False}


def build_tiny_model(cache_dir: str | os.PathLike[str] | None = None, spec: TinySpec | None = None) -> Path:
    """Return the directory of a tiny Qwen2 model + tokenizer, building it on first use."""
    spec = spec or TinySpec()
    fields = {k: v for k, v in asdict(spec).items() if not (k in _KEYED_WHEN_SET and v == _KEYED_WHEN_SET[k])}
    key = hashlib.sha256(json.dumps({**fields, "v": BUILD_VERSION}, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / f"tiny-qwen2-{key}"
    if (target / "config.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-build-", dir=root))
    try:
        tokenizer = train_tokenizer(spec)
        tokenizer.save_pretrained(tmp)
        model = _init_model(spec, tokenizer)
        if spec.pretrain_steps:
            _pretrain(model, tokenizer, spec)
        model.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished the same build first
            if not (target / "config.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("built tiny model at %s", target)
    return target


def training_corpus(spec: TinySpec) -> list[str]:
    """Text the project generates: arithmetic problems, worked answers, tool calls, chat markup."""
    from envs.arithmetic.env import ArithmeticEnv

    lines: list[str] = []
    for s, kwargs in enumerate(_CORPUS_SETTINGS):
        env = ArithmeticEnv(**kwargs)
        for i in range(spec.corpus_items):
            env.reset(seed=spec.seed * 100_003 + s * 10_007 + i)
            lines.append(env.build_prompt(env.item))
            lines.extend(env.demonstration())
        env.close()
    lines.append(ArithmeticEnv.default_system_prompt or "")
    lines.extend([
        "<think>\nLet me think step by step.\n</think>\n<answer>\nThe answer.\n</answer>",
        "<tool_call>{\"name\": \"search\", \"arguments\": {\"query\": \"who wrote it\"}}</tool_call>",
        "<tool_response>\nDoc 1(Title: A) text\n</tool_response>",
        "<search>query</search> <information>Doc 1(Title: A) text</information> <answer>yes</answer>",
    ])
    return lines


_CORPUS_SETTINGS = (
    dict(digits=1, num_operations=1, operations="+", calculator=False),
    dict(digits=1, num_operations=2, operations="+-", calculator=False),
    dict(digits=2, num_operations=2, operations="+-*", calculator=True),
    dict(digits=1, num_operations=1, operations="+-*", calculator=False, style="expression"),
)


def train_tokenizer(spec: TinySpec):
    """Train a byte-level BPE with Qwen2's pre-tokenizer and wrap it as a ``PreTrainedTokenizerFast``.

    ``AutoTokenizer`` loads any ``qwen2`` checkpoint with ``Qwen2Tokenizer``, which rebuilds Qwen2's
    byte-level pipeline around the saved vocabulary; training with that same pipeline keeps the
    tokenizer that is saved and the one that is loaded identical.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=spec.vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=2,
                                  show_progress=False)
    tok.train_from_iterator(training_corpus(spec), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token="<|endoftext|>", additional_special_tokens=["<|im_start|>"], chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False, model_max_length=spec.max_position_embeddings,
    )


def _init_model(spec: TinySpec, tokenizer):
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers, num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads, max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None, use_cache=True,
    )
    with torch.random.fork_rng(devices=[]):  # a fixed init that leaves the caller's RNG untouched
        torch.manual_seed(spec.seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return model


_REPLY_FORMS = ("The answer is {n}.", "{n}", "So there are {n} in all.", "I count {n}.")


def pretraining_texts(spec: TinySpec, count: int, rng) -> list[str]:
    """Chat episodes whose replies have the task's surface form but a *random* number.

    A randomly initialised model never writes ``\\boxed{...}`` (four or more specific tokens), so
    RL would have no signal; a short warm-up on these texts gives a "base model" that sometimes uses
    the requested format (``boxed_fraction`` of the replies) and whose numbers carry no information
    about the question, so whatever accuracy a trained policy reaches is learned by RL.
    """
    from envs.arithmetic.env import ArithmeticEnv

    styles = list(spec.warmup_styles) or ["word"]
    pool = [ArithmeticEnv(**{**_CORPUS_SETTINGS[0], "style": style}) for style in styles]
    texts = []
    for i in range(count):
        env = pool[i % len(pool)]
        env.reset(seed=spec.seed * 7_919 + 1_000_003 + i)
        number = int(rng.integers(2, 19))
        if rng.random() < spec.boxed_fraction:
            lead = f"{env.item['expression']} = " if spec.restate_expression else "The answer is "
            reply = f"{lead}\\boxed{{{number}}}."
        else:
            reply = _REPLY_FORMS[int(rng.integers(len(_REPLY_FORMS)))].format(n=number)
        messages = [{"role": "system", "content": env.system_prompt}, {"role": "user", "content": env.build_prompt(env.item)},
                    {"role": "assistant", "content": reply}]
        texts.append(messages)
    for env in pool:
        env.close()
    return texts


def _pretrain(model, tokenizer, spec: TinySpec) -> None:
    """A few hundred causal-LM steps on ``pretraining_texts`` (seconds on a CPU)."""
    import numpy as np
    import torch

    rng = np.random.default_rng(spec.seed)
    conversations = pretraining_texts(spec, spec.pretrain_steps * spec.pretrain_batch // 4 + spec.pretrain_batch, rng)
    encoded = [tokenizer.apply_chat_template(c, tokenize=False) for c in conversations]
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.pretrain_lr, weight_decay=0.0)
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        for step in range(spec.pretrain_steps):
            batch_idx = rng.integers(len(encoded), size=spec.pretrain_batch)
            batch = tokenizer([encoded[i] for i in batch_idx], return_tensors="pt", padding=True)
            labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
            loss = model(**batch, labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step % 50 == 0 or step == spec.pretrain_steps - 1:
                logger.info("tiny warm-up step %d loss %.3f", step, loss.item())
    model.eval()
