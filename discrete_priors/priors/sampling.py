"""The pieces every prior's sampling loop is built from, written once.

MaskGIT's lesson (Chang et al. 2022, https://arxiv.org/abs/2202.04200): a sampler takes a
*logits function*, so the same guidance, draws and schedules serve any network. A prior's
``sample()`` is a loop that calls :func:`guided_logits` with its own logits function, then
:func:`draw_bits` or :func:`draw_categorical`, and (absorbing) the mask schedule below.

Temperature, one meaning for every prior
----------------------------------------
τ divides the logits of the distribution the network predicts (a bit's log-odds, a token's
softmax logits) before anything is drawn from it or derived from it: softmax(ℓ/τ), σ(ℓ/τ).
τ = 1 is the model itself, τ < 1 sharpens, τ > 1 flattens. **τ = 0 is the limit τ → 0⁺: every
prediction becomes its argmax** (greedy; :func:`temper` gives ±inf log-odds, :func:`draw_bits`
and :func:`draw_categorical` take the argmax). The draws consume the same uniforms at τ = 0 as at
τ > 0, so with one generator a sampler at τ = 0 is exactly its limit of small τ — except where
it ranks by :attr:`Draw.log_prob`, which at τ = 0 is the untempered one. Randomness a sampler has besides
the network's prediction remains at τ = 0 (which tokens the absorbing prior reveals, the
Bernoulli posterior q(zˢ | zᵗ, ẑ⁰) given a hard ẑ⁰). τ < 0 or non-finite is refused.

Randomness
----------
Only through an explicit ``torch.Generator`` (or the global one when None). Uniforms are drawn
on the generator's device and then moved (:func:`uniform`), so a CPU generator drives a GPU
model and the draws do not depend on where the model lives.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

# -- randomness --------------------------------------------------------------------------------


def uniform(shape, generator: torch.Generator | None, device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """U[0, 1) of ``shape`` drawn on the generator's device (``device`` when None), moved to ``device``."""
    source = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=source, dtype=dtype).to(device)


def randint(low: int, high: int, shape, generator: torch.Generator | None, device) -> torch.Tensor:
    """Integers uniform on [low, high) drawn like :func:`uniform`."""
    source = generator.device if generator is not None else device
    return torch.randint(low, high, shape, generator=generator, device=source).to(device)


def normal(shape, generator: torch.Generator | None, device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """N(0, 1) of ``shape`` drawn like :func:`uniform` (on the generator's device, then moved)."""
    source = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=source, dtype=dtype).to(device)


def bernoulli(one_prob: torch.Tensor, *, generator: torch.Generator | None = None,
              out: torch.Tensor | None = None) -> torch.Tensor:
    """{0,1} of one_prob's dtype with P(1) = one_prob (uniforms in that dtype: 1[u < p]); ``out``:
    written there instead (e.g. a slice of a sampler's output, of its dtype), and returned."""
    u = uniform(one_prob.shape, generator, one_prob.device, one_prob.dtype)
    return (u < one_prob).to(one_prob.dtype) if out is None else torch.lt(u, one_prob, out=out)


# -- temperature -------------------------------------------------------------------------------


def check_temperature(temperature: float) -> float:
    """τ itself, or a ValueError unless it is a finite number >= 0 (0 = argmax, see above)."""
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0 (0 = argmax), got {temperature!r}")
    return float(temperature)


