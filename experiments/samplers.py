"""Table 5 of the paper: alternative samplers on identical binary latents.

Bernoulli diffusion (residual) vs absorbing diffusion vs autoregressive, each with its own recipe
and the same network-size preset, all trained on the same cached binary codes of one autoencoder.
The reference rows ``absorbing/latents=vq-K<K>`` and ``autoregressive/latents=vq-K<K>`` are the
VQ pipeline: the same two baselines over the token indices of a VQ autoencoder of the same
backbone (the reconstruction runner's ``vq-K<K>``, K = the preset's ``vq_codebook``).

Each row: Fréchet distance, precision, recall, density, coverage on classifier features;
memorisation (nearest training image); NLL of held-out codes in bits per latent bit (VLB bound
for the diffusions, exact for AR; the first ``nll_codes`` test codes; for VQ rows per code bit,
N log2 K bits per image); samples/s and network evaluations per sample at the prior's default
step count; parameter count. A ``real`` row gives the same metrics for held-out real images
(where "good" lies).

The continuous pipeline's reference rows ``gaussian/latents=continuous-d<d>`` and
``gaussian/latents=continuous-d<d>-kl``: Gaussian diffusion (the LDM baseline,
``preset.continuous``) at the same network size on a plain and a KL-regularised continuous
autoencoder of the same backbone. Their NLL is the float16-discretised VLB in bits per latent
*dimension* (column ``nll_bits_per_dim``, not comparable with bits per bit); ``latent_dim`` d and
``bits_per_image`` (N·d·16, float16 storage) state the size of their codes. These rows carry the
continuous baseline's config hash (:meth:`Preset.continuous_hash`).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from discrete_priors import evaluate, pipeline
from discrete_priors.data import load_latent_cache
from experiments.common import (Preset, SharedLatents, continuous_latents, done, ensure_gaussian_prior,
                                ensure_samplers_prior, pending, record, scoring_for, shared_binary_latents, shared_latents, tuned_lr)

PRIORS = ("bernoulli", "absorbing", "autoregressive")
VQ_PRIORS = ("absorbing", "autoregressive")  # the priors that model VQ tokens (Bernoulli diffusion needs bits)


class Row(NamedTuple):
    prior: str
    on_vq: bool  # models the VQ latents' tokens rather than the shared binary codes
    kl: bool | None = None  # a continuous-baseline row: on the KL (True) or plain (False) continuous latents


def variants(preset: Preset, *, priors=PRIORS, vq_priors=VQ_PRIORS, continuous: bool = True) -> dict[str, Row]:
    """Row name -> which prior it trains, on which latents (``continuous``: with the two Gaussian rows)."""
    vq_name = f"vq-K{preset.vq_codebook}"
    rows = {name: Row(name, False) for name in priors} | {f"{name}/latents={vq_name}": Row(name, True) for name in vq_priors}
    if continuous and preset.continuous is not None:
        rows |= {f"gaussian/latents={name}": Row("gaussian", False, kl)
                 for kl, name in enumerate(preset.continuous.latents())}
    return rows


def run(preset: Preset, out: Path, *, priors=PRIORS, vq_priors=VQ_PRIORS, continuous: bool = True, data_dir=None,
        progress: bool | None = None) -> None:
    out = Path(out)
    scoring = scoring_for(preset, out, data_dir=data_dir)
    rows = variants(preset, priors=priors, vq_priors=vq_priors, continuous=continuous)

    for seed in preset.seeds:
        if not done(out, preset=preset, experiment="samplers", variant="real", seed=seed):
            values = scoring.scorer.real_row(preset.num_samples)
            record(out, experiment="samplers", variant="real", seed=seed, values=values,
                   extractor=scoring.extractor.name, num_samples=min(len(scoring.train), preset.num_samples),
                   preset=preset)
        todo = pending(out, preset=preset, experiment="samplers", variants=rows, seed=seed)
        if not todo:
            continue
        if any(rows[v].kl is None for v in todo):
            binary = shared_binary_latents(preset, out, seed=seed, data_dir=data_dir)
        if any(rows[v].on_vq for v in todo):
            vq = shared_latents(preset, out, name=f"vq-K{preset.vq_codebook}", seed=seed, data_dir=data_dir)
        for variant in todo:
            row, extra = rows[variant], {}
            if row.kl is not None:
                latents = continuous_latents(preset, out, kl=row.kl, seed=seed, data_dir=data_dir)
                prior_dir = ensure_gaussian_prior(preset, out, latents=latents, seed=seed)
                spec = load_latent_cache(latents.latents / "test.safetensors").spec
                extra = {"latent_dim": spec.channels, "bits_per_image": spec.bits}
            else:
                latents = vq if row.on_vq else binary
                prior_dir = ensure_samplers_prior(preset, out, latents=latents, prior=row.prior, seed=seed)
            values = evaluate_prior(preset, prior_dir, latents, scoring.scorer, seed=seed, progress=progress,
                                    samples_dir=out / "samples" / "samplers" / f"{variant.replace('/', '_')}-seed{seed}")
            values |= extra | {"lr": tuned_lr(preset, out, prior=row.prior, latents=latents.latents, seed=seed)}
            record(out, experiment="samplers", variant=variant, seed=seed, values=values,
                   extractor=scoring.extractor.name, num_samples=preset.num_samples, preset=preset)


def evaluate_prior(preset: Preset, prior_dir: Path, latents: SharedLatents, quality: evaluate.SampleScorer, *,
                   seed: int, progress=None, samples_dir: Path) -> dict:
    """Every samplers metric of one trained prior; its samples are saved under ``samples_dir``."""
    ae, prior = pipeline.load_autoencoder(latents.ae_dir), pipeline.load_prior(prior_dir)
    test_codes = load_latent_cache(latents.latents / "test.safetensors").codes[:preset.nll_codes]
    scored = evaluate.score_prior(prior, ae, quality, num_samples=preset.num_samples, seed=seed, test_codes=test_codes,
                                  speed_repeats=2, progress=progress)
    pipeline.save_samples(scored.samples, samples_dir, meta={"seed": seed})
    return scored.row
