"""``python -m adapters.verl``: train on any suite env with verl 0.9.1 (GRPO, vLLM rollouts, our agent loop).

    python -m adapters.verl --env hotpotqa-v0 --gpus-per-node 8 --dry-run

writes ``<output-dir>/train.parquet``, ``<output-dir>/val.parquet`` (when the preset has an evaluation
split: QA's validation split, every item, cap it with ``data.val_max_samples=N``; otherwise verl
validates on the training file), ``<output-dir>/agent_loop.yaml``
(our loop's registry entry, with the preset's per-turn token cap) and ``<output-dir>/command.txt`` and runs (without
``--dry-run``) ``python -m verl.trainer.main_ppo`` with the preset's overrides, the wiring (data,
model, our agent loop's config file) and your overrides after ``--`` (which win).

The policy is the preset's paper model unless ``--model`` names another (``agent-r1-qa``:
Qwen2.5-1.5B-Instruct; ``open-rs``: DeepSeek-R1-Distill-Qwen-1.5B).

Presets: ``agent-r1-qa`` (Agent-R1's HotpotQA recipe: GRPO, 5 samples, lr 1e-6, KL loss 0.001
``low_var_kl``, up to 5 tool turns of 1024 tokens: an 8192-token response budget; trains on the
``train`` split and validates on ``validation``) and ``open-rs``
(Open-RS: 6 samples at temperature 0.7, lr 1e-6 cosine with 10% warm-up, KL loss 0.04 (k3 =
``low_var_kl``), clip 0.2, prompt 512 / response 3584 tokens, 12 prompts per step, validation at
temperature 0.6 / top-p 0.95) and ``torl`` (ToRL: the python tool, 16 samples at temperature 1.0,
128 prompts per step, no KL, 3072 response tokens). Batch sizes beyond the papers' numbers follow
their example scripts' scale. The default preset is the env's paper recipe (``adapters.episodes.paper_recipe``), else
``open-rs``; ``--env-kwargs`` naming a split wins over the preset's.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adapters.episodes import (add_episode_arguments, evaluation_make_kwargs, paper_recipe, policy_model,
                               prompt_count, training_make_kwargs)
from adapters.verl import AGENT_LOOP_CONFIG
from adapters.verl.dataset import verl_rows, write_parquet
from envs.core.cli import HelpFormatter, add_logging_argument, cli_entry, program_name, progress_enabled, setup_logging
from envs.core.io import atomic_write_text
from envs.core.layout import child_environment
from envs.core.registry import env_server_urls

logger = logging.getLogger("adapters.verl")

_COMMON: dict[str, Any] = {
    "algorithm.adv_estimator": "grpo",
    "algorithm.use_kl_in_reward": False,
    "actor_rollout_ref.actor.use_kl_loss": True,
    "actor_rollout_ref.actor.kl_loss_type": "low_var_kl",
    "actor_rollout_ref.actor.clip_ratio": 0.2,
    "actor_rollout_ref.actor.optim.lr": 1e-6,
    "actor_rollout_ref.rollout.name": "vllm",
    "actor_rollout_ref.rollout.mode": "async",
    "actor_rollout_ref.rollout.agent.default_agent_loop": "agentr1",
    "data.return_raw_chat": True,
    "trainer.logger": ["console"],
    "trainer.total_epochs": 1,
    "trainer.save_freq": 50,
}

PRESETS: dict[str, dict[str, Any]] = {
    # [Agent-R1] trains on the train split, validates on validation: adapters.episodes.RECIPE_TRAIN_KWARGS /
    # RECIPE_EVAL_KWARGS, applied by main()
    "agent-r1-qa": {
        **_COMMON,
        "actor_rollout_ref.rollout.n": 5,
        "actor_rollout_ref.rollout.temperature": 1.0,
        "actor_rollout_ref.actor.kl_loss_coef": 0.001,
        "actor_rollout_ref.rollout.multi_turn.max_assistant_turns": 6,  # 5 searches + the answer
        "data.max_prompt_length": 1024,
        "data.max_response_length": 8192,
        "data.train_batch_size": 64,
        "actor_rollout_ref.actor.ppo_mini_batch_size": 32,
        "actor_rollout_ref.rollout.val_kwargs.temperature": 0.0,
    },
    "open-rs": {
        **_COMMON,
        "actor_rollout_ref.rollout.n": 6,
        "actor_rollout_ref.rollout.temperature": 0.7,
        "actor_rollout_ref.actor.kl_loss_coef": 0.04,
        "actor_rollout_ref.actor.optim.lr_scheduler_type": "cosine",
        "actor_rollout_ref.actor.optim.lr_warmup_steps_ratio": 0.1,
        "data.max_prompt_length": 512,
        "data.max_response_length": 3584,
        "data.train_batch_size": 12,
        "actor_rollout_ref.actor.ppo_mini_batch_size": 12,
        "actor_rollout_ref.rollout.val_kwargs.temperature": 0.6,
        "actor_rollout_ref.rollout.val_kwargs.top_p": 0.95,
        "actor_rollout_ref.rollout.val_kwargs.do_sample": True,
    },
    # [ToRL] the python tool, its limits and rewards: adapters.episodes.RECIPE_TRAIN_KWARGS, applied by main()
    "torl": {
        **_COMMON,
        "actor_rollout_ref.rollout.n": 16,
        "actor_rollout_ref.rollout.temperature": 1.0,
        "actor_rollout_ref.actor.kl_loss_coef": 0.0,
        "actor_rollout_ref.rollout.multi_turn.max_assistant_turns": 4,  # 3 code turns + the answer
        "data.max_prompt_length": 512,  # ToRL: 400; our prompt adds the tool's usage sentence
        "data.max_response_length": 3072,
        "data.train_batch_size": 128,
        "actor_rollout_ref.actor.ppo_mini_batch_size": 64,  # 64 prompts x 16 samples: ToRL's 1024-sample steps
        "trainer.save_freq": 20,
    },
}
# Per-turn generation caps, written into the run's agent-loop YAML entry (not a verl config key).
TURN_CAPS: dict[str, int | None] = {"agent-r1-qa": 1024, "open-rs": None, "torl": None}



def default_preset(env_id: str) -> str:
    """The preset of the env's paper recipe (``adapters.episodes.paper_recipe``); ``open-rs`` when it has none."""
    return paper_recipe(env_id) or "open-rs"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=program_name("adapters.verl"), formatter_class=HelpFormatter,
                                description=__doc__.split("\n\n")[0],
                                epilog="Overrides after `--` go to verl.trainer.main_ppo unchanged and win.")
    add_episode_arguments(p, "verl", presets=PRESETS)
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--dry-run", action="store_true", help="write the files and print the command; do not train")
    add_logging_argument(p)
    p.add_argument("overrides", nargs="*", help="extra verl overrides (key=value), after --")
    return p


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(f"'{v}'" if isinstance(v, str) else str(v) for v in value) + "]"
    return str(value)


