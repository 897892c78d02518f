"""The GRPO train loop: rollouts through the env, advantages, masked clipped loss, checkpoints.

One ``step`` = each rank plays its share of ``prompts_per_step`` prompts x ``group_size`` rollouts,
computes group advantages (``baselines.grpo.algorithms``: outcome- or turn-level; REINFORCE++-baseline
whitened over all ranks), then makes ``updates_per_batch`` optimizer steps on that batch. Episodes
hit by an infrastructure fault (``metrics["env_error"] > 0``) stay out of their group and the loss
(``drop_env_errors``, on by default; the step's ``dropped`` metric counts them).

Seeds: each process seeds torch's own RNG once with ``seed + rank`` (HF sampling draws from it) and
saves/restores that RNG state in checkpoints; env episodes are seeded from
``SeedSequence([seed, step, prompt])`` so the prompts of a step do not depend on the world size.
Python's ``random`` and NumPy's global RNG are never seeded or used.

Every logging step, rank 0 appends ``sample_episodes`` of its episodes (spread over its prompts) to
``output_dir/episodes.jsonl`` as episode records (``envs.core.records``: the conversation, each
turn's reward components, the final metrics), which ``python -m envs view`` shows; a run first drops
the records of the steps it is about to play (those after its checkpoint, or all when it starts over).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from baselines.grpo.algorithms import policy_loss, token_logprobs, turn_advantages
from baselines.grpo.checkpoint import latest_checkpoint, load_training_state, save_checkpoint, set_rng_state
from baselines.grpo.config import GRPOConfig
from baselines.grpo.distributed import (
    DistContext,
    all_reduce_sum,
    barrier,
    init_distributed,
    iter_full_tensors,
    load_optimizer_state,
    resolve_strategy,
    unwrap,
    wrap_model,
)
from baselines.grpo.rollout import ChatFormat, Episode, HFGenerator, Sampling, run_episodes
from envs.core.io import atomic_write_text
from envs.core.records import append_episode_records

SAMPLES_FILE = "episodes.jsonl"

logger = logging.getLogger(__name__)


def resolve_model_path(name: str, ctx: DistContext | None = None) -> str:
    """``baselines.models.resolve_model`` with rank 0 building or converting a named model first."""
    from baselines.models import NAMED_MODELS, resolve_model

    if name.strip().lower() not in NAMED_MODELS:
        return name
    if ctx is not None and ctx.distributed and not ctx.is_main:
        barrier(ctx)
        return resolve_model(name)
    path = resolve_model(name)
    if ctx is not None and ctx.distributed:
        barrier(ctx)
    return path


def _torch_dtype(name: str, device: Any):
    import torch

    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, name)


def disable_dropout(model: Any) -> None:
    """Zero every dropout probability (``nn.Dropout`` modules and attention-dropout attributes)."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0
    if isinstance(getattr(model.config, "attention_dropout", None), float):
        model.config.attention_dropout = 0.0


