"""Exact per-bit maths of Bernoulli diffusion (docs/method.md §2.1–§2.5), vectorised over codes (B, N, c).

Binary Latent Diffusion, Wang et al., CVPR 2023 — https://arxiv.org/abs/2304.04820

Every reverse distribution is carried as a *logit* (log p(1) − log p(0)) and built from
log-probabilities, so nothing subtracts two numbers close to 1: posteriors that are nearly
deterministic (s = 0, tiny β) keep their precision in float32. Probabilities that are exactly 0
(the s = 0 posterior) are clamped to the dtype's smallest normal number before the log, which
gives finite logits of about ±87 (float32) / ±708 (float64), i.e. error < 1e-37.

A step t → s (0 <= s < t) is described by a :class:`Jump`: K = k_t/k_s and the marginal
coefficients at s; tests enumerate all cases against brute-force Bayes (tests/test_bernoulli_math.py).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from discrete_priors.priors.sampling import bernoulli  # noqa: F401  (the draw q_sample makes; callers use bm.bernoulli)
from discrete_priors.priors.schedules import Schedule

PARAMETERIZATIONS = ("direct", "x0", "residual")
REVERSE_FORMS = ("mixture", "joint")


class Jump(NamedTuple):
    """Coefficients of a step t → s, each broadcastable to the codes (e.g. (B, 1, 1)).

    keep: K = k_t/k_s; noise: (1 − K)/2, so q(zᵗ=1 | zˢ) = K zˢ + noise;
    keep_s, b_s: q(zˢ=1 | z⁰) = keep_s z⁰ + b_s.
    """

    keep: torch.Tensor
    noise: torch.Tensor
    keep_s: torch.Tensor
    b_s: torch.Tensor

    def at(self, index: int) -> "Jump":
        """The ``index``-th jump of a grid of jumps (:func:`make_jump` with ``ndim=1``): 0-d views
        on the grid's device (no copy, no host-device transfer)."""
        return Jump(*(coef[index] for coef in self))


def make_jump(schedule: Schedule, t, s, *, dtype=torch.float32, device=None, ndim: int = 3, check: bool = True) -> Jump:
    """Jump coefficients for steps t, s (ints or (B,) long tensors), computed in float64 (1 − K
    for K near 1) and then cast; shaped (B, 1, ..., 1) with ``ndim`` dims for per-sample steps
    (``ndim=1`` for a sampling grid: (S,) coefficients, indexed per step). ``check=False`` skips
    the validation of the steps (a host-device sync) for steps the caller has already checked."""
    t, s = torch.as_tensor(t), torch.as_tensor(s)
    keep = schedule.skip(t, s, check=check)
    coefs = (keep, (1.0 - keep) / 2, schedule.k(s, check=check), schedule.b(s, check=check))
    shape = (-1,) + (1,) * (ndim - 1) if keep.dim() == 1 else ()
    return Jump(*(c.reshape(shape).to(device=device, dtype=dtype) for c in coefs))


def _safe_log(x: torch.Tensor) -> torch.Tensor:
    return torch.log(x.clamp_min(torch.finfo(x.dtype).tiny))