def temper(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """ℓ/τ; τ = 1 returns ``logits`` itself; τ = 0 the limit: ±inf by the sign of ℓ (0 stays 0).

    Meant for log-odds (bits): σ(±inf) ∈ {0, 1} is the argmax. For a softmax use
    :func:`draw_categorical`, which handles τ = 0 without infinities."""
    if temperature == 1:
        return logits
    if temperature == 0:
        return torch.where(logits == 0, logits, logits.sign() * math.inf)
    return logits / temperature


# -- draws -------------------------------------------------------------------------------------


class Draw(NamedTuple):
    """values: the drawn bits (..., c) float or tokens (...,) long; log_prob: (...) of each draw
    (summed over its c bits) under the tempered distribution — under the untempered one at
    τ = 0, where the argmax has probability 1 and would rank nothing (MaskGIT's confidence)."""

    values: torch.Tensor
    log_prob: torch.Tensor


def draw_bits(logits: torch.Tensor, *, temperature: float = 1.0, generator: torch.Generator | None = None,
              with_log_prob: bool = True, out: torch.Tensor | None = None) -> Draw:
    """Independent bits with P(1) = σ(ℓ/τ), logits (..., c); τ = 0: 1[ℓ > 0] (uniforms drawn all the same).
    ``with_log_prob=False``: log_prob is None (not computed; the same bits). ``out``: the bits are
    written there (a sampler's output slice: no allocation per step), the same numbers."""
    if temperature == 0:
        uniform(logits.shape, generator, logits.device, logits.dtype)  # keep the generator's stream aligned
        bits = (logits > 0).to(logits.dtype) if out is None else torch.gt(logits, 0, out=out)
    else:
        logits = temper(logits, temperature)
        bits = bernoulli(torch.sigmoid(logits), generator=generator, out=out)
    if not with_log_prob:
        return Draw(bits, None)
    log_prob = -torch.nn.functional.binary_cross_entropy_with_logits(logits, bits, reduction="none").sum(-1)
    return Draw(bits, log_prob)


def top_k_logits(logits: torch.Tensor, top_k: int | None) -> torch.Tensor:
    """logits (..., K) with all but the k largest set to −inf (ties at the k-th value are kept)."""
    if top_k is None:
        return logits
    if not 1 <= top_k <= logits.shape[-1]:
        raise ValueError(f"top_k must lie in [1, {logits.shape[-1]}] (the number of tokens), got {top_k}")
    kth = logits.topk(top_k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, -math.inf)


def draw_categorical(logits: torch.Tensor, *, temperature: float = 1.0, top_k: int | None = None,
                     generator: torch.Generator | None = None, with_log_prob: bool = True) -> Draw:
    """Tokens (...,) long from softmax(ℓ/τ) over the last axis, restricted to the ``top_k`` most
    likely when given; τ = 0: the argmax (uniforms drawn all the same).

    Gumbel-max (argmax of log-softmax + Gumbel noise, the noise from our own uniforms): an exact
    draw, and a −inf logit (cut by top-k) can never win."""
    logits = top_k_logits(logits, top_k)
    exponential = -torch.log(uniform(logits.shape, generator, logits.device).clamp(min=1e-20))
    if temperature == 0:
        log_probs = logits.log_softmax(-1)
        tokens = logits.argmax(-1)
    else:
        log_probs = (logits / temperature).log_softmax(-1)
        gumbel = -torch.log(exponential.clamp(min=1e-20))
        tokens = (log_probs + gumbel).argmax(-1)
    return Draw(tokens, log_probs.gather(-1, tokens[..., None])[..., 0] if with_log_prob else None)


def draw(logits: torch.Tensor, *, bits: bool, temperature: float = 1.0, top_k: int | None = None,
         generator: torch.Generator | None = None, with_log_prob: bool = True) -> Draw:
    """:func:`draw_bits` (``bits``: logits (..., c) of independent bits) or :func:`draw_categorical`.
    ``with_log_prob=False`` skips :attr:`Draw.log_prob` (None) for a sampler that never reads it."""
    if bits:
        if top_k is not None:
            raise ValueError(f"top_k applies to categorical codes only, got top_k={top_k} for bits")
        return draw_bits(logits, temperature=temperature, generator=generator, with_log_prob=with_log_prob)
    return draw_categorical(logits, temperature=temperature, top_k=top_k, generator=generator, with_log_prob=with_log_prob)


# -- classifier-free guidance ------------------------------------------------------------------


def check_guidance(guidance: float, labels: torch.Tensor | None) -> None:
    if guidance != 0 and labels is None:
        raise ValueError(f"classifier-free guidance needs labels (and a prior built with num_classes); got guidance={guidance} without labels")


def with_null_labels(labels: torch.Tensor, null_class: int) -> torch.Tensor:
    """(2B,): the labels, then B null labels — the batch layout :func:`combine_guided` splits."""
    return torch.cat([labels, torch.full_like(labels, null_class)])


def combine_guided(logits: torch.Tensor, guidance: float, *, log_softmax: bool = False) -> torch.Tensor:
    """ℓ = (1 + w) ℓ_cond − w ℓ_uncond from logits (2B, ...) of [conditional; unconditional] passes
    (Ho & Salimans 2022, https://arxiv.org/abs/2207.12598). ``log_softmax``: guide a categorical's
    log-probabilities over the last axis (bits' logits are log-odds already)."""
    cond, uncond = logits.chunk(2)
    if log_softmax:
        cond, uncond = cond.log_softmax(-1), uncond.log_softmax(-1)
    return (1 + guidance) * cond - guidance * uncond


def guided_logits(logits_fn: Callable[..., torch.Tensor], inputs: tuple, labels: torch.Tensor | None, guidance: float,
                  *, null_class: int | None, log_softmax: bool = False) -> torch.Tensor:
    """``logits_fn(*inputs, labels)`` guided with weight w: w = 0 is one conditional pass (exactly
    ``logits_fn(*inputs, labels)``); otherwise one pass on a doubled batch — every tensor in
    ``inputs`` repeated, labels followed by the null class — combined by :func:`combine_guided`."""
    if guidance == 0:
        return logits_fn(*inputs, labels)
    doubled = tuple(None if x is None else torch.cat([x, x]) for x in inputs)
    return combine_guided(logits_fn(*doubled, with_null_labels(labels, null_class)), guidance, log_softmax=log_softmax)


# -- loop exits without a host-device sync --------------------------------------------------------


class LaggedFlag:
    """Reads a 0-d bool device tensor that, once True, stays True (e.g. "every token revealed")
    without making the host wait for the device.

    On CPU the value is read directly (there is no device to wait for). On CUDA each call
    starts a non-blocking copy of the flag into pinned host memory and answers with the most
    recent copy that has already arrived (an event query, not a wait), so a True is seen a
    step or two late: a loop that stops on it runs the same iterations as one that stopped at
    once, plus at most a few that must change nothing. Other devices read directly (a sync)."""

    def __init__(self, device):
        self.device = torch.device(device)
        self.pending: list = []  # (host copy, event), oldest first

    def __call__(self, flag: torch.Tensor) -> bool:
        if self.device.type != "cuda":
            return bool(flag)
        seen = False
        while self.pending and self.pending[0][1].query():
            host, _ = self.pending.pop(0)
            seen = seen or bool(host)
        if not seen:
            host = torch.empty((), dtype=torch.bool, pin_memory=True)
            host.copy_(flag, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self.pending.append((host, event))
        return seen


# -- mask schedules (absorbing diffusion), pure functions of t -----------------------------------


def mask_rate(t, timesteps: int):
    """γ(t) = t/T: the probability that a token is masked at step t (Austin et al. 2021's absorbing
    process, https://arxiv.org/abs/2107.03006); t an int, float or tensor of steps in [0, T]."""
    return t / timesteps


def reveal_prob(t: float, s: float) -> float:
    """P(a token masked at t is unmasked by s < t) = (γ(t) − γ(s))/γ(t) = (t − s)/t."""
    return (t - s) / t


def masked_count(unknown: torch.Tensor, s: float, timesteps: int) -> torch.Tensor:
    """round(U·γ(s)) (long): how many of U unknown tokens stay masked at s when revealing a fixed
    number per step (MaskGIT's confidence order with the linear schedule)."""
    return torch.round(unknown * s / timesteps).long()


def sampling_grid(timesteps: int, steps: int) -> torch.Tensor:
    """(steps + 1,) long, strictly decreasing from T to 0: round(linspace(T, 0, S + 1)).
    Consecutive values of linspace differ by T/S >= 1, so rounding keeps them distinct; S = T
    gives every step. The network at grid point t sees time t/T (the diffusion priors' grid)."""
    if not isinstance(steps, int) or not 1 <= steps <= timesteps:
        raise ValueError(f"steps must be an int in [1, {timesteps}] (the training T), got {steps!r}")
    return torch.linspace(timesteps, 0, steps + 1, dtype=torch.float64).round().long()


def time_grid(timesteps: int, steps: int) -> list[float]:
    """``steps + 1`` float times T·k/S for k = S..0: an even grid from T down to 0."""
    return [timesteps * k / steps for k in range(steps, -1, -1)]
