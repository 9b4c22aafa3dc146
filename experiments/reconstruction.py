"""Table 4 of the paper: reconstruction by latent format, on one backbone.

Binary codes with c bits per position, VQ codebooks of K vectors and continuous latents, each an
autoencoder of the preset's architecture trained with the same recipe. Rows (variant names
``binary-c<c>``, ``vq-K<K>``, ``continuous-d<d>``): PSNR and SSIM of the test split's
reconstructions (deterministic codes), ``rfd`` — the Fréchet distance between reconstructions and
originals on the dataset's classifier features — bits per image, and code usage (fraction of VQ
codes used / of binary bits that are not dead).
"""

from __future__ import annotations

from pathlib import Path

import torch

from discrete_priors import metrics, pipeline
from experiments.common import Preset, ensure_autoencoder, pending, record, scoring_for

# Paper Table 4's grid on our backbone; any binary-c<k> / vq-K<k> / continuous-d<d> name works.
LATENTS = ("binary-c8", "binary-c16", "binary-c32", "vq-K256", "vq-K1024", "continuous-d8")


def code_statistics(codes, spec) -> dict:
    if spec.kind == "binary":
        stats = metrics.binary_code_stats(codes)
        return {"bits_per_image": spec.bits, "code_usage": 1.0 - stats.dead_fraction, "bit_entropy": stats.bit_entropy}
    if spec.kind == "categorical":
        stats = metrics.categorical_code_stats(codes, vocab_size=spec.vocab_size)
        return {"bits_per_image": spec.bits, "code_usage": stats.usage, "perplexity": stats.perplexity}
    return {}  # continuous latents: no finite bit count


def run(preset: Preset, out: Path, *, latents=LATENTS, data_dir=None, progress=None) -> None:
    out = Path(out)
    configs = {name: pipeline.latent_config(name) for name in latents}  # bad names fail before any training
    todo = {seed: pending(out, preset=preset, experiment="reconstruction", variants=latents, seed=seed) for seed in preset.seeds}
    if not any(todo.values()):
        return  # every cell recorded: no data loaded, no features computed
    scoring = scoring_for(preset, out, data_dir=data_dir)
    extractor, train, test = scoring.extractor, scoring.train, scoring.test
    for seed, names in todo.items():
        for name in names:
            ae_dir = ensure_autoencoder(preset, out, latent=configs[name], name=name, seed=seed, data_dir=data_dir)
            ae = pipeline.load_autoencoder(ae_dir)
            codes = pipeline.encode_images(ae, test).codes
            recon = pipeline.decode_codes(ae, codes)
            values = {k: v for k, v in metrics.reconstruction_metrics(recon, test).items() if v == v}
            values["rfd"] = metrics.frechet_distance(scoring.scorer.reference_features, extractor.features(recon))
            # usage over train + test encodings, as the codebook is judged on all the data it serves
            all_codes = torch.cat([pipeline.encode_images(ae, train).codes, codes])
            values |= code_statistics(all_codes, ae.code_spec)
            record(out, experiment="reconstruction", variant=name, seed=seed, values=values, extractor=extractor.name,
                   num_samples=len(test), preset=preset)