def forward_one_prob(z0: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """q(zᵗ=1 | z⁰) = k_t z⁰ + (1 − k_t)/2 (also q(zᵗ=1 | zˢ) with keep = K)."""
    return keep * z0 + (1.0 - keep) / 2


def q_sample(z0: torch.Tensor, keep: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """zᵗ ~ q(zᵗ | z⁰): each bit flipped independently with probability (1 − k_t)/2."""
    flips = bernoulli(((1.0 - keep) / 2).expand_as(z0), generator=generator)
    return (z0 + flips) % 2


def posterior_factors(z_t: torch.Tensor, z0: torch.Tensor, jump: Jump):
    """(A₁, A₀) of docs/method.md §2.2: A_v = q(zᵗ | zˢ=v) · q(zˢ=v | z⁰). Bayes' rule gives
    q(zˢ=1 | zᵗ, z⁰) = A₁/(A₁ + A₀); the second factor uses k_s and b_s (the paper's k_t, ½b_t is a typo).
    ``z0`` may be a probability p̂ in [0, 1]: then the second factor is the predicted marginal
    Σ_{z⁰} p̂(z⁰) q(zˢ | z⁰) = k_s p̂ + b_s (the *joint* reverse form)."""
    like_one = jump.keep * z_t + jump.noise
    like_zero = jump.keep * (1.0 - z_t) + jump.noise
    return like_one * (jump.keep_s * z0 + jump.b_s), like_zero * (jump.keep_s * (1.0 - z0) + jump.b_s)


def posterior_logits(z_t: torch.Tensor, z0: torch.Tensor, jump: Jump) -> torch.Tensor:
    """Logit of q(zˢ=1 | zᵗ, z⁰) for binary z⁰ (finite ±87/±708 where the posterior is certain)."""
    a_one, a_zero = posterior_factors(z_t, z0, jump)
    return _safe_log(a_one) - _safe_log(a_zero)


def posterior_one_prob(z_t: torch.Tensor, z0: torch.Tensor, jump: Jump) -> torch.Tensor:
    """q(zˢ=1 | zᵗ, z⁰) = A₁/(A₁ + A₀)."""
    a_one, a_zero = posterior_factors(z_t, z0, jump)
    return a_one / (a_one + a_zero)


def x0_logits(net_logits: torch.Tensor, z_t: torch.Tensor, parameterization: str) -> torch.Tensor:
    """Network logits → logit of p̂(z⁰=1 | zᵗ).

    x0: the logits themselves. residual: the network predicts the flip probability f, so
    p̂ = zᵗ(1 − f) + (1 − zᵗ) f, whose logit is ℓ where zᵗ = 0 and −ℓ where zᵗ = 1.
    """
    if parameterization == "x0":
        return net_logits
    if parameterization == "residual":
        return (1.0 - 2.0 * z_t) * net_logits
    raise ValueError(f"x0_logits: expected parameterization 'x0' or 'residual', got {parameterization!r}")


class MixtureConstants(NamedTuple):
    """The per-jump constants of :func:`mixture_logits` for zᵗ = 1 (``*_one``) and zᵗ = 0
    (``*_zero``), jump-shaped: d = A₁ − B₁, ca = A₀ − A₁, cb = B₀ − B₁ (see there)."""

    d_one: torch.Tensor
    ca_one: torch.Tensor
    cb_one: torch.Tensor
    d_zero: torch.Tensor
    ca_zero: torch.Tensor
    cb_zero: torch.Tensor

    def at(self, index: int) -> "MixtureConstants":
        """The ``index``-th jump's constants of a grid of jumps (0-d views, like :meth:`Jump.at`)."""
        return MixtureConstants(*(c[index] for c in self))


def mixture_constants(jump: Jump) -> MixtureConstants:
    """:class:`MixtureConstants` of ``jump`` (any jump shape: a sampler computes them once for
    its whole grid of jumps)."""
    one, zero = torch.ones_like(jump.keep), torch.zeros_like(jump.keep)

    def constants(z):
        at_one, at_zero = posterior_logits(z, one, jump), posterior_logits(z, zero, jump)  # logits of q(zˢ=1 | zᵗ, z⁰)
        return at_one, F.logsigmoid(at_zero) - F.logsigmoid(at_one), F.logsigmoid(-at_zero) - F.logsigmoid(-at_one)

    return MixtureConstants(*constants(one), *constants(zero))


def mixture_logits(z_t: torch.Tensor, x0_logit: torch.Tensor, jump: Jump, constants: MixtureConstants | None = None) -> torch.Tensor:
    """Logit of p(zˢ=1 | zᵗ) = Σ_{z⁰} p̂(z⁰) q(zˢ=1 | zᵗ, z⁰) (docs/method.md §2.4, mixture form); zᵗ in {0,1}.

    With A_v = log q(zˢ=1 | zᵗ, z⁰=v), B_v = log q(zˢ=0 | zᵗ, z⁰=v) and m the logit of p̂, the
    log p̂ common to both sides cancels (log(1 − p̂) = log p̂ − m):
        logit = logaddexp(A₁, A₀ − m) − logaddexp(B₁, B₀ − m)
              = (A₁ − B₁) + softplus(A₀ − A₁ − m) − softplus(B₀ − B₁ − m).
    The three constants take two values per jump (zᵗ = 0 or 1): :func:`mixture_constants`,
    jump-shaped ((B, 1, 1) or scalar), selected per bit by an exact ``lerp`` (weight zᵗ), so
    the full-size work is a handful of ops. ``constants``: precomputed for this jump.
    m is clamped to ±(3 × the largest |log| of a normal float): beyond that the result no
    longer changes (+) or changes by rounding only (−), and m = ±inf (τ = 0) stays finite."""
    c = mixture_constants(jump) if constants is None else constants
    bound = -3 * math.log(torch.finfo(x0_logit.dtype).tiny)
    m = x0_logit.clamp(-bound, bound)
    z_t = z_t.to(x0_logit.dtype)
    d, ca, cb = torch.lerp(c.d_zero, c.d_one, z_t), torch.lerp(c.ca_zero, c.ca_one, z_t), torch.lerp(c.cb_zero, c.cb_one, z_t)
    # softplus is linear above the threshold; there log1p(e^-x) < eps·x, below the rounding
    threshold = -math.log(torch.finfo(x0_logit.dtype).eps)
    return d + F.softplus(ca - m, threshold=threshold) - F.softplus(cb - m, threshold=threshold)


def joint_logits(z_t: torch.Tensor, x0_logit: torch.Tensor, jump: Jump) -> torch.Tensor:
    """Logit of p(zˢ=1 | zᵗ) ∝ q(zᵗ | zˢ=1)·[k_s p̂ + b_s] vs q(zᵗ | zˢ=0)·[k_s(1 − p̂) + b_s]
    (docs/method.md §2.4, joint form of the reference code; zᵗ in {0,1}; σ(±ℓ) avoids computing 1 − p̂)."""
    # log q(zᵗ | zˢ=1) − log q(zᵗ | zˢ=0) = ±log((K + noise)/noise), + when zᵗ = 1
    evidence = _safe_log(jump.keep + jump.noise) - _safe_log(jump.noise)
    log_like_ratio = torch.where(z_t > 0.5, evidence, -evidence)
    log_prior_one = _safe_log(jump.keep_s * torch.sigmoid(x0_logit) + jump.b_s)
    log_prior_zero = _safe_log(jump.keep_s * torch.sigmoid(-x0_logit) + jump.b_s)
    return log_like_ratio + (log_prior_one - log_prior_zero)


def reverse_logits(z_t: torch.Tensor, net_logits: torch.Tensor, jump: Jump, *, parameterization: str, form: str,
                   mixture: MixtureConstants | None = None) -> torch.Tensor:
    """Logit of p_θ(zˢ=1 | zᵗ). ``direct``: the network logits are the reverse step itself
    (defined for one step s = t − 1 only; the caller enforces that). ``mixture``: the jump's
    precomputed :class:`MixtureConstants` (mixture form only)."""
    if parameterization == "direct":
        return net_logits
    x0_logit = x0_logits(net_logits, z_t, parameterization)
    if form == "mixture":
        return mixture_logits(z_t, x0_logit, jump, mixture)
    if form == "joint":
        return joint_logits(z_t, x0_logit, jump)
    raise ValueError(f"unknown reverse form {form!r}, expected one of {REVERSE_FORMS}")


def bernoulli_kl_logits(q_logits: torch.Tensor, p_logits: torch.Tensor) -> torch.Tensor:
    """KL(B(σ(a)) ‖ B(σ(λ))) in nats, elementwise, stable for any finite logits."""
    log_q1, log_q0 = F.logsigmoid(q_logits), F.logsigmoid(-q_logits)
    log_p1, log_p0 = F.logsigmoid(p_logits), F.logsigmoid(-p_logits)
    return log_q1.exp() * (log_q1 - log_p1) + log_q0.exp() * (log_q0 - log_p0)


def bernoulli_kl(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """KL(B(q) ‖ B(p)) in nats from probabilities (0 log 0 = 0; p clamped away from {0, 1})."""
    eps = torch.finfo(p.dtype).eps
    p = p.clamp(eps, 1 - eps)
    return torch.xlogy(q, q) - torch.xlogy(q, p) + torch.xlogy(1 - q, 1 - q) - torch.xlogy(1 - q, 1 - p)


def vlb_terms(z0: torch.Tensor, z_t: torch.Tensor, rev_logits: torch.Tensor, jump: Jump, t: torch.Tensor) -> torch.Tensor:
    """Per-bit VLB term L_t in nats, (B, N, c), for steps t (B,) with ``jump`` = t → t − 1:
    KL(q(zᵗ⁻¹ | zᵗ, z⁰) ‖ p_θ(zᵗ⁻¹ | zᵗ)) for t > 1 and −log p_θ(z⁰ | z¹) for t = 1."""
    kl = bernoulli_kl_logits(posterior_logits(z_t, z0, jump), rev_logits)
    nll = F.binary_cross_entropy_with_logits(rev_logits, z0, reduction="none")
    first = (t == 1).reshape((-1,) + (1,) * (z0.dim() - 1))
    return torch.where(first, nll, kl)


def prior_term(z0: torch.Tensor, keep_T: float) -> torch.Tensor:
    """KL(q(z^T | z⁰) ‖ B(½)) per bit in nats, (B, N, c); 0 when k_T = 0."""
    q = forward_one_prob(z0, torch.as_tensor(keep_T, dtype=z0.dtype))
    return bernoulli_kl(q, torch.full_like(q, 0.5))


def class_balanced_weights(flips: torch.Tensor) -> torch.Tensor:
    """Per-bit BCE weights (B, N, c) of the reference code's balancing (docs/method.md §2.4): with ρ the
    fraction of flipped bits in each sample, flipped bits weigh 1 − ρ and unflipped bits ρ, so both
    classes carry equal total weight ρ(1 − ρ)·Nc. As in the reference, the weighted BCE is then
    averaged (not renormalised): a sample's total weight 2ρ(1 − ρ) also down-weights nearly clean
    (small t) and nearly random (large t) samples; a sample with no flips gets weight 0."""
    flips = flips if flips.dtype.is_floating_point else flips.float()
    rho = flips.flatten(1).mean(1).reshape((-1,) + (1,) * (flips.dim() - 1))
    return flips * (1.0 - rho) + (1.0 - flips) * rho
