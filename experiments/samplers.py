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
"""

from __future__ import annotations

from pathlib import Path

from discrete_priors import evaluate, pipeline
from discrete_priors.data import load_dataset, load_latent_cache
from experiments.common import (Preset, SharedLatents, done, ensure_samplers_prior, extractor_for, record,
                                shared_binary_latents, shared_latents)

PRIORS = ("bernoulli", "absorbing", "autoregressive")
VQ_PRIORS = ("absorbing", "autoregressive")  # the priors that model VQ tokens (Bernoulli diffusion needs bits)


def run(preset: Preset, out: Path, *, priors=PRIORS, vq_priors=VQ_PRIORS, data_dir=None,
        progress: bool | None = None) -> None:
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
        binary = shared_binary_latents(preset, out, seed=seed, data_dir=data_dir)
        rows = [(name, name, binary) for name in priors]
        if vq_priors:
            vq = shared_latents(preset, out, name=f"vq-K{preset.vq_codebook}", seed=seed, data_dir=data_dir)
            rows += [(f"{name}/latents={vq.name}", name, vq) for name in vq_priors]
        for variant, name, latents in rows:
            if done(out, preset=preset, experiment="samplers", variant=variant, seed=seed):
                continue
            prior_dir = ensure_samplers_prior(preset, out, latents=latents, prior=name, seed=seed)
            values = evaluate_prior(preset, prior_dir, latents, quality, seed=seed, progress=progress,
                                    samples_dir=out / "samples" / "samplers" / f"{variant.replace('/', '_')}-seed{seed}")
            record(out, experiment="samplers", variant=variant, seed=seed, values=values, extractor=extractor.name,
                   num_samples=preset.num_samples, preset=preset)


def evaluate_prior(preset: Preset, prior_dir: Path, latents: SharedLatents, quality: evaluate.SampleScorer, *,
                   seed: int, progress=None, samples_dir: Path) -> dict:
    """Every samplers metric of one trained prior; its samples are saved under ``samples_dir``."""
    from discrete_priors.commands import save_samples

    ae, prior = pipeline.load_autoencoder(latents.ae_dir), pipeline.load_prior(prior_dir)
    samples = pipeline.sample_images(ae, prior, preset.num_samples, seed=seed, progress=progress)
    test_codes = load_latent_cache(latents.latents / "test.safetensors").codes[:preset.nll_codes]
    nll, exact = evaluate.prior_nll(prior, test_codes, seed=seed)
    values = quality(samples.images) | evaluate.sampling_speed(prior, batch_size=min(64, preset.num_samples),
                                                               seed=seed, repeats=2)
    save_samples(samples, samples_dir, meta={"seed": seed})
    return values | {"nll_bits_per_bit": nll, "nll_is_exact": float(exact), "params": evaluate.count_parameters(prior)}