def write_agent_loop_config(path: Path, *, max_tokens_per_turn: int | None, env_url: str | None = None) -> Path:
    """The run's agent-loop registry file: ``adapters/verl/agent_loop.yaml``'s entry plus the turn cap
    and the env servers (``env_url``, a deployment setting the loop's constructor receives)."""
    text = AGENT_LOOP_CONFIG.read_text().rstrip("\n") + "\n"
    if max_tokens_per_turn:
        text += f"  max_tokens_per_turn: {int(max_tokens_per_turn)}\n"
    if env_url is not None:
        text += f"  env_url: {json.dumps(','.join(env_server_urls(env_url)))}\n"  # a JSON string is a YAML string
    return atomic_write_text(path, text)


def build_command(*, preset: str, model: str, train_file: Path, env_id: str, nodes: int, gpus_per_node: int,
                  agent_loop_config: Path = AGENT_LOOP_CONFIG, val_file: Path | None = None,
                  overrides: Sequence[str] = ()) -> list[str]:
    """The ``verl.trainer.main_ppo`` command line (hydra ``key=value`` overrides); no ``val_file``: validate on the train file."""
    settings = {
        **PRESETS[preset],
        "data.train_files": str(train_file),
        "data.val_files": str(val_file or train_file),
        "actor_rollout_ref.model.path": model,
        "actor_rollout_ref.rollout.agent.agent_loop_config_path": str(agent_loop_config),
        "trainer.nnodes": nodes,
        "trainer.n_gpus_per_node": gpus_per_node,
        "trainer.project_name": "agentr1-gym",
        "trainer.experiment_name": f"{env_id.split('/')[-1]}-{preset}",
    }
    return [sys.executable, "-m", "verl.trainer.main_ppo",
            *(f"{k}={_format(v)}" for k, v in settings.items()), *overrides]


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    import envs

    env_id = envs.resolve_env_id(args.env)
    preset = args.preset or default_preset(env_id)
    model = policy_model(args.model, preset)
    out = (args.output_dir or Path("runs") / "verl" / env_id.split("/")[-1]).resolve()  # absolute: runs anywhere
    # the preset's data split (QA: train) unless --env-kwargs names one
    make_kwargs = training_make_kwargs(env_id, preset, args.env_kwargs, offline=args.offline)
    rows = verl_rows(env_id, make_kwargs, count=prompt_count(env_id, make_kwargs, args.num_prompts), seed=args.seed,
                     progress=progress_enabled())
    train_file = write_parquet(out / "train.parquet", rows)
    logger.info("wrote %d prompts to %s", len(rows), train_file)
    val_file = None
    val_kwargs = evaluation_make_kwargs(env_id, preset, make_kwargs)  # QA: the validation split
    if val_kwargs is not None and val_kwargs != make_kwargs:
        val_rows = verl_rows(env_id, val_kwargs, count=prompt_count(env_id, val_kwargs, None), seed=args.seed,
                             progress=progress_enabled())
        val_file = write_parquet(out / "val.parquet", val_rows)
        logger.info("wrote %d validation prompts to %s", len(val_rows), val_file)
    loop_config = write_agent_loop_config(out / "agent_loop.yaml", max_tokens_per_turn=TURN_CAPS.get(preset),
                                          env_url=args.env_url)
    command = build_command(preset=preset, model=model, train_file=train_file, env_id=env_id, nodes=args.nodes,
                            gpus_per_node=args.gpus_per_node, agent_loop_config=loop_config, val_file=val_file,
                            overrides=args.overrides)
    text = shlex.join(command)
    atomic_write_text(out / "command.txt", text + "\n")
    print(text)  # noqa: T201 - the CLI's output
    if args.dry_run:
        return 0
    return subprocess.call(command, env=child_environment())


if __name__ == "__main__":
    raise SystemExit(main())
