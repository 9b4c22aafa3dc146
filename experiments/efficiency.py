"""Table 6 of the paper: sampling efficiency of each prior at its usual step count.

The three priors of the samplers runner (same autoencoder, latent cache and trained priors, reused
by variant name; same network-size preset) are timed at the step count of their recipe —
Bernoulli diffusion its ``default_steps``, absorbing diffusion its T, autoregressive one step per
position — at several batch sizes: :data:`BATCH_SIZES` up to the preset's ``num_samples`` (the
smoke preset stops at 64). Rows: variant ``"<prior>/bs=<B>"`` with samples_per_s (median of
three timed batches after one warm-up, :func:`discrete_priors.metrics.measure_throughput`),
nfe_per_sample (network evaluations per sample; an upper bound for absorbing, which stops once
every position is revealed), batch_size and params. No feature extractor is needed, so this runner
also runs at the paper preset without Inception weights.

Throughput depends on the machine and on what else runs on it: the ``machine`` column of each row
says where it was measured; compare rows measured in one run.
"""

from __future__ import annotations

from pathlib import Path

from discrete_priors import evaluate, pipeline
from experiments.common import Preset, done, ensure_samplers_prior, record, shared_binary_latents

PRIORS = ("bernoulli", "absorbing", "autoregressive")
BATCH_SIZES = (1, 16, 64, 256)


def batch_sizes(preset: Preset) -> list[int]:
    """:data:`BATCH_SIZES` no larger than the preset's sample count (at least batch size 1)."""
    return [b for b in BATCH_SIZES if b <= max(preset.num_samples, 1)]


def run(preset: Preset, out: Path, *, priors=None, data_dir=None, progress: bool | None = None,
        repeats: int = 3) -> None:
    """priors: which to time (default: each of :data:`PRIORS` that the preset has a recipe for)."""
    out = Path(out)
    priors = [p for p in PRIORS if p in preset.prior_recipes] if priors is None else list(priors)
    for seed in preset.seeds:
        todo = {name: [b for b in batch_sizes(preset)
                       if not done(out, preset=preset, experiment="efficiency", variant=f"{name}/bs={b}", seed=seed)]
                for name in priors}
        if not any(todo.values()):
            continue
        binary = shared_binary_latents(preset, out, seed=seed, data_dir=data_dir)
        for name in priors:
            if not todo[name]:
                continue
            prior = pipeline.load_prior(ensure_samplers_prior(preset, out, latents=binary, prior=name, seed=seed))
            params = evaluate.count_parameters(prior)
            for batch in todo[name]:
                # steps=None: each prior's own default (bernoulli default_steps, absorbing T, AR N)
                values = evaluate.sampling_speed(prior, batch_size=batch, steps=None, seed=seed, repeats=repeats)
                record(out, experiment="efficiency", variant=f"{name}/bs={batch}", seed=seed,
                       values=values | {"params": params}, extractor="", num_samples=batch * repeats, preset=preset)
