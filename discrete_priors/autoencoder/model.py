"""The autoencoder: encoder -> latent space (binary, VQ or continuous) -> decoder, one backbone for
every latent space so reconstruction is compared at matched architecture (docs/method.md §1).

Images enter and leave in [0, 1]; the networks work in [-1, 1] internally (x -> 2x - 1 before the
encoder, (y + 1) / 2 after the decoder). ``decode`` / ``reconstruct`` clamp to [0, 1]; the training
loss sees the unclamped output so the gradient does not vanish outside the range.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from discrete_priors.autoencoder.losses import (
    RECON_LOSSES,
    PerceptualLoss,
    adaptive_weight,
    hinge_discriminator_loss,
    hinge_generator_loss,
    reconstruction_loss,
)
from discrete_priors.autoencoder.adversarial import AdversarialTraining
from discrete_priors.autoencoder.networks import Decoder, Encoder, PatchDiscriminator, default_disc_layers
from discrete_priors.latents import LATENTS, CodeSpec, build_latent
from discrete_priors.training import LossOutput


class AELoss(NamedTuple):
    """loss: scalar to minimise; terms: named detached scalars; recon: (B, C, H, W) detached
    reconstruction on the [0, 1] scale, not clamped (it is what the discriminator is shown; clamp
    it to display it)."""

    loss: torch.Tensor
    terms: dict
    recon: torch.Tensor


class Autoencoder(nn.Module):
    """Convolutional autoencoder with a pluggable latent space.

    image_channels, image_size: input images (B, image_channels, image_size, image_size) in [0, 1].
    latent:          ``{"kind": name, **kwargs of that latent space}``, name in ``latents.LATENTS``
                     (binary, vq, continuous, lfq, bsq, fsq).
    downsample:      k, a power of 2; the latent grid is image_size / k on each side.
    width, channel_mult, num_res_blocks, attention: backbone; ``len(channel_mult)`` must be
                     log2(k) + 1 (one width per resolution); ``attention`` adds self-attention at the
                     lowest resolution.
    recon_loss:      ``l1`` or ``mse`` (mean per pixel, on [0, 1] images).
    perceptual_weight, perceptual_weights_path, perceptual_arch: LPIPS-style loss on a VGG net loaded
                     from a local file (only read when training with ``perceptual_weight > 0``; encoding
                     and decoding never need it).
    adversarial_weight, disc_start, disc_width, disc_layers: PatchGAN hinge loss, scaled by the
                     adaptive weight and by ``adversarial_weight``, from step ``disc_start`` on.
    """

    def __init__(self, *, image_channels: int = 1, image_size: int = 16, latent: dict | None = None,
                 downsample: int = 4, width: int = 32, channel_mult=(1, 2, 2), num_res_blocks: int = 1,
                 attention: bool = False, norm_groups: int = 32, dropout: float = 0.0, recon_loss: str = "l1",
                 perceptual_weight: float = 0.0, perceptual_weights_path: str | None = None,
                 perceptual_arch: str = "vgg16", adversarial_weight: float = 0.0, disc_start: int = 0,
                 disc_width: int = 64, disc_layers: int | None = None, adaptive_weight_max: float = 1e4):
        super().__init__()
        latent = dict(latent or {"kind": "binary", "bits": 32})
        channel_mult = [int(m) for m in channel_mult]
        if "kind" not in latent or latent["kind"] not in LATENTS:
            raise ValueError(f"latent must be a dict with 'kind' in {sorted(LATENTS)}, got {latent!r}")
        if downsample < 1 or downsample & (downsample - 1):
            raise ValueError(f"downsample must be a power of 2, got {downsample}")
        if len(channel_mult) != int(math.log2(downsample)) + 1:
            raise ValueError(f"channel_mult needs log2(downsample) + 1 = {int(math.log2(downsample)) + 1} entries "
                             f"(one per resolution) for downsample={downsample}, got {channel_mult}")
        if image_size % downsample:
            raise ValueError(f"image_size {image_size} is not divisible by the downsampling factor {downsample}")
        assert recon_loss in RECON_LOSSES, f"unknown recon_loss {recon_loss!r}, expected one of {RECON_LOSSES}"
        if perceptual_weight > 0 and not perceptual_weights_path:
            raise ValueError("perceptual_weight > 0 needs perceptual_weights_path: a local VGG16 weights file "
                             "(nothing is downloaded)")
        self.config = {
            "image_channels": image_channels, "image_size": image_size, "latent": latent, "downsample": downsample,
            "width": width, "channel_mult": channel_mult, "num_res_blocks": num_res_blocks, "attention": attention,
            "norm_groups": norm_groups, "dropout": dropout, "recon_loss": recon_loss,
            "perceptual_weight": perceptual_weight, "perceptual_weights_path": perceptual_weights_path,
            "perceptual_arch": perceptual_arch, "adversarial_weight": adversarial_weight, "disc_start": disc_start,
            "disc_width": disc_width, "disc_layers": disc_layers, "adaptive_weight_max": adaptive_weight_max,
        }
        kwargs = {k: v for k, v in latent.items() if k != "kind"}
        self.latent = build_latent(latent["kind"], **kwargs)
        backbone = dict(width=width, channel_mult=channel_mult, num_res_blocks=num_res_blocks, attention=attention,
                        groups=norm_groups, dropout=dropout)
        self.encoder = Encoder(in_channels=image_channels, out_channels=self.latent.encoder_channels, **backbone)
        self.decoder = Decoder(in_channels=self.latent.decoder_channels, out_channels=image_channels, **backbone)
        self.image_channels, self.image_size, self.downsample = image_channels, image_size, downsample
        self.recon_loss, self.perceptual_weight = recon_loss, perceptual_weight
        self.adversarial_weight, self.disc_start = adversarial_weight, disc_start
        self.adaptive_weight_max = adaptive_weight_max
        self._perceptual: list[PerceptualLoss] = []  # built on first use; a list keeps it out of the state dict

    # -- shapes ---------------------------------------------------------------------------------
    @property
    def grid(self) -> tuple[int, int]:
        side = self.image_size // self.downsample
        return (side, side)

    @property
    def code_spec(self) -> CodeSpec:
        return self.latent.code_spec(self.grid)

    def _check_images(self, images: torch.Tensor) -> None:
        expected = (self.image_channels, self.image_size, self.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"expected images of shape (B, {', '.join(map(str, expected))}), got {tuple(images.shape)}")

    # -- inference ------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, images: torch.Tensor, mode: str = "deterministic", *,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """images (B, C, H, W) in [0, 1] -> codes in the library layout (see latents/base.py).
        mode: binary ``deterministic`` | ``sample`` | ``probs`` (``deterministic`` only when trained with
        ``deterministic=True``); VQ, FSQ, LFQ, BSQ ``deterministic``;
        continuous ``deterministic`` | ``sample``."""
        self._check_images(images)
        return self.latent.encode(self._encode_raw(images), mode=mode, generator=generator)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes in the library layout -> images (B, C, H, W) clamped to [0, 1]."""
        return self._decode_raw(self.latent.decode_codes(codes, self.grid)).clamp(0, 1)

    # Under autocast (training/precision.py) the networks run in bf16/fp16; what leaves them is cast
    # back to fp32, so latents, losses and metrics are computed in fp32.
    def _encode_raw(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images * 2 - 1).to(torch.promote_types(images.dtype, torch.float32))

    def _decode_raw(self, decoder_input: torch.Tensor) -> torch.Tensor:
        return (self.decoder(decoder_input).to(torch.promote_types(decoder_input.dtype, torch.float32)) + 1) / 2

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, mode: str = "deterministic", *,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """decode(encode(images)): (B, C, H, W) in [0, 1]."""
        return self.decode(self.encode(images, mode, generator=generator))

    # -- training (trainer contract docs/method.md §8.3) ----------------------------------------
    accepts_log_terms = True  # the trainer passes log_terms= (training/trainer.py)

    def forward(self, images: torch.Tensor, *, step: int = 0, generator: torch.Generator | None = None,
                discriminator: nn.Module | None = None, log_terms: bool = True) -> AELoss:
        """images (B, C, H, W) in [0, 1] -> AELoss. ``step`` and ``discriminator`` come from
        :meth:`training_hook` during training; the discriminator is only called here (its own
        update is the hook's business); the adversarial term starts at ``disc_start``.
        ``log_terms=False`` (the trainer's steps that are not logged) leaves out the terms that are
        only logged: psnr and the latent's statistics."""
        self._check_images(images)
        out = self.latent(self._encode_raw(images), generator=generator)
        recon = self._decode_raw(out.decoder_input)
        rec = reconstruction_loss(recon, images, self.recon_loss)
        loss = rec + out.loss
        terms = {"recon": rec.detach(), "latent_loss": out.loss.detach()}
        if log_terms:
            terms["psnr"] = psnr(recon.detach().clamp(0, 1), images).mean()
            # tensors stay tensors: float() of one would wait for the device
            terms |= {k: v.detach() if torch.is_tensor(v) else float(v) for k, v in out.stats.items()}
        perceptual_total = rec
        if self.perceptual_weight > 0:
            perceptual = self._perceptual_loss(images)(recon, images).mean()
            loss = loss + self.perceptual_weight * perceptual
            perceptual_total = rec + self.perceptual_weight * perceptual
            terms["perceptual"] = perceptual.detach()
        if discriminator is not None and self.adversarial_weight > 0 and step >= self.disc_start:
            gen_loss = hinge_generator_loss(discriminator(recon * 2 - 1).float())
            if torch.is_grad_enabled() and perceptual_total.requires_grad:
                weight = adaptive_weight(perceptual_total, gen_loss, self.decoder.last_layer,
                                         max_weight=self.adaptive_weight_max)
            else:  # evaluation under no_grad: no gradient norms to compare
                weight = torch.ones((), device=images.device)
            loss = loss + self.adversarial_weight * weight * gen_loss
            terms |= {"gen_adv": gen_loss.detach(), "adaptive_weight": weight}
        return AELoss(loss, terms, recon.detach())

    def _perceptual_loss(self, images: torch.Tensor) -> PerceptualLoss:
        if not self._perceptual:
            self._perceptual.append(PerceptualLoss(self.config["perceptual_weights_path"], arch=self.config["perceptual_arch"]))
        net = self._perceptual[0]
        if net.mean.device != images.device:
            self._perceptual[0] = net = net.to(images.device)
        return net

    def build_discriminator(self) -> PatchDiscriminator | None:
        """A PatchGAN for this image size, or None when the adversarial weight is 0."""
        if self.adversarial_weight <= 0:
            return None
        layers = self.config["disc_layers"] or default_disc_layers(self.image_size)
        return PatchDiscriminator(in_channels=self.image_channels, width=self.config["disc_width"], num_layers=layers,
                                  groups=self.config["norm_groups"])

    def training_hook(self) -> AdversarialTraining | None:
        """What the trainer needs beyond ``forward``: the discriminator's step when the adversarial
        weight is > 0, else None."""
        discriminator = self.build_discriminator()
        return None if discriminator is None else AdversarialTraining(discriminator)

    def discriminator_loss(self, discriminator: nn.Module, images: torch.Tensor, recon_detached: torch.Tensor,
                           step: int) -> LossOutput:
        """Hinge loss of the discriminator on real ``images`` vs ``recon_detached`` (both in [0, 1]).
        Before ``disc_start`` it is a constant 0 without a graph: the hook then skips the
        discriminator step (no zero-gradient AdamW step that would still apply weight decay and
        advance Adam's step count); an un-called DDP module expects no backward, so this is safe."""
        if step < self.disc_start:
            return LossOutput(torch.zeros((), device=images.device), {"disc": torch.zeros(())})
        real = discriminator(images * 2 - 1).float()  # fp32 losses under autocast
        fake = discriminator(recon_detached.detach() * 2 - 1).float()
        loss = hinge_discriminator_loss(real, fake)
        return LossOutput(loss, {"disc": loss.detach(), "logits_real": real.detach().mean(),
                                 "logits_fake": fake.detach().mean()})


def psnr(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for images in [0, 1]: 10 log10(1 / MSE), shape (B,)."""
    mse = (recon.float() - target.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


__all__ = ["AELoss", "Autoencoder", "psnr"]
