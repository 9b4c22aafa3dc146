"""The latent-space interface every latent space implements, and the code spec priors check.

Code layout shared by the whole library (a prior sees only these):

* ``binary``      codes ``(B, N, c)`` float in {0, 1}: N latent positions, c bits each.
* ``categorical`` codes ``(B, N)`` long in ``[0, vocab_size)``: one codebook index per position.
* ``continuous``  codes ``(B, N, c)`` float.

N = h * w positions in raster order (``"b c h w -> b (h w) c"``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn

KINDS = ("binary", "categorical", "continuous")


@dataclass(frozen=True)
class CodeSpec:
    """What a latent space hands to a prior: its kind and the shape of one code.

    ``grid`` is the (h, w) layout of the N positions; ``channels`` is bits per position for
    ``binary``, the latent dimension for ``continuous`` and 1 for ``categorical``.
    """

    kind: str
    grid: tuple[int, int]
    channels: int
    vocab_size: int | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown latent kind {self.kind!r}, expected one of {KINDS}")
        if self.kind == "categorical" and not self.vocab_size:
            raise ValueError("a categorical code spec needs vocab_size")
        object.__setattr__(self, "grid", tuple(int(g) for g in self.grid))

    @property
    def num_positions(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one code, without the batch dimension."""
        if self.kind == "categorical":
            return (self.num_positions,)
        return (self.num_positions, self.channels)

    @property
    def bits(self) -> float:
        """Bits needed to store one code (float for categorical vocabularies not a power of 2)."""
        import math

        if self.kind == "binary":
            return float(self.num_positions * self.channels)
        if self.kind == "categorical":
            return self.num_positions * math.log2(self.vocab_size)
        return float(self.num_positions * self.channels * 16)  # stored as float16

    def to_dict(self) -> dict:
        return asdict(self) | {"grid": list(self.grid)}

    @classmethod
    def from_dict(cls, d: dict) -> "CodeSpec":
        return cls(kind=d["kind"], grid=tuple(d["grid"]), channels=d["channels"], vocab_size=d.get("vocab_size"))

    def check(self, codes: torch.Tensor, *, name: str = "codes") -> torch.Tensor:
        """Raise a ValueError naming the problem unless ``codes`` is a batch of valid codes."""
        if not isinstance(codes, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(codes).__name__}")
        expected = ("B",) + self.shape
        if codes.dim() != len(expected) or tuple(codes.shape[1:]) != self.shape:
            raise ValueError(f"{name}: expected shape {expected} for {self.kind} codes, got {tuple(codes.shape)}")
        if self.kind == "categorical":
            if codes.dtype.is_floating_point or codes.dtype == torch.bool:
                raise ValueError(f"{name}: expected integer token indices for categorical codes, got dtype {codes.dtype}")
            if codes.numel():
                low, high = torch.stack(torch.aminmax(codes.reshape(-1))).tolist()  # one host-device sync
                if low < 0 or high >= self.vocab_size:
                    raise ValueError(f"{name}: token indices must lie in [0, {self.vocab_size}), got range [{low}, {high}]")
            return codes
        if not codes.dtype.is_floating_point:
            raise ValueError(f"{name}: expected a floating-point tensor for {self.kind} codes, got dtype {codes.dtype}")
        # one host-device sync on valid codes (NaN and inf fail the binary test too); the
        # diagnosis of a bad batch may take more
        valid = ((codes == 0) | (codes == 1)).all() if self.kind == "binary" else torch.isfinite(codes).all()
        if codes.numel() and not bool(valid):
            if torch.isnan(codes).any() or torch.isinf(codes).any():
                raise ValueError(f"{name}: contains NaN or inf")
            bad = (codes != 0) & (codes != 1)
            values = torch.unique(codes[bad])[:5].tolist()
            raise ValueError(f"{name}: expected binary codes in {{0, 1}}, got other values such as {values}")
        return codes


class LatentOutput(NamedTuple):
    """What a latent space returns in the autoencoder's forward pass.

    decoder_input: (B, D, h, w) what the decoder sees (gradients flow to the encoder).
    codes:         the codes in the library layout (see module docstring), detached.
    loss:          scalar regulariser (commitment, KL, ...), 0 when there is none.
    stats:         named scalar diagnostics (perplexity, usage, bit entropy, ...).
    """

    decoder_input: torch.Tensor
    codes: torch.Tensor
    loss: torch.Tensor
    stats: dict


class LatentSpace(nn.Module):
    """Sits between encoder and decoder. Subclasses set ``kind`` and implement the methods below.

    ``encoder_channels``: channels the encoder must output; ``decoder_channels``: channels the
    decoder receives. Both are chosen by the latent space so every space fits the same backbone.
    """

    kind: str = ""
    encoder_channels: int
    decoder_channels: int
    # True when codes are draws from Bernoulli probabilities that ``encode(mode="probs")`` returns:
    # a latent cache then stores them and a prior may resample codes each step (binary, sampled)
    has_probs: bool = False

    def forward(self, h: torch.Tensor, *, generator: torch.Generator | None = None) -> LatentOutput:
        """h: (B, encoder_channels, h, w) encoder output."""
        raise NotImplementedError

    @torch.no_grad()
    def encode(self, h: torch.Tensor, *, mode: str = "deterministic", generator: torch.Generator | None = None) -> torch.Tensor:
        """Encoder output -> codes in the library layout. ``mode`` is space-specific
        (binary: ``deterministic`` | ``sample`` | ``probs``)."""
        raise NotImplementedError

    def decode_codes(self, codes: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Codes in the library layout -> (B, decoder_channels, h, w) decoder input."""
        raise NotImplementedError

    def code_spec(self, grid: tuple[int, int]) -> CodeSpec:
        raise NotImplementedError
