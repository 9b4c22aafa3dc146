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

Learning curves and seeds: the priors on the shared binary codes and the Gaussian baseline on the plain
continuous latents are trained once per seed of ``preset.seeds``, the reference rows (VQ tokens, KL
latents: :func:`is_reference`) for the first seed only, after every seed's comparison rows (all on
the one autoencoder and latent cache of :data:`~experiments.common.AE_SEED` per latent space; the
``real`` row, which trains nothing, once) and evaluated from its EMA
weights at each step of ``preset.curve_steps()`` (fractions ``curve_fractions`` of its budget):
rows with ``train_step`` = that step, FD / precision / recall / density / coverage (with the
bootstrap std over the sample set of the first three, ``<metric>_bootstrap_std``), the NLL, and
``train_flops`` (network FLOPs of one training step × steps) and ``train_seconds`` (the trainer's
wall seconds so far). The last point (``train_step`` = ``prior_steps``) is the full row above, with
``num_samples`` samples; earlier points draw ``preset.samples_at(step)`` samples, measure the NLL on
the first ``preset.curve_nll_codes`` held-out codes, and skip the memorisation and speed columns. At the last point the Inception FID (metric ``fid``, extractor
``inception-tf-2015``) is recorded beside the classifier FD when the extractor is installed,
also for the ``real`` row (the train-vs-test floor).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from discrete_priors import evaluate, pipeline
from discrete_priors.data import load_latent_cache
from experiments.common import (CURVE_SUFFIX, CurvePoint, Preset, SharedLatents, bootstrap_values, continuous_latents, curve_point,
                                curve_subset_values, done, ensure_gaussian_prior, ensure_samplers_prior, fid_rows,
                                pending_steps, record, scoring_for, shared_binary_latents, shared_latents, tuned_lr)

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


def is_reference(row: Row) -> bool:
    """A reference row of another pipeline (VQ tokens, KL-regularised continuous latents): trained
    for the first seed only. The comparison on the shared binary codes and the plain continuous
    baseline are trained for every seed."""
    return row.on_vq or bool(row.kl)


def schedule(preset: Preset, rows: dict[str, Row]) -> list[tuple[int, str]]:
    """(seed, variant) of every trained row, in training order: each seed's comparison rows, then
    the reference rows of the first seed (a run stopped early has the seeded comparison first)."""
    jobs = [(seed, variant) for seed in preset.seeds for variant, row in rows.items() if not is_reference(row)]
    return jobs + [(preset.seeds[0], variant) for variant, row in rows.items() if is_reference(row)]


