"""Bernoulli diffusion maths proven against brute-force Bayes on enumerated states (float64).

Brute force never uses k_t or b_t: every table is built from the one-step matrices of β_t, so
the closed forms of docs/method.md §2.1–§2.5 (and the typo in the paper's posterior) are checked
independently of how they were derived.
"""

import itertools
import math

import pytest
import torch
from torch import nn

from discrete_priors.latents.base import CodeSpec
from discrete_priors.priors import bernoulli_math as bm
from discrete_priors.priors.bernoulli import BernoulliDiffusion
from discrete_priors.priors.schedules import SCHEDULES, make_schedule
from tests.synthetic import all_codes

D = torch.float64


def one_step(beta: float) -> torch.Tensor:
    return torch.tensor([[1 - beta / 2, beta / 2], [beta / 2, 1 - beta / 2]], dtype=D)


def transition(schedule, s: int, t: int) -> torch.Tensor:
    """2x2 q(zᵗ | zˢ) as the product of one-step matrices (rows: zˢ, columns: zᵗ)."""
    m = torch.eye(2, dtype=D)
    for i in range(s + 1, t + 1):
        m = m @ one_step(schedule.beta(i).item())
    return m


def joint_table(schedule, s: int, t: int, prior_one: float) -> torch.Tensor:
    """p(z⁰, zˢ, zᵗ) for a Bernoulli(prior_one) bit z⁰: (2, 2, 2)."""
    p0 = torch.tensor([1 - prior_one, prior_one], dtype=D)
    return p0[:, None, None] * transition(schedule, 0, s)[:, :, None] * transition(schedule, s, t)[None]


def step_pairs(T: int):
    if T <= 10:
        return [(t, s) for t in range(1, T + 1) for s in range(t)]
    return [(1, 0), (2, 1), (2, 0), (T // 2, T // 4), (T, T - 1), (T, 0), (T - 1, 1), (T // 3 + 1, T // 3)]


CASES = [(name, T, t, s) for name in SCHEDULES for T in (1, 3, 10, 1000) for t, s in step_pairs(T)]
Z0, ZT = (v.to(D) for v in torch.meshgrid(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0]), indexing="ij"))


@pytest.mark.parametrize("name,T,t,s", CASES)
def test_posterior_equals_bayes_by_enumeration(name, T, t, s):
    schedule = make_schedule(name, T)
    joint = joint_table(schedule, s, t, 0.5)
    bayes = joint[:, 1, :] / joint.sum(1)  # q(zˢ=1 | z⁰, zᵗ), indexed [z0, zt]
    jump = bm.make_jump(schedule, t, s, dtype=D)
    assert torch.allclose(bm.posterior_one_prob(ZT, Z0, jump), bayes, atol=1e-10)
    assert torch.allclose(torch.sigmoid(bm.posterior_logits(ZT, Z0, jump)), bayes, atol=1e-10)
    # float32 (the training dtype) keeps 1e-5 even for T = 1000, thanks to float64 coefficients
    jump32 = bm.make_jump(schedule, t, s, dtype=torch.float32)
    assert torch.allclose(torch.sigmoid(bm.posterior_logits(ZT.float(), Z0.float(), jump32)).double(), bayes, atol=1e-5)


def test_papers_printed_posterior_is_wrong():
    """The paper's second factor (k_t z⁰ + ½ b_t) disagrees with Bayes — the test above can fail."""
    schedule = make_schedule("linear", 10)
    t, s = 6, 5
    joint = joint_table(schedule, s, t, 0.5)
    bayes = joint[:, 1, :] / joint.sum(1)
    jump = bm.make_jump(schedule, t, s, dtype=D)
    typo = jump._replace(keep_s=schedule.k(t), b_s=schedule.b(t) / 2)
    assert (bm.posterior_one_prob(ZT, Z0, typo) - bayes).abs().max() > 1e-2


