"""Does GRPO teach the task, not only the format? Accuracy before/after on one-digit additions.

The starting model is ``baselines.tiny`` built with ``LEARNING_SPEC``: random weights, then a
language-model warm-up on chats whose replies are always ``<a> + <b> = \\boxed{N}.`` (the problem's
expression restated, then a number ``N`` drawn uniformly from 2..18 *independently of the question*;
``baselines.tiny.pretraining_texts``). It learns the reply's shape, never which number is right.
GRPO (``baselines/presets/arithmetic_learn.yaml``) then trains on Arithmetic-v0 with one-digit
operands and one addition, rewarded by the env (answer 1.0, format 0.1).

Accuracy before and after is measured by ``baselines.evaluate`` (greedy, one sample) on items
``0..N-1`` of the env's indexed item stream (``reset(options={"index": i})``); training draws its
problems from the episode seeds instead. One-digit additions are only 81 distinct problems, so
evaluation problems also occur in training: this measures whether RL taught the skill on this
small space, not generalisation to unseen problems. The table also prints how many different numbers
the greedy model boxed and the best accuracy a constant reply reaches on the same items: with the
current recipe every trained seed boxes a single number for every question, so its gain is the
answer marginal (the most frequent sum), not addition.

    python benchmarks/learning.py --seeds 0 1 2 --steps 120 --output-dir runs/learning

Prints a table (start / end accuracy per seed, wall time), writes TensorBoard scalars per seed
(``<out>/seed<k>/tensorboard``: reward, acc, format, kl, response_length, ...), ``curves.png``
(matplotlib) and ``learning.json``.

    python benchmarks/learning.py --supervised-ceiling --output-dir runs/learning-ceiling

The ceiling mode answers "could any RL recipe reach +15 points in this budget?". It fine-tunes the
same starting model with plain cross-entropy on the *correct* replies (``<a> + <b> = \\boxed{a+b}.``,
loss on the reply tokens) and prints greedy accuracy (``baselines.evaluate``) against the number of
labelled examples seen. A policy-gradient step on a chance-level policy (about 1/17 of the rollouts
correct) carries far less information than a supervised step, so the labelled examples supervision
needs are a floor under the *correct* rollouts RL needs.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

from baselines.tiny import LEARNING_SPEC

PRESET = "arithmetic_learn"
EVAL_ENV = "AgentR1/Arithmetic-v0"
CURVES = ("reward", "acc", "format", "kl", "response_length")


def evaluate_accuracy(model: str, env_kwargs: dict[str, Any], items: int, out_dir: Path, backend: str = "hf") -> float:
    """Greedy pass@1 on the first ``items`` indexed items, through the evaluation CLI's code path."""
    from baselines.evaluate import build_parser, evaluate

    args = build_parser().parse_args([
        "--env", EVAL_ENV, "--model", model, "--limit", str(items), "--temperature", "0", "--max-new-tokens", "16",
        "--env-kwargs", json.dumps(env_kwargs), "--output-dir", str(out_dir), "--backend", backend,
        "--device", "cpu", "--batch-items", "100"])
    return float(evaluate(args)["pass@1"])


def answer_spread(eval_dir: Path) -> dict[str, Any]:
    """How the greedy answers depend on the question, from ``baselines.evaluate``'s ``items.jsonl``.

    A policy can gain accuracy without doing any addition by boxing one number for every question
    (the most frequent sum is right on ~11 % of one-digit additions). ``constant_acc`` is the best
    accuracy such a constant reply reaches on these items; ``distinct_answers`` counts the different
    numbers the model boxed. An accuracy at or below ``constant_acc`` with one distinct answer is the
    marginal, not the skill.
    """
    from envs.core.parsing import extract_last_boxed

    records = [json.loads(line) for line in (eval_dir / "items.jsonl").read_text().splitlines() if line.strip()]
    replies = [extract_last_boxed(r["samples"][0]["responses"][-1]) for r in records]
    answers = Counter(str(r["item"]["answer"]) for r in records)
    return {"distinct_answers": len({a for a in replies if a is not None}),
            "constant_acc": max(answers.values()) / len(records)}


