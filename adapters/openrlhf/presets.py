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
* ``torl``: ToRL's tool-integrated GRPO for small math models (Qwen2.5-Math-1.5B in the paper): the
  python tool (``adapters.episodes.TORL_MAKE_KWARGS``), 16 samples per prompt at temperature 1.0,
  128 prompts per rollout, 1024-sample optimizer steps, lr 1e-6, no KL, 3072 response tokens.
* ``small``: a short GRPO run for the procedural envs (arithmetic) and smoke tests on a small GPU.

Data splits: a preset trains on its recipe's training split (``adapters.episodes.RECIPE_TRAIN_KWARGS``,
QA: ``train``, as Agent-R1 does; the QA envs' own default is ``validation``, the split the papers
report on) and evaluates on its evaluation split (``RECIPE_EVAL_KWARGS``); ``--env-kwargs`` /
``--eval-env-kwargs`` override them. An env's default preset is its ``adapters.episodes.paper_recipe``
(``small`` when it has none). OpenRLHF's in-training evaluation only sets temperature and samples
per prompt (top-p and lengths are the training ones), so it is a progress monitor; the papers'
evaluation protocols are ``baselines.evaluate``'s defaults.
Each value's source is noted next to it: [Open-RS] the Open-RS paper/repo recipe, [Agent-R1] the
Agent-R1 paper/repo, [ToRL] the ToRL repo's scripts/torl_1.5b.sh, [OpenRLHF] OpenRLHF's defaults,
[suite] this project's choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.episodes import paper_recipe

FlagValue = Any  # str | int | float | bool | list


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    flags: dict[str, FlagValue]


_COMMON: dict[str, FlagValue] = {
    "--algo.advantage.estimator": "group_norm",  # [Open-RS][Agent-R1] GRPO
    "--algo.kl.use_loss": True,  # [Open-RS][Agent-R1] KL as a loss term (GRPO), not in the reward
    "--algo.kl.estimator": "k3",  # [Open-RS][Agent-R1] k3 estimator
    "--actor.eps_clip": 0.2,  # [Open-RS][Agent-R1] clip 0.2
    "--train.max_epochs": 1,  # [Open-RS] one optimisation pass per rollout batch
    "--train.num_episodes": 1,  # [suite]
    "--actor.gradient_checkpointing_enable": True,  # [suite] memory
    "--ds.packing_samples": True,  # [suite] throughput
    "--ds.zero_stage": 2,  # [suite]
    "--ds.param_dtype": "bf16",  # [suite]
    "--vllm.enable_prefix_caching": True,  # [suite] multi-turn prompts share prefixes
    "--ckpt.save_hf": True,  # [suite] checkpoints loadable by baselines.evaluate
    "--rollout.micro_batch_size": 4,  # [suite]
    "--train.micro_batch_size": 1,  # [suite]
}

