"""GRPO / RLOO / REINFORCE++-baseline advantages and the clipped k3-KL loss, checked by hand."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

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
    centred = torch.tensor([[0.5, -0.5], [1.0, -1.0], [0.0, 0.0]], dtype=torch.float64)
    # OpenRLHF: population variance over the batch (one token per episode here)
    expected = (centred - centred.mean()) / centred.var(unbiased=False).sqrt()
    assert torch.allclose(adv.double(), expected, atol=1e-6)
    assert adv.mean().item() == pytest.approx(0.0, abs=1e-6)


def test_reinforce_baseline_whitening_is_token_weighted():
    # group-centred returns +0.5 (3 tokens) and -0.5 (1 token): token mean 0.25, token variance 0.1875
    adv = turn_advantages([[[1.0], [0.0]]], "reinforce_baseline", token_counts=[[[3], [1]]])
    sd = math.sqrt(0.1875)
    assert adv[0][0] == pytest.approx([0.25 / sd]) and adv[0][1] == pytest.approx([-0.75 / sd])
    # no std normalisation: only the token-weighted mean is removed
    plain = turn_advantages([[[1.0], [0.0]]], "reinforce_baseline", scale_by_std=False, token_counts=[[[3], [1]]])
    assert plain[0][0] == pytest.approx([0.25]) and plain[0][1] == pytest.approx([-0.75])
    # an identical batch has no spread: the variance clamp (1e-8, as OpenRLHF) keeps it finite and zero
    flat = turn_advantages([[[0.7], [0.7]]], "reinforce_baseline", token_counts=[[[2], [5]]])
    assert flat == [[[0.0], [0.0]]]


def test_outcome_level_gives_every_turn_the_episode_advantage():
    turns = [[[0.05, 1.0], [0.0]]]
    outcome = turn_advantages(turns, "grpo", turn_level=False, eps=1e-4)
    mean, std = 0.525, math.sqrt(2 * 0.525 ** 2)
    assert outcome[0][0] == pytest.approx([(1.05 - mean) / (std + 1e-4)] * 2)
    assert outcome[0][1] == pytest.approx([(0.0 - mean) / (std + 1e-4)])


def test_identical_correct_episodes_get_zero_turn_advantage():
    """Four identical episodes (a 0.05 tool bonus, then the answer's 1.0): the old reward-to-go minus
    the episode baseline, over std + 1e-4, gave the answering turn (1.0 - 1.05) / 1e-4 = -500."""
    adv = turn_advantages([[[0.05, 1.0]] * 4], "grpo", turn_level=True, eps=1e-4)
    assert adv == [[[0.0, 0.0]] * 4]
    for estimator in ("rloo", "reinforce_baseline"):
        assert turn_advantages([[[0.05, 1.0]] * 4], estimator, turn_level=True) == [[[0.0, 0.0]] * 4]


def test_mt_grpo_decomposition_by_hand():
    # two correct answers after a rewarded tool call, one correct direct answer, one wrong direct answer
    group = [[0.05, 1.0], [0.05, 1.0], [1.0], [0.0]]
    adv = turn_advantages([group], "grpo", turn_level=True, eps=1e-4)[0]
    # outcomes 1, 1, 1, 0: deviations +0.25 x3, -0.75; Bessel variance 0.25
    # process reward-to-go at turn 0: 0.05, 0.05, 0, 0 (mean 0.025) -> +-0.025; at turn 1 (two episodes): 0, 0
    # shared scale: sqrt(0.25 + mean of the six squared process deviations) + eps
    s = math.sqrt(0.25 + 4 * 0.025 ** 2 / 6) + 1e-4
    assert adv[0] == pytest.approx([(0.25 + 0.025) / s, 0.25 / s])
    assert adv[1] == pytest.approx(adv[0])
    assert adv[2] == pytest.approx([(0.25 - 0.025) / s])
    assert adv[3] == pytest.approx([(-0.75 - 0.025) / s])
    # every correct answering turn is credited positively, the wrong one negatively (the old estimator
    # gave the tool episodes' answering turns less than their tool turns: reward-to-go 1.0 vs 1.05)
    assert min(adv[0][1], adv[2][0]) > 0 > adv[3][0]
    # the process part is weighted (MT-GRPO's lambda); weight 0 leaves the outcome advantage alone
    outcome_only = turn_advantages([group], "grpo", turn_level=True, turn_weight=0.0, eps=1e-4)[0]
    assert outcome_only[0] == pytest.approx([0.25 / (0.5 + 1e-4)] * 2)


def test_dr_grpo_and_rloo_turn_advantages_are_reward_differences():
    group = [[0.05, 1.0], [0.0, 0.0, 1.0], [1.0], [0.0]]
    dr = turn_advantages([group], "grpo", turn_level=True, scale_by_std=False)[0]
    # outcomes 1, 1, 1, 0 -> +0.25 / -0.75; process to-go at turn 0: 0.05, 0, 0, 0 (mean 0.0125);
    # at turn 1 (episodes 0 and 1): 0, 0; at turn 2 (episode 1 alone): 0
    assert dr[0] == pytest.approx([0.25 + 0.0375, 0.25])
    assert dr[1] == pytest.approx([0.25 - 0.0125, 0.25, 0.25])
    assert dr[2] == pytest.approx([0.25 - 0.0125]) and dr[3] == pytest.approx([-0.75 - 0.0125])
    loo = turn_advantages([group], "rloo", turn_level=True)[0]
    # leave-one-out: outcome 1 vs mean of (1, 1, 0) = 2/3; process at turn 0: 0.05 vs 0, 0 vs 0.05/3
    assert loo[0] == pytest.approx([1 / 3 + 0.05, 1 / 3])
    assert loo[1] == pytest.approx([1 / 3 - 0.05 / 3, 1 / 3, 1 / 3])
    assert loo[3] == pytest.approx([-1.0 - 0.05 / 3])


def test_turn_baseline_does_not_depend_on_how_long_the_episode_runs():
    """verl RFC #7244: normalising each turn's reward per turn index and summing the results subtracts
    one baseline term per remaining turn, so an episode that merely runs longer changes its earlier
    turns' credit. Here one episode takes an extra zero-reward turn; no other turn's credit moves."""
    short = [[0.05, 1.0], [0.0, 1.0], [1.0], [0.0, 0.0]]
    longer = [[0.05, 1.0], [0.0, 0.0, 1.0], [1.0], [0.0, 0.0]]
    a = turn_advantages([short], "grpo", turn_level=True, scale_by_std=False)[0]
    b = turn_advantages([longer], "grpo", turn_level=True, scale_by_std=False)[0]
    assert a[0] == pytest.approx(b[0]) and a[2] == pytest.approx(b[2]) and a[3] == pytest.approx(b[3])
    assert a[1][0] == pytest.approx(b[1][0]) and a[1][1] == pytest.approx(b[1][-1])


def test_single_turn_turn_level_equals_grpo():
    rewards = [[1.0], [0.0], [0.0], [1.0], [0.5]]
    per_turn = turn_advantages([rewards], "grpo", turn_level=True)
    outcome = turn_advantages([rewards], "grpo", turn_level=False)
    assert _flat(per_turn) == pytest.approx(_flat(outcome))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from([-1.0, -0.1, -0.05, 0.0, 0.05, 0.1, 0.5, 1.0]), min_size=1, max_size=4),
                min_size=1, max_size=6),
       st.sampled_from([0.1, 1.0, 10.0]))
def test_turn_advantages_are_bounded_and_scale_free(group, scale):
    adv = turn_advantages([group], "grpo", turn_level=True, eps=1e-4)[0]
    entries = sum(len(ep) for ep in group)
    # |dO| / std(o) <= sqrt(G) and |dP| / rms(dP) <= sqrt(entries): never 1 / eps
    assert all(abs(a) <= math.sqrt(len(group)) + math.sqrt(entries) + 1e-9 for ep in adv for a in ep)
    if all(ep == group[0] for ep in group):
        assert all(a == 0.0 for ep in adv for a in ep)
    # std scaling makes GRPO scale-free; without it advantages are in reward units
    scaled = [[r * scale for r in ep] for ep in group]
    again = turn_advantages([scaled], "grpo", turn_level=True, eps=0.0)
    assert _flat(again) == pytest.approx(_flat(turn_advantages([group], "grpo", turn_level=True, eps=0.0)), abs=1e-9)
    raw = turn_advantages([scaled], "grpo", turn_level=True, scale_by_std=False)
    base = turn_advantages([group], "grpo", turn_level=True, scale_by_std=False)
    assert _flat(raw) == pytest.approx([a * scale for a in _flat(base)], abs=1e-9)


def _flat(nested):
    return [a for group in nested for ep in group for a in ep]


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
