"""Networks built on x-transformers; they know nothing about noise or masking."""

from discrete_priors.nets.denoiser import Denoiser, denoiser_preset

__all__ = ["Denoiser", "denoiser_preset"]
