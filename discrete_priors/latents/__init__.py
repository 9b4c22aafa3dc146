"""Latent spaces: binary (Bernoulli, or thresholded with ``deterministic=True``), the sign
quantisers LFQ and BSQ (binary kind), VQ and FSQ (categorical) and continuous, all behind one
interface (:class:`~discrete_priors.latents.base.LatentSpace`) so the same autoencoder backbone
serves each."""

from discrete_priors.latents.base import KINDS, CodeSpec, LatentOutput, LatentSpace
from discrete_priors.latents.binary import BinaryLatent, binary_entropy_bits, bit_statistics
from discrete_priors.latents.bsq import BSQLatent
from discrete_priors.latents.continuous import ContinuousLatent, gaussian_kl
from discrete_priors.latents.fsq import FSQLatent
from discrete_priors.latents.lfq import LFQLatent
from discrete_priors.latents.vq import VQLatent, codebook_perplexity

# Names used in configs (``{"kind": "vq", ...}``); the code kind a prior sees is ``latent.kind``.
LATENTS = {"binary": BinaryLatent, "vq": VQLatent, "continuous": ContinuousLatent, "lfq": LFQLatent, "bsq": BSQLatent,
           "fsq": FSQLatent}


def register_latent(name: str, cls: type[LatentSpace], *, replace: bool = False) -> None:
    """Make ``cls`` buildable as ``build_latent(name, ...)`` and as an autoencoder's
    ``latent={"kind": name, ...}`` (e.g. a latent space defined in a test module or a user's
    package). Built-in names are refused unless ``replace``."""
    if not (isinstance(cls, type) and issubclass(cls, LatentSpace)):
        raise TypeError(f"register_latent({name!r}, ...): expected a LatentSpace subclass, got {cls!r}")
    if cls.kind not in KINDS:
        raise ValueError(f"{cls.__name__}.kind must be one of {KINDS} (the code layout priors see), got {cls.kind!r}")
    if name in LATENTS and not replace:
        raise ValueError(f"a latent space named {name!r} is already registered ({LATENTS[name].__name__}); "
                         "pick another name or pass replace=True")
    LATENTS[name] = cls


def unregister_latent(name: str) -> None:
    """Remove a latent space added with :func:`register_latent`."""
    if name not in LATENTS:
        raise KeyError(f"no latent space named {name!r}; registered: {sorted(LATENTS)}")
    del LATENTS[name]


def build_latent(kind_name: str, **kwargs) -> LatentSpace:
    """``build_latent("binary", bits=32)``, ``build_latent("vq", codebook_size=512, dim=8)``,
    ``build_latent("continuous", dim=8, kl_weight=1e-6)``."""
    if kind_name not in LATENTS:
        raise ValueError(f"unknown latent space {kind_name!r}, expected one of {sorted(LATENTS)}")
    return LATENTS[kind_name](**kwargs)


__all__ = [
    "KINDS", "LATENTS", "BSQLatent", "BinaryLatent", "CodeSpec", "ContinuousLatent", "FSQLatent", "LFQLatent", "LatentOutput", "LatentSpace", "VQLatent",
    "binary_entropy_bits", "bit_statistics", "build_latent", "codebook_perplexity", "gaussian_kl", "register_latent",
    "unregister_latent",
]
