"""Finite scalar quantisation (FSQ; Mentzer, Minnen, Agustsson & Tschannen, ICLR 2024,
https://arxiv.org/abs/2309.15505), docs/method.md §9.3.

The encoder gives d = len(levels) channels per position. Channel i is bounded to L_i values and
rounded:

    bound(z) = ĥ tanh(z + s) − o,   ĥ = (L − 1)(1 + ε) / 2,  o = ½ if L is even else 0,
                                     s = atanh(o / ĥ)          (so bound(0) = 0),
    k = round(bound(z)) ∈ {−⌊L/2⌋, …, ⌈L/2⌉ − 1},

the half-integer offset o giving an even L its L levels (L = 8: −4 … 3). The rounding is
straight-through (bound(z) + sg(k − bound(z))) and the decoder sees k / ⌊L/2⌋ ∈ [−1, 1].

Layout: one categorical token per position, the mixed-radix index Σ_i (k_i + ⌊L_i/2⌋) ∏_{j<i} L_j
(first channel least significant), vocabulary ∏ L_i — the implicit codebook of the paper, so the
categorical priors (absorbing, autoregressive) take FSQ codes as they take VQ's. No auxiliary
loss: every level is reachable and FSQ needs none (paper §3).
"""

from __future__ import annotations

import math

import torch
from einops import rearrange

from discrete_priors.latents.base import CodeSpec, LatentOutput, LatentSpace

MAX_VOCAB = 2**62  # int64 indices (the latent cache stores the smallest integer dtype that holds them)
SPARSE_STATS_VOCAB = 2**20  # larger vocabularies: usage from the distinct codes, not a (vocab,) histogram


def round_straight_through(x: torch.Tensor) -> torch.Tensor:
    """round(x) forward, identity gradient backward."""
    return x + (torch.round(x) - x).detach()


class FSQLatent(LatentSpace):
    """levels: L_1 … L_d (each >= 2); the code of a position is one index in [0, ∏ L_i).
    eps: ε of the bound (keeps tanh's open range from landing exactly on a rounding boundary)."""

    kind = "categorical"

    def __init__(self, *, levels=(8, 5, 5, 5), eps: float = 1e-3):
        super().__init__()
        levels = [int(v) for v in levels]
        if not levels or min(levels) < 2:
            raise ValueError(f"levels must be a non-empty list of integers >= 2, got {levels}")
        vocab = math.prod(levels)
        if vocab > MAX_VOCAB:
            raise ValueError(f"levels {levels} give a vocabulary of {vocab} codes, more than {MAX_VOCAB}: use fewer "
                             "or smaller levels")
        if not 0 < eps < 1:
            raise ValueError(f"eps must lie in (0, 1), got {eps}")
        self.levels, self.eps, self.vocab_size = levels, eps, vocab
        self.encoder_channels = self.decoder_channels = len(levels)
        size = torch.tensor(levels, dtype=torch.float64)
        half_width = torch.floor(size / 2)
        bound_scale = (size - 1) * (1 + eps) / 2
        offset = torch.where(size % 2 == 0, 0.5, 0.0)
        basis = torch.cumprod(torch.tensor([1] + levels[:-1], dtype=torch.long), 0)
        for name, value in (("half_width", half_width), ("bound_scale", bound_scale), ("offset", offset),
                            ("shift", torch.atanh(offset / bound_scale)), ("size", size)):
            self.register_buffer(name, value.float(), persistent=False)
        self.register_buffer("basis", basis, persistent=False)

    def code_spec(self, grid: tuple[int, int]) -> CodeSpec:
        return CodeSpec(kind="categorical", grid=grid, channels=1, vocab_size=self.vocab_size)

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """(..., d) -> (..., d) in (−⌊L/2⌋ − ½, ⌈L/2⌉ − ½) per channel (see module doc)."""
        return torch.tanh(z + self.shift) * self.bound_scale - self.offset

    def quantise(self, z: torch.Tensor) -> torch.Tensor:
        """(..., d) -> (..., d) integer levels k (as floats), straight-through."""
        return round_straight_through(self.bound(z))

    def levels_to_index(self, k: torch.Tensor) -> torch.Tensor:
        """(..., d) integer levels -> (...,) long mixed-radix index."""
        digits = (k.detach() + self.half_width).round().long()
        return (digits * self.basis).sum(-1)

    def index_to_levels(self, index: torch.Tensor) -> torch.Tensor:
        """(...,) long index -> (..., d) integer levels k (float)."""
        digits = (index[..., None] // self.basis) % self.size.long()
        return digits.float() - self.half_width

    def forward(self, h: torch.Tensor, *, generator: torch.Generator | None = None) -> LatentOutput:
        """h: (B, d, h, w) -> decoder input (B, d, h, w) in [−1, 1], codes (B, N) long."""
        self._check_input(h)
        b, _, height, width = h.shape
        k = self.quantise(rearrange(h, "b d h w -> (b h w) d"))
        index = self.levels_to_index(k)
        decoder_input = rearrange(k / self.half_width, "(b h w) d -> b d h w", b=b, h=height, w=width)
        return LatentOutput(decoder_input, rearrange(index, "(b n) -> b n", b=b), h.new_zeros(()), self.usage_stats(index))

    def usage_stats(self, index: torch.Tensor) -> dict:
        """perplexity (exp of the entropy of the code histogram, in [1, ∏ L]) and batch_usage (fraction
        of the ∏ L codes used) of ``index`` (any shape), 0-d tensors. Up to 2^20 codes from a
        bincount (no host-device sync); beyond, from the distinct codes (torch.unique syncs)."""
        if self.vocab_size <= SPARSE_STATS_VOCAB:
            counts = torch.bincount(index.reshape(-1), minlength=self.vocab_size).float()
        else:
            counts = torch.unique(index.reshape(-1), return_counts=True)[1].float()
        freq = counts / counts.sum().clamp_min(1)
        return {"perplexity": torch.exp(-torch.special.xlogy(freq, freq).sum()),
                "batch_usage": (counts > 0).float().sum() / self.vocab_size}

    @torch.no_grad()
    def encode(self, h: torch.Tensor, *, mode: str = "deterministic", generator: torch.Generator | None = None) -> torch.Tensor:
        """h: (B, d, h, w) -> (B, N) long indices (only ``deterministic``)."""
        if mode != "deterministic":
            raise ValueError(f"FSQ codes are deterministic: expected mode 'deterministic', got {mode!r}")
        self._check_input(h)
        return self.levels_to_index(self.quantise(rearrange(h.float(), "b d h w -> b (h w) d")))

    def decode_codes(self, codes: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """codes: (B, N) long -> (B, d, h, w) the normalised levels k / ⌊L/2⌋."""
        if codes.dim() != 2 or codes.shape[1] != grid[0] * grid[1] or codes.dtype.is_floating_point:
            raise ValueError(f"expected integer FSQ codes of shape (B, {grid[0] * grid[1]}), got {tuple(codes.shape)} {codes.dtype}")
        values = self.index_to_levels(codes.long()) / self.half_width
        return rearrange(values, "b (h w) d -> b d h w", h=grid[0], w=grid[1])

    def _check_input(self, h: torch.Tensor) -> None:
        if h.dim() != 4 or h.shape[1] != len(self.levels):
            raise ValueError(f"expected encoder output of shape (B, {len(self.levels)}, h, w), got {tuple(h.shape)}")


__all__ = ["FSQLatent", "round_straight_through"]
