"""The README's "adding a latent space" how-to, proven: a latent space defined in this test
module (deterministic sign bits with a straight-through sigmoid gradient) is registered with one
call and passes the whole latent contract of tests/test_latent_contract.py through one ``CASES``
line — including serving the shared autoencoder backbone."""

import torch
from einops import rearrange
from torch import nn

from discrete_priors.latents import register_latent
from discrete_priors.latents.base import CodeSpec, LatentOutput, LatentSpace
from tests.test_latent_contract import *  # noqa: F403  the contract tests and their parametrisation


class SignLatent(LatentSpace):
    """codes z = 1[h > 0] (B, N, bits); the decoder sees W z̃ with z̃ = z + σ(h) − sg(σ(h))."""

    kind = "binary"

    def __init__(self, *, bits: int = 4):
        super().__init__()
        self.bits = self.encoder_channels = self.decoder_channels = bits
        self.to_decoder = nn.Conv2d(bits, bits, 1, bias=False)

    def code_spec(self, grid):
        return CodeSpec(kind="binary", grid=grid, channels=self.bits)

    def forward(self, h, *, generator=None):
        codes = (h > 0).to(h.dtype)
        probs = torch.sigmoid(h)
        straight_through = codes + probs - probs.detach()
        return LatentOutput(self.to_decoder(straight_through), rearrange(codes, "b c h w -> b (h w) c").detach(),
                            h.new_zeros(()), {})

    @torch.no_grad()
    def encode(self, h, *, mode="deterministic", generator=None):
        assert mode == "deterministic", f"SignLatent encodes deterministically only, got mode {mode!r}"
        return rearrange((h > 0).to(h.dtype), "b c h w -> b (h w) c")

    def decode_codes(self, codes, grid):
        return self.to_decoder(rearrange(codes, "b (h w) c -> b c h w", h=grid[0], w=grid[1]))


register_latent("sign-howto", SignLatent, replace=True)
CASES = [("sign-howto", dict(bits=4))]


def test_register_latent_refuses_taken_names_and_non_latent_classes():
    import pytest

    from discrete_priors.latents import LATENTS, build_latent, unregister_latent

    with pytest.raises(ValueError, match="already registered"):
        register_latent("binary", SignLatent)
    with pytest.raises(TypeError, match="LatentSpace subclass"):
        register_latent("not-a-latent", dict)
    register_latent("sign-temp", SignLatent)
    assert isinstance(build_latent("sign-temp", bits=2), SignLatent)
    unregister_latent("sign-temp")
    assert "sign-temp" not in LATENTS
    with pytest.raises(ValueError, match="unknown latent space 'sign-temp'"):
        build_latent("sign-temp")
