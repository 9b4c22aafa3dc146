"""Autoencoder: one convolutional backbone, any latent space (binary, VQ, continuous)."""

from discrete_priors.autoencoder.adversarial import AdversarialTraining
from discrete_priors.autoencoder.losses import PerceptualLoss, adaptive_weight, reconstruction_loss
from discrete_priors.autoencoder.model import AELoss, Autoencoder, psnr
from discrete_priors.autoencoder.networks import Decoder, Encoder, PatchDiscriminator
from discrete_priors.autoencoder.presets import PRESETS, autoencoder_preset

__all__ = [
    "AELoss", "AdversarialTraining", "Autoencoder", "Decoder", "Encoder", "PRESETS", "PatchDiscriminator", "PerceptualLoss",
    "adaptive_weight", "autoencoder_preset", "psnr", "reconstruction_loss",
]
