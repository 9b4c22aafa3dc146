"""The contract every latent space passes.

Adding a latent space: write ``discrete_priors/latents/<name>.py`` with a ``LatentSpace``
subclass, add one line to ``LATENTS`` in ``discrete_priors/latents/__init__.py`` and ONE line to
``CASES`` below (registry name, small constructor kwargs). Every test here then runs on it.

Running the contract on a latent space defined elsewhere (e.g. a test module's dummy)::

    from discrete_priors.latents import register_latent
    from tests.test_latent_contract import *  # noqa: F403  the contract tests

    register_latent("dummy", DummyLatent)
    CASES = [("dummy", dict(bits=4))]  # read by pytest_generate_tests from *that* module
"""

import pytest
import torch

from discrete_priors.autoencoder import Autoencoder
from discrete_priors.latents import KINDS, LATENTS, LatentOutput, build_latent

# (registry name, small constructor kwargs)
CASES = [
    ("binary", dict(bits=6)),
    ("vq", dict(codebook_size=16, dim=4)),
    ("continuous", dict(dim=4)),
    ("continuous", dict(dim=4, kl_weight=1e-3)),
    ("binary", dict(bits=6, deterministic=True)),
    ("lfq", dict(bits=6, group_size=3)),
    ("bsq", dict(bits=6)),
    ("fsq", dict(levels=[4, 3, 5])),
]

GRID = (2, 3)
BATCH = 5


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        cases = getattr(metafunc.module, "CASES")
        metafunc.parametrize("case", cases, ids=[f"{name}-{i}" for i, (name, _) in enumerate(cases)])


def _build(case):
    name, kwargs = case
    return build_latent(name, **kwargs)


def _encoder_output(latent, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(BATCH, latent.encoder_channels, *GRID, generator=gen, requires_grad=True)


def test_contract_kind_and_code_spec(case):
    latent = _build(case)
    assert type(latent) is LATENTS[case[0]]
    assert latent.kind in KINDS
    spec = latent.code_spec(GRID)
    assert spec.kind == latent.kind and spec.grid == GRID
    assert spec.shape[0] == GRID[0] * GRID[1]
    assert latent.encoder_channels >= 1 and latent.decoder_channels >= 1


@pytest.mark.parametrize("training", [True, False])
def test_contract_forward_gives_valid_codes_and_decoder_input(case, training):
    latent = _build(case).train(training)
    h = _encoder_output(latent)
    out = latent(h, generator=torch.Generator().manual_seed(1))
    assert isinstance(out, LatentOutput)
    assert out.decoder_input.shape == (BATCH, latent.decoder_channels, *GRID)
    spec = latent.code_spec(GRID)
    spec.check(out.codes)
    assert out.codes.shape == (BATCH, *spec.shape)
    assert not out.codes.requires_grad
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    for key, value in out.stats.items():
        assert torch.isfinite(torch.as_tensor(value)).all(), key


def test_contract_gradient_reaches_the_encoder_output(case):
    latent = _build(case).train()
    h = _encoder_output(latent)
    out = latent(h, generator=torch.Generator().manual_seed(1))
    (out.decoder_input.square().sum() + out.loss).backward()
    assert torch.isfinite(h.grad).all()
    assert h.grad.abs().sum() > 0


def test_contract_decoding_the_encoded_codes_reproduces_the_eval_forward(case):
    """In eval mode the decoder input of ``forward`` is exactly what ``decode_codes`` makes of
    ``encode(mode="deterministic")``: the prior's samples are decoded the way training codes were."""
    latent = _build(case).eval()
    h = _encoder_output(latent).detach()
    codes = latent.encode(h, mode="deterministic")
    latent.code_spec(GRID).check(codes)
    out = latent(h)
    torch.testing.assert_close(codes, out.codes)
    torch.testing.assert_close(latent.decode_codes(codes, GRID), out.decoder_input, rtol=1e-5, atol=1e-5)


def test_contract_training_draws_are_reproducible_with_a_generator(case):
    latent = _build(case).train()
    h = _encoder_output(latent).detach()
    first = latent(h, generator=torch.Generator().manual_seed(3)).codes
    again = latent(h, generator=torch.Generator().manual_seed(3)).codes
    torch.testing.assert_close(first, again, rtol=0, atol=0)


def test_contract_serves_the_autoencoder_backbone(case):
    name, kwargs = case
    model = Autoencoder(image_channels=1, image_size=8, latent={"kind": name, **kwargs}, downsample=2,
                        channel_mult=[1, 2], width=8, norm_groups=4).eval()
    images = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    codes = model.encode(images)
    model.code_spec.check(codes)
    assert codes.shape == (3, *model.code_spec.shape)
    decoded = model.decode(codes)
    assert decoded.shape == images.shape and decoded.min() >= 0 and decoded.max() <= 1
    again = Autoencoder(**model.config)  # the config rebuilds it: the latent's kwargs are JSON
    assert type(again.latent) is type(model.latent)
