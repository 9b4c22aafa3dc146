"""Oracle chains: the exact law of a prior's sampler when its network is the Bayes-optimal
predictor of an enumerable code distribution (tests/synthetic.py).

A learning test that compares a trained prior with the truth mixes two gaps: the sampler's own
structural error (few steps, factorised bits, a thresholded last step) and the training error.
The oracle chain measures the first exactly, so a test can state its threshold against the best
its own sampler can do::

    law = bernoulli_oracle_law(dist, make_schedule("linear", 64), steps=16, final_step="sample")
    oracle_tv = 0.5 * (law - dist.table).abs().sum()

Bernoulli diffusion: the network is trained with a per-bit BCE, whose minimiser is the per-bit
posterior marginal p(z⁰ᵢ = 1 | zᵗ) of the true distribution; the sampler turns it into a
reverse step with :func:`bernoulli_math.reverse_logits` and draws the bits of zˢ independently.
So the chain over all 2^(N·c) states is a Markov chain with a product-form transition, pushed
forward exactly from the uniform z^T. (The absorbing and autoregressive oracles live beside
their tests: ``tests/test_absorbing.py::test_oracle_sampler_has_the_exact_law_of_the_reverse_process``
and ``tests/test_autoregressive.py::best_factorised_table``.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from discrete_priors.latents.base import CodeSpec
from discrete_priors.priors import bernoulli_math as bm
from discrete_priors.priors.bernoulli import sampling_grid
from discrete_priors.priors.schedules import Schedule
from tests.synthetic import SyntheticCodes, all_codes


def _flat_states(dist: SyntheticCodes) -> torch.Tensor:
    """(S, N·c) float64 bits of every state, row i = state i."""
    return rearrange(all_codes(dist.spec), "s n c -> s (n c)").double()


def _component_evidence(dist: SyntheticCodes, flip: float):
    """For every state zᵗ (bits of z⁰ ~ ``dist`` flipped with probability ``flip``) and component
    j of the mixture: (log p(zᵗ, j) (S, K), p(z⁰ᵢ = 1 | zᵗᵢ, j) (S, K, N·c)). Given the component
    the bits are independent, so both factor over bits: exact, without the S × S table."""
    bits = _flat_states(dist)[:, None]  # (S, 1, B)
    one_prob = dist.patterns.double().flatten(1) * (1 - 2 * dist.flip) + dist.flip  # (K, B) p(z⁰ᵢ = 1 | j)
    like_one = bits * (1 - flip) + (1 - bits) * flip  # p(zᵗᵢ | z⁰ᵢ = 1)
    like_zero = bits * flip + (1 - bits) * (1 - flip)
    joint_one, joint_zero = one_prob * like_one, (1 - one_prob) * like_zero  # (S, K, B)
    evidence = joint_one + joint_zero  # p(zᵗᵢ | j)
    # the table's float64 weights (dist.weights is their float32 copy, 1e-8 off)
    weights = torch.linalg.lstsq(dist.class_tables.T, dist.table[:, None]).solution[:, 0]
    log_joint = evidence.log().sum(-1) + weights.log()
    return log_joint, joint_one / evidence


def noised_table(dist: SyntheticCodes, flip: float) -> torch.Tensor:
    """(S,) the law of zᵗ: every bit of z⁰ ~ ``dist`` flipped with probability ``flip``."""
    return _component_evidence(dist, flip)[0].logsumexp(-1).exp()


def posterior_marginals(dist: SyntheticCodes, flip: float) -> torch.Tensor:
    """(S, N·c): p(z⁰ᵢ = 1 | zᵗ) for every state zᵗ (rows) when each bit of z⁰ was flipped with
    probability ``flip``: Σⱼ p(j | zᵗ) p(z⁰ᵢ = 1 | zᵗᵢ, j) (Bayes on the mixture; the test checks
    it against Bayes on the enumerated table)."""
    log_joint, bit_posterior = _component_evidence(dist, flip)
    return torch.einsum("sk,skb->sb", log_joint.softmax(-1), bit_posterior)


@torch.no_grad()
def network_marginals(prior, dist: SyntheticCodes, times) -> dict:
    """{t: (S, N·c)} a trained x0/residual ``BernoulliDiffusion``'s p̂(z⁰ᵢ = 1 | zᵗ) on every state
    zᵗ at each step t of ``times`` (unconditional, τ = 1): passed as ``marginals`` to
    :func:`bernoulli_oracle_law` it gives the exact law of that prior's sampler."""
    states = all_codes(dist.spec).to(device=prior.device, dtype=next(prior.parameters()).dtype)
    out = {}
    for t in times:
        logits = prior.net_logits(states, torch.full((len(states),), int(t), device=prior.device), None)
        x0 = bm.x0_logits(logits, states, prior.parameterization)
        out[int(t)] = rearrange(torch.sigmoid(x0.double()), "s n c -> s (n c)").cpu()
    return out