@pytest.mark.parametrize("name,T,t,s", [c for c in CASES if c[1] <= 10 or c[2:] in {(1000, 0), (500, 250), (2, 1)}])
def test_reverse_forms_against_bayes(name, T, t, s):
    schedule = make_schedule(name, T)
    jump = bm.make_jump(schedule, t, s, dtype=D)
    # mixture with a one-hot p̂ is the exact posterior
    for z0 in (0.0, 1.0):
        one_hot = torch.full_like(ZT, 40.0 if z0 else -40.0)
        exact = bm.posterior_one_prob(ZT, torch.full_like(ZT, z0), jump)
        assert torch.allclose(torch.sigmoid(bm.mixture_logits(ZT, one_hot, jump)), exact, atol=1e-10)
    for prior_one in (0.1, 0.5, 0.85):
        joint = joint_table(schedule, s, t, prior_one)
        # mixture with the calibrated p̂ = q(z⁰=1 | zᵗ) is the true reverse q(zˢ=1 | zᵗ)
        p_hat = joint[1].sum(0) / joint.sum((0, 1))  # [zt]
        true_reverse = joint[:, 1, :].sum(0) / joint.sum((0, 1))
        mix = bm.mixture_logits(ZT[0], torch.logit(p_hat), jump)
        assert torch.allclose(torch.sigmoid(mix), true_reverse, atol=1e-10)
    # joint form equals its definition ∝ q(zᵗ | zˢ) Σ_{z⁰} p̂(z⁰) q(zˢ | z⁰) for arbitrary p̂
    p_hat = torch.tensor([0.07, 0.64], dtype=D)  # [zt]
    step, marg = transition(schedule, s, t), transition(schedule, 0, s)
    predicted_zs = (1 - p_hat)[:, None] * marg[0] + p_hat[:, None] * marg[1]  # [zt, zs]
    unnorm = step.T * predicted_zs  # [zt, zs]
    definition = unnorm[:, 1] / unnorm.sum(1)
    assert torch.allclose(torch.sigmoid(bm.joint_logits(ZT[0], torch.logit(p_hat), jump)), definition, atol=1e-10)


def test_parameterizations_map_to_p_hat():
    z_t = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=D)
    f = torch.tensor([0.2, 0.2, 0.9, 0.9], dtype=D)
    logit = torch.logit(f)
    residual = torch.sigmoid(bm.x0_logits(logit, z_t, "residual"))
    assert torch.allclose(residual, z_t * (1 - f) + (1 - z_t) * f)
    assert torch.equal(bm.x0_logits(logit, z_t, "x0"), logit)
    with pytest.raises(ValueError, match="parameterization"):
        bm.x0_logits(logit, z_t, "direct")


