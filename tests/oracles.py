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

from functools import lru_cache

import torch
from einops import rearrange

from discrete_priors.priors import bernoulli_math as bm
from discrete_priors.priors.bernoulli import sampling_grid
from discrete_priors.priors.schedules import Schedule
from tests.synthetic import SyntheticCodes, all_codes


def _flat_states(dist: SyntheticCodes) -> torch.Tensor:
    """(S, N·c) float64 bits of every state, row i = state i."""
    return rearrange(all_codes(dist.spec), "s n c -> s (n c)").double()


@lru_cache(maxsize=4)
def _distances(spec) -> torch.Tensor:
    bits = rearrange(all_codes(spec), "s n c -> s (n c)").double()
    return bits @ (1 - bits).T + (1 - bits) @ bits.T  # (S, S) Hamming distances


def posterior_marginals(dist: SyntheticCodes, flip: float) -> torch.Tensor:
    """(S, N·c): p(z⁰ᵢ = 1 | zᵗ) for every state zᵗ (rows) when each bit of z⁰ was flipped with
    probability ``flip``: Bayes on the exact table, p(z⁰ | zᵗ) ∝ p(z⁰) flip^d (1 − flip)^(bits − d)."""
    bits = _flat_states(dist)
    total = bits.shape[1]
    distance = _distances(dist.spec)
    if flip == 0.0:
        like = (distance == 0).double()
    else:
        like = torch.exp(distance * torch.log(torch.tensor(flip, dtype=torch.float64))
                         + (total - distance) * torch.log1p(torch.tensor(-flip, dtype=torch.float64)))
    joint = like * dist.table[:, None]  # [z⁰, zᵗ]
    posterior = joint / joint.sum(0, keepdim=True).clamp_min(1e-300)
    return posterior.T @ bits  # [zᵗ, i]


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
        # p(zˢ | zᵗ) = Π_i σ(±ℓ_i): a product form, so its log is one matmul over the bits
        log_step = torch.nn.functional.logsigmoid(rev) @ bits.T + torch.nn.functional.logsigmoid(-rev) @ (1 - bits).T
        law = law @ log_step.exp()
    return law


def tv(p: torch.Tensor, q: torch.Tensor) -> float:
    """Total variation ½ Σ |p − q| of two tables."""
    return 0.5 * (p - q).abs().sum().item()
