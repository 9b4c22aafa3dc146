"""A small binary code distribution whose exact probability table is known — for learning tests.

Codes live on 3 positions x 4 bits (grid (1, 3), c = 4): 12 bits, 4,096 states, few enough to
enumerate. The distribution is a mixture of K random "patterns" (each a full code), every bit of
the chosen pattern independently flipped with probability ``flip``:

    p(z) = sum_j  weight_j * flip^d(z, m_j) * (1 - flip)^(12 - d(z, m_j)),   d = Hamming distance.

Bits are strongly correlated (a prior that models bits independently cannot fit it), yet the
table is exact, so a sampler's total-variation distance to the truth can be measured. The
component index doubles as a class label for class-conditional tests.

Usage::

    dist = make_synthetic()                                  # fixed seed -> fixed distribution
    codes, labels = sample_synthetic(dist, 512, generator=torch.Generator().manual_seed(0))
    tv = total_variation(codes, dist.table)                  # 0 = perfect, 1 = disjoint
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from einops import rearrange

from discrete_priors.latents.base import CodeSpec


class SyntheticCodes(NamedTuple):
    """spec: the binary CodeSpec; patterns: (K, N, c) in {0,1}; weights: (K,) summing to 1;
    flip: per-bit noise; table: (2**(N*c),) float64 exact p(z), indexed by :func:`code_index`;
    class_tables: (K, 2**(N*c)) float64 p(z | component j)."""

    spec: CodeSpec
    patterns: torch.Tensor
    weights: torch.Tensor
    flip: float
    table: torch.Tensor
    class_tables: torch.Tensor


def all_codes(spec: CodeSpec) -> torch.Tensor:
    """Every code of a (small) binary spec: (2**(N*c), N, c) float in {0,1}, row i has index i."""
    bits = spec.num_positions * spec.channels
    assert bits <= 20, f"refusing to enumerate 2**{bits} codes"
    index = torch.arange(2**bits)
    flat = (index[:, None] >> torch.arange(bits - 1, -1, -1)) & 1  # most significant bit first
    return rearrange(flat.float(), "s (n c) -> s n c", n=spec.num_positions)


def code_index(codes: torch.Tensor) -> torch.Tensor:
    """codes: (B, N, c) in {0,1} -> (B,) long index into the table (row-major, MSB first)."""
    flat = rearrange(codes, "b n c -> b (n c)").long()
    powers = 2 ** torch.arange(flat.shape[1] - 1, -1, -1, device=flat.device)
    return (flat * powers).sum(-1)


def make_synthetic(*, seed: int = 0, grid: tuple[int, int] = (1, 3), channels: int = 4, components: int = 4, flip: float = 0.1) -> SyntheticCodes:
    """Draw K random patterns and mixture weights from ``seed`` and tabulate p(z) exactly."""
    spec = CodeSpec(kind="binary", grid=grid, channels=channels)
    gen = torch.Generator().manual_seed(seed)
    patterns = torch.randint(0, 2, (components, *spec.shape), generator=gen).float()
    # Weights bounded away from 0 so every component shows up in a few hundred samples.
    weights = 0.5 + torch.rand(components, generator=gen, dtype=torch.float64)
    weights = weights / weights.sum()
    states = all_codes(spec)  # (S, N, c)
    distance = (states[None] != patterns[:, None]).flatten(2).sum(-1).double()  # (K, S)
    bits = spec.num_positions * spec.channels
    class_tables = flip**distance * (1 - flip) ** (bits - distance)
    table = (weights[:, None] * class_tables).sum(0)
    return SyntheticCodes(spec, patterns, weights.float(), flip, table, class_tables)


def sample_synthetic(dist: SyntheticCodes, n: int, *, generator: torch.Generator, labels: torch.Tensor | None = None):
    """n codes (n, N, c) and their component labels (n,) long. With ``labels`` given, sample
    those components (class-conditional data); otherwise draw them from the mixture weights."""
    if labels is None:
        labels = torch.multinomial(dist.weights, n, replacement=True, generator=generator)
    flips = torch.rand((n, *dist.spec.shape), generator=generator) < dist.flip
    codes = (dist.patterns[labels] + flips.float()) % 2
    return codes, labels


def empirical_table(samples: torch.Tensor, num_states: int) -> torch.Tensor:
    """samples: (B, N, c) in {0,1} -> (num_states,) float64 empirical frequencies."""
    counts = torch.bincount(code_index(samples).cpu(), minlength=num_states).double()
    return counts / counts.sum()


def total_variation(samples: torch.Tensor, table: torch.Tensor) -> float:
    """TV distance ½ Σ_z |p̂(z) − p(z)| between the empirical law of ``samples`` (B, N, c)
    and the exact ``table``. Even perfect samples give TV > 0 (sampling noise): compare with
    :func:`noise_floor`."""
    return 0.5 * (empirical_table(samples, table.numel()) - table).abs().sum().item()


def noise_floor(table: torch.Tensor, n: int, *, generator: torch.Generator, repeats: int = 8) -> float:
    """Mean TV of n exact draws from ``table`` — what a perfect sampler scores with n samples."""
    tvs = []
    for _ in range(repeats):
        idx = torch.multinomial(table.float(), n, replacement=True, generator=generator)
        counts = torch.bincount(idx, minlength=table.numel()).double()
        tvs.append(0.5 * (counts / n - table).abs().sum().item())
    return sum(tvs) / len(tvs)


def independent_bits_table(table: torch.Tensor, spec: CodeSpec) -> torch.Tensor:
    """The best factorised (independent bits) approximation: product of the true bit marginals."""
    states = rearrange(all_codes(spec), "s n c -> s (n c)").double()
    marginal = (table[:, None] * states).sum(0)  # p(bit_i = 1)
    return torch.where(states.bool(), marginal, 1 - marginal).prod(-1)
