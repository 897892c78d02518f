"""Advantages and the clipped policy-gradient loss with a k3 KL penalty.

Pure tensor functions, no model or env: each is small enough to check by hand (the unit tests do).

Advantage estimators over a group of ``G`` rollouts of the same prompt with returns ``r``:

* ``grpo``: ``(r - mean(r)) / (std(r) + eps)`` (std with Bessel's correction, as TRL computes it);
  ``scale_by_std=False`` drops the division (Dr. GRPO);
* ``rloo``: ``r_i - mean_{j != i} r_j`` (leave-one-out baseline);
* ``reinforce_baseline``: ``r - mean(r)`` per group, then whitened over the whole batch
  (REINFORCE++-baseline).

Turn-level returns: with per-turn rewards, a turn's tokens get the reward-to-go from that turn on,
minus the same group baseline (and scale) the episode return gets. For a single-turn episode this is
identical to the outcome version; in a multi-turn episode a turn is not credited with rewards earned
before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from baselines.grpo.config import ESTIMATORS, LOSS_AGGREGATIONS

Estimator = Literal["grpo", "rloo", "reinforce_baseline"]
LossAggregation = Literal["sequence_mean", "token_mean", "token_sum_norm"]


def _baseline_and_scale(returns: torch.Tensor, estimator: str, scale_by_std: bool, eps: float
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-episode baseline and divisor for ``returns`` of shape ``[num_groups, G]``."""
    groups, size = returns.shape
    if estimator == "grpo":
        baseline = returns.mean(dim=1, keepdim=True).expand(groups, size)
        if scale_by_std and size > 1:
            scale = returns.std(dim=1, keepdim=True).expand(groups, size) + eps
        else:
            scale = torch.ones_like(returns)
        return baseline, scale
    if estimator == "rloo":
        if size < 2:
            raise ValueError("rloo needs at least 2 rollouts per prompt")
        total = returns.sum(dim=1, keepdim=True)
        return (total - returns) / (size - 1), torch.ones_like(returns)
    if estimator == "reinforce_baseline":
        baseline = returns.mean(dim=1, keepdim=True).expand(groups, size)
        centred = returns - baseline
        scale = torch.ones_like(returns)
        if scale_by_std and centred.numel() > 1:
            scale = scale * (centred.std() + eps)
        # whitening also removes the batch mean of the centred returns (zero up to rounding)
        return baseline + centred.mean(), scale
    raise ValueError(f"unknown advantage estimator {estimator!r}; choose from {ESTIMATORS}")


def episode_advantages(returns: torch.Tensor, estimator: str = "grpo", *, scale_by_std: bool = True,
                       eps: float = 1e-4) -> torch.Tensor:
    """Advantages of whole episodes; ``returns`` has shape ``[num_groups, G]``."""
    baseline, scale = _baseline_and_scale(returns.double(), estimator, scale_by_std, eps)
    return ((returns.double() - baseline) / scale).to(returns.dtype)