@pytest.mark.parametrize("name", SCHEDULES)
def test_forward_flip_rate_matches_schedule(name):
    """Flip rate of q(zᵗ | z⁰) equals (1 − k_t)/2 within 5 binomial standard deviations."""
    schedule = make_schedule(name, 20)
    gen = torch.Generator().manual_seed(1)
    z0 = (torch.rand(200, 50, 20, generator=gen) < 0.5).float()
    n = z0.numel()
    for t in (1, 5, 10, 19, 20):
        p = (1 - schedule.k(t).item()) / 2
        z_t = bm.q_sample(z0, torch.tensor(schedule.k(t).item()), generator=gen)
        rate = (z_t != z0).float().mean().item()
        assert abs(rate - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-12, (t, rate, p)


def test_kl_closed_forms():
    q = torch.tensor([0.0, 1e-9, 0.3, 0.5, 0.999, 1.0], dtype=D)
    p = torch.tensor([0.2, 0.4, 0.7, 0.5, 0.01, 0.9], dtype=D)
    summed = sum(torch.xlogy(qv, qv) - torch.xlogy(qv, pv) for qv, pv in ((q, p), (1 - q, 1 - p)))
    assert torch.allclose(bm.bernoulli_kl(q, p), summed, atol=1e-12)
    inner = slice(1, 5)  # logits need 0 < q < 1
    assert torch.allclose(bm.bernoulli_kl_logits(torch.logit(q[inner]), torch.logit(p[inner])), summed[inner], atol=1e-9)
    assert torch.allclose(bm.prior_term(torch.tensor([0.0, 1.0], dtype=D), 0.0), torch.zeros(2, dtype=D))
    k = 0.4  # KL(B(0.7) ‖ B(½)) = 0.7 log 1.4 + 0.3 log 0.6
    assert torch.allclose(bm.prior_term(torch.tensor([1.0], dtype=D), k), torch.tensor([0.7 * math.log(1.4) + 0.3 * math.log(0.6)], dtype=D))


def test_class_balanced_weights_equalise_classes():
    flips = torch.tensor([[[1.0, 0, 0, 0], [0, 0, 1, 0]], [[0, 0, 0, 0], [0, 0, 0, 0]]])
    w = bm.class_balanced_weights(flips)
    assert torch.allclose((w * flips)[0].sum(), (w * (1 - flips))[0].sum())  # 2·(6/8) = 6·(2/8)
    assert torch.allclose(w.sum((1, 2)), torch.tensor([2 * 0.25 * 0.75 * 8, 0.0]))  # total 2ρ(1 − ρ)·Nc


# ---- the full VLB on a code space small enough to enumerate (2 positions x 3 bits = 64 states) ----
SPEC = CodeSpec(kind="binary", grid=(1, 2), channels=3)
STATES = all_codes(SPEC).to(D)  # (64, 2, 3)


class FixedNet(nn.Module):
    """An arbitrary deterministic 'network' coupling all bits and depending on t."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(3)
        self.w = nn.Parameter(torch.randn(6, 6, generator=gen, dtype=D), requires_grad=False)
        self.v = nn.Parameter(torch.randn(6, generator=gen, dtype=D), requires_grad=False)

    def forward(self, x, t, labels=None):
        return (2 * torch.tanh(x.flatten(1) @ self.w + t[:, None] * self.v)).reshape(x.shape)


class OracleNet(nn.Module):
    """The optimal predictor for a product data distribution with p(z⁰_i = 1) = pi_i."""

    def __init__(self, prior, pi):
        super().__init__()
        self.prior = [prior]  # a list: do not register the prior as a submodule
        self.pi = nn.Parameter(pi, requires_grad=False)

    def forward(self, x, t, labels=None):
        prior = self.prior[0]
        z_t, step = (x + 1) / 2, (t * prior.timesteps).round().long()
        keep = prior.schedule.k(step).to(D).reshape(-1, 1, 1)
        like1, like0 = bm.forward_one_prob(z_t, keep), bm.forward_one_prob(1 - z_t, keep)  # q(zᵗ | z⁰=1), q(zᵗ | z⁰=0)
        x0_logit = torch.log(self.pi * like1) - torch.log((1 - self.pi) * like0)
        if prior.parameterization == "x0":
            return x0_logit
        if prior.parameterization == "residual":
            return (1 - 2 * z_t) * x0_logit
        return bm.mixture_logits(z_t, x0_logit, bm.make_jump(prior.schedule, step, step - 1, dtype=D))


def product_forward(z_from: torch.Tensor, z_to: torch.Tensor, keep: float) -> torch.Tensor:
    """(S, S) q(z_to | z_from) for multi-bit codes, rows z_from, columns z_to."""
    one = bm.forward_one_prob(z_from.flatten(1)[:, None, :], torch.tensor(keep, dtype=D))
    to = z_to.flatten(1)[None]
    return torch.where(to.bool(), one, 1 - one).prod(-1)


def enumerate_vlb(prior):
    """Exact E_q[VLB](z⁰) per code (nats), brute-force KLs, and the model's exact −log p(z⁰)."""
    T, S = prior.timesteps, STATES.shape[0]
    sched = prior.schedule
    z0 = STATES.repeat_interleave(S, 0)  # pairs (z0, zt), z0 major
    zt = STATES.repeat(S, 1, 1)
    total = torch.zeros(S, dtype=D)
    model_marginal = torch.full((S,), 1.0 / S, dtype=D)
    for t in range(T, 0, -1):
        steps = torch.full((S * S,), t)
        closed = prior.step_vlb(z0, zt, steps).reshape(S, S)  # [z0, zt]
        total += (product_forward(STATES, STATES, sched.k(t).item()) * closed).sum(1)
        rev = torch.sigmoid(prior.reverse_logits(STATES, prior.net_logits(STATES, steps[:S], None), steps[:S], steps[:S] - 1))
        model = torch.where(STATES.flatten(1)[None].bool(), rev.flatten(1)[:, None], 1 - rev.flatten(1)[:, None]).prod(-1)  # [zt, zs]
        if t == 1:
            brute = -torch.log(model.T)  # [z0, zt] = −log p(z⁰ | z¹)
        else:
            post = product_forward(STATES, STATES, sched.k(t - 1).item())[:, :, None] * product_forward(
                STATES, STATES, sched.skip(t, t - 1).item()
            )[None]  # [z0, zs, zt] ∝ q(zs | z0) q(zt | zs)
            post = post / post.sum(1, keepdim=True)
            brute = (torch.xlogy(post, post) - post * torch.log(model.T[None])).sum(1)  # [z0, zt]
        assert torch.allclose(closed, brute, atol=1e-9, rtol=1e-9), f"closed-form L_{t} != summed over states"
        model_marginal = model_marginal @ model
    prior_nats = bm.prior_term(STATES, sched.k(T).item()).flatten(1).sum(1)
    return total + prior_nats, -torch.log(model_marginal)


@pytest.mark.parametrize("parameterization,form", [("direct", "mixture"), ("x0", "mixture"), ("x0", "joint"), ("residual", "mixture"), ("residual", "joint")])
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_full_vlb_bounds_model_nll_by_enumeration(parameterization, form, schedule):
    """Per code z⁰: closed-form L_t = multi-bit KL summed over all 64 states of zᵗ⁻¹, and
    E_q[VLB](z⁰) >= −log p_θ(z⁰) (the model marginal through the whole reverse chain)."""
    prior = BernoulliDiffusion(SPEC, preset="tiny", timesteps=4, schedule=schedule, parameterization=parameterization, reverse=form).double()
    prior.net = FixedNet()
    vlb, model_nll = enumerate_vlb(prior)
    assert (vlb >= model_nll - 1e-9).all()
    assert (vlb - model_nll).max() > 1e-3  # an arbitrary network leaves a real gap


@pytest.mark.parametrize("parameterization", ["direct", "x0", "residual"])
def test_vlb_is_tight_for_the_optimal_predictor(parameterization):
    """For product data p(z⁰) = Π B(pi_i), k_T = 0 and the Bayes-optimal predictor, the mixture
    reverse equals q(zᵗ⁻¹ | zᵗ) exactly, so p_θ's chain equals q's and VLB(z⁰) = −log p_data(z⁰)
    for every z⁰ (q(z_{1:T} | z⁰) = p_θ(z_{1:T} | z⁰), no gap)."""
    prior = BernoulliDiffusion(SPEC, preset="tiny", timesteps=5, schedule="cosine", parameterization=parameterization).double()
    pi = torch.tensor([0.1, 0.3, 0.5, 0.6, 0.8, 0.95], dtype=D).reshape(1, 2, 3)
    prior.net = OracleNet(prior, pi)
    vlb, model_nll = enumerate_vlb(prior)
    data_nll = -torch.where(STATES.bool(), pi, 1 - pi).log().flatten(1).sum(1)
    assert torch.allclose(model_nll, data_nll, atol=1e-9)
    assert torch.allclose(vlb, data_nll, atol=1e-9)


def test_monte_carlo_vlb_matches_enumeration():
    """prior.vlb (one zᵗ per t) averages to the enumerated bound within 5 standard errors."""
    prior = BernoulliDiffusion(SPEC, preset="tiny", timesteps=4, parameterization="residual").double()
    prior.net = FixedNet()
    exact, _ = enumerate_vlb(prior)
    idx = torch.tensor([0, 17, 42, 63])
    codes = STATES[idx].repeat_interleave(3000, 0)
    out = prior.vlb(codes, generator=torch.Generator().manual_seed(0))
    assert not out.estimated and out.terms.shape == (codes.shape[0], 4)
    nats = (out.bits_per_bit * math.log(2) * 6).reshape(4, 3000)
    err = nats.std(1) / math.sqrt(3000)
    assert ((nats.mean(1) - exact[idx]).abs() <= 5 * err).all(), (nats.mean(1), exact[idx], err)
    sub = prior.vlb(codes[:8], generator=torch.Generator().manual_seed(0), num_timesteps=2)
    assert sub.estimated and sub.terms.shape == (8, 2)
    assert torch.allclose(prior.nll(codes[:8], generator=torch.Generator().manual_seed(5)).bits_per_bit,
                          prior.vlb(codes[:8], generator=torch.Generator().manual_seed(5)).bits_per_bit)


def test_stratified_vlb_estimate_is_unbiased_with_one_step_per_stratum():
    """num_timesteps=M draws one step in each of M equal strata of 1..T, weighted by the stratum's
    size: every draw has one step per stratum, and the mean over draws matches the enumerated
    bound within 5 standard errors (T = 4, M = 2: strata {1, 2} and {3, 4})."""
    prior = BernoulliDiffusion(SPEC, preset="tiny", timesteps=4, parameterization="residual").double()
    prior.net = FixedNet()
    exact, _ = enumerate_vlb(prior)
    idx = torch.tensor([0, 17, 42, 63])
    codes = STATES[idx].repeat_interleave(500, 0)
    draws, seen = [], set()
    for seed in range(40):
        out = prior.vlb(codes, generator=torch.Generator().manual_seed(seed), num_timesteps=2)
        assert out.estimated and out.t[0] in (1, 2) and out.t[1] in (3, 4)
        seen.add(tuple(out.t.tolist()))
        draws.append((out.bits_per_bit * math.log(2) * 6).reshape(4, 500).mean(1))
    draws = torch.stack(draws)  # (seeds, 4 states)
    err = draws.std(0) / math.sqrt(len(draws))
    assert len(seen) == 4  # every pair of strata members was drawn
    assert ((draws.mean(0) - exact[idx]).abs() <= 5 * err).all(), (draws.mean(0), exact[idx], err)
