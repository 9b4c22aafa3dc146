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

Samples are drawn with the seed of the run, so the curve is a function of the trained prior and
the seed alone; at S = the recipe's default steps the Bernoulli row repeats the samplers row.
"""

from __future__ import annotations

from pathlib import Path

from discrete_priors import evaluate, pipeline
from experiments.common import Preset, comparison_prior, done, record, scoring_for, tuned_lr

PRIORS = ("bernoulli", "absorbing", "gaussian")
STEPS = (4, 8, 16, 32, 64, 128, 256)
METRICS = ("fd", "precision", "recall")


def step_counts(preset: Preset, prior: str) -> list[int]:
    """The S of :data:`STEPS` that the prior's training T allows (S <= T)."""
    recipe = preset.continuous.recipe if prior == "gaussian" else preset.prior_recipes[prior]
    return [s for s in STEPS if s <= recipe.kwargs["timesteps"]]


def run(preset: Preset, out: Path, *, priors=PRIORS, data_dir=None, progress: bool | None = None) -> None:
    unknown = set(priors) - set(PRIORS)
    if unknown:
        raise ValueError(f"the steps runner compares {PRIORS}, got unknown priors {sorted(unknown)}")
    priors = preset.priors_with(priors)
    out = Path(out)
    scoring = scoring_for(preset, out, data_dir=data_dir)

    for seed in preset.seeds:
        todo = {name: [s for s in step_counts(preset, name)
                       if not done(out, preset=preset, experiment="steps", variant=f"{name}/S={s}", seed=seed)]
                for name in priors}
        if not any(todo.values()):
            continue
        for name in priors:
            if not todo[name]:
                continue
            latents, prior_dir = comparison_prior(preset, out, prior=name, seed=seed, data_dir=data_dir)
            ae, prior = pipeline.load_autoencoder(latents.ae_dir), pipeline.load_prior(prior_dir)
            lr = tuned_lr(preset, out, prior=name, latents=latents.latents, seed=seed)
            for steps in todo[name]:
                samples = pipeline.sample_images(ae, prior, preset.num_samples, seed=seed, progress=progress,
                                                 steps=steps, temperature=1.0)
                quality = scoring.scorer(samples.images)
                speed = evaluate.sampling_speed(prior, batch_size=min(64, preset.num_samples), steps=steps, seed=seed,
                                                repeats=2)
                values = {k: quality[k] for k in METRICS} | {"samples_per_s": speed["samples_per_s"], "lr": lr}
                record(out, experiment="steps", variant=f"{name}/S={steps}", seed=seed, values=values,
                       extractor=scoring.extractor.name, num_samples=preset.num_samples, preset=preset)
