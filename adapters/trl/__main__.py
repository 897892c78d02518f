"""``python -m adapters.trl``: GRPO on any suite env with TRL 1.16's ``GRPOTrainer`` and our environment class.

    python -m adapters.trl --env arithmetic-v0 --output-dir runs/trl/arith
    python -m adapters.trl --env math-v0 --model Qwen/Qwen2.5-1.5B-Instruct --dry-run   # print the config only

trains the preset's paper model unless ``--model`` names another (see ``--help``), and writes
``<output-dir>/train.jsonl`` (the prompt rows) and ``<output-dir>/config.json`` (the
``GRPOConfig`` arguments) and trains, unless ``--dry-run``. Presets mirror the env's paper recipe:

* ``open-rs`` (math): 6 samples per prompt at temperature 0.7, lr 1e-6 with cosine decay and 10%
  warm-up, KL beta 0.04 (TRL's k3 estimator), clip 0.2, 3584 completion tokens, 12 prompts per
  optimizer step.
* ``agent-r1-qa`` (multi-hop QA): 5 samples, lr 1e-6, beta 0.001, up to 5 tool calls, 8192
  completion tokens for the whole conversation (TRL's ``max_completion_length`` covers every turn);
  the rows come from the ``train`` split (``--env-kwargs`` naming a split wins).
* ``small``: a short run for the procedural envs.

TRL only runs ``environment_factory`` with a chat template that renders tool calls and that its
response parser recognises (Qwen2.5/Qwen3, Llama 3.1/3.2, GLM-4-MoE, GPT-OSS, ...). Open-RS's
DeepSeek-R1-Distill template renders no tool calls, so TRL refuses it; for an env without tools the
CLI then falls back to reward functions alone (no environment class; the env still scores every
completion as the final answer). ``--chat-template`` replaces the tokenizer's template by one TRL
ships (e.g. ``qwen2_5`` for ``trl.chat_template_utils.qwen2_5_chat_template``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adapters.episodes import add_episode_arguments, paper_recipe, policy_model, prompt_count, training_make_kwargs
from adapters.trl.dataset import trl_rows
from envs.core.cli import HelpFormatter, add_logging_argument, cli_entry, program_name, progress_enabled, setup_logging
from envs.core.io import atomic_write_text

logger = logging.getLogger("adapters.trl")

PRESETS: dict[str, dict[str, Any]] = {
    "open-rs": {
        "num_generations": 6, "temperature": 0.7, "learning_rate": 1e-6, "lr_scheduler_type": "cosine",
        "warmup_steps": 0.1, "beta": 0.04, "epsilon": 0.2, "max_completion_length": 3584,
        "per_device_train_batch_size": 6, "gradient_accumulation_steps": 12, "num_iterations": 1,
        "loss_type": "grpo", "scale_rewards": "group", "bf16": True, "gradient_checkpointing": True,
        "logging_steps": 1, "save_steps": 50,
    },
    # [Agent-R1] trains on the train split: adapters.episodes.RECIPE_TRAIN_KWARGS, applied by main()
    "agent-r1-qa": {
        "num_generations": 5, "temperature": 1.0, "learning_rate": 1e-6, "beta": 0.001, "epsilon": 0.2,
        "max_completion_length": 8192, "max_tool_calling_iterations": 5, "per_device_train_batch_size": 5,
        "gradient_accumulation_steps": 16, "bf16": True, "gradient_checkpointing": True, "logging_steps": 1,
        "save_steps": 50,
    },
    # [ToRL] the python tool, its limits and rewards: adapters.episodes.RECIPE_TRAIN_KWARGS, applied by main(). TRL
    # calls the tool through the chat template's tool calls (Hermes JSON), not ToRL's ```python blocks.
    "torl": {
        "num_generations": 16, "temperature": 1.0, "learning_rate": 1e-6, "beta": 0.0, "max_completion_length": 3072,
        "max_tool_calling_iterations": 3, "per_device_train_batch_size": 16, "gradient_accumulation_steps": 64,
        "loss_type": "grpo", "scale_rewards": "group", "bf16": True, "gradient_checkpointing": True,
        "logging_steps": 1, "save_steps": 20,
    },
    "small": {
        "num_generations": 8, "temperature": 1.0, "learning_rate": 1e-6, "beta": 0.01, "max_completion_length": 1024,
        "max_tool_calling_iterations": 3, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 4,
        "logging_steps": 1, "save_steps": 100,
    },
}


def default_preset(env_id: str) -> str:
    """The preset of the env's paper recipe (``adapters.episodes.paper_recipe``); ``small`` when it has none."""
    return paper_recipe(env_id) or "small"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=program_name("adapters.trl"), formatter_class=HelpFormatter,
                                description=__doc__.split("\n\n")[0])
    add_episode_arguments(p, "trl", presets=PRESETS, seed_help="base reset seed of the episodes and GRPOConfig's seed")
    p.add_argument("--chat-template", help="use a template TRL ships: the NAME in trl.chat_template_utils.NAME_chat_template")
    p.add_argument("--max-steps", type=int, default=-1, help="optimizer steps (default: one epoch over the rows)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="override a GRPOConfig argument, e.g. --set learning_rate=3e-6 (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="write the rows and the config, print the config, do not train")
    add_logging_argument(p)
    return p


def grpo_arguments(preset: str, *, output_dir: Path, seed: int, max_steps: int, reward_weights: list[float] | None,
                   overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The ``GRPOConfig`` keyword arguments of a run (JSON-serialisable)."""
    arguments = {**PRESETS[preset], "output_dir": str(output_dir), "seed": seed, "max_steps": max_steps,
                 "report_to": ["tensorboard"]}
    if reward_weights is not None:
        arguments["reward_weights"] = reward_weights
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set needs KEY=VALUE, got {item!r}")
        try:
            arguments[key] = json.loads(value)
        except json.JSONDecodeError:
            arguments[key] = value
    return arguments


def _has_tools(env_id: str, make_kwargs: dict[str, Any], env_url: str | None = None) -> bool:
    from adapters.episodes import make_env

    env = make_env(env_id, make_kwargs, env_url=env_url)
    try:
        return bool(getattr(env.unwrapped, "tools", {}))
    finally:
        env.close()


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    import envs

    from adapters.trl.environment import make_trl_environment, plain_reward_functions

    env_id = envs.resolve_env_id(args.env)
    preset = args.preset or default_preset(env_id)
    model = policy_model(args.model, preset)
    # the preset's data split (QA: train) unless --env-kwargs names one
    make_kwargs = training_make_kwargs(env_id, preset, args.env_kwargs, offline=args.offline)
    rows = trl_rows(env_id, make_kwargs, count=prompt_count(env_id, make_kwargs, args.num_prompts), seed=args.seed,
                    progress=progress_enabled())
    out = args.output_dir or Path("runs") / "trl" / env_id.split("/")[-1]
    atomic_write_text(out / "train.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    if args.chat_template:
        import trl.chat_template_utils as templates

        tokenizer.chat_template = getattr(templates, f"{args.chat_template}_chat_template")
    from trl.chat_template_utils import supports_tool_calling

    use_environment = supports_tool_calling(tokenizer)
    if not use_environment and _has_tools(env_id, make_kwargs, args.env_url):
        raise SystemExit(f"{env_id} has tools, but the chat template of {model} cannot render tool calls, which "
                         "TRL requires; pick a tool-calling template with --chat-template (e.g. qwen2_5)")
    if use_environment:
        env_cls = make_trl_environment(env_id, processing_class=tokenizer, env_url=args.env_url, **make_kwargs)
        reward_funcs, weights = env_cls.reward_funcs, env_cls.reward_weights
    else:
        logger.info("the chat template renders no tool calls: training with reward functions only (no environment class)")
        env_cls = None
        reward_funcs, weights = plain_reward_functions(env_id, env_url=args.env_url, **make_kwargs)
    arguments = grpo_arguments(preset, output_dir=out, seed=args.seed, max_steps=args.max_steps, reward_weights=weights,
                               overrides=args.set)
    atomic_write_text(out / "config.json", json.dumps(arguments, indent=2) + "\n")
    print(json.dumps({"env": env_id, "preset": preset, "rows": len(rows), "environment_factory": use_environment,  # noqa: T201
                      "reward_funcs": [f.__name__ for f in reward_funcs], "grpo_config": arguments}, indent=2))
    if args.dry_run:
        return 0
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    trainer = GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=reward_funcs,
                          args=GRPOConfig(**arguments), train_dataset=Dataset.from_list(rows), environment_factory=env_cls)
    trainer.train()
    trainer.save_model(str(out / "final"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
