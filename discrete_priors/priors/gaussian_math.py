"""The maths of Gaussian diffusion, one pure function per formula (docs/method.md §10).

Notation: ᾱ_t the signal rate of the schedule (:func:`~discrete_priors.priors.schedules.signal_rates`),
α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t), SNR_t = ᾱ_t / (1 − ᾱ_t). The forward marginal is
q(x_t | x_0) = N(α_t x_0, σ_t² I), i.e. x_t = α_t x_0 + σ_t ε with ε ~ N(0, I).

Every function takes its coefficients as tensors (or floats) broadcastable to the codes, so the
same code serves a per-sample batch of steps (training) and one step of a sampling grid.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

TARGETS = ("eps", "x0", "v")
SAMPLERS = ("ddim", "ancestral")


class Prediction(NamedTuple):
    """What one network output means, in both coordinates: x0 and eps, each like x_t."""

    x0: torch.Tensor
    eps: torch.Tensor


def q_sample(x0: torch.Tensor, alpha, sigma, noise: torch.Tensor) -> torch.Tensor:
    """x_t = α_t x_0 + σ_t ε: a draw of q(x_t | x_0) given the noise ε."""
    return alpha * x0 + sigma * noise


def target_of(x0: torch.Tensor, noise: torch.Tensor, alpha, sigma, target: str) -> torch.Tensor:
    """What the network is trained to output for (x_0, ε): ε, x_0, or v = α_t ε − σ_t x_0
    (Salimans & Ho 2022, https://arxiv.org/abs/2202.00512, §4)."""
    if target == "eps":
        return noise
    if target == "x0":
        return x0
    if target == "v":
        return alpha * noise - sigma * x0
    raise ValueError(f"unknown target {target!r}, expected one of {TARGETS}")


def predictions(out: torch.Tensor, x_t: torch.Tensor, alpha, sigma, target: str) -> Prediction:
    """(x̂_0, ε̂) from a network output ``out`` at x_t, the exact inverse of :func:`target_of`
    given x_t = α x_0 + σ ε and α² + σ² = 1:

    * eps: ε̂ = out, x̂_0 = (x_t − σ ε̂)/α — ill-conditioned where α → 0 (t near T);
    * x0:  x̂_0 = out, ε̂ = (x_t − α x̂_0)/σ — ill-conditioned where σ → 0 (t near 0);
    * v:   x̂_0 = α x_t − σ v̂, ε̂ = σ x_t + α v̂ — a rotation of (x_t, v̂), bounded at both ends.
    """
    if target == "eps":
        return Prediction((x_t - sigma * out) / alpha, out)
    if target == "x0":
        return Prediction(out, (x_t - alpha * out) / sigma)
    if target == "v":
        return Prediction(alpha * x_t - sigma * out, sigma * x_t + alpha * out)
    raise ValueError(f"unknown target {target!r}, expected one of {TARGETS}")


def x0_error_scale(snr: torch.Tensor, target: str) -> torch.Tensor:
    """w with ‖out − target‖² = w ‖x̂_0 − x_0‖² at fixed x_t: SNR (eps), 1 (x0), SNR + 1 (v).
    (From the inverses above: x̂_0 − x_0 = −(σ/α)(ε̂ − ε) = −σ (v̂ − v), and 1/σ² = SNR + 1.)"""
    if target == "eps":
        return snr
    if target == "x0":
        return torch.ones_like(snr)
    if target == "v":
        return snr + 1
    raise ValueError(f"unknown target {target!r}, expected one of {TARGETS}")


class StepCoefficients(NamedTuple):
    """One reverse step t → s as x_s = a x̂_0 + b ε̂ + c x_t + std · ξ, ξ ~ N(0, I); each field
    a float64 tensor of the steps' shape."""

    a: torch.Tensor
    b: torch.Tensor
    c: torch.Tensor
    std: torch.Tensor


def posterior_coefficients(abar_t: torch.Tensor, abar_s: torch.Tensor) -> StepCoefficients:
    """The ancestral (DDPM) step: q(x_s | x_t, x̂_0) for s < t, Ho et al. 2020 eq. 6-7 on a jump
    (https://arxiv.org/abs/2006.11239) with ᾱ_{t|s} = ᾱ_t/ᾱ_s:
    mean = √ᾱ_s (1 − ᾱ_{t|s})/(1 − ᾱ_t) x̂_0 + √ᾱ_{t|s} (1 − ᾱ_s)/(1 − ᾱ_t) x_t,
    variance = (1 − ᾱ_s)/(1 − ᾱ_t) (1 − ᾱ_{t|s}); s = 0 gives x̂_0 exactly."""
    keep = abar_t / abar_s
    a = abar_s.sqrt() * (1 - keep) / (1 - abar_t)
    c = keep.sqrt() * (1 - abar_s) / (1 - abar_t)
    var = ((1 - abar_s) / (1 - abar_t) * (1 - keep)).clamp(min=0)
    return StepCoefficients(a, torch.zeros_like(a), c, var.sqrt())


def ddim_coefficients(abar_t: torch.Tensor, abar_s: torch.Tensor, eta: float) -> StepCoefficients:
    """The DDIM step (Song et al. 2021, https://arxiv.org/abs/2010.02502, eq. 12):
    x_s = √ᾱ_s x̂_0 + √(1 − ᾱ_s − σ²) ε̂ + σ ξ with σ = η √((1 − ᾱ_s)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_s).
    η = 0 is deterministic; η = 1 has the ancestral step's mean and variance (ε̂ and x̂_0 being
    tied by x_t = α_t x̂_0 + σ_t ε̂)."""
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1] (0 = deterministic DDIM, 1 = ancestral variance), got {eta}")
    var = (eta**2 * (1 - abar_s) / (1 - abar_t) * (1 - abar_t / abar_s)).clamp(min=0)
    b = (1 - abar_s - var).clamp(min=0).sqrt()
    return StepCoefficients(abar_s.sqrt(), b, torch.zeros_like(b), var.sqrt())