def lr_lambda(schedule: str, total: int, warmup: int):
    """Multiplier on the base LR: linear warm-up, then cosine / linear decay to 0, or constant."""
    def fn(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        progress = min(max(progress, 0.0), 1.0)
        if schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return fn


def batch_tensors(episodes: list[Episode], advantages: Sequence[Sequence[float] | None], pad_id: int):
    """Left-padded ids, attention mask, position ids, and per-token loss mask / advantage.

    The last two cover the response span (the last ``resp`` positions of every row): the loss mask
    is the episode's ``action_mask`` (observation and end-of-turn template tokens are 0) and each
    model token carries its turn's advantage, ``advantages[row][turn]``. A row whose advantages are
    ``None`` (a dropped episode) keeps its place in the batch with an all-zero loss mask, so every
    rank still runs the same forward/backward passes.
    """
    import torch

    width = max(e.length for e in episodes)
    resp = max(1, max(len(e.tokens) for e in episodes))
    n = len(episodes)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    attn = torch.zeros((n, width), dtype=torch.long)
    mask = torch.zeros((n, resp), dtype=torch.float32)
    adv = torch.zeros((n, resp), dtype=torch.float32)
    for row, (ep, turn_adv) in enumerate(zip(episodes, advantages, strict=True)):
        seq = ep.prompt_ids + ep.tokens
        ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
        attn[row, width - len(seq):] = 1
        if turn_adv is None:
            continue
        offset = resp - len(ep.tokens)
        for k, (m, t) in enumerate(zip(ep.action_mask, ep.token_turn, strict=True)):
            if m:
                mask[row, offset + k] = 1.0
                adv[row, offset + k] = turn_adv[min(t, len(turn_adv) - 1)]
    positions = (attn.cumsum(dim=1) - 1).clamp(min=0)
    return ids, attn, positions, mask, adv, resp


def episode_advantages_for(episodes: list[Episode], num_groups: int, cfg: GRPOConfig, ctx: DistContext | None = None
                           ) -> list[list[float] | None]:
    """Each episode's per-turn advantages under ``cfg`` (``None`` for a dropped episode).

    Episodes touched by an infrastructure fault (``metrics["env_error"] > 0``) are left out of their
    group and the loss when ``cfg.drop_env_errors`` is set: the model did nothing to earn or lose
    that reward. REINFORCE++-baseline whitening is token-weighted over every rank's episodes.
    """
    keep = [not (cfg.drop_env_errors and ep.env_error) for ep in episodes]
    grouped: list[list[list[float]]] = [[] for _ in range(num_groups)]
    counts: list[list[list[float]]] = [[] for _ in range(num_groups)]
    where: list[tuple[int, int] | None] = []
    for ep, kept in zip(episodes, keep, strict=True):
        if not kept:
            where.append(None)
            continue
        where.append((ep.group, len(grouped[ep.group])))
        grouped[ep.group].append(ep.turn_rewards or [0.0])
        counts[ep.group].append([float(c) for c in ep.turn_token_counts()] or [0.0])
    reduce = (lambda values: all_reduce_sum(values, ctx)) if ctx is not None and ctx.distributed else None
    if cfg.advantage == "rloo":  # a group left with one episode has no leave-one-out baseline: drop it too
        for g, group in enumerate(grouped):
            if len(group) == 1:
                grouped[g], counts[g] = [], []
                where = [None if w is not None and w[0] == g else w for w in where]
    advantages = turn_advantages(grouped, cfg.advantage, turn_level=cfg.turn_level_returns,
                                 scale_by_std=cfg.scale_by_std, turn_weight=cfg.turn_reward_weight,
                                 token_counts=counts, all_reduce=reduce)
    return [None if w is None else advantages[w[0]][w[1]] for w in where]


class GRPOTrainer:
    """Owns the policy, optional frozen reference, optimizer, envs and rollout backend of one run."""

    def __init__(self, config: GRPOConfig, ctx: DistContext | None = None, *, device: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        import envs

        self.cfg = config.validate()
        self.ctx = ctx or init_distributed(device)
        cfg, ctx = self.cfg, self.ctx
        if cfg.prompts_per_step % ctx.world_size:
            raise ValueError(f"prompts_per_step ({cfg.prompts_per_step}) must be divisible by the world size ({ctx.world_size})")
        self.local_prompts = cfg.prompts_per_step // ctx.world_size
        torch.manual_seed(cfg.seed + ctx.rank)
        self.env_id = envs.resolve_env_id(cfg.env)
        self.base_model = resolve_model_path(cfg.model, ctx)
        self.start_step = 0
        self.train_seconds_before = 0.0  # wall time of earlier runs of this output_dir (restored on resume)
        self._started = time.perf_counter()
        resume_from = Path(cfg.resume_from) if cfg.resume_from else (latest_checkpoint(cfg.output_dir) if cfg.resume else None)
        weights_from = str(resume_from) if resume_from else self.base_model
        tok_path = cfg.tokenizer or (str(resume_from) if resume_from else self.base_model)
        self.tokenizer = AutoTokenizer.from_pretrained(tok_path)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.chat = ChatFormat(self.tokenizer, include_tools=cfg.template_tools)
        # The policy keeps fp32 master weights (updates at lr 1e-6 vanish in bf16 weights); ``dtype`` is
        # the compute precision: FSDP2's mixed-precision policy, or autocast without FSDP.
        dtype = self.compute_dtype = _torch_dtype(cfg.dtype, ctx.device)
        self.model = AutoModelForCausalLM.from_pretrained(weights_from, dtype=torch.float32).to(ctx.device)
        disable_dropout(self.model)  # the sampler's and the trainer's log-probs must be the same policy
        self.model.train()  # train mode only switches on activation checkpointing, dropout is off
        if cfg.gradient_checkpointing:
            enable = getattr(self.model, "activation_checkpointing_enable", None) or self.model.gradient_checkpointing_enable
            enable()
        self.model.config.use_cache = True
        self.ref_model = None
        if cfg.beta > 0:
            self.ref_model = AutoModelForCausalLM.from_pretrained(self.base_model, dtype=dtype).to(ctx.device)
            self.ref_model.eval().requires_grad_(False)
        self.strategy = resolve_strategy(cfg.strategy, ctx, cfg.backend)
        self.model = wrap_model(self.model, self.strategy, ctx, compute_dtype=dtype)
        if self.ref_model is not None and self.strategy == "fsdp":
            self.ref_model = wrap_model(self.ref_model, "fsdp", ctx)
        self._autocast = self.strategy != "fsdp" and dtype != torch.float32
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=tuple(cfg.adam_betas),
                                           weight_decay=cfg.weight_decay)
        total_updates = cfg.steps * cfg.updates_per_batch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(cfg.lr_schedule, total_updates, int(cfg.warmup_ratio * total_updates)))
        if resume_from:
            self._restore(resume_from)
        if ctx.is_main:  # a run that starts over, or resumes, replays the steps after start_step
            drop_samples_after(Path(cfg.output_dir) / SAMPLES_FILE, self.start_step)
        self.envs = [envs.make(self.env_id, env_url=cfg.env_url, **cfg.env_kwargs) for _ in range(self.local_prompts * cfg.group_size)]
        self._items = len(getattr(self.envs[0].unwrapped, "items", []) or [])
        self.sampling = Sampling(temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
                                 max_new_tokens=cfg.max_new_tokens)
        self._vllm = cfg.backend == "vllm"
        if self._vllm:
            from baselines.grpo.vllm_engine import VLLMGenerator, VLLMSettings

            rollout_dtype = cfg.vllm_dtype if cfg.vllm_dtype != "auto" else str(dtype).removeprefix("torch.")
            settings = VLLMSettings(
                dtype=rollout_dtype, tensor_parallel_size=cfg.vllm_tensor_parallel_size,
                gpu_memory_utilization=cfg.vllm_gpu_memory_utilization, max_model_len=cfg.max_episode_tokens,
                enable_sleep=cfg.vllm_enable_sleep, enforce_eager=cfg.vllm_enforce_eager,
                cpu_kvcache_gib=cfg.vllm_cpu_kvcache_gib, cpu_threads_bind=cfg.vllm_cpu_threads_bind)
            self.generator: Any = VLLMGenerator(weights_from, stop_ids=self.chat.stop_ids, seed=cfg.seed + ctx.rank,
                                                settings=settings, tokenizer=tok_path)
        else:
            self.generator = HFGenerator(self.model, self.tokenizer, self.chat.stop_ids, batch_size=cfg.rollout_batch_size)
        self.writer = None
        self.wandb = None
        self.history: list[dict[str, float]] = []

    # ------------------------------------------------------------------ resume
    def _restore(self, path: Path) -> None:
        loaded = load_training_state(path, self.ctx)
        load_optimizer_state(self.model, self.optimizer, loaded["optimizer"], self.ctx)
        self.scheduler.load_state_dict(loaded["scheduler"])
        if loaded["rng"] is not None:
            set_rng_state(loaded["rng"])
        self.start_step = int(loaded["state"]["step"])
        self.train_seconds_before = float(loaded["state"].get("train_seconds", 0.0))
        logger.info("resumed from %s at step %d", path, self.start_step)

    # ------------------------------------------------------------------ prompts
    def step_resets(self, step: int) -> tuple[list[dict[str, Any]], list[int]]:
        """This rank's reset kwargs for ``step``: its prompts, each repeated ``group_size`` times."""
        cfg, ctx = self.cfg, self.ctx
        resets, groups = [], []
        for local in range(self.local_prompts):
            j = ctx.rank * self.local_prompts + local  # global prompt index within the step
            seed = int(np.random.SeedSequence([cfg.seed, step, j]).generate_state(1)[0])
            options: dict[str, Any] = {}
            if self._items:
                flat = step * cfg.prompts_per_step + j
                epoch, pos = divmod(flat, self._items)
                order = np.random.default_rng([cfg.seed, epoch]).permutation(self._items)
                options = {"index": int(order[pos])}
            for _ in range(cfg.group_size):
                resets.append({"seed": seed, "options": dict(options)})
                groups.append(local)
        return resets, groups

    # ------------------------------------------------------------------ tensors
    def _logprobs(self, model: Any, ids, attn, positions, resp: int, *, grad: bool):
        """Log-probs and entropies of the last ``resp`` tokens of each row."""
        import torch

        grad_ctx = nullcontext() if grad else torch.no_grad()
        cast = (torch.autocast(device_type=self.ctx.device.type, dtype=self.compute_dtype)
                if self._autocast and model is self.model else nullcontext())
        with grad_ctx, cast:
            out = model(input_ids=ids, attention_mask=attn, position_ids=positions, logits_to_keep=resp + 1,
                        use_cache=False)
            logits = out.logits[:, :-1, :]
            return token_logprobs(logits, ids[:, -resp:], self.cfg.temperature)

    def _micro_batches(self, n: int) -> list[slice]:
        size = self.cfg.micro_batch_size
        return [slice(s, min(s + size, n)) for s in range(0, n, size)]

    # ------------------------------------------------------------------ one step
    def train_step(self, step: int) -> dict[str, float]:
        """Roll out, compute advantages and update; returns the step's metrics (all ranks agree)."""
        import torch

        cfg, ctx = self.cfg, self.ctx
        t0 = time.perf_counter()
        resets, groups = self.step_resets(step)
        cast = (torch.autocast(device_type=ctx.device.type, dtype=self.compute_dtype)
                if self._autocast and not self._vllm else nullcontext())
        with cast:
            episodes = run_episodes(self.generator, self.chat, self.envs, resets, groups, self.sampling,
                                    cfg.max_episode_tokens)
        t_rollout = time.perf_counter() - t0
        gap = self.logprob_gap(episodes) if self._check_logprobs(step) else {}
        if self._vllm:
            self.generator.sleep()
        advantages = episode_advantages_for(episodes, self.local_prompts, cfg, ctx)
        ids, attn, positions, mask, adv, resp = batch_tensors(episodes, advantages, self.tokenizer.pad_token_id)
        dev = ctx.device
        ids, attn, positions, mask, adv = (t.to(dev) for t in (ids, attn, positions, mask, adv))
        slices = self._micro_batches(len(episodes))
        kept = float(sum(a is not None for a in advantages))
        token_count, seq_count = all_reduce_sum([float(mask.sum()), kept], ctx)
        token_count, seq_count = max(token_count, 1.0), max(seq_count, 1.0)  # all dropped: a zero loss, not 0/0
        ref_logp = old_logp = None
        if self.ref_model is not None:
            ref_logp = torch.cat([self._logprobs(self.ref_model, ids[s], attn[s], positions[s], resp, grad=False)[0]
                                  for s in slices])
        if cfg.updates_per_batch > 1:
            old_logp = torch.cat([self._logprobs(self.model, ids[s], attn[s], positions[s], resp, grad=False)[0]
                                  for s in slices])
        sums: dict[str, float] = defaultdict(float)
        scale = float(ctx.world_size) if ctx.distributed else 1.0  # DDP/FSDP average gradients over ranks
        t1 = time.perf_counter()
        for update in range(cfg.updates_per_batch):
            self.optimizer.zero_grad(set_to_none=True)
            for k, s in enumerate(slices):
                last = k == len(slices) - 1
                with self._sync_context(last):
                    logp, entropy = self._logprobs(self.model, ids[s], attn[s], positions[s], resp, grad=True)
                    old = old_logp[s] if old_logp is not None else logp.detach()
                    loss, stats = policy_loss(
                        logp, old, adv[s], mask[s], ref_logp=ref_logp[s] if ref_logp is not None else None,
                        beta=cfg.beta, clip_low=cfg.clip_eps, clip_high=cfg.clip_eps_high,
                        aggregation=cfg.loss_aggregation, token_count=token_count, sequence_count=seq_count,
                        max_tokens=cfg.max_new_tokens)
                    (loss * scale).backward()
                if update == 0:
                    ntok = float(stats["tokens"])
                    sums["loss"] += float(loss.detach()) * scale
                    sums["kl_tok"] += float(stats["kl"]) * ntok
                    sums["clip_tok"] += float(stats["clip_frac"]) * ntok
                    sums["entropy_tok"] += float((entropy.detach() * mask[s]).sum())
                    sums["tokens"] += ntok
            grad_norm = self._clip_and_step()
            if update == 0:
                sums["grad_norm"] = grad_norm * (1.0 / ctx.world_size if ctx.distributed else 1.0)
        t_train = time.perf_counter() - t1
        t2 = time.perf_counter()
        if self._vllm:
            self.generator.sync_weights(iter_full_tensors(self.model, self.generator.torch_dtype))
        t_sync = time.perf_counter() - t2
        if ctx.is_main and cfg.sample_episodes and (step + 1) % max(1, cfg.log_every) == 0:
            self.write_samples(step + 1, episodes)
        metrics = self._metrics(episodes, sums, dropped=[a is None for a in advantages])
        metrics.update({"time/rollout": t_rollout, "time/train": t_train, "time/sync": t_sync,
                        "lr": self.scheduler.get_last_lr()[0]})
        metrics.update({f"rollout/logprob_gap_{k}": v for k, v in gap.items()})
        return metrics

    def write_samples(self, step: int, episodes: list[Episode]) -> None:
        """Append ``sample_episodes`` of ``episodes``, evenly spread over them, to ``episodes.jsonl``."""
        picks = sorted({int(round(x)) for x in np.linspace(0, len(episodes) - 1, min(self.cfg.sample_episodes, len(episodes)))})
        source = {"kind": "train", "env": self.env_id, "model": str(self.cfg.model), "step": step}
        append_episode_records(Path(self.cfg.output_dir) / SAMPLES_FILE,
                               [episodes[i].record(source={**source, "group": episodes[i].group}) for i in picks])

    # ------------------------------------------------------------------ rollout/trainer agreement
    def _check_logprobs(self, step: int) -> bool:
        every = self.cfg.vllm_logprob_check_every
        return self._vllm and every > 0 and step % every == 0

    def logprob_gap(self, episodes: list[Episode]) -> dict[str, float]:
        """How far the engine's log-probs of this step's sampled tokens are from the trainer's.

        Both score the first ``vllm_logprob_check_sequences`` episodes' model tokens with the weights
        that sampled them (temperature 1, the trainer in its compute dtype). The gap is what the
        importance ratio silently absorbs when rollout and trainer precisions differ; it is logged
        as ``rollout/logprob_gap_mean_abs`` (all ranks) and ``rollout/logprob_gap_max_abs`` (this rank).
        """
        import torch

        from baselines.grpo.vllm_engine import logprob_gap

        sample = episodes[: self.cfg.vllm_logprob_check_sequences]
        engine = self.generator.score([ep.prompt_ids + ep.tokens for ep in sample])
        ours, theirs = [], []
        model = unwrap(self.model)  # DDP's wrapper adds nothing to a no-grad forward; FSDP2 shards in place
        cast = (torch.autocast(device_type=self.ctx.device.type, dtype=self.compute_dtype)
                if self._autocast else nullcontext())
        for ep, scored in zip(sample, engine, strict=True):
            seq = torch.tensor([ep.prompt_ids + ep.tokens], dtype=torch.long, device=self.ctx.device)
            with torch.no_grad(), cast:
                logits = model(input_ids=seq, use_cache=False).logits[:, :-1, :]
                logp, _ = token_logprobs(logits, seq[:, 1:], 1.0)
            start = len(ep.prompt_ids) - 1  # logp[k] scores token k + 1
            for j, m in enumerate(ep.action_mask):
                if m:
                    ours.append(float(logp[0, start + j]))
                    theirs.append(scored[start + j])
        gap = logprob_gap(ours, theirs)
        total, count = all_reduce_sum([gap["mean_abs"] * len(ours), float(len(ours))], self.ctx)
        result = {"mean_abs": total / max(count, 1.0), "max_abs": gap["max_abs"]}
        if self.ctx.is_main:
            logger.info("vLLM vs trainer log-probs: mean |diff| %.2e, max %.2e over %d tokens",
                        result["mean_abs"], result["max_abs"], int(count))
        return result

    def _sync_context(self, last: bool):
        """DDP: skip the gradient all-reduce on all but the last micro-batch.

        FSDP2 reduce-scatters after every micro-batch unless ``fsdp_defer_grad_sync``: without the
        sync it accumulates *unsharded* gradients (a full fp32 model per rank) until the last one.
        """
        if not self.ctx.distributed:
            return nullcontext()
        if self.strategy == "fsdp":
            if self.cfg.fsdp_defer_grad_sync:
                self.model.set_requires_gradient_sync(last)
            return nullcontext()
        if self.strategy == "ddp" and not last:
            return self.model.no_sync()
        return nullcontext()

    def _clip_and_step(self) -> float:
        import torch

        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm) if params else torch.tensor(0.0)
        if hasattr(norm, "full_tensor"):  # DTensor under FSDP2
            norm = norm.full_tensor()
        self.optimizer.step()
        self.scheduler.step()
        return float(norm)

    def _metrics(self, episodes: list[Episode], sums: dict[str, float], dropped: Sequence[bool] = ()) -> dict[str, float]:
        """Episode and loss statistics summed over ranks, then averaged (``dropped``: share left out)."""
        local: dict[str, float] = defaultdict(float)
        n = float(len(episodes))
        local["dropped"] = float(sum(dropped))
        for ep in episodes:
            local["reward"] += ep.reward
            local["reward_sq"] += ep.reward ** 2
            local["response_length"] += ep.model_tokens
            local["episode_length"] += ep.length
            local["cut"] += float(ep.cut)
            for name, value in ep.components.items():
                local[f"reward/{name}"] += value
            for name, value in ep.metrics.items():
                if name != "episode_reward":
                    local[f"env/{name}"] += value
        keys = sorted(set(local) | {"reward", "reward_sq", "response_length", "episode_length", "cut", "dropped"})
        keys = _union_keys(keys, self.ctx)
        loss_keys = ["loss", "kl_tok", "clip_tok", "entropy_tok", "tokens", "grad_norm"]
        totals = all_reduce_sum([local.get(k, 0.0) for k in keys] + [sums.get(k, 0.0) for k in loss_keys] + [n], self.ctx)
        count = totals[-1]
        agg = dict(zip(keys, totals[:len(keys)], strict=True))
        lsum = dict(zip(loss_keys, totals[len(keys):-1], strict=True))
        out = {k: v / count for k, v in agg.items() if k != "reward_sq"}
        out["reward_std"] = math.sqrt(max(0.0, agg["reward_sq"] / count - out["reward"] ** 2))
        for short in ("acc", "format", "turns"):
            if f"env/{short}" in out:
                out[short] = out[f"env/{short}"]
        tokens = max(lsum["tokens"], 1.0)
        out.update({"loss": lsum["loss"] / (self.ctx.world_size if self.ctx.distributed else 1),
                    "kl": lsum["kl_tok"] / tokens, "clip_frac": lsum["clip_tok"] / tokens,
                    "entropy": lsum["entropy_tok"] / tokens, "grad_norm": lsum["grad_norm"], "episodes": count})
        return out

    # ------------------------------------------------------------------ loop
    def train(self) -> list[dict[str, float]]:
        """Run from ``start_step`` to ``steps``; log, checkpoint; return every step's metrics."""
        cfg, ctx = self.cfg, self.ctx
        self._open_loggers()
        steps: Iterable[int] = range(self.start_step, cfg.steps)
        bar = None
        if ctx.is_main and cfg.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, initial=self.start_step, desc="grpo", dynamic_ncols=True)
        self._started = time.perf_counter()
        try:
            for step in steps:
                metrics = self.train_step(step)
                metrics["step"] = step + 1
                self.history.append(metrics)
                self._log(step + 1, metrics)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(reward=f"{metrics['reward']:.3f}", acc=f"{metrics.get('acc', 0.0):.2f}",
                                    kl=f"{metrics['kl']:.4f}")
                out_of_time = self._out_of_time()
                done = step + 1 == cfg.steps or out_of_time
                if (cfg.save_every and (step + 1) % cfg.save_every == 0) or done:
                    self.save(step + 1)
                if out_of_time:
                    logger.info("stopping after step %d: max_train_seconds (%.0f s) reached", step + 1,
                                cfg.max_train_seconds)
                    break
        finally:
            if bar is not None:
                bar.close()
            self._close_loggers()
        return self.history

    @property
    def train_seconds(self) -> float:
        """Training wall time of this output directory so far, across resumed runs."""
        return self.train_seconds_before + time.perf_counter() - self._started

    def _out_of_time(self) -> bool:
        """Every rank stops after the same step: rank 0's clock decides (a step ends in a collective anyway)."""
        if not self.cfg.max_train_seconds:
            return False
        over = float(self.train_seconds >= self.cfg.max_train_seconds) if self.ctx.is_main else 0.0
        return all_reduce_sum([over], self.ctx)[0] > 0

    def save(self, step: int) -> Path:
        state = {"env": self.env_id, "base_model": self.base_model, "config": _jsonable(vars(self.cfg)),
                 "train_seconds": self.train_seconds}
        return save_checkpoint(self.cfg.output_dir, step, model=self.model, optimizer=self.optimizer,
                               scheduler=self.scheduler, tokenizer=self.tokenizer, trainer_state=state, ctx=self.ctx,
                               keep=self.cfg.keep_checkpoints)

    def _open_loggers(self) -> None:
        if not self.ctx.is_main:
            return
        if self.cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(Path(self.cfg.output_dir) / "tensorboard"))
        if self.cfg.wandb_project:
            import wandb

            self.wandb = wandb.init(project=self.cfg.wandb_project, config=_jsonable(vars(self.cfg)),
                                    dir=self.cfg.output_dir, resume="allow")

    def _log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.ctx.is_main or step % max(1, self.cfg.log_every):
            return
        logger.info("step %d reward %.4f acc %.3f loss %.4f kl %.5f", step, metrics["reward"],
                    metrics.get("acc", float("nan")), metrics["loss"], metrics["kl"])
        if self.writer is not None:
            for k, v in metrics.items():
                if k != "step":
                    self.writer.add_scalar(k, v, step)
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def _close_loggers(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None

    def close(self) -> None:
        for env in self.envs:
            env.close()


def drop_samples_after(path: Path, step: int) -> None:
    """Keep the sampled episodes of steps up to ``step`` (a resumed run replays the ones after it)."""
    if not path.exists():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines(keepends=True)
            if line.strip() and _sample_step(line) <= step]
    atomic_write_text(path, "".join(kept))


def _sample_step(line: str) -> int:
    try:
        return int(json.loads(line)["source"]["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62  # not a whole record (a crash mid-write): dropped


def _union_keys(keys: list[str], ctx: DistContext) -> list[str]:
    if not ctx.distributed:
        return keys
    import torch.distributed as dist

    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, keys)
    return sorted(set().union(*gathered))


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}
