"""Figure 7 of the paper: sample quality vs the number of sampling steps S.

Bernoulli diffusion vs absorbing diffusion on the samplers runner's binary latents, with the
very same trained priors (same autoencoder, latent cache and prior variant names as
``experiments/samplers.py``, so running either runner first trains them once for both). Each prior
is sampled at S ∈ {4, 8, 16, 32, 64, 128, 256} capped at its training T, temperature τ = 1.
Rows: variant ``"<prior>/S=<S>"`` with fd, precision, recall on classifier features and
samples_per_s at that S (one batch of ``min(64, num_samples)``, median of two timed calls).

The continuous-latent reference (the LDM baseline): the samplers runner's Gaussian diffusion on
the plain continuous autoencoder (``gaussian/latents=continuous-d<d>`` there), sampled with DDIM
(η = 0) at the same S, capped at its T; rows ``"gaussian/S=<S>"`` carry the continuous baseline's
config hash. The report judges "Bernoulli diffusion at 16 steps matches continuous latent
diffusion at many more steps" from them.

The third-party reproduction's row (Bernoulli Flow Models' reference code reproduced: FID 204 for a
256-step model sampled with 16 steps): ``bernoulli-T256/S=<S>``, the Bernoulli recipe trained with
T = 256 (its own prior, ``steps-bernoulli-T256-<latents>``) and sampled at every S of :data:`STEPS`,
so the table shows whether exact skipping (time t/T) collapses at few steps.

Samples are drawn with the seed of the run, so the curve is a function of the trained prior and
the seed alone; at S = the recipe's default steps the Bernoulli row repeats the samplers row.

Seeds and learning curves: each seed of ``preset.seeds`` has its own priors (the samplers runner's,
on the one shared autoencoder). Every S is evaluated at the full budget (``train_step`` =
``prior_steps``); at the earlier learning-curve steps only S = 16 and the largest S are (the
points the claims are judged at), each with ``preset.samples_at(step)`` samples. The Inception FID
(metric ``fid``) is recorded at the full budget for S = 16 and the largest S, when installed.
"""

from __future__ import annotations

from pathlib import Path

from discrete_priors import evaluate, pipeline
from experiments.common import (Preset, bootstrap_values, comparison_prior, curve_point, curve_subset_values, done,
                                ensure_prior, fid_rows, record, scoring_for, shared_binary_latents, tuned_lr)

PRIORS = ("bernoulli", "absorbing", "gaussian", "bernoulli-T256")
STEPS = (4, 8, 16, 32, 64, 128, 256)
METRICS = ("fd", "precision", "recall")
T256 = "bernoulli-T256"
CURVE_S = 16  # with the largest S: the sampling steps evaluated along the learning curve (and with Inception)


def timesteps(preset: Preset, prior: str) -> int:
    if prior == T256:
        return 256
    return preset.recipe(prior).kwargs["timesteps"]


def step_counts(preset: Preset, prior: str) -> list[int]:
    """The S of :data:`STEPS` that the prior's training T allows (S <= T)."""
    return [s for s in STEPS if s <= timesteps(preset, prior)]


def curve_counts(preset: Preset, prior: str) -> list[int]:
    """The S evaluated at every learning-curve step (and with Inception): 16 and the largest S."""
    counts = step_counts(preset, prior)
    return sorted({s for s in counts if s == CURVE_S} | {counts[-1]})


def cells(preset: Preset, prior: str) -> list[tuple[int, int]]:
    """(train_step, S) of every row of ``prior``: all S at the full budget, :func:`curve_counts` before."""
    last = preset.prior_steps
    return [(k, s) for k in preset.curve_steps() for s in (step_counts(preset, prior) if k == last
                                                            else curve_counts(preset, prior))]


def prior_run(preset: Preset, out: Path, name: str, *, seed: int, data_dir=None):
    """(latents, run) of a steps prior: the samplers runner's, or the T = 256 Bernoulli of its own."""
    if name != T256:
        return comparison_prior(preset, out, prior=name, seed=seed, data_dir=data_dir)
    latents = shared_binary_latents(preset, out, data_dir=data_dir)
    return latents, ensure_prior(preset, out, latents=latents.latents, prior="bernoulli", variant=f"steps-{T256}-{latents.name}",
                                 seed=seed, extra_kwargs={"timesteps": 256, "default_steps": CURVE_S})


def run(preset: Preset, out: Path, *, priors=PRIORS, data_dir=None, progress: bool | None = None) -> None:
    unknown = set(priors) - set(PRIORS)
    if unknown:
        raise ValueError(f"the steps runner compares {PRIORS}, got unknown priors {sorted(unknown)}")
    priors = preset.priors_with(priors)
    out = Path(out)
    scoring = scoring_for(preset, out, data_dir=data_dir)

    for seed in preset.seeds:
        for name in priors:
            todo = [(k, s) for k, s in cells(preset, name)
                    if not done(out, preset=preset, experiment="steps", variant=f"{name}/S={s}", seed=seed, train_step=k)]
            if not todo:
                continue
            latents, prior_dir = prior_run(preset, out, name, seed=seed, data_dir=data_dir)
            ae = pipeline.load_autoencoder(latents.ae_dir)
            # the T = 256 row is the Bernoulli recipe with another T: it trains at the Bernoulli rate
            lr = tuned_lr(preset, out, prior="bernoulli" if name == T256 else name, latents=latents.latents)
            for step in sorted({k for k, _ in todo}):
                point = curve_point(preset, prior_dir, step, latents=latents.latents)
                prior, final = point.load(), step == preset.prior_steps
                for steps in [s for k, s in todo if k == step]:
                    variant = f"{name}/S={steps}"
                    samples = pipeline.sample_images(ae, prior, preset.samples_at(step), seed=seed, progress=progress,
                                                     steps=steps, temperature=1.0)
                    quality = scoring.scorer(samples.images, memorisation=False)
                    values = ({k: quality[k] for k in METRICS} | point.values() | {"lr": lr}
                              | bootstrap_values(preset, scoring.scorer, samples.images, seed=seed))
                    if steps in curve_counts(preset, name):  # a curve of its own
                        values |= curve_subset_values(preset, scoring.scorer, samples.images, step=step, seed=seed)
                    if final:
                        speed = evaluate.sampling_speed(prior, batch_size=min(64, preset.num_samples), steps=steps,
                                                        seed=seed, repeats=2)
                        values["samples_per_s"] = speed["samples_per_s"]
                    fid = (fid_rows(scoring, samples.images, preset=preset, experiment="steps", variant=variant,
                                    seed=seed, train_step=step) if final and steps in curve_counts(preset, name) else [])
                    record(out, experiment="steps", variant=variant, seed=seed, values=values,
                           extractor=scoring.extractor.name, num_samples=preset.samples_at(step), preset=preset,
                           train_step=step, extra_rows=fid)
