"""Statistics of a set of latent codes: how many bits they carry and how much of them is used.

Binary codes are (B, N, c) in {0, 1}; categorical (VQ) codes are (B, N) long indices in [0, K)
(the layouts of :mod:`discrete_priors.latents.base`). Entropies are of the empirical marginals
over the B codes given, so they need a set large enough to estimate them (B ≫ 1).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch


class BinaryCodeStats(NamedTuple):
    """bits_per_image: N·c, the code length.
    marginal_entropy_bits: Σ over bits of H(p_bit) — the information per image if bits were
      independent (an upper bound on the code's entropy).
    bit_entropy: mean per-bit entropy in bits, in [0, 1].
    bit_entropy_per_channel: (c,) mean over positions of each channel's per-bit entropy.
    dead_fraction: fraction of the N·c bits that are constant over the whole set.
    one_fraction: fraction of ones over all bits."""

    bits_per_image: int
    marginal_entropy_bits: float
    bit_entropy: float
    bit_entropy_per_channel: torch.Tensor
    dead_fraction: float
    one_fraction: float


class CategoricalCodeStats(NamedTuple):
    """bits_per_image: N·log2(K). perplexity: exp of the entropy (nats) of the usage histogram
    over all positions, in [1, K]. usage: fraction of the K codes used at least once.
    entropy_bits: that entropy in bits. histogram: (K,) counts."""

    bits_per_image: float
    perplexity: float
    usage: float
    entropy_bits: float
    histogram: torch.Tensor


def binary_entropy_bits(p: torch.Tensor) -> torch.Tensor:
    """H(p) = −p log2 p − (1−p) log2(1−p), with 0 log 0 = 0."""
    p = p.double()
    return -(torch.xlogy(p, p) + torch.xlogy(1 - p, 1 - p)) / math.log(2)


def binary_code_stats(codes: torch.Tensor) -> BinaryCodeStats:
    """codes: (B, N, c) float or bool in {0, 1} -> :class:`BinaryCodeStats`."""
    if codes.dim() != 3:
        raise ValueError(f"binary codes: expected shape (B, N, c), got {tuple(codes.shape)}")
    codes = codes.detach().double()
    if not ((codes == 0) | (codes == 1)).all():
        raise ValueError(f"binary codes: expected values in {{0, 1}}, got values {torch.unique(codes)[:8].tolist()}")
    _, n, c = codes.shape
    one_prob = codes.mean(dim=0)  # (N, c)
    entropy = binary_entropy_bits(one_prob)
    dead = (one_prob == 0) | (one_prob == 1)
    return BinaryCodeStats(
        bits_per_image=n * c,
        marginal_entropy_bits=entropy.sum().item(),
        bit_entropy=entropy.mean().item(),
        bit_entropy_per_channel=entropy.mean(dim=0),
        dead_fraction=dead.double().mean().item(),
        one_fraction=one_prob.mean().item(),
    )


def categorical_code_stats(codes: torch.Tensor, *, vocab_size: int) -> CategoricalCodeStats:
    """codes: (B, N) long indices in [0, vocab_size) -> :class:`CategoricalCodeStats`."""
    if codes.dim() != 2 or codes.dtype.is_floating_point:
        raise ValueError(f"categorical codes: expected an integer tensor of shape (B, N), got {tuple(codes.shape)} {codes.dtype}")
    if codes.numel() == 0:
        raise ValueError("categorical codes: got an empty set")
    if codes.min() < 0 or codes.max() >= vocab_size:
        raise ValueError(f"categorical codes: expected indices in [0, {vocab_size}), got [{int(codes.min())}, {int(codes.max())}]")
    histogram = torch.bincount(codes.detach().flatten().cpu(), minlength=vocab_size)
    probs = histogram.double() / histogram.sum()
    entropy_nats = -torch.xlogy(probs, probs).sum().item()
    return CategoricalCodeStats(
        bits_per_image=codes.shape[1] * math.log2(vocab_size),
        perplexity=math.exp(entropy_nats),
        usage=(histogram > 0).double().mean().item(),
        entropy_bits=entropy_nats / math.log(2),
        histogram=histogram,
    )
