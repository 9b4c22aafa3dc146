"""Shared pieces of the experiment runners: presets, and stages that are trained once and reused.

Layout of an experiment directory (``--out``)::

    <out>/ae/<latent-name>-seed<k>/        autoencoder runs (shared by every runner)
    <out>/latents/<latent-name>-seed<k>/   latent caches
    <out>/priors/<prior-variant>-seed<k>/  prior runs
    <out>/classifier/                      the feature extractor's cached classifier
    <out>/results.csv                      tidy rows of every runner (analysis/ reads only this)

Every stage is resumable: the trainer resumes from its last checkpoint, a finished run is not
retrained, and a (experiment, variant, seed) cell already in results.csv is skipped.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

from discrete_priors import metrics, pipeline
from discrete_priors.io import config_hash, read_json
from discrete_priors.results import append_rows, has_cell, make_rows


@dataclass(frozen=True)
class Preset:
    """Scale of a whole experiment. ``prior_recipes`` hold each prior's own best-known recipe;
    the network size (``net``) is shared by all priors so comparisons are at equal size."""

    name: str
    dataset: str = "digits"
    size: int | None = 16
    ae_preset: str = "cpu-digits"
    ae_steps: int = 2000
    ae_batch: int = 64
    ae_lr: float = 2e-3
    bits: int = 32
    net: str = "cpu"
    prior_steps: int = 4000
    prior_batch: int = 128
    prior_lr: float = 1e-3
    num_samples: int = 1000
    seeds: tuple[int, ...] = (0,)
    prior_recipes: dict = field(default_factory=lambda: {
        # Bernoulli diffusion: the paper's choices (residual target, mixture reverse on our maths),
        # 64 sampling steps of T = 256, codes resampled from the encoder's probabilities each step.
        "bernoulli": {"kwargs": {"parameterization": "residual", "timesteps": 256, "default_steps": 64},
                      "resample": True},
        # absorbing: the reweighted (1 - t/T) loss of Bond-Taylor et al., which trained better here
        # than the plain ELBO weighting at equal steps (see tests/test_absorbing.py notes); T steps.
        # Every prior sees the same data: codes resampled from the cached probabilities.
        "absorbing": {"kwargs": {"loss_weighting": "reweighted", "timesteps": 256}, "resample": True},
        # autoregressive: teacher forcing, one step per position.
        "autoregressive": {"kwargs": {}, "resample": True},
    })

    def hash(self) -> str:
        return config_hash(asdict(self))


PRESETS = {
    "smoke": Preset(name="smoke", ae_preset="tiny", ae_steps=60, ae_batch=32, net="tiny", prior_steps=60,
                    prior_batch=32, num_samples=64,
                    prior_recipes={
                        "bernoulli": {"kwargs": {"parameterization": "residual", "timesteps": 32, "default_steps": 8},
                                      "resample": True},
                        "absorbing": {"kwargs": {"loss_weighting": "reweighted", "timesteps": 32}, "resample": True},
                        "autoregressive": {"kwargs": {}, "resample": True}}),
    "cpu": Preset(name="cpu"),
    "paper": Preset(name="paper", dataset="image-folder", size=256, ae_preset="paper", ae_steps=400_000, ae_batch=32,
                    ae_lr=1e-4, bits=32, net="paper", prior_steps=500_000, prior_batch=256, prior_lr=1e-4,
                    num_samples=50_000),
}


def get_preset(name: str, **overrides) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}, expected one of {sorted(PRESETS)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(PRESETS[name], **overrides)


def train_config(*, steps: int, batch: int, lr: float, seed: int, ema_decay: float = 0.999) -> dict:
    """Priors keep an EMA of weights; autoencoders do not (an averaged VQ encoder no longer
    matches its codebook: 26.3 dB with EMA vs 34.4 dB without on digits)."""
    return {"steps": steps, "batch_size": batch, "lr": lr, "warmup_steps": min(100, steps // 10), "ema_decay": ema_decay,
            "checkpoint_every": max(min(1000, steps // 4), 1), "seed": seed, "schedule": "cosine", "min_lr_ratio": 0.1}


def ensure_autoencoder(preset: Preset, out: Path, *, latent: dict, name: str, seed: int, data_dir=None) -> Path:
    run = out / "ae" / f"{name}-seed{seed}"
    pipeline.train_autoencoder(out=run, dataset=preset.dataset, size=preset.size, data_dir=data_dir, latent=latent,
                               preset=preset.ae_preset,
                               train_config=train_config(steps=preset.ae_steps, batch=preset.ae_batch, lr=preset.ae_lr,
                                                         seed=seed, ema_decay=0.0))
    return run


def ensure_latents(preset: Preset, out: Path, *, ae_dir: Path, name: str, seed: int, data_dir=None) -> Path:
    latents = out / "latents" / f"{name}-seed{seed}"
    fingerprint = pipeline.autoencoder_fingerprint(ae_dir)
    from discrete_priors.data import load_latent_cache

    try:
        for split in ("train", "test"):
            load_latent_cache(latents / f"{split}.safetensors", expect_autoencoder_hash=fingerprint)
        return latents
    except (FileNotFoundError, ValueError):
        pass
    pipeline.write_latent_cache(ae_dir=ae_dir, out_dir=latents, dataset=preset.dataset, size=preset.size,
                                data_dir=data_dir, seed=seed)
    return latents


class BinaryLatents(NamedTuple):
    name: str  # "binary-c<bits>": the name the autoencoder, cache and prior folders carry
    ae_dir: Path
    latents: Path


def shared_binary_latents(preset: Preset, out: Path, *, seed: int, data_dir=None) -> BinaryLatents:
    """The one binary autoencoder and latent cache the prior comparisons share (trained once)."""
    name = f"binary-c{preset.bits}"
    ae_dir = ensure_autoencoder(preset, out, latent={"kind": "binary", "bits": preset.bits}, name=name, seed=seed,
                                data_dir=data_dir)
    return BinaryLatents(name, ae_dir, ensure_latents(preset, out, ae_dir=ae_dir, name=name, seed=seed, data_dir=data_dir))


def ensure_prior(preset: Preset, out: Path, *, latents: Path, prior: str, variant: str, seed: int,
                 extra_kwargs: dict | None = None) -> Path:
    recipe = preset.prior_recipes[prior]
    run = out / "priors" / f"{variant.replace('/', '_')}-seed{seed}"
    kwargs = {"preset": preset.net} | recipe["kwargs"] | (extra_kwargs or {})
    pipeline.train_prior(out=run, latents_dir=latents, prior=prior, prior_kwargs=kwargs,
                         train_config=train_config(steps=preset.prior_steps, batch=preset.prior_batch,
                                                   lr=preset.prior_lr, seed=seed),
                         resample=recipe["resample"])
    return run


def extractor_for(preset: Preset, out: Path, *, data_dir=None):
    """The dataset's classifier features (one classifier per experiment directory, data seed 0)."""
    if preset.dataset == "image-folder":
        return metrics.get_extractor("inception")  # weights from $DISCRETE_PRIORS_INCEPTION_WEIGHTS
    return metrics.get_extractor(f"classifier:{preset.dataset}", size=preset.size, seed=0,
                                 cache_dir=out / "classifier", data_dir=data_dir)


def record(out: Path, *, experiment: str, variant: str, seed: int, values: dict, extractor: str, num_samples: int,
           preset: Preset) -> None:
    append_rows(out / "results.csv", make_rows(experiment=experiment, variant=variant, seed=seed, metrics=values,
                                               extractor=extractor, num_samples=num_samples,
                                               config_hash=preset.hash()))


def done(out: Path, *, preset: Preset, experiment: str, variant: str, seed: int) -> bool:
    """Whether the cell is already recorded; a cell recorded under another preset config raises."""
    return has_cell(out / "results.csv", experiment=experiment, variant=variant, seed=seed, config_hash=preset.hash())


def warn_fallback(message: str) -> None:
    warnings.warn(message, stacklevel=2)


__all__ = ["PRESETS", "Preset", "done", "ensure_autoencoder", "ensure_latents", "ensure_prior", "extractor_for",
           "get_preset", "read_json", "record", "train_config", "warn_fallback"]
