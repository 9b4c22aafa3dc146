"""Latent spaces: binary (Bernoulli), VQ (categorical) and continuous, all behind one interface
(:class:`~discrete_priors.latents.base.LatentSpace`) so the same autoencoder backbone serves each."""

from discrete_priors.latents.base import KINDS, CodeSpec, LatentOutput, LatentSpace
from discrete_priors.latents.binary import BinaryLatent, binary_entropy_bits, bit_statistics
from discrete_priors.latents.continuous import ContinuousLatent, gaussian_kl
from discrete_priors.latents.vq import VQLatent, codebook_perplexity

# Names used in configs (``{"kind": "vq", ...}``); the code kind a prior sees is ``latent.kind``.
LATENTS = {"binary": BinaryLatent, "vq": VQLatent, "continuous": ContinuousLatent}


def build_latent(kind_name: str, **kwargs) -> LatentSpace:
    """``build_latent("binary", bits=32)``, ``build_latent("vq", codebook_size=512, dim=8)``,
    ``build_latent("continuous", dim=8, kl_weight=1e-6)``."""
    if kind_name not in LATENTS:
        raise ValueError(f"unknown latent space {kind_name!r}, expected one of {sorted(LATENTS)}")
    return LATENTS[kind_name](**kwargs)


__all__ = [
    "KINDS", "LATENTS", "BinaryLatent", "CodeSpec", "ContinuousLatent", "LatentOutput", "LatentSpace", "VQLatent",
    "binary_entropy_bits", "bit_statistics", "build_latent", "codebook_perplexity", "gaussian_kl",
]