PRESETS: dict[str, Preset] = {
    "open-rs": Preset(
        "open-rs",
        "Open-RS GRPO for small math models (6 x 12 samples/step, T=0.7, lr 1e-6, KL 0.04 k3, 512+3584 tokens)",
        {
            **_COMMON,
            "--rollout.n_samples_per_prompt": 6,  # [Open-RS] 6 samples per prompt
            "--rollout.temperature": 0.7,  # [Open-RS] training temperature
            "--rollout.top_p": 1.0,  # [Open-RS] no nucleus truncation while training
            "--rollout.batch_size": 12,  # [Open-RS] 12 prompts per optimizer step
            "--train.batch_size": 72,  # [Open-RS] 12 x 6 samples in one optimizer step
            "--actor.adam.lr": 1e-6,  # [Open-RS]
            "--actor.lr_scheduler": "cosine_with_min_lr",  # [Open-RS] cosine schedule
            "--actor.lr_warmup_ratio": 0.1,  # [Open-RS] 10% warm-up
            "--actor.min_lr_ratio": 0.0,  # [Open-RS] cosine to 0
            "--algo.kl.init_coef": 0.04,  # [Open-RS] beta 0.04
            "--data.max_len": 4096,  # [Open-RS] 512 prompt + 3584 completion
            "--rollout.max_new_tokens": 3584,  # [Open-RS] completion cap; prompts are cut to 4096 - 3584 = 512 tokens
            "--eval.temperature": 0.6,  # [Open-RS] evaluation temperature (lighteval: also top_p 0.95, 32768 tokens)
            "--eval.n_samples_per_prompt": 1,  # [Open-RS] pass@1 from one sample
            "--ckpt.save_steps": 50,  # [Open-RS] the reported checkpoints are at 50 / 100 steps
        },
    ),
    # data: [Agent-R1] trains on the train split, reports on validation (adapters.episodes.RECIPE_TRAIN_KWARGS,
    # RECIPE_EVAL_KWARGS)
    "agent-r1-qa": Preset(
        "agent-r1-qa",
        "Agent-R1-style GRPO for multi-hop QA with search (5 samples, lr 1e-6, KL 0.001 k3, 8192-token episodes)",
        {
            **_COMMON,
            "--rollout.n_samples_per_prompt": 5,  # [Agent-R1] example script: 5 rollouts per prompt
            "--rollout.temperature": 1.0,  # [Agent-R1] sampling at temperature 1 while training
            "--rollout.batch_size": 64,  # [suite] scale of Agent-R1's example script, not a paper number
            "--train.batch_size": 160,  # [suite]
            "--actor.adam.lr": 1e-6,  # [Agent-R1]
            "--actor.lr_warmup_ratio": 0.0,  # [Agent-R1]
            "--algo.kl.init_coef": 0.001,  # [Agent-R1] KL loss 0.001, k3
            "--data.max_len": 8192,  # [Agent-R1] up to 5 tool turns x 1024 new tokens + observations
            "--rollout.max_new_tokens": 1024,  # [Agent-R1] 1024 new tokens per turn (the agent caps every turn)
            "--eval.temperature": 0.0,  # [Agent-R1] greedy evaluation
            "--eval.n_samples_per_prompt": 1,  # [Agent-R1] one answer per question (EM)
            "--ckpt.save_steps": 50,  # [suite]
        },
    ),
    # env: [ToRL] the python tool, its limits and rewards (adapters.episodes.TORL_MAKE_KWARGS, applied by main())
    "torl": Preset(
        "torl",
        "ToRL-style GRPO with the python tool (16 x 128 samples, T=1.0, lr 1e-6, no KL, 400+3072 tokens)",
        {
            **_COMMON,
            "--rollout.n_samples_per_prompt": 16,  # [ToRL] n_samples_per_prompts=16
            "--rollout.temperature": 1.0,  # [ToRL]
            "--rollout.top_p": 1.0,  # [ToRL]
            "--rollout.batch_size": 128,  # [ToRL] rollout_batch_size=128 prompts
            "--train.batch_size": 1024,  # [ToRL] ppo_mini_batch_size=1024 samples per optimizer step
            "--actor.adam.lr": 1e-6,  # [ToRL]
            "--actor.lr_warmup_ratio": 0.0,  # [suite]
            "--algo.kl.init_coef": 0.0,  # [ToRL] kl_loss_coef=0, kl_coef=0
            "--data.max_len": 3472,  # [ToRL] 400 prompt + 3072 response tokens (code output included)
            "--rollout.max_new_tokens": 3072,  # [ToRL] max_gen_length=3072
            "--eval.temperature": 0.0,  # [suite] greedy evaluation
            "--eval.n_samples_per_prompt": 1,  # [suite]
            "--ckpt.save_steps": 20,  # [ToRL] save_freq=20
        },
    ),
    "small": Preset(
        "small",
        "a short GRPO run for procedural envs and smoke tests (8 samples x 16 prompts, 1024-token episodes)",
        {
            **_COMMON,
            "--rollout.n_samples_per_prompt": 8,  # [suite]
            "--rollout.temperature": 1.0,  # [suite]
            "--rollout.batch_size": 16,  # [suite]
            "--train.batch_size": 64,  # [suite]
            "--actor.adam.lr": 1e-6,  # [suite]
            "--algo.kl.init_coef": 0.01,  # [suite]
            "--data.max_len": 1024,  # [suite]
            "--ckpt.save_steps": 100,  # [suite]
        },
    ),
}


def default_preset(env_id: str) -> Preset:
    """The preset of the env's paper recipe (``adapters.episodes.paper_recipe``); ``small`` when it has none."""
    return PRESETS[paper_recipe(env_id) or "small"]
