"""The trainer's configuration: one dataclass, YAML presets, command-line overrides.

A preset (``baselines/presets/*.yaml``) is a flat mapping of these fields; the CLI applies the preset
first and its own flags on top. ``validate`` rejects bad values with a message naming the field.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ESTIMATORS: tuple[str, ...] = ("grpo", "rloo", "reinforce_baseline")
LOSS_AGGREGATIONS: tuple[str, ...] = ("sequence_mean", "token_mean", "token_sum_norm")

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"


@dataclass
class GRPOConfig:
    """Every knob of a run. Defaults are a small CPU-friendly run; presets set the papers' recipes."""

    # what to train
    env: str = "arithmetic-v0"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    env_url: str | None = None  # env servers (comma-separated URLs) to play episodes on; None: $AGENTR1_ENV_URL, else local
    model: str = "tiny"  # a HF id or directory, or a named model of baselines.models ("tiny", "smollm2-135m")
    tokenizer: str | None = None  # defaults to ``model``
    output_dir: str = "runs/grpo"
    seed: int = 0
    # rollouts
    backend: str = "hf"  # "hf" (transformers generate) or "vllm"
    steps: int = 100  # optimizer steps
    prompts_per_step: int = 12  # across all ranks
    group_size: int = 6  # rollouts per prompt (G)
    max_new_tokens: int = 1024  # per assistant turn
    max_episode_tokens: int = 4096  # prompt + all turns; episodes are cut (truncated) at this length
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    template_tools: bool = True  # pass the env's tool schemas to the chat template
    rollout_batch_size: int = 64  # sequences per generate call (HF backend)
    vllm_gpu_memory_utilization: float = 0.35  # GPU only; on CPU the KV cache is vllm_cpu_kvcache_gib
    vllm_tensor_parallel_size: int = 1
    vllm_enable_sleep: bool = False  # GPU only (vLLM has no sleep mode on CPU)
    vllm_dtype: str = "auto"  # rollout dtype; auto: the trainer's compute dtype (fp32 on CPU, bf16 on GPU)
    vllm_enforce_eager: bool | None = None  # None: eager on CPU, CUDA graphs on GPU
    vllm_cpu_kvcache_gib: float = 1.0  # CPU only: VLLM_CPU_KVCACHE_SPACE
    vllm_cpu_threads_bind: str | None = None  # CPU only: VLLM_CPU_OMP_THREADS_BIND; None: split cores per rank
    vllm_logprob_check_every: int = 1  # steps; compare vLLM's and the trainer's log-probs (0: never)
    vllm_logprob_check_sequences: int = 4  # sequences per check
    # algorithm
    advantage: str = "grpo"  # grpo | rloo | reinforce_baseline
    scale_by_std: bool = True  # False: Dr. GRPO (no std division)
    turn_level_returns: bool = False  # MT-GRPO-style turn-level credit (see baselines.grpo.algorithms)
    turn_reward_weight: float = 1.0  # weight of the process-reward part of turn-level advantages (MT-GRPO's lambda)
    drop_env_errors: bool = True  # leave episodes hit by an infrastructure fault (metrics env_error > 0) out of the loss
    loss_aggregation: str = "sequence_mean"  # sequence_mean | token_mean | token_sum_norm (Dr. GRPO)
    beta: float = 0.04  # KL(pi || ref) coefficient, k3 estimator; 0 loads no reference model
    clip_eps: float = 0.2
    clip_eps_high: float | None = None  # asymmetric upper clip (DAPO); None = clip_eps
    updates_per_batch: int = 1  # policy updates on each rollout batch (GRPO's mu)
    micro_batch_size: int = 8  # sequences per forward/backward
    # optimisation
    lr: float = 1e-6
    lr_schedule: str = "cosine"  # cosine | linear | constant
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.99)
    max_grad_norm: float = 1.0
    dtype: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16
    gradient_checkpointing: bool = False
    strategy: str = "auto"  # auto | fsdp | ddp | none
    fsdp_defer_grad_sync: bool = False  # True: one reduce-scatter per batch, unsharded grads in between (memory)
    # bookkeeping
    save_every: int = 50  # steps; 0 saves only at the end
    keep_checkpoints: int = 2
    resume: bool = True  # resume from the newest checkpoint in output_dir if there is one
    max_train_seconds: float = 0.0  # stop (and save) after the step that crosses this wall time; 0: no limit
    resume_from: str | None = None  # a specific checkpoint directory to resume from
    log_every: int = 1
    sample_episodes: int = 4  # episodes written to output_dir/episodes.jsonl every logging step (0: none)
    tensorboard: bool = True
    wandb_project: str | None = None
    progress: bool = True

    def validate(self) -> GRPOConfig:
        """Raise ``ValueError`` naming the first bad field."""
        def need(ok: bool, name: str, why: str) -> None:
            if not ok:
                raise ValueError(f"config field {name!r}: {why} (got {getattr(self, name)!r})")

        need(self.backend in ("hf", "vllm"), "backend", "must be 'hf' or 'vllm'")
        need(self.vllm_dtype in ("auto", "float32", "bfloat16", "float16"), "vllm_dtype", "unknown dtype")
        need(self.vllm_cpu_kvcache_gib > 0 and float(self.vllm_cpu_kvcache_gib).is_integer(), "vllm_cpu_kvcache_gib",
             "must be a whole number of GiB > 0 (vLLM reads VLLM_CPU_KVCACHE_SPACE as an integer)")
        need(self.vllm_logprob_check_every >= 0, "vllm_logprob_check_every", "must be >= 0")
        need(self.steps >= 1, "steps", "must be >= 1")
        need(self.prompts_per_step >= 1, "prompts_per_step", "must be >= 1")
        need(self.group_size >= 1, "group_size", "must be >= 1")
        need(self.advantage in ESTIMATORS, "advantage", f"must be one of {ESTIMATORS}")
        need(self.advantage != "rloo" or self.group_size >= 2, "group_size", "rloo needs >= 2")
        need(self.loss_aggregation in LOSS_AGGREGATIONS, "loss_aggregation", f"must be one of {LOSS_AGGREGATIONS}")
        need(self.max_new_tokens >= 1, "max_new_tokens", "must be >= 1")
        need(self.max_episode_tokens > self.max_new_tokens // 64, "max_episode_tokens", "is too small")
        need(self.temperature > 0, "temperature", "must be > 0 for training rollouts")
        need(0 < self.top_p <= 1, "top_p", "must be in (0, 1]")
        need(self.beta >= 0, "beta", "must be >= 0")
        need(self.turn_reward_weight >= 0, "turn_reward_weight", "must be >= 0")
        need(self.clip_eps > 0, "clip_eps", "must be > 0")
        need(self.updates_per_batch >= 1, "updates_per_batch", "must be >= 1")
        need(self.micro_batch_size >= 1, "micro_batch_size", "must be >= 1")
        need(self.lr > 0, "lr", "must be > 0")
        need(self.lr_schedule in ("cosine", "linear", "constant"), "lr_schedule", "must be cosine, linear or constant")
        need(0 <= self.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)")
        need(self.dtype in ("auto", "float32", "bfloat16", "float16"), "dtype", "unknown dtype")
        need(self.strategy in ("auto", "fsdp", "ddp", "none"), "strategy", "must be auto, fsdp, ddp or none")
        need(self.keep_checkpoints >= 1, "keep_checkpoints", "must be >= 1")
        need(self.max_train_seconds >= 0, "max_train_seconds", "must be >= 0 (0: no limit)")
        need(self.sample_episodes >= 0, "sample_episodes", "must be >= 0")
        need(isinstance(self.env_kwargs, dict), "env_kwargs", "must be a mapping")
        return self


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(GRPOConfig)]


def load_preset(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML preset; a bare name (``open_rs``) is looked up in ``baselines/presets``."""
    import yaml

    p = Path(path)
    if not p.exists() and not p.suffix:
        p = PRESET_DIR / f"{p.name}.yaml"
    with open(p, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{p}: a preset must be a mapping of config fields")
    unknown = sorted(set(data) - set(field_names()) - {"description"})
    if unknown:
        raise ValueError(f"{p}: unknown config fields {unknown}")
    data.pop("description", None)
    return data


def make_config(preset: str | os.PathLike[str] | None = None, **overrides: Any) -> GRPOConfig:
    """Preset values, then ``overrides`` (``None`` values are ignored), validated."""
    values: dict[str, Any] = load_preset(preset) if preset else {}
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in field_names():
            raise ValueError(f"unknown config field {key!r}")
        if key == "env_kwargs" and isinstance(values.get("env_kwargs"), dict):
            value = {**values["env_kwargs"], **value}
        values[key] = value
    if "adam_betas" in values:
        values["adam_betas"] = tuple(values["adam_betas"])
    return GRPOConfig(**values).validate()
