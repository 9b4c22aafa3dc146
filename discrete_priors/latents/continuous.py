"""Continuous latent space: a plain autoencoder bottleneck, or the KL-regularised Gaussian posterior
of a VAE (Kingma & Welling 2014, https://arxiv.org/abs/1312.6114) as used by latent diffusion
(Rombach et al. 2022, https://arxiv.org/abs/2112.10752) when ``kl_weight > 0``."""

from __future__ import annotations

import torch
from einops import rearrange

from discrete_priors.latents.base import CodeSpec, LatentOutput, LatentSpace

ENCODE_MODES = ("deterministic", "sample")


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) elementwise, in nats."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)


class ContinuousLatent(LatentSpace):
    """dim channels per position.

    kl_weight = 0: the encoder output *is* the code (encoder_channels = dim).
    kl_weight > 0: the encoder outputs mean and log-variance (encoder_channels = 2 * dim); training
    samples z = mean + exp(logvar / 2) * eps (reparameterisation), eval uses the mean, and the loss
    is ``kl_weight * KL`` averaged over batch, positions and channels (the same per-element
    normalisation as the autoencoder's reconstruction loss).
    """

    kind = "continuous"

    def __init__(self, *, dim: int = 8, kl_weight: float = 0.0, logvar_range: tuple[float, float] = (-30.0, 20.0)):
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim}")
        if kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {kl_weight}")
        self.dim, self.kl_weight = dim, kl_weight
        self.logvar_range = tuple(logvar_range)
        self.variational = kl_weight > 0
        self.encoder_channels = 2 * dim if self.variational else dim
        self.decoder_channels = dim

    def code_spec(self, grid: tuple[int, int]) -> CodeSpec:
        return CodeSpec(kind="continuous", grid=grid, channels=self.dim)

    def _split(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if h.dim() != 4 or h.shape[1] != self.encoder_channels:
            raise ValueError(f"expected encoder output of shape (B, {self.encoder_channels}, h, w), got {tuple(h.shape)}")
        if not self.variational:
            return h, None
        mean, logvar = h.chunk(2, dim=1)
        return mean, logvar.clamp(*self.logvar_range)

    def _sample(self, mean, logvar, generator):
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + (0.5 * logvar).exp() * noise

    def forward(self, h: torch.Tensor, *, generator: torch.Generator | None = None) -> LatentOutput:
        """h: (B, encoder_channels, h, w) -> decoder input (B, dim, h, w), codes (B, N, dim)."""
        mean, logvar = self._split(h)
        loss, stats = h.new_zeros(()), {}
        z = mean
        if self.variational:
            kl = gaussian_kl(mean, logvar).mean()
            loss = self.kl_weight * kl
            stats = {"kl": kl.detach(), "posterior_std": (0.5 * logvar).detach().exp().mean()}
            if self.training:
                z = self._sample(mean, logvar, generator)
        stats["code_std"] = mean.detach().std(correction=0)  # 0-d tensors: no host-device sync per step
        return LatentOutput(z, rearrange(z.detach(), "b c h w -> b (h w) c"), loss, stats)

    @torch.no_grad()
    def encode(self, h: torch.Tensor, *, mode: str = "deterministic", generator: torch.Generator | None = None) -> torch.Tensor:
        """-> (B, N, dim): the mean (``deterministic``) or a posterior sample (``sample``)."""
        assert mode in ENCODE_MODES, f"unknown continuous encode mode {mode!r}, expected one of {ENCODE_MODES}"
        mean, logvar = self._split(h)
        z = self._sample(mean, logvar, generator) if mode == "sample" and self.variational else mean
        return rearrange(z, "b c h w -> b (h w) c")

    def decode_codes(self, codes: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """codes: (B, N, dim) -> (B, dim, h, w)."""
        if codes.dim() != 3 or codes.shape[1:] != (grid[0] * grid[1], self.dim):
            raise ValueError(f"expected continuous codes of shape (B, {grid[0] * grid[1]}, {self.dim}), got {tuple(codes.shape)}")
        return rearrange(codes, "b (h w) c -> b c h w", h=grid[0], w=grid[1])


__all__ = ["ContinuousLatent", "gaussian_kl"]
