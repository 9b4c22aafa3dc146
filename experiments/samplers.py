"""Table 5 of the paper: alternative samplers on identical binary latents.

Bernoulli diffusion (residual) vs absorbing diffusion vs autoregressive, each with its own recipe
and the same network-size preset, all trained on the same cached binary codes of one autoencoder.
Each row: Fréchet distance, precision, recall, density, coverage on classifier features;
memorisation (nearest training image); NLL on held-out codes in bits per latent bit (VLB bound
for the diffusions, exact for AR); samples/s and network evaluations per sample at the prior's
default step count; parameter count. A ``real`` row gives the same metrics for held-out real
images (where "good" lies).
"""

from __future__ import annotations

from pathlib import Path

from discrete_priors import evaluate, pipeline
from discrete_priors.data import load_dataset, load_latent_cache
from experiments.common import Preset, done, ensure_prior, extractor_for, record, shared_binary_latents

PRIORS = ("bernoulli", "absorbing", "autoregressive")


def run(preset: Preset, out: Path, *, priors=PRIORS, data_dir=None, progress: bool | None = None) -> None:
    out = Path(out)
    extractor = extractor_for(preset, out, data_dir=data_dir)
    train = load_dataset(preset.dataset, split="train", size=preset.size, data_dir=data_dir).images
    test = load_dataset(preset.dataset, split="test", size=preset.size, data_dir=data_dir).images
    quality = evaluate.SampleScorer(extractor, reference=test, train=train)

    for seed in preset.seeds:
        if not done(out, preset=preset, experiment="samplers", variant="real", seed=seed):
            values = quality.real_row(preset.num_samples)
            record(out, experiment="samplers", variant="real", seed=seed, values=values, extractor=extractor.name,
                   num_samples=min(len(train), preset.num_samples), preset=preset)
        latent_name, ae_dir, latents = shared_binary_latents(preset, out, seed=seed, data_dir=data_dir)
        test_codes = load_latent_cache(latents / "test.safetensors").codes
        ae = pipeline.load_autoencoder(ae_dir)
        for name in priors:
            if done(out, preset=preset, experiment="samplers", variant=name, seed=seed):
                continue
            prior_dir = ensure_prior(preset, out, latents=latents, prior=name, variant=f"samplers-{name}-{latent_name}",
                                     seed=seed)
            prior = pipeline.load_prior(prior_dir)
            samples = pipeline.sample_images(ae, prior, preset.num_samples, seed=seed, progress=progress)
            nll, exact = evaluate.prior_nll(prior, test_codes, seed=seed)
            values = quality(samples.images) | evaluate.sampling_speed(prior, batch_size=min(64, preset.num_samples),
                                                                       seed=seed, repeats=2)
            values |= {"nll_bits_per_bit": nll, "nll_is_exact": float(exact), "params": evaluate.count_parameters(prior)}
            from discrete_priors.commands import save_samples

            save_samples(samples, out / "samples" / "samplers" / f"{name}-seed{seed}", meta={"seed": seed})
            record(out, experiment="samplers", variant=name, seed=seed, values=values, extractor=extractor.name,
                   num_samples=preset.num_samples, preset=preset)