def turn_advantages(turn_rewards: Sequence[Sequence[Sequence[float]]], estimator: str = "grpo", *,
                    turn_level: bool = False, scale_by_std: bool = True, eps: float = 1e-4
                    ) -> list[list[list[float]]]:
    """Advantage of every turn of every episode, nested ``[group][rollout][turn]``.

    With ``turn_level=False`` every turn of an episode gets the episode's advantage (outcome reward
    summed at the end); with ``turn_level=True`` turn ``t`` gets ``(reward_to_go_t - b) / s`` where
    ``b, s`` are the episode-level baseline and scale.
    """
    sizes = {len(g) for g in turn_rewards}
    if len(sizes) != 1:
        raise ValueError("every group must have the same number of rollouts")
    returns = torch.tensor([[float(sum(ep)) for ep in group] for group in turn_rewards], dtype=torch.float64)
    baseline, scale = _baseline_and_scale(returns, estimator, scale_by_std, eps)
    out: list[list[list[float]]] = []
    for g, group in enumerate(turn_rewards):
        rows = []
        for i, episode in enumerate(group):
            b, s = float(baseline[g, i]), float(scale[g, i])
            if turn_level:
                to_go, acc = [], 0.0
                for r in reversed(list(episode)):
                    acc += float(r)
                    to_go.append(acc)
                to_go.reverse()
                rows.append([(x - b) / s for x in to_go])
            else:
                a = (float(returns[g, i]) - b) / s
                rows.append([a] * max(1, len(episode)))
        out.append(rows)
    return out


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || ref): ``exp(ref - logp) - (ref - logp) - 1`` (>= 0)."""
    delta = (ref_logp - logp).clamp(-20.0, 20.0)
    return torch.exp(delta) - delta - 1.0


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, how: str, *, token_count: float | None = None,
              sequence_count: float | None = None, max_tokens: int | None = None) -> torch.Tensor:
    """Reduce ``[batch, T]`` per-token values to a scalar over ``mask``.

    ``sequence_mean``: mean over sequences of each sequence's token mean (GRPO). ``token_mean``: sum
    over all tokens / number of tokens (DAPO). ``token_sum_norm``: sum / (sequences * max_tokens), a
    constant normaliser (Dr. GRPO). ``token_count`` / ``sequence_count`` are the whole batch's counts
    when this call sees one micro-batch of it (gradient accumulation, several ranks).
    """
    mask = mask.to(per_token.dtype)
    if how == "sequence_mean":
        lengths = mask.sum(dim=1).clamp(min=1.0)
        per_seq = (per_token * mask).sum(dim=1) / lengths
        denom = sequence_count if sequence_count is not None else float(per_token.shape[0])
        return per_seq.sum() / denom
    if how == "token_mean":
        denom = token_count if token_count is not None else float(mask.sum().clamp(min=1.0))
        return (per_token * mask).sum() / denom
    if how == "token_sum_norm":
        if not max_tokens:
            raise ValueError("token_sum_norm needs max_tokens")
        denom = sequence_count if sequence_count is not None else float(per_token.shape[0])
        return (per_token * mask).sum() / (denom * max_tokens)
    raise ValueError(f"unknown loss aggregation {how!r}; choose from {LOSS_AGGREGATIONS}")


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
                ref_logp: torch.Tensor | None = None, beta: float = 0.0, clip_low: float = 0.2,
                clip_high: float | None = None, aggregation: str = "sequence_mean",
                token_count: float | None = None, sequence_count: float | None = None,
                max_tokens: int | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate + ``beta`` * k3 KL, masked to the policy's own tokens.

    All tensors are ``[batch, T]`` (``advantages`` per token). Returns the scalar loss and detached
    statistics (``kl`` token mean, ``clip_frac``, ``ratio`` mean) for logging.
    """
    clip_high = clip_low if clip_high is None else clip_high
    ratio = torch.exp((logp - old_logp).clamp(-20.0, 20.0))
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * advantages
    per_token = -torch.minimum(unclipped, clipped)
    kl = torch.zeros_like(logp)
    if ref_logp is not None and beta != 0.0:
        kl = k3_kl(logp, ref_logp)
        per_token = per_token + beta * kl
    elif ref_logp is not None:
        kl = k3_kl(logp, ref_logp)
    loss = aggregate(per_token, mask, aggregation, token_count=token_count, sequence_count=sequence_count,
                     max_tokens=max_tokens)
    fmask = mask.to(logp.dtype)
    n = fmask.sum().clamp(min=1.0)
    with torch.no_grad():
        stats = {
            "kl": (kl.detach() * fmask).sum() / n,
            # tokens where the clipped term wins the min (their gradient is cut), as OpenRLHF / verl count it
            "clip_frac": ((clipped.detach() < unclipped.detach()).to(logp.dtype) * fmask).sum() / n,
            "ratio": (ratio.detach() * fmask).sum() / n,
            "tokens": fmask.sum(),
        }
    return loss, stats


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0, *,
                   chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of ``targets`` under ``logits / temperature`` (fp32) and the per-token entropy.

    Computed ``chunk`` positions at a time, forward and backward (``_TakenLogProb``): a plain
    ``log_softmax(logits.float() / T).gather(...)`` holds about three fp32 copies of the
    ``[batch, T, vocab]`` logits (the upcast, the division, the softmax saved for backward); here
    only the logits themselves, their gradient, and one chunk of temporaries exist at a time.
    """
    picked, logz = _TakenLogProb.apply(logits, targets, float(temperature), int(chunk))
    with torch.no_grad():
        entropy = torch.empty_like(logz)
        for start in range(0, logits.shape[1], chunk):
            part = _scaled(logits[:, start:start + chunk].detach(), temperature)
            z = logz[:, start:start + chunk].detach()
            entropy[:, start:start + chunk] = z - (torch.softmax(part, dim=-1) * part).sum(dim=-1)
    return picked, entropy


def _scaled(part: torch.Tensor, temperature: float) -> torch.Tensor:
    part = part.float()
    return part / temperature if temperature != 1.0 else part


class _TakenLogProb(torch.autograd.Function):
    """``log_softmax(logits / T)[targets]`` with chunked forward and backward; saves only ``logz``."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, temperature: float, chunk: int):
        picked = torch.empty(targets.shape, dtype=torch.float32, device=logits.device)
        logz = torch.empty_like(picked)
        for start in range(0, logits.shape[1], chunk):
            part = _scaled(logits[:, start:start + chunk], temperature)
            z = torch.logsumexp(part, dim=-1)
            picked[:, start:start + chunk] = part.gather(-1, targets[:, start:start + chunk, None]).squeeze(-1) - z
            logz[:, start:start + chunk] = z
        ctx.save_for_backward(logits, targets, logz)
        ctx.temperature, ctx.chunk = temperature, chunk
        ctx.mark_non_differentiable(logz)
        return picked, logz

    @staticmethod
    def backward(ctx, grad_picked: torch.Tensor, _grad_logz: torch.Tensor):
        logits, targets, logz = ctx.saved_tensors
        temperature, chunk = ctx.temperature, ctx.chunk
        grad = torch.empty_like(logits)
        for start in range(0, logits.shape[1], chunk):
            end = start + chunk
            g = grad_picked[:, start:end, None].float()
            # d/dx [x_t / T - logsumexp(x / T)] = (onehot_t - softmax(x / T)) / T
            probs = torch.exp(_scaled(logits[:, start:end], temperature) - logz[:, start:end, None])
            part = probs.mul_(-g)
            part.scatter_add_(-1, targets[:, start:end, None], g)
            if temperature != 1.0:
                part.div_(temperature)
            grad[:, start:end] = part.to(grad.dtype)
        return grad, None, None, None
