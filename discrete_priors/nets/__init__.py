"""Networks built on x-transformers; they know nothing about noise or masking. Their sizes come
from one table, :mod:`discrete_priors.nets.presets` (importable without x-transformers: the
networks are imported on first use of ``nets.Denoiser``)."""

from discrete_priors.nets.presets import NETWORK_PRESETS, denoiser_preset, network_sizes


def __getattr__(name: str):
    if name == "Denoiser":
        from discrete_priors.nets.denoiser import Denoiser

        return Denoiser
    raise AttributeError(f"module 'discrete_priors.nets' has no attribute {name!r}")


__all__ = ["Denoiser", "NETWORK_PRESETS", "denoiser_preset", "network_sizes"]
