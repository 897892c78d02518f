"""Chunked ``token_logprobs``: same values and gradients as the plain log-softmax, less memory."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from baselines.grpo.algorithms import token_logprobs  # noqa: E402


def _reference(logits, targets, temperature):
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    picked = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy = -(logp.exp() * logp).sum(-1)
    return picked, entropy


@pytest.mark.parametrize("temperature,chunk,dtype", [(1.0, 3, torch.float32), (0.7, 4, torch.float32),
                                                      (1.3, 100, torch.float64), (0.6, 2, torch.bfloat16)])
def test_values_and_gradients_match_log_softmax(temperature, chunk, dtype):
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(3, 7, 11, generator=gen, dtype=torch.float64) * 3
    targets = torch.randint(0, 11, (3, 7), generator=gen)
    weights = torch.randn(3, 7, generator=gen, dtype=torch.float64)
    a = base.to(dtype).requires_grad_(True)
    b = base.to(dtype).requires_grad_(True)
    picked, entropy = token_logprobs(a, targets, temperature, chunk=chunk)
    ref_picked, ref_entropy = _reference(b, targets, temperature)
    tol = dict(rtol=2e-2, atol=2e-2) if dtype == torch.bfloat16 else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(picked.double(), ref_picked.double(), **tol)
    torch.testing.assert_close(entropy.double(), ref_entropy.double(), **tol)
    (picked.double() * weights).sum().backward()
    (ref_picked.double() * weights).sum().backward()
    assert a.grad.dtype == dtype
    torch.testing.assert_close(a.grad.double(), b.grad.double(), **tol)


def test_gradcheck_in_double():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 6, (2, 5), generator=gen)

    def fn(x):
        picked, _ = token_logprobs(x, targets, 0.8, chunk=2)
        return picked

    # the kernel computes in fp32, so compare with loose tolerances
    assert torch.autograd.gradcheck(fn, (logits,), eps=1e-3, atol=1e-3, rtol=1e-3)
