"""Binary (Bernoulli) latent space of Binary Latent Diffusion (Wang et al., CVPR 2023,
https://arxiv.org/abs/2304.04820), docs/method.md §1.

The encoder gives c logits per position; y = sigmoid(logits). While training a code is sampled,
z ~ Bernoulli(y), and the straight-through estimator z~ = sg(z) + y - sg(y) carries the gradient
to y (forward value z, backward identity). The decoder sees a learned *bias-free* linear map of
z~: each bit that is on adds one learned vector (the "binary codebook" view).

``deterministic=True`` replaces the draw by the threshold z = 1[y > 1/2] in training too (the
same straight-through gradient), which isolates the effect of Bernoulli sampling (docs/method.md §9.4).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from discrete_priors.latents.base import CodeSpec, LatentOutput, LatentSpace

ENCODE_MODES = ("deterministic", "sample", "probs")
EVAL_CODES = ("deterministic", "sample")


def binary_entropy_bits(p: torch.Tensor) -> torch.Tensor:
    """Entropy in bits of Bernoulli(p), elementwise, with 0 log 0 = 0."""
    p = p.clamp(0.0, 1.0)
    return -(torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p)) / torch.log(torch.tensor(2.0))


def bit_statistics(codes: torch.Tensor, probs: torch.Tensor | None = None) -> dict:
    """Usage statistics of a batch of binary codes ``(B, N, c)``.

    bit_entropy: mean over the c bit channels of the entropy (bits) of that channel's on-rate over
    the batch and positions (1 = every bit used half the time, 0 = constant bits).
    dead_bits:   fraction of channels that are constant over the whole batch.
    mean_prob:   mean Bernoulli probability (when ``probs`` is given).

    Values are detached 0-d float tensors on the codes' device (no host-device sync in a
    training step; the trainer averages them over its log window): ``float(...)`` to read one.
    """
    codes, probs = codes.detach(), None if probs is None else probs.detach()
    on_rate = codes.float().mean(dim=(0, 1))
    stats = {
        "bit_entropy": binary_entropy_bits(on_rate).mean(),
        "dead_bits": ((on_rate == 0) | (on_rate == 1)).float().mean(),
    }
    if probs is not None:
        stats["mean_prob"] = probs.float().mean()
    return stats


class BinaryLatent(LatentSpace):
    """Bernoulli latent with a straight-through sampled code.

    bits:           c, bits per latent position (the encoder outputs c logits).
    embed_dim:      channels the decoder receives (default ``bits``): z~ -> W z~, W without bias.
    eval_code:      code used by ``forward`` in eval mode: ``deterministic`` (1[y > 0.5]) or ``sample``.
    entropy_weight: optional regulariser (off by default) that pushes each bit channel's batch
                    on-rate towards 1/2: ``entropy_weight * (1 - mean_j H(mean y_j))``.
    deterministic:  train on the threshold 1[y > 1/2] instead of a Bernoulli draw (straight-through
                    as before). The codes are then not draws from y: ``has_probs`` is False, and
                    ``encode`` refuses ``sample`` and ``probs`` (a cache cannot resample them).
    """

    kind = "binary"

    def __init__(self, *, bits: int = 32, embed_dim: int | None = None, eval_code: str = "deterministic",
                 entropy_weight: float = 0.0, deterministic: bool = False):
        super().__init__()
        if bits < 1:
            raise ValueError(f"bits must be a positive integer, got {bits}")
        assert eval_code in EVAL_CODES, f"unknown eval_code {eval_code!r}, expected one of {EVAL_CODES}"
        if entropy_weight < 0:
            raise ValueError(f"entropy_weight must be >= 0, got {entropy_weight}")
        if deterministic and eval_code != "deterministic":
            raise ValueError("deterministic=True trains on thresholded codes, so eval_code must be 'deterministic', "
                             f"got {eval_code!r}")
        self.bits = bits
        self.deterministic = bool(deterministic)
        self.eval_code = eval_code
        self.entropy_weight = entropy_weight
        self.encoder_channels = bits
        self.decoder_channels = embed_dim or bits
        # No bias: the all-zero code maps to the zero vector, each bit adds its own column.
        self.embed = nn.Conv2d(bits, self.decoder_channels, kernel_size=1, bias=False)

    @property
    def has_probs(self) -> bool:
        return not self.deterministic

    def code_spec(self, grid: tuple[int, int]) -> CodeSpec:
        return CodeSpec(kind="binary", grid=grid, channels=self.bits)

    def forward(self, h: torch.Tensor, *, generator: torch.Generator | None = None) -> LatentOutput:
        """h: (B, bits, h, w) logits -> decoder input (B, embed_dim, h, w), codes (B, N, bits)."""
        self._check_input(h)
        probs = torch.sigmoid(h)
        if (self.training and not self.deterministic) or self.eval_code == "sample":
            code = torch.bernoulli(probs.detach(), generator=generator)
        else:
            code = (probs.detach() > 0.5).to(probs.dtype)
        straight_through = code + probs - probs.detach()
        decoder_input = self.embed(straight_through)
        codes = rearrange(code, "b c h w -> b (h w) c")
        loss = h.new_zeros(())
        if self.entropy_weight > 0:
            channel_rate = probs.mean(dim=(0, 2, 3))
            loss = self.entropy_weight * (1 - binary_entropy_bits(channel_rate).mean())
        stats = bit_statistics(codes, probs)
        return LatentOutput(decoder_input, codes, loss, stats)

    @torch.no_grad()
    def encode(self, h: torch.Tensor, *, mode: str = "deterministic", generator: torch.Generator | None = None) -> torch.Tensor:
        """h: (B, bits, h, w) logits -> (B, N, bits): codes in {0, 1} (``deterministic``: 1[y > 0.5];
        ``sample``: Bernoulli(y)) or the probabilities y in (0, 1) (``probs``)."""
        assert mode in ENCODE_MODES, f"unknown binary encode mode {mode!r}, expected one of {ENCODE_MODES}"
        if self.deterministic and mode != "deterministic":
            raise ValueError(f"this binary latent was trained with deterministic=True (thresholded codes, no Bernoulli "
                             f"sampling): expected mode 'deterministic', got {mode!r}")
        self._check_input(h)
        probs = torch.sigmoid(h.float())
        if mode == "deterministic":
            out = (probs > 0.5).float()
        elif mode == "sample":
            out = torch.bernoulli(probs, generator=generator)
        else:
            out = probs
        return rearrange(out, "b c h w -> b (h w) c")

    def decode_codes(self, codes: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """codes: (B, N, bits) in {0, 1} (probabilities also accepted: the map is linear) ->
        (B, embed_dim, h, w)."""
        if codes.dim() != 3 or codes.shape[-1] != self.bits or codes.shape[1] != grid[0] * grid[1]:
            raise ValueError(f"expected binary codes of shape (B, {grid[0] * grid[1]}, {self.bits}), got {tuple(codes.shape)}")
        x = rearrange(codes.to(self.embed.weight.dtype), "b (h w) c -> b c h w", h=grid[0], w=grid[1])
        return self.embed(x)

    def _check_input(self, h: torch.Tensor) -> None:
        if h.dim() != 4 or h.shape[1] != self.bits:
            raise ValueError(f"expected encoder output of shape (B, {self.bits}, h, w), got {tuple(h.shape)}")


__all__ = ["BinaryLatent", "binary_entropy_bits", "bit_statistics"]
