"""A syntax warm-up: supervised steps on an env's demonstrations whose loss covers the protocol, never the answers.

A small pretrained model often never emits a task's markup on its own (SmolLM2-135M-Instruct writes
``<search>`` in none of 192 HotpotQA samples), and GRPO learns nothing from groups whose rewards are
all equal. This warm-up gives RL a way in without teaching the task's answers: it replays the env's
golden demonstrations on **training** items (``split="train"``) through the one chat-rendering path,
and puts the cross-entropy loss only on

* the markup (``<search>``, ``</search>``, ``<answer>``, ``<tool_call>`` and the tool-call JSON keys,
  ``\\boxed{``, ...) and each turn's end-of-turn token; and, with ``calls=True``,
* whole tool calls, their arguments included (the search query a 1-hop demonstration copies from the
  question; the calculator's expression); and, with ``prose=True``,
* the words of the demonstrated turns (the answering turn's "The answer is"), never a number outside a
  tool call nor what ``<answer>`` or ``\\boxed{}`` holds. Markup alone does not say how a turn *starts*:
  warmed up with ``calls=True`` only, SmolLM2-135M answered a calculator result by writing
  ``<tool_response>`` itself, on every word problem.

Answers, numbers in the final reply, observations and reasoning are context, never targets: what the
model learns is how to call the tool and where the answer goes, not what the answer is. (Markup alone,
``calls=False``, leaves a 135M model writing junk inside the tags: the tag tokens are learned with no
signal for what goes between them.) A token that straddles markup and content (a BPE merge such as
``>Kes``) is trained, which leaks at most a character or two; the warm-up alone is always reported as
its own row (``benchmarks/learning.py``), so RL's gain is measured over it.

    python -m baselines.warmup --env synthhop-v0 --env-kwargs '{"hops": 1}' --model smollm2-135m \\
        --calls --steps 10 --output-dir runs/warmup-synthhop
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envs.core.cli import add_logging_argument, cli_entry, program_name, setup_logging

logger = logging.getLogger(__name__)

# The markup of the suite's protocols: tags, the Hermes tool-call JSON up to its argument values, \boxed{.
DEFAULT_SYNTAX = (
    r"</?(?:search|answer|think|tool_call|calculator|information|python)>",
    r'\{"name": "[a-z_]+", "arguments": \{"[a-z_]+": "',
    r'"\}\}',
    r"\\boxed\{",
)
# Whole tool calls, their arguments included (``calls=True``): the query a search call copies from the question.
CALL_SPANS: tuple[str, ...] = (r"<search>.*?</search>", r"<tool_call>.*?</tool_call>", r"<calculator>.*?</calculator>")
# What a turn's words never teach (``prose=True``): the answer a tag or box holds, and numbers (outside calls).
ANSWER_CONTENT: tuple[str, ...] = (r"(?<=<answer>).*?(?=</answer>)", r"(?<=\\boxed\{)[^{}]*(?:\{[^{}]*\}[^{}]*)*(?=\})",
                                   r"\d+(?:[.,]\d+)*")


@dataclass(frozen=True)
class Example:
    """One demonstration episode as a token stream; ``loss_mask`` marks the tokens that are targets."""

    ids: list[int]
    loss_mask: list[int]
    item: Mapping[str, Any]  # the training item demonstrated


def syntax_mask(tokenizer: Any, text: str, patterns: Sequence[str] = DEFAULT_SYNTAX,
                exclude: Sequence[str] = (), keep: Sequence[str] = ()) -> tuple[list[int], list[int]]:
    """``text``'s token ids and a 0/1 mask of the tokens that overlap a match of ``patterns`` and no match
    of ``exclude`` (an ``exclude`` match inside a ``keep`` match does not count)."""
    def spans(regexes: Sequence[str]) -> list[tuple[int, int]]:
        return [m.span() for p in regexes for m in re.finditer(p, text) if m.end() > m.start()]

    def overlaps(a: int, b: int, where: list[tuple[int, int]]) -> bool:
        return any(a < end and start < b for start, end in where)

    kept = spans(keep)
    excluded = [(a, b) for a, b in spans(exclude) if not any(s <= a and b <= e for s, e in kept)]
    included = spans(patterns)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = [int(overlaps(a, b, included) and not overlaps(a, b, excluded)) for a, b in enc["offset_mapping"]]
    return list(enc["input_ids"]), mask


def demonstration_examples(env_id: str, env_kwargs: Mapping[str, Any], tokenizer: Any, count: int, *,
                           seed: int = 0, calls: bool = False, prose: bool = False,
                           drop_reasoning: bool = True) -> list[Example]:
    """``count`` demonstration episodes on items drawn from the env's seeds, rendered as a trainer sees them.

    ``drop_reasoning`` removes ``<think>...</think>`` blocks from the demonstrated turns: the warm-up then
    shows the shortest well-formed turns (reasoning stays optional in the suite's protocols).
    """
    import envs
    from baselines.grpo.rollout import ChatFormat

    chat = ChatFormat(tokenizer)
    patterns = (r"(?s).+",) if prose else DEFAULT_SYNTAX + (CALL_SPANS if calls else ())
    exclude = ANSWER_CONTENT if prose else ()
    keep = CALL_SPANS if calls else ()
    env = envs.make(env_id, **dict(env_kwargs))
    examples = []
    try:
        for i in range(count):
            _, info = env.reset(seed=seed * 1_000_003 + i)
            ids = chat.prompt_ids(info)
            mask = [0] * len(ids)
            for action in env.unwrapped.demonstration():
                if drop_reasoning:
                    action = re.sub(r"<think>.*?</think>\s*", "", action, flags=re.S)
                turn, turn_mask = syntax_mask(tokenizer, action, patterns, exclude, keep)
                close = chat.turn_ids("")
                ids += turn + close
                mask += turn_mask + [1] * len(close)
                _, _, terminated, truncated, info = env.step(action)
                if terminated or truncated:
                    break
                follow = chat.continuation_ids(turn + close, info.get("new_messages", []))
                ids += follow
                mask += [0] * len(follow)
            examples.append(Example(ids, mask, dict(env.unwrapped.item)))
    finally:
        env.close()
    return examples


def warm_up(model: str, env_id: str, env_kwargs: Mapping[str, Any], output_dir: str | Path, *, steps: int = 60,
            batch_size: int = 16, lr: float = 2e-5, seed: int = 0, examples: int | None = None,
            calls: bool = False, prose: bool = False, dtype: str = "bfloat16") -> dict[str, Any]:
    """Fine-tune ``model`` on the syntax of ``env_id``'s demonstrations; save an HF directory in ``output_dir``.

    Returns ``{"model": <dir>, "steps", "examples", "seconds", "loss": [...]}``; a finished directory
    (``warmup.json`` present) is reused as it is.
    """
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from baselines.grpo.trainer import resolve_model_path
    from envs.core.io import atomic_directory, atomic_write_text

    out = Path(output_dir)
    if (out / "warmup.json").is_file():
        return json.loads((out / "warmup.json").read_text())
    path = resolve_model_path(model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    pool = demonstration_examples(env_id, {"split": "train", **env_kwargs},
                                  tokenizer, examples or steps * batch_size // 2, seed=seed, calls=calls, prose=prose)
    policy = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    policy.train()
    optimizer = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    compute = getattr(torch, dtype)
    losses: list[float] = []
    started = time.perf_counter()
    pad = tokenizer.pad_token_id
    for step in range(steps):
        chosen = [pool[i] for i in rng.integers(len(pool), size=batch_size)]
        width = max(len(e.ids) for e in chosen)
        input_ids = torch.tensor([e.ids + [pad] * (width - len(e.ids)) for e in chosen])
        labels = torch.tensor([[t if m else -100 for t, m in zip(e.ids, e.loss_mask, strict=True)]
                               + [-100] * (width - len(e.ids)) for e in chosen])
        attention = torch.tensor([[1] * len(e.ids) + [0] * (width - len(e.ids)) for e in chosen])
        with torch.autocast("cpu", dtype=compute, enabled=compute != torch.float32):
            loss = _target_loss(policy, input_ids, attention, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        if step % 10 == 0 or step == steps - 1:
            logger.info("warm-up step %d/%d: syntax loss %.4f", step + 1, steps, losses[-1])
    summary = {"model": str(out), "base_model": model, "env": env_id, "env_kwargs": dict(env_kwargs), "calls": calls,
               "prose": prose,
               "steps": steps,
               "batch_size": batch_size, "lr": lr, "examples": len(pool), "seconds": time.perf_counter() - started,
               "target_tokens_per_example": sum(sum(e.loss_mask) for e in pool) / len(pool),
               "tokens_per_example": sum(len(e.ids) for e in pool) / len(pool), "loss": losses}
    with atomic_directory(out) as tmp:
        policy.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_text(tmp / "warmup.json", json.dumps(summary, indent=1) + "\n")
    return summary


def _target_loss(policy: Any, input_ids: Any, attention: Any, labels: Any) -> Any:
    """Mean cross-entropy over the target tokens, projecting only their hidden states onto the vocabulary
    (a few percent of the positions: the output layer of a 49k-token vocabulary is then no longer the
    largest cost of a step, nor of its memory)."""
    import torch

    hidden = policy.get_decoder()(input_ids=input_ids, attention_mask=attention).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != -100
    logits = policy.get_output_embeddings()(hidden[:, :-1][keep])
    return torch.nn.functional.cross_entropy(logits.float(), targets[keep])


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=program_name("baselines.warmup"), description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", required=True)
    p.add_argument("--env-kwargs", type=json.loads, default={}, help="JSON make kwargs (split defaults to train)")
    p.add_argument("--model", required=True)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--calls", action="store_true", help="also train whole tool calls (their arguments), never answers")
    p.add_argument("--prose", action="store_true",
                   help="also train the turns' words (how an answer starts), never numbers or the answer")
    add_logging_argument(p)
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    summary = warm_up(args.model, args.env, args.env_kwargs, args.output_dir, steps=args.steps,
                      batch_size=args.batch_size, lr=args.lr, seed=args.seed, calls=args.calls, prose=args.prose)
    print(f"warm-up: {summary['steps']} steps on {summary['examples']} demonstrations "
          f"({summary['target_tokens_per_example']:.1f} of {summary['tokens_per_example']:.0f} tokens per example "
          f"are targets) in {summary['seconds']:.0f} s; model at {summary['model']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