def run(preset: Preset, out: Path, *, priors=PRIORS, vq_priors=VQ_PRIORS, continuous: bool = True, data_dir=None,
        progress: bool | None = None) -> None:
    out = Path(out)
    scoring = scoring_for(preset, out, data_dir=data_dir)
    rows = variants(preset, priors=priors, vq_priors=vq_priors, continuous=continuous)
    cached: dict[str, SharedLatents] = {}

    def latents_of(row: Row) -> SharedLatents:  # the shared autoencoder and cache (AE_SEED), made on first use
        key = f"kl={row.kl}" if row.kl is not None else "vq" if row.on_vq else "binary"
        if key not in cached:
            cached[key] = (continuous_latents(preset, out, kl=row.kl, data_dir=data_dir) if row.kl is not None
                           else shared_latents(preset, out, name=f"vq-K{preset.vq_codebook}", data_dir=data_dir)
                           if row.on_vq else shared_binary_latents(preset, out, data_dir=data_dir))
        return cached[key]

    first = preset.seeds[0]
    if not done(out, preset=preset, experiment="samplers", variant="real", seed=first):
        values = scoring.scorer.real_row(preset.num_samples)  # held-out real images: no seed of its own
        n = min(len(scoring.train), preset.num_samples)
        record(out, experiment="samplers", variant="real", seed=first, values=values,
               extractor=scoring.extractor.name, num_samples=n, preset=preset,
               extra_rows=fid_rows(scoring, scoring.train[:n], preset=preset, experiment="samplers",
                                   variant="real", seed=first))
    for seed, variant in schedule(preset, rows):
        row = rows[variant]
        todo = pending_steps(out, preset=preset, experiment="samplers", variant=variant, seed=seed)
        if not todo:
            continue
        latents, extra = latents_of(row), {}
        if row.kl is not None:
            prior_dir = ensure_gaussian_prior(preset, out, latents=latents, seed=seed)
            spec = load_latent_cache(latents.latents / "test.safetensors").spec
            extra = {"latent_dim": spec.channels, "bits_per_image": spec.bits}
        else:
            prior_dir = ensure_samplers_prior(preset, out, latents=latents, prior=row.prior, seed=seed)
        lr = tuned_lr(preset, out, prior=row.prior, latents=latents.latents)
        for step in todo:
            point = curve_point(preset, prior_dir, step, latents=latents.latents)
            final = step == preset.prior_steps
            name = f"{variant.replace('/', '_')}-seed{seed}" + ("" if final else f"-step{step}")
            scored = evaluate_prior(preset, point, latents, scoring.scorer, seed=seed, progress=progress,
                                    samples_dir=out / "samples" / "samplers" / name, final=final)
            images = scored.samples.images
            values = (scored.row | bootstrap_values(preset, scoring.scorer, images, seed=seed) | extra
                      | curve_subset_values(preset, scoring.scorer, images, step=step, seed=seed)
                      | point.values() | {"lr": lr})
            fid = fid_rows(scoring, scored.samples.images, preset=preset, experiment="samplers", variant=variant,
                           seed=seed, train_step=step) if final else []
            record(out, experiment="samplers", variant=variant, seed=seed, values=values,
                   extractor=scoring.extractor.name, num_samples=preset.samples_at(step), preset=preset,
                   train_step=step, extra_rows=fid)


def evaluate_prior(preset: Preset, point: CurvePoint, latents: SharedLatents, quality: evaluate.SampleScorer, *,
                   seed: int, progress=None, samples_dir: Path, final: bool = True) -> evaluate.ScoredPrior:
    """Every samplers metric of one trained prior at one learning-curve point (``final``: the full
    row; else quality and NLL only, on ``preset.samples_at(step)`` samples and the first
    ``preset.curve_nll_codes`` held-out codes); samples saved under ``samples_dir``."""
    ae, prior = pipeline.load_autoencoder(latents.ae_dir), point.load()
    test_codes = load_latent_cache(latents.latents / "test.safetensors").codes[:preset.nll_codes]
    scored = evaluate.score_prior(prior, ae, quality, num_samples=preset.samples_at(point.step), seed=seed,
                                  speed_repeats=2, progress=progress, memorisation=final, speed=final)
    scored.row.update(curve_nll(preset, prior, test_codes, final=final, seed=seed))
    if final:
        pipeline.save_samples(scored.samples, samples_dir, meta={"seed": seed, "train_step": point.step})
    return scored


def curve_nll(preset: Preset, prior, codes, *, final: bool, seed: int) -> dict:
    """The NLL columns at a curve point: before the last, on the first ``curve_nll_codes`` codes;
    at the last, on all of ``codes``, computed as the first ``curve_nll_codes`` and the rest (the
    first part also recorded as ``nll_<unit>@curve``, what the earlier points measured) weighted
    by their counts, so the curve costs no extra pass."""
    head = preset.curve_nll_codes
    if head is None or head >= len(codes):
        return evaluate.nll_row(prior, codes, seed=seed)
    first = evaluate.nll_row(prior, codes[:head], seed=seed)
    if not final:
        return first
    rest = evaluate.nll_row(prior, codes[head:], seed=seed)
    name = next(k for k in first if k.startswith("nll_") and k != "nll_is_exact")
    mean = (first[name] * head + rest[name] * (len(codes) - head)) / len(codes)
    return {name: mean, "nll_is_exact": min(first["nll_is_exact"], rest["nll_is_exact"]),
            f"{name}{CURVE_SUFFIX}": first[name]}
