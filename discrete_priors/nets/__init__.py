"""Networks built on x-transformers; they know nothing about noise or masking. Their sizes come
from one table, :mod:`discrete_priors.nets.presets`."""

from discrete_priors.nets.denoiser import Denoiser
from discrete_priors.nets.presets import NETWORK_PRESETS, denoiser_preset, network_sizes

__all__ = ["Denoiser", "NETWORK_PRESETS", "denoiser_preset", "network_sizes"]
