"""The paper's qualitative figures, each with the numbers behind it.

All on the samplers runner's binary latents and priors (trained once, shared by name), written as
PNG grids under ``<out>/samples/figures/`` (the report links every grid there):

* ``temperature.png`` (Fig. 4): Bernoulli diffusion at τ ∈ :data:`TEMPERATURES`, one row of
  samples per τ drawn with the same seed. Rows ``temperature/tau=<τ>``: fd, precision, recall of
  ``num_samples`` samples at the recipe's default steps.
* ``class_conditional.png`` (Fig. 6): a class-conditional Bernoulli prior (the samplers recipe
  plus labels, dropped with probability 0.1 per sample for classifier-free guidance) at guidance
  w ∈ :data:`GUIDANCE`; one block per w, one column per class. Rows
  ``class-conditional/w=<w>``: fd, precision, recall and ``class_accuracy`` — the fraction of
  samples the feature classifier assigns to the class they were drawn for.
* ``inpainting.png`` (Fig. 8): the top half of the latent grid of real test codes is kept and
  each prior fills the bottom half (known codes re-imposed every step). Grid rows: the real
  images, then each prior's completions, the last one the continuous-latent reference (Gaussian
  diffusion on the plain continuous latents, known latents re-noised to each step). Rows
  ``inpainting/<prior>``: fd, precision, recall of ``num_samples`` completions against the test
  split (their top halves are real).
* ``class_conditional_gaussian.png``: the same guidance grid for a class-conditional Gaussian
  diffusion on the plain continuous latents (rows ``class-conditional/prior=gaussian/w=<w>``).
  Gaussian rows carry the continuous baseline's config hash.
* ``reconstruction.png``: test images, then their reconstructions by each autoencoder of
  :data:`experiments.reconstruction.LATENTS` that has been trained (in that order; nothing is
  trained for this grid), then by the shared binary one if it is not among them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from discrete_priors import pipeline
from discrete_priors.data import load_latent_cache
from discrete_priors.images import save_grid
from discrete_priors.io import atomic_path
from experiments import reconstruction
from experiments.common import (AE_SEED, Preset, binary_name, continuous_latents, done, ensure_gaussian_prior, ensure_prior,
                                ensure_samplers_prior, pending, record, scoring_for, shared_binary_latents, warn_fallback)

TEMPERATURES = (0.6, 0.8, 0.9, 1.0)
GUIDANCE = (0.0, 1.0, 3.0)
INPAINT_PRIORS = ("bernoulli", "absorbing", "autoregressive")
METRICS = ("fd", "precision", "recall")
PER_ROW = 10  # images per grid row


def top_half_mask(spec, n: int) -> torch.Tensor:
    """(n, N) bool: True on the positions of the top half of the latent grid (raster order)."""
    rows, cols = spec.grid
    known = torch.arange(rows).repeat_interleave(cols) < rows // 2
    return known.expand(n, -1).clone()


GAUSSIAN_ROW = ", then Gaussian diffusion on continuous latents"
CAPTIONS = {  # written beside each grid (``<grid>.txt``); the report prints them under the grid's title
    "temperature": "Bernoulli diffusion, one row per temperature τ = " + ", ".join(f"{t:g}" for t in TEMPERATURES)
                   + " (same seed)",
    "class_conditional": "class-conditional Bernoulli diffusion, one column per class, three rows per guidance w = "
                         + ", ".join(f"{w:g}" for w in GUIDANCE),
    "inpainting": "top half of the latent grid kept from real test codes; rows: the real images, then the "
                  "completions of " + ", ".join(INPAINT_PRIORS) + GAUSSIAN_ROW,
    "class_conditional_gaussian": "class-conditional Gaussian diffusion on continuous latents, one column per class, "
                                  "three rows per guidance w = " + ", ".join(f"{w:g}" for w in GUIDANCE),
}


def write_caption(grid: Path, caption: str) -> None:
    with atomic_path(grid.with_suffix(".txt")) as tmp:
        tmp.write_text(caption + "\n")


def run(preset: Preset, out: Path, *, data_dir=None, progress: bool | None = None) -> None:
    out = Path(out)
    figures = out / "samples" / "figures"
    scoring = scoring_for(preset, out, data_dir=data_dir)
    n = preset.num_samples
    with_gaussian = preset.continuous is not None
    variants = ([f"temperature/tau={tau:g}" for tau in TEMPERATURES] + [f"class-conditional/w={w:g}" for w in GUIDANCE]
                + [f"class-conditional/prior=gaussian/w={w:g}" for w in GUIDANCE] * with_gaussian
                + [f"inpainting/{name}" for name in (*INPAINT_PRIORS, "gaussian")[:len(INPAINT_PRIORS) + with_gaussian]])

    def score(variant: str, seed: int, images: torch.Tensor, extra: dict | None = None) -> None:
        quality = scoring.scorer(images)
        values = {k: quality[k] for k in METRICS} | (extra or {})
        record(out, experiment="figures", variant=variant, seed=seed, values=values, extractor=scoring.extractor.name,
               num_samples=len(images), preset=preset)

    for seed in preset.seeds:
        trained = (out / "ae" / f"{binary_name(preset)}-seed{AE_SEED}" / "checkpoints").is_dir()
        if not trained and not pending(out, preset=preset, experiment="figures", variants=variants, seed=seed):
            continue  # every number recorded, and no autoencoder to redraw the grids with: train nothing
        binary = shared_binary_latents(preset, out, data_dir=data_dir)
        ae = pipeline.load_autoencoder(binary.ae_dir)
        test_cache = load_latent_cache(binary.latents / "test.safetensors")

        def samplers_prior(name: str):
            return pipeline.load_prior(ensure_samplers_prior(preset, out, latents=binary, prior=name, seed=seed))

        # Fig. 4: temperature sweep
        cells = [f"temperature/tau={tau:g}" for tau in TEMPERATURES]
        if not all(done(out, preset=preset, experiment="figures", variant=c, seed=seed) for c in cells):
            prior, rows = samplers_prior("bernoulli"), []
            for cell, tau in zip(cells, TEMPERATURES):
                samples = pipeline.sample_images(ae, prior, n, seed=seed, temperature=tau, progress=progress)
                rows.append(samples.images[:PER_ROW])
                if not done(out, preset=preset, experiment="figures", variant=cell, seed=seed):
                    score(cell, seed, samples.images)
            save_grid(torch.cat(rows), figures / f"temperature-seed{seed}.png", nrow=PER_ROW, scale=2)

        # Fig. 6: class-conditional samples with classifier-free guidance
        cells = [f"class-conditional/w={w:g}" for w in GUIDANCE]
        if test_cache.labels is None:
            warn_fallback(f"figures: the {preset.dataset} latents have no labels; no class-conditional figure")
        elif not all(done(out, preset=preset, experiment="figures", variant=c, seed=seed) for c in cells):
            prior = pipeline.load_prior(ensure_prior(preset, out, latents=binary.latents, prior="bernoulli", seed=seed,
                                                     variant=f"figures-bernoulli-cond-{binary.name}", class_conditional=True))
            blocks = []
            labels = torch.arange(n) % prior.num_classes
            for cell, w in zip(cells, GUIDANCE):
                samples = pipeline.sample_images(ae, prior, n, seed=seed, labels=labels, guidance=w, progress=progress)
                blocks.append(samples.images[:3 * prior.num_classes])  # three rows: one column per class
                if not done(out, preset=preset, experiment="figures", variant=cell, seed=seed):
                    extra = {}
                    if hasattr(scoring.extractor, "predict"):  # classifier features (Inception has no dataset classes)
                        extra["class_accuracy"] = (scoring.extractor.predict(samples.images) == labels).double().mean().item()
                    score(cell, seed, samples.images, extra)
            save_grid(torch.cat(blocks), figures / f"class_conditional-seed{seed}.png", nrow=prior.num_classes, scale=2)

        continuous = None  # the continuous baseline's plain latents, made on first use
        cells = [f"class-conditional/prior=gaussian/w={w:g}" for w in GUIDANCE] * with_gaussian
        if cells and test_cache.labels is not None and not all(done(out, preset=preset, experiment="figures", variant=c, seed=seed)
                                                     for c in cells):
            continuous = continuous_latents(preset, out, kl=False, data_dir=data_dir)
            prior = pipeline.load_prior(ensure_gaussian_prior(preset, out, latents=continuous, seed=seed,
                                                              class_conditional=True))
            continuous_ae, blocks = pipeline.load_autoencoder(continuous.ae_dir), []
            labels = torch.arange(n) % prior.num_classes
            for cell, w in zip(cells, GUIDANCE):
                samples = pipeline.sample_images(continuous_ae, prior, n, seed=seed, labels=labels, guidance=w,
                                                 progress=progress)
                blocks.append(samples.images[:3 * prior.num_classes])
                if not done(out, preset=preset, experiment="figures", variant=cell, seed=seed):
                    extra = {}
                    if hasattr(scoring.extractor, "predict"):
                        extra["class_accuracy"] = (scoring.extractor.predict(samples.images) == labels).double().mean().item()
                    score(cell, seed, samples.images, extra)
            save_grid(torch.cat(blocks), figures / f"class_conditional_gaussian-seed{seed}.png", nrow=prior.num_classes,
                      scale=2)

        # Fig. 8: inpainting the bottom half of real test codes
        cells = [f"inpainting/{name}" for name in INPAINT_PRIORS]
        gaussian_cells = ["inpainting/gaussian"] * with_gaussian
        if not all(done(out, preset=preset, experiment="figures", variant=c, seed=seed) for c in [*cells, *gaussian_cells]):
            known = test_cache.codes[:n]
            mask = top_half_mask(ae.code_spec, len(known))
            rows = [scoring.test[:PER_ROW]]
            for cell, name in zip(cells, INPAINT_PRIORS):
                samples = pipeline.sample_images(ae, samplers_prior(name), len(known), seed=seed, progress=progress,
                                                 inpaint_mask=mask, known_codes=known)
                rows.append(samples.images[:PER_ROW])
                if not done(out, preset=preset, experiment="figures", variant=cell, seed=seed):
                    score(cell, seed, samples.images)
            if with_gaussian:  # the continuous-latent reference, on the same test images' continuous codes
                continuous = continuous or continuous_latents(preset, out, kl=False, data_dir=data_dir)
                known = load_latent_cache(continuous.latents / "test.safetensors").codes[:n]
                prior = pipeline.load_prior(ensure_gaussian_prior(preset, out, latents=continuous, seed=seed))
                continuous_ae = pipeline.load_autoencoder(continuous.ae_dir)
                samples = pipeline.sample_images(continuous_ae, prior, len(known), seed=seed, progress=progress,
                                                 inpaint_mask=top_half_mask(continuous_ae.code_spec, len(known)),
                                                 known_codes=known)
                rows.append(samples.images[:PER_ROW])
                if not done(out, preset=preset, experiment="figures", variant="inpainting/gaussian", seed=seed):
                    score("inpainting/gaussian", seed, samples.images)
            save_grid(torch.cat(rows), figures / f"inpainting-seed{seed}.png", nrow=PER_ROW, scale=2)

        for name, caption in CAPTIONS.items():
            if not with_gaussian:  # no continuous baseline in this preset: the inpainting grid has no Gaussian row
                caption = caption.removesuffix(GAUSSIAN_ROW)
            if (figures / f"{name}-seed{seed}.png").exists():
                write_caption(figures / f"{name}-seed{seed}.png", caption)

        # reconstruction examples, one row per trained latent format (cheap: redrawn on every run)
        names = [name for name in reconstruction.LATENTS if (out / "ae" / f"{name}-seed{seed}" / "checkpoints").is_dir()]
        names += [binary.name] * (binary.name not in names)
        rows = [scoring.test[:PER_ROW]]
        for name in names:
            fmt = pipeline.load_autoencoder(out / "ae" / f"{name}-seed{seed}")
            rows.append(pipeline.decode_codes(fmt, pipeline.encode_images(fmt, scoring.test[:PER_ROW]).codes))
        path = figures / f"reconstruction-seed{seed}.png"
        save_grid(torch.cat(rows), path, nrow=PER_ROW, scale=2)
        write_caption(path, "rows: test images, then their reconstructions by " + ", ".join(names))