def step_coefficients(abar_t: torch.Tensor, abar_s: torch.Tensor, *, sampler: str, eta: float = 0.0) -> StepCoefficients:
    """:func:`ddim_coefficients` or :func:`posterior_coefficients` (``sampler="ancestral"``, no η)."""
    if sampler == "ddim":
        return ddim_coefficients(abar_t, abar_s, eta)
    if sampler == "ancestral":
        return posterior_coefficients(abar_t, abar_s)
    raise ValueError(f"unknown sampler {sampler!r}, expected one of {SAMPLERS}")


# -- the likelihood of codes on their float16 storage grid -------------------------------------


def float16_bins(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo, hi) float64: the interval of reals that round to each value of ``codes`` in float16
    (round to nearest: halfway to each neighbouring float16). The largest finite value's upper
    neighbour is inf; its interval is taken as wide above as below. ``codes`` is rounded to
    float16 first (a cache stores it so already)."""
    v = codes.to(torch.float16)
    if not torch.isfinite(v).all():
        raise ValueError("codes overflow float16 (|value| > 65504): they cannot lie on the float16 storage grid")
    below = torch.nextafter(v, torch.full_like(v, -torch.inf)).double()
    above = torch.nextafter(v, torch.full_like(v, torch.inf)).double()
    v = v.double()
    below = torch.where(torch.isinf(below), 2 * v - above, below)
    above = torch.where(torch.isinf(above), 2 * v - below, above)
    return (v + below) / 2, (v + above) / 2


def log_normal_mass(lo: torch.Tensor, hi: torch.Tensor, mean: torch.Tensor, std) -> torch.Tensor:
    """log P(lo < X < hi) for X ~ N(mean, std²), elementwise, float64, accurate for tiny intervals
    and far tails: log Φ(b) + log(1 − exp(log Φ(a) − log Φ(b))) on the side of the mean where
    both Φ are small (the interval is mirrored when it lies above the mean)."""
    a = (lo.double() - mean.double()) / std
    b = (hi.double() - mean.double()) / std
    upper = (a + b) > 0
    a, b = torch.where(upper, -b, a), torch.where(upper, -a, b)
    log_a, log_b = torch.special.log_ndtr(a), torch.special.log_ndtr(b)
    return log_b + torch.log(-torch.expm1(log_a - log_b))


__all__ = ["TARGETS", "SAMPLERS", "Prediction", "StepCoefficients", "q_sample", "target_of", "predictions",
           "x0_error_scale", "posterior_coefficients", "ddim_coefficients", "step_coefficients", "float16_bins",
           "log_normal_mass"]
