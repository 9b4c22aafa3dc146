"""Schedules: boundary values, β ↔ k consistency, skip composition, validation."""

import pytest
import torch

from discrete_priors.priors.schedules import SCHEDULES, Schedule, make_schedule


def one_step_matrix(beta: float) -> torch.Tensor:
    """2x2 q(zᵗ | zᵗ⁻¹) from β alone (rows: from, columns: to): keep with 1 − β, else B(½)."""
    return torch.tensor([[1 - beta / 2, beta / 2], [beta / 2, 1 - beta / 2]], dtype=torch.float64)


def marginal_matrix(keep: float) -> torch.Tensor:
    """2x2 q(zᵗ | zˢ) = B(K zˢ + (1 − K)/2)."""
    b = (1 - keep) / 2
    return torch.tensor([[1 - b, b], [b, 1 - b]], dtype=torch.float64)


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("T", [1, 2, 7, 100])
def test_boundaries_and_monotone(name, T):
    s = make_schedule(name, T)
    k = s.k()
    assert k.shape == (T + 1,) and k.dtype == torch.float64
    assert k[0] == 1 and s.b(0) == 0 and s.beta(0) == 0
    assert k[-1] == 0 and s.beta(T) == 1  # z^T ~ B(½) exactly
    assert (k[1:] < k[:-1]).all()
    assert torch.allclose(s.b(), (1 - k) / 2)


def test_named_forms():
    T = 10
    u = torch.arange(T + 1, dtype=torch.float64) / T
    assert torch.allclose(make_schedule("linear", T).k(), 1 - u)
    assert torch.allclose(make_schedule("cosine", T).k(), 0.5 * (1 + torch.cos(torch.pi * u)))
    sig = make_schedule("sigmoid", T).k()
    # symmetric around the middle: the rescaled sigmoid satisfies k(u) + k(1 − u) = 1
    assert torch.allclose(sig + sig.flip(0), torch.ones_like(sig))


@pytest.mark.parametrize("name", SCHEDULES)
def test_beta_reproduces_keep_and_b_recursion(name):
    s = make_schedule(name, 50)
    beta = s.beta()
    assert torch.allclose(torch.cumprod(1 - beta, 0), s.k(), atol=1e-12)
    b = torch.zeros(51, dtype=torch.float64)
    for t in range(1, 51):  # docs/method.md §2.1: b_t = (1 − β_t) b_{t−1} + ½ β_t
        b[t] = (1 - beta[t]) * b[t - 1] + beta[t] / 2
    assert torch.allclose(b, s.b(), atol=1e-12)


@pytest.mark.parametrize("name", SCHEDULES)
def test_skip_composition_equals_marginal(name):
    """q(zᵗ | zˢ) ∘ q(zˢ | z⁰) = q(zᵗ | z⁰), and q(zᵗ | zˢ) = product of one-step matrices from β."""
    T = 12
    s = make_schedule(name, T)
    for t in range(1, T + 1):
        for u in range(t):
            jump = marginal_matrix(s.skip(t, u).item())
            assert torch.allclose(marginal_matrix(s.k(u).item()) @ jump, marginal_matrix(s.k(t).item()), atol=1e-12)
            steps = torch.eye(2, dtype=torch.float64)
            for i in range(u + 1, t + 1):
                steps = steps @ one_step_matrix(s.beta(i).item())
            assert torch.allclose(steps, jump, atol=1e-12)


def test_indexing_with_tensors():
    s = make_schedule("cosine", 8)
    t = torch.tensor([[1, 8], [0, 3]])
    assert s.k(t).shape == (2, 2)
    assert torch.equal(s.k(t), s.k()[t])
    assert torch.allclose(s.skip(torch.tensor([3, 8]), torch.tensor([2, 0])), s.k(torch.tensor([3, 8])) / s.k(torch.tensor([2, 0])))


def test_validation():
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule("cosinus", 10)
    with pytest.raises(ValueError, match="positive int"):
        make_schedule("linear", 0)
    s = make_schedule("linear", 4)
    with pytest.raises(ValueError, match="0..4"):
        s.k(5)
    with pytest.raises(ValueError, match="integers"):
        s.k(torch.tensor([0.5]))
    with pytest.raises(ValueError, match="s < t"):
        s.skip(2, 2)
    with pytest.raises(ValueError, match="decrease"):
        Schedule(torch.tensor([1.0, 0.5, 0.6]))
    with pytest.raises(ValueError, match="k_0 = 1"):
        Schedule(torch.tensor([0.9, 0.5]))