def task_kwargs(cfg: Any) -> dict[str, Any]:
    """The recipe's env kwargs without its training reward weights: the task evaluation scores."""
    return {k: v for k, v in cfg.env_kwargs.items() if k != "reward_weights"}


def run_seed(seed: int, steps: int, out: Path, model: str, items: int, backend: str = "hf",
             overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate the starting model, train ``steps`` GRPO steps, evaluate the result."""
    from baselines.grpo.config import make_config
    from baselines.grpo.trainer import GRPOTrainer

    cfg = make_config(PRESET, model=model, seed=seed, steps=steps, output_dir=str(out), save_every=0, resume=False,
                      progress=False, backend=backend, **(overrides or {}))
    eval_kwargs = task_kwargs(cfg)
    start_acc = evaluate_accuracy(model, eval_kwargs, items, out / "eval_start")
    started = time.perf_counter()
    trainer = GRPOTrainer(cfg, device="cpu")
    try:
        history = trainer.train()
    finally:
        trainer.close()
    train_seconds = time.perf_counter() - started
    final = out / "checkpoints" / f"step_{steps:06d}"
    if not final.is_dir():
        final = max((out / "checkpoints").glob("step_*"))
    end_acc = evaluate_accuracy(str(final), eval_kwargs, items, out / "eval_end")
    return {"seed": seed, "start_acc": start_acc, "end_acc": end_acc, "train_seconds": train_seconds,
            "start_spread": answer_spread(out / "eval_start"), "end_spread": answer_spread(out / "eval_end"),
            "curves": {k: [float(m.get(k, float("nan"))) for m in history] for k in CURVES}}


def supervised_ceiling(model: str, out: Path, *, steps: int, batch: int, lr: float, eval_every: int,
                       items: int) -> list[dict[str, float]]:
    """Cross-entropy on correct replies from ``model``; greedy accuracy every ``eval_every`` steps."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from baselines.grpo.config import make_config
    from envs import make
    from envs.core.chat import encode, episode_prompt

    cfg = make_config(PRESET, model=model)
    env_kwargs = task_kwargs(cfg)
    tokenizer = AutoTokenizer.from_pretrained(model)
    policy = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    env = make(EVAL_ENV, **env_kwargs)
    # training problems come from seeds (as GRPO's do), evaluation from the indexed stream; a pool of a
    # quarter of the draws, so problems repeat during training as they do in RL
    examples = []
    for seed in range(10_000, 10_000 + batch * max(steps, 1) // 4 + batch):
        _, info = env.reset(seed=seed)
        prompt = encode(tokenizer, episode_prompt(tokenizer, info))
        reply = f"{env.unwrapped.item['expression']} = \\boxed{{{env.unwrapped.item['answer']}}}."
        full = encode(tokenizer, tokenizer.apply_chat_template(
            [*info["messages"], {"role": "assistant", "content": reply}], tokenize=False))
        if full[:len(prompt)] != prompt:
            raise RuntimeError("the chat template does not extend the prompt with the reply")
        examples.append((full, len(prompt)))
    env.close()
    rng = np.random.default_rng(0)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    rows = [{"step": 0, "examples": 0, "train_seconds": 0.0,
             "acc": evaluate_accuracy(model, env_kwargs, items, out / "eval_step0")}]
    trained = 0.0
    pad = tokenizer.pad_token_id
    for step in range(1, steps + 1):
        chosen = [examples[i] for i in rng.integers(len(examples), size=batch)]
        width = max(len(ids) for ids, _ in chosen)
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in chosen])
        labels = torch.tensor([[-100] * start + ids[start:] + [-100] * (width - len(ids)) for ids, start in chosen])
        attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in chosen])
        started = time.perf_counter()
        policy.train()
        loss = policy(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        trained += time.perf_counter() - started
        if step % eval_every == 0 or step == steps:
            checkpoint = out / f"step_{step:05d}"
            policy.save_pretrained(checkpoint)
            tokenizer.save_pretrained(checkpoint)
            rows.append({"step": step, "examples": step * batch, "loss": loss.item(), "train_seconds": trained,
                         "acc": evaluate_accuracy(str(checkpoint), env_kwargs, items, out / f"eval_step{step}")})
            print(f"supervised step {step}: {step * batch} labelled examples, loss {loss.item():.3f}, "
                  f"greedy acc {rows[-1]['acc']:.3f}", flush=True)
    return rows


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.2))
    for ax, key in zip(axes, CURVES, strict=True):
        for r in results:
            ys = r["curves"][key]
            ax.plot(range(1, len(ys) + 1), ys, label=f"seed {r['seed']}", linewidth=1.2)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("GRPO on Arithmetic-v0 (one-digit additions), tiny model, CPU: training rollouts per step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--items", type=int, default=200, help="evaluation items (>= 100)")
    p.add_argument("--backend", choices=("hf", "vllm"), default="hf", help="rollouts during training")
    p.add_argument("--output-dir", default="runs/learning")
    p.add_argument("--log-level", default="WARNING")
    p.add_argument("--supervised-ceiling", action="store_true",
                   help="instead of GRPO: fine-tune on the correct replies and print accuracy per labelled example")
    p.add_argument("--supervised-steps", type=int, default=300)
    p.add_argument("--supervised-batch", type=int, default=64)
    p.add_argument("--supervised-lr", type=float, default=1e-3)
    p.add_argument("--merge", nargs="+", metavar="LEARNING_JSON",
                   help="only combine the learning.json of separate runs (e.g. one seed per process) into one table/plot")
    args = p.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper()))
    from baselines.tiny import build_tiny_model

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.supervised_ceiling:
        model = str(build_tiny_model(spec=LEARNING_SPEC))
        rows = supervised_ceiling(model, out, steps=args.supervised_steps, batch=args.supervised_batch,
                                  lr=args.supervised_lr, eval_every=max(1, args.supervised_steps // 6),
                                  items=args.items)
        print("| supervised steps | labelled examples | training seconds | greedy acc |")
        print("|---|---|---|---|")
        for row in rows:
            print(f"| {row['step']} | {row['examples']} | {row['train_seconds']:.0f} | {row['acc']:.3f} |")
        (out / "ceiling.json").write_text(json.dumps(rows, indent=1) + "\n")
        return 0
    if args.merge:
        runs = [json.loads(Path(f).read_text()) for f in args.merge]
        results = [r for run in runs for r in run["results"]]
        args.steps, args.items = runs[0]["steps"], runs[0]["items"]
    else:
        t0 = time.perf_counter()
        model = str(build_tiny_model(spec=LEARNING_SPEC))
        print(f"starting model: {model} (built in {time.perf_counter() - t0:.0f} s)")
        results = [run_seed(s, args.steps, out / f"seed{s}", model, args.items, args.backend) for s in args.seeds]
    plot(results, out / "curves.png")
    print("| seed | start acc | end acc | change | distinct greedy answers (start -> end) "
          "| best constant answer's acc | train wall time (s) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        spread = (f"{r['start_spread']['distinct_answers']} -> {r['end_spread']['distinct_answers']} "
                  f"| {r['end_spread']['constant_acc']:.3f}") if "end_spread" in r else "n/a | n/a"
        print(f"| {r['seed']} | {r['start_acc']:.3f} | {r['end_acc']:.3f} | {r['end_acc'] - r['start_acc']:+.3f} "
              f"| {spread} | {r['train_seconds']:.0f} |")
    start = statistics.mean(r["start_acc"] for r in results)
    end = statistics.mean(r["end_acc"] for r in results)
    print(f"| mean | {start:.3f} | {end:.3f} | {end - start:+.3f} | | | "
          f"{statistics.mean(r['train_seconds'] for r in results):.0f} |")
    (out / "learning.json").write_text(json.dumps({"steps": args.steps, "items": args.items, "results": results},
                                                  indent=1) + "\n")
    print(f"wrote {out / 'curves.png'}, {out / 'learning.json'}, tensorboard under {out}/seed*/tensorboard")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
