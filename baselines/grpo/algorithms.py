"""Advantages and the clipped policy-gradient loss with a k3 KL penalty.

Pure tensor/float functions, no model or env: each is small enough to check by hand (the unit tests
do). The only collective is an optional ``all_reduce`` callback (sum over ranks) that the trainer
passes in; with none, the batch is this process's.

Advantage estimators over a group of rollouts of the same prompt with returns ``r``:

* ``grpo``: ``(r - mean(r)) / (std(r) + eps)`` (std with Bessel's correction, as TRL computes it);
  ``scale_by_std=False`` drops the division (Dr. GRPO);
* ``rloo``: ``r_i - mean_{j != i} r_j`` (leave-one-out baseline);
* ``reinforce_baseline``: ``r - mean(r)`` per group, then whitened over the **global** batch,
  weighted by tokens, as OpenRLHF 0.11.2 does (``compute_advantages_and_returns``): mean and
  (population) variance over every action token of every rank, ``(a - mean) / sqrt(max(var, 1e-8))``.
  The result does not depend on how the batch is split over ranks.

Turn-level credit (``turn_level=True``) follows the decomposition of MT-GRPO (Zeng et al., 2025,
"Reinforcing Multi-Turn Reasoning in LLM Agents via Turn-Level Credit Assignment"): an episode's
last reward entry is its *outcome* (the final answer's score, or the unfinished penalty of an episode
cut short), the earlier entries are *process* rewards of its turns. Turn ``t`` of episode ``i`` gets

    A_it = (dO_i + w * dP_it) / s

* ``dO_i = o_i - b(o)``: the outcome against the group baseline (mean, or leave-one-out for rloo);
* ``dP_it = P_it - b_t(P)``: the *process reward-to-go* ``P_it`` (process rewards of turns ``>= t``)
  against the baseline of the group's episodes that reached turn ``t``. One baseline term per turn:
  normalising each turn's reward per turn index and then summing (the natural MT-GRPO
  generalisation) subtracts as many baseline terms as the episode has turns, a baseline that depends
  on the policy's own decision to stop, which biases the gradient by the accumulated
  intermediate-reward mean per extra turn (verl RFC #7244). Reward-to-go first, then one baseline,
  avoids that;
* ``s`` (``grpo`` with ``scale_by_std``): ``sqrt(var(o) + w^2 * mean(dP^2)) + eps``, one scale for
  both parts. MT-GRPO divides each part by its own std; sharing one keeps the env's reward weights
  meaningful (a 0.05 tool bonus stays a twentieth of a 1.0 answer) and, because ``s`` is the spread
  of the very numerators it divides, never turns a tiny spread into a huge advantage: an all-equal
  group gets exactly 0. Without std scaling (Dr. GRPO, rloo, reinforce_baseline before whitening)
  advantages are plain reward differences.

With no process rewards (single-turn tasks) this is exactly the outcome estimator. ``turn_level=False``
gives every turn the advantage of the episode's total return.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch

from baselines.grpo.config import ESTIMATORS, LOSS_AGGREGATIONS

Estimator = Literal["grpo", "rloo", "reinforce_baseline"]
LossAggregation = Literal["sequence_mean", "token_mean", "token_sum_norm"]
AllReduce = Callable[[list[float]], list[float]]

WHITEN_MIN_VAR = 1e-8  # OpenRLHF's clamp on the batch variance before ``rsqrt``


def _check_estimator(estimator: str) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown advantage estimator {estimator!r}; choose from {ESTIMATORS}")


def _deviations(values: Sequence[float], estimator: str) -> list[float]:
    """Each value minus its group baseline: the mean, or the mean of the others (rloo)."""
    n = len(values)
    if n == 0 or all(v == values[0] for v in values):
        return [0.0] * n  # exactly: rounding in a mean must not give an identical group a signal
    total = math.fsum(values)
    if estimator == "rloo":
        if n < 2:
            return [0.0] * n
        return [v - (total - v) / (n - 1) for v in values]
    mean = total / n
    return [v - mean for v in values]


def _bessel_var(values: Sequence[float]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    mean = math.fsum(values) / n
    return math.fsum((v - mean) ** 2 for v in values) / (n - 1)


def _uses_group_std(estimator: str, scale_by_std: bool) -> bool:
    return estimator == "grpo" and scale_by_std


def _episode_level(group: Sequence[Sequence[float]], estimator: str, scale_by_std: bool, eps: float) -> list[list[float]]:
    returns = [math.fsum(float(r) for r in ep) for ep in group]
    dev = _deviations(returns, estimator)
    scale = math.sqrt(_bessel_var(returns)) + eps if _uses_group_std(estimator, scale_by_std) and len(group) > 1 else 1.0
    scale = scale or 1.0  # zero spread: every deviation is zero too
    return [[d / scale] * max(1, len(ep)) for d, ep in zip(dev, group, strict=True)]


def _turn_level(group: Sequence[Sequence[float]], estimator: str, scale_by_std: bool, eps: float,
                weight: float) -> list[list[float]]:
    episodes = [[float(r) for r in ep] or [0.0] for ep in group]
    outcomes = [ep[-1] for ep in episodes]
    d_outcome = _deviations(outcomes, estimator)
    # process reward-to-go: P[i][t] = sum of process rewards of turns t..T_i-2 (the last entry is the outcome)
    to_go: list[list[float]] = []
    for ep in episodes:
        acc, rows = 0.0, [0.0]
        for r in reversed(ep[:-1]):
            acc += r
            rows.append(acc)
        to_go.append(rows[::-1])
    d_process = [[0.0] * len(rows) for rows in to_go]
    for t in range(max(len(rows) for rows in to_go)):
        alive = [i for i, rows in enumerate(to_go) if t < len(rows)]
        for i, d in zip(alive, _deviations([to_go[i][t] for i in alive], estimator), strict=True):
            d_process[i][t] = d
    scale = 1.0
    if _uses_group_std(estimator, scale_by_std):
        flat = [d for rows in d_process for d in rows]
        process_var = math.fsum(d * d for d in flat) / len(flat)
        scale = math.sqrt(_bessel_var(outcomes) + weight * weight * process_var) + eps
        scale = scale or 1.0  # zero spread: every numerator is zero too
    return [[(d_outcome[i] + weight * d) / scale for d in d_process[i]] for i in range(len(episodes))]


def whiten_token_weighted(advantages: list[list[list[float]]], token_counts: Sequence[Sequence[Sequence[float]]], *,
                          scale_by_std: bool = True, all_reduce: AllReduce | None = None) -> list[list[list[float]]]:
    """Whiten advantages over the whole batch, each entry weighted by its number of tokens.

    OpenRLHF's REINFORCE++ normalisation: ``mean = sum(w a) / sum(w)``, ``var = sum(w (a - mean)^2) /
    sum(w)``, ``a' = (a - mean) / sqrt(max(var, 1e-8))`` (only the mean is removed without
    ``scale_by_std``). ``all_reduce`` sums lists of floats over ranks, so every rank uses the global
    statistics; entries with no tokens (an episode cut after its last turn) weigh nothing.
    """
    reduce = all_reduce or (lambda values: list(values))
    pairs = [(a, float(w)) for g_adv, g_w in zip(advantages, token_counts, strict=True)
             for e_adv, e_w in zip(g_adv, g_w, strict=True) for a, w in zip(e_adv, e_w, strict=True)]
    weight, weighted = reduce([math.fsum(w for _, w in pairs), math.fsum(w * a for a, w in pairs)])
    mean = weighted / weight if weight > 0 else 0.0
    rstd = 1.0
    if scale_by_std:
        (sq,) = reduce([math.fsum(w * (a - mean) ** 2 for a, w in pairs)])
        var = sq / weight if weight > 0 else 0.0
        rstd = 1.0 / math.sqrt(max(var, WHITEN_MIN_VAR))
    return [[[(a - mean) * rstd for a in ep] for ep in group] for group in advantages]


def turn_advantages(turn_rewards: Sequence[Sequence[Sequence[float]]], estimator: str = "grpo", *,
                    turn_level: bool = False, scale_by_std: bool = True, eps: float = 1e-4, turn_weight: float = 1.0,
                    token_counts: Sequence[Sequence[Sequence[float]]] | None = None,
                    all_reduce: AllReduce | None = None) -> list[list[list[float]]]:
    """Advantage of every reward entry of every episode, nested ``[group][rollout][entry]``.

    ``turn_rewards[g][i]`` holds episode ``i``'s step rewards in order, the last one being the
    terminal (outcome) reward; groups may differ in size (dropped episodes). Entry ``t``'s advantage
    is what the tokens of turn ``t`` get (see the module docstring). ``token_counts`` (same nesting)
    weights the REINFORCE++-baseline whitening (default: one per entry); ``all_reduce`` makes that
    whitening global across ranks.
    """
    _check_estimator(estimator)
    if estimator == "rloo" and any(len(g) < 2 for g in turn_rewards if g):
        raise ValueError("rloo needs at least 2 rollouts per prompt")
    out = []
    for group in turn_rewards:
        if not group:
            out.append([])
        elif turn_level:
            out.append(_turn_level(group, estimator, scale_by_std, eps, float(turn_weight)))
        else:
            out.append(_episode_level(group, estimator, scale_by_std, eps))
    if estimator == "reinforce_baseline":
        counts = token_counts if token_counts is not None else [[[1.0] * len(e) for e in g] for g in out]
        out = whiten_token_weighted(out, counts, scale_by_std=scale_by_std, all_reduce=all_reduce)
    return out


def episode_advantages(returns: torch.Tensor, estimator: str = "grpo", *, scale_by_std: bool = True,
                       eps: float = 1e-4) -> torch.Tensor:
    """Advantages of whole episodes; ``returns`` has shape ``[num_groups, G]`` (one token per episode)."""
    rows = [[[float(r)] for r in group] for group in returns.double().tolist()]
    adv = turn_advantages(rows, estimator, scale_by_std=scale_by_std, eps=eps)
    return torch.tensor([[ep[0] for ep in group] for group in adv], dtype=torch.float64).to(returns.dtype)


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
