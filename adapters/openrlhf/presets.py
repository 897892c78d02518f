"""Training presets for OpenRLHF 0.11.2 (dotted flags), one per recipe the suite reproduces.

A preset is a set of ``train_ppo_ray`` flags (``True`` means a bare switch). Wiring flags (model,
dataset, agent file) and cluster sizing are added by the CLI; user flags after ``--`` override all.

* ``open-rs``: the Open-RS GRPO recipe for small math models (DeepSeek-R1-Distill-Qwen-1.5B): 6
  samples per prompt at temperature 0.7, lr 1e-6 with cosine decay and 10% warm-up, KL loss 0.04
  with the k3 estimator, clip 0.2, prompt 512 + completion 3584 tokens (``--data.max_len`` 4096 with
  ``--rollout.max_new_tokens`` 3584: the agent caps each turn at the latter, OpenRLHF cuts prompts
  to the difference), 12 prompts per optimizer step (72 samples), one optimisation epoch per batch,
  evaluation at temperature 0.6.
* ``agent-r1-qa``: GRPO for multi-hop QA with search, after Agent-R1's HotpotQA recipe (max 5 tool
  turns and 1024 new tokens per turn: a 8192-token episode budget; 5 samples per prompt;
  lr 1e-6; KL loss 0.001, k3). Agent-R1 trained with verl; the batch sizes follow its example
  script's scale, not a number the paper reports.
* ``small``: a short GRPO run for the procedural envs (arithmetic) and smoke tests on a small GPU.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

FlagValue = Any  # str | int | float | bool | list


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    flags: dict[str, FlagValue]
    env_patterns: tuple[str, ...] = field(default=())  # env ids this preset is the default for (fnmatch, lower-case)


_COMMON: dict[str, FlagValue] = {
    "--algo.advantage.estimator": "group_norm",
    "--algo.kl.use_loss": True,
    "--algo.kl.estimator": "k3",
    "--actor.eps_clip": 0.2,
    "--train.max_epochs": 1,
    "--train.num_episodes": 1,
    "--actor.gradient_checkpointing_enable": True,
    "--ds.packing_samples": True,
    "--ds.zero_stage": 2,
    "--ds.param_dtype": "bf16",
    "--vllm.enable_prefix_caching": True,
    "--ckpt.save_hf": True,
    "--rollout.micro_batch_size": 4,
    "--train.micro_batch_size": 1,
}

PRESETS: dict[str, Preset] = {
    "open-rs": Preset(
        "open-rs",
        "Open-RS GRPO for small math models (6 x 12 samples/step, T=0.7, lr 1e-6, KL 0.04 k3, 512+3584 tokens)",
        {
            **_COMMON,
            "--rollout.n_samples_per_prompt": 6,
            "--rollout.temperature": 0.7,
            "--rollout.top_p": 1.0,
            "--rollout.batch_size": 12,
            "--train.batch_size": 72,
            "--actor.adam.lr": 1e-6,
            "--actor.lr_scheduler": "cosine_with_min_lr",
            "--actor.lr_warmup_ratio": 0.1,
            "--actor.min_lr_ratio": 0.0,
            "--algo.kl.init_coef": 0.04,
            "--data.max_len": 4096,
            "--rollout.max_new_tokens": 3584,  # completion cap; prompts are cut to 4096 - 3584 = 512 tokens
            "--eval.temperature": 0.6,
            "--eval.n_samples_per_prompt": 1,
            "--ckpt.save_steps": 50,
        },
        env_patterns=("agentr1/math*",),
    ),
    "agent-r1-qa": Preset(
        "agent-r1-qa",
        "Agent-R1-style GRPO for multi-hop QA with search (5 samples, lr 1e-6, KL 0.001 k3, 8192-token episodes)",
        {
            **_COMMON,
            "--rollout.n_samples_per_prompt": 5,
            "--rollout.temperature": 1.0,
            "--rollout.batch_size": 64,
            "--train.batch_size": 160,
            "--actor.adam.lr": 1e-6,
            "--actor.lr_warmup_ratio": 0.0,
            "--algo.kl.init_coef": 0.001,
            "--data.max_len": 8192,
            "--rollout.max_new_tokens": 1024,  # per turn (the agent caps every turn at this)
            "--eval.temperature": 0.0,
            "--eval.n_samples_per_prompt": 1,
            "--ckpt.save_steps": 50,
        },
        env_patterns=("agentr1/*qa*", "agentr1/*hop*", "agentr1/musique*", "agentr1/2wiki*"),
    ),
    "small": Preset(
        "small",
        "a short GRPO run for procedural envs and smoke tests (8 samples x 16 prompts, 1024-token episodes)",
        {
            **_COMMON,
            "--rollout.n_samples_per_prompt": 8,
            "--rollout.temperature": 1.0,
            "--rollout.batch_size": 16,
            "--train.batch_size": 64,
            "--actor.adam.lr": 1e-6,
            "--algo.kl.init_coef": 0.01,
            "--data.max_len": 1024,
            "--ckpt.save_steps": 100,
        },
    ),
}


def default_preset(env_id: str) -> Preset:
    """The preset whose ``env_patterns`` match ``env_id`` (``small`` when none does)."""
    key = env_id.lower()
    for preset in PRESETS.values():
        if any(fnmatch.fnmatch(key, pattern) for pattern in preset.env_patterns):
            return preset
    return PRESETS["small"]