def calibration_kl(dist: SyntheticCodes, schedule: Schedule, marginals: dict) -> dict:
    """{t: nats per bit} E_{zᵗ ~ q} Σᵢ KL(p(z⁰ᵢ | zᵗ) ‖ p̂(z⁰ᵢ | zᵗ)) / bits: how far a predictor's
    per-bit marginals ``marginals`` ({t: (S, N·c)}) are from the exact posterior at each t. It is
    the excess of the per-bit BCE (x0 target) over its minimum at that t."""
    out = {}
    for t, predicted in marginals.items():
        flip = float(schedule.flip_prob(t))
        exact = posterior_marginals(dist, flip)
        kl = bm.bernoulli_kl(exact, predicted.clamp(1e-12, 1 - 1e-12)).mean(1)  # (S,) per bit
        out[t] = (noised_table(dist, flip) * kl).sum().item()
    return out


def bernoulli_oracle_law(dist: SyntheticCodes, schedule: Schedule, *, steps: int, final_step: str = "sample",
                         reverse: str = "mixture", marginals: dict | None = None) -> torch.Tensor:
    """(S,) float64: the exact law of ``BernoulliDiffusion.sample(steps=steps)`` with the
    Bayes-optimal x0 predictor, for ``schedule`` (its T is the training T), the reverse form
    ``reverse`` and the last step ``final_step`` ("sample" draws z⁰ from the reverse step,
    "threshold" takes 1[p̂(z⁰ᵢ=1 | z¹) > ½]). ``marginals``: optional {t: posterior_marginals at
    step t} reused across calls (the expensive part)."""
    assert final_step in {"sample", "threshold"}, f"unknown final_step {final_step!r}"
    states = all_codes(dist.spec).double()  # (S, N, c): every zᵗ at once
    bits = _flat_states(dist)
    law = torch.full((len(states),), 1.0 / len(states), dtype=torch.float64)  # z^T ~ B(½) per bit
    grid = sampling_grid(schedule.timesteps, steps).tolist()
    for t, s in zip(grid[:-1], grid[1:]):
        marginal = marginals[t] if marginals is not None and t in marginals else posterior_marginals(dist, float(schedule.flip_prob(t)))
        x0_logit = rearrange(torch.logit(marginal.clamp(1e-300, 1 - 1e-16)), "s (n c) -> s n c", n=dist.spec.num_positions)
        if s == 0 and final_step == "threshold":
            target = (x0_logit > 0).double().flatten(1)  # deterministic: each zᵗ maps to one z⁰
            index = (target * 2 ** torch.arange(bits.shape[1] - 1, -1, -1, dtype=torch.float64)).sum(1).long()
            law = torch.zeros_like(law).index_add_(0, index, law)
            continue
        jump = bm.make_jump(schedule, t, s, dtype=torch.float64)
        rev = bm.reverse_logits(states, x0_logit, jump, parameterization="x0", form=reverse).flatten(1)  # [zᵗ, i]
        law = _product_step(law, rev)
    return law


def _half_step(rev: torch.Tensor) -> torch.Tensor:
    """(S, 2^b): Π_i σ(±ℓ_i) over every setting (MSB first) of the b bits whose logits are ``rev`` (S, b)."""
    settings = rearrange(all_codes(CodeSpec(kind="binary", grid=(1, 1), channels=rev.shape[1])), "s 1 c -> s c").double()
    log_prob = F.logsigmoid(rev) @ settings.T + F.logsigmoid(-rev) @ (1 - settings).T
    return log_prob.exp()


def _product_step(law: torch.Tensor, rev: torch.Tensor) -> torch.Tensor:
    """law (S,) of zᵗ pushed through p(zˢ | zᵗ) = Π_i σ(±ℓ_i) with logits ``rev`` (S, B) [zᵗ, i].
    The product form splits into the first and last halves of the bits, p = p_A(zˢ_A | zᵗ)
    p_B(zˢ_B | zᵗ), so law_s[a, b] = Σ_zᵗ law(zᵗ) p_A[zᵗ, a] p_B[zᵗ, b]: one (2^A × S)(S × 2^B)
    product instead of the S × S transition matrix (same numbers, ~50x faster at 12 bits)."""
    half = rev.shape[1] // 2
    first, last = _half_step(rev[:, :half]), _half_step(rev[:, half:])
    return ((law[:, None] * first).T @ last).flatten()  # index a·2^B + b: MSB-first, as all_codes


def tv(p: torch.Tensor, q: torch.Tensor) -> float:
    """Total variation ½ Σ |p − q| of two tables."""
    return 0.5 * (p - q).abs().sum().item()
