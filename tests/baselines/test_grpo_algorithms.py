"""GRPO / RLOO / REINFORCE++-baseline advantages and the clipped k3-KL loss, checked by hand."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from baselines.grpo.algorithms import (  # noqa: E402
    aggregate,
    episode_advantages,
    k3_kl,
    policy_loss,
    token_logprobs,
    turn_advantages,
)


def test_grpo_advantages_by_hand():
    # rewards 1, 0, 0, 1: mean 0.5, sample std sqrt(4 * 0.25 / 3) = 0.57735
    adv = episode_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0]]), "grpo", eps=0.0)
    expected = 0.5 / math.sqrt(1.0 / 3.0)
    assert adv.tolist()[0] == pytest.approx([expected, -expected, -expected, expected], abs=1e-6)


def test_grpo_equal_rewards_give_zero_advantage():
    adv = episode_advantages(torch.tensor([[0.3, 0.3, 0.3]]), "grpo")
    assert adv.abs().max().item() == 0.0


def test_dr_grpo_skips_std_scaling():
    adv = episode_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0]]), "grpo", scale_by_std=False)
    assert adv.tolist()[0] == pytest.approx([0.5, -0.5, -0.5, 0.5])


def test_rloo_leave_one_out():
    adv = episode_advantages(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), "rloo")
    assert adv.tolist()[0] == pytest.approx([1.0, -1 / 3, -1 / 3, -1 / 3])


def test_reinforce_baseline_is_whitened_over_the_batch():
    rewards = torch.tensor([[1.0, 0.0], [3.0, 1.0], [2.0, 2.0]])
    adv = episode_advantages(rewards, "reinforce_baseline", eps=0.0)
    centred = torch.tensor([[0.5, -0.5], [1.0, -1.0], [0.0, 0.0]])
    expected = (centred - centred.mean()) / centred.std()
    assert torch.allclose(adv, expected, atol=1e-6)
    assert adv.mean().item() == pytest.approx(0.0, abs=1e-6)


def test_turn_level_returns_credit_reward_to_go():
    # episode 0: a tool-call bonus 0.05 then the answer 1.0; episode 1: one wrong answer
    turns = [[[0.05, 1.0], [0.0]]]
    outcome = turn_advantages(turns, "grpo", turn_level=False, eps=0.0)
    per_turn = turn_advantages(turns, "grpo", turn_level=True, eps=0.0)
    mean, std = 0.525, math.sqrt(2 * 0.525 ** 2)
    assert outcome[0][0] == pytest.approx([(1.05 - mean) / std] * 2)
    assert per_turn[0][0] == pytest.approx([(1.05 - mean) / std, (1.0 - mean) / std])
    assert per_turn[0][1] == pytest.approx([(0.0 - mean) / std])


def test_k3_is_nonnegative_and_zero_at_equality():
    logp = torch.tensor([-1.0, -2.0, -0.5])
    assert k3_kl(logp, logp).abs().max().item() == 0.0
    ref = logp + math.log(2.0)
    assert k3_kl(logp, ref).tolist() == pytest.approx([2 - math.log(2) - 1] * 3, abs=1e-6)


def _example():
    old = torch.zeros(2, 3)
    # seq 0: token 0 ratio 1.5 (A=+1, clipped to 1.2), token 1 ratio 1 (A=+1), token 2 masked out
    # seq 1: token 0 ratio 0.5 (A=-1, clipped to 0.8), tokens 1-2 masked out
    logp = torch.tensor([[math.log(1.5), 0.0, 5.0], [math.log(0.5), 7.0, -3.0]], requires_grad=True)
    adv = torch.tensor([[1.0, 1.0, 9.0], [-1.0, 9.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    return logp, old, adv, mask


def test_clipped_loss_by_hand():
    logp, old, adv, mask = _example()
    # per token: -min(r A, clip(r) A) = -1.2, -1.0 | +0.8
    seq_mean, stats = policy_loss(logp, old, adv, mask, aggregation="sequence_mean")
    assert seq_mean.item() == pytest.approx(((-1.2 - 1.0) / 2 + 0.8) / 2, abs=1e-6)
    tok_mean, _ = policy_loss(logp, old, adv, mask, aggregation="token_mean")
    assert tok_mean.item() == pytest.approx((-1.2 - 1.0 + 0.8) / 3, abs=1e-6)
    dr, _ = policy_loss(logp, old, adv, mask, aggregation="token_sum_norm", max_tokens=4)
    assert dr.item() == pytest.approx((-1.2 - 1.0 + 0.8) / (2 * 4), abs=1e-6)
    assert stats["clip_frac"].item() == pytest.approx(2 / 3)
    assert stats["tokens"].item() == 3


def test_clip_fraction_counts_only_tokens_whose_gradient_is_clipped():
    old = torch.zeros(1, 4)
    # ratio 1.5 with A < 0 and ratio 0.5 with A > 0: outside the range, but the unclipped term wins the min
    logp = torch.tensor([[math.log(1.5), math.log(0.5), math.log(1.5), 0.0]])
    adv = torch.tensor([[-1.0, 1.0, 1.0, 1.0]])
    _, stats = policy_loss(logp, old, adv, torch.ones(1, 4), aggregation="token_mean")
    assert stats["clip_frac"].item() == pytest.approx(1 / 4)


def test_clipped_tokens_get_no_gradient_and_masked_tokens_none():
    logp, old, adv, mask = _example()
    loss, _ = policy_loss(logp, old, adv, mask, aggregation="token_mean")
    loss.backward()
    grad = logp.grad
    assert grad[0, 0].item() == 0.0  # ratio 1.5 > 1.2 with A > 0: clipped
    assert grad[0, 1].item() == pytest.approx(-1.0 / 3)  # d(-r A)/dlogp = -r A / N
    assert grad[1, 0].item() == 0.0  # ratio 0.5 < 0.8 with A < 0: clipped
    assert grad[0, 2].item() == 0.0 and grad[1, 1].item() == 0.0 and grad[1, 2].item() == 0.0


def test_kl_term_by_hand():
    logp, old, adv, mask = _example()
    zero_adv = torch.zeros_like(adv)
    ref = logp.detach() + math.log(2.0)
    loss, stats = policy_loss(logp, old, zero_adv, mask, ref_logp=ref, beta=0.1, aggregation="token_mean")
    k3 = 2 - math.log(2) - 1
    assert loss.item() == pytest.approx(0.1 * k3, abs=1e-6)
    assert stats["kl"].item() == pytest.approx(k3, abs=1e-6)


def test_loss_ignores_values_under_the_mask():
    logp, old, adv, mask = _example()
    a, _ = policy_loss(logp, old, adv, mask)
    adv2 = adv.clone()
    adv2[mask == 0] = -123.0
    b, _ = policy_loss(logp, old, adv2, mask)
    assert a.item() == b.item()


def test_aggregate_uses_batch_level_normalisers():
    x = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    m = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    assert aggregate(x, m, "token_mean", token_count=6.0).item() == pytest.approx(1.0)
    assert aggregate(x, m, "sequence_mean", sequence_count=4.0).item() == pytest.approx((1.5 + 3.0) / 4)
    with pytest.raises(ValueError):
        aggregate(x, m, "bogus")


def test_token_logprobs_match_log_softmax():
    logits = torch.randn(2, 4, 7, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([[1, 2, 3, 4], [0, 6, 5, 1]])
    logp, entropy = token_logprobs(logits, targets, temperature=0.5)
    expected = torch.log_softmax(logits / 0.5, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(logp, expected, atol=1e-6)
    p = torch.softmax(logits / 0.5, dim=-1)
    assert torch.allclose(entropy, -(p * p.log()).sum(-1), atol=1e-5)


def test_unknown_estimator_is_an_error():
    with pytest.raises(ValueError):
        episode_advantages(torch.zeros(1, 2), "ppo")
    with pytest.raises(ValueError):
        episode_advantages(torch.zeros(1, 1), "rloo")


def test_entropy_is_exact_across_position_chunks():
    logits = torch.randn(2, 600, 5, generator=torch.Generator().manual_seed(1))
    targets = torch.zeros(2, 600, dtype=torch.long)
    _, entropy = token_logprobs(logits, targets)
    p = torch.softmax(logits, dim=-1)
    assert torch.allclose(entropy, -(p * p.log()).sum(-1), atol=1e-5)
