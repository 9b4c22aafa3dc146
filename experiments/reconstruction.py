"""Table 4 of the paper: reconstruction by latent format, on one backbone — with today's binary
and scalar tokenizers beside BLD's Bernoulli latent (issue 14, docs/method.md §9).

Every row is an autoencoder of the preset's architecture trained with the same recipe; all share
the preset's latent grid (4x4 at 16x16 images), so rows differ only in the latent space:

* equal bits per image (c bits per position x 16 positions): 128, 256 and 512 bits for
  ``binary-c<c>`` (Bernoulli sampling while training), ``binary-det-c<c>`` (thresholded, no
  sampling), ``lfq-c<c>``, ``bsq-c<c>`` and ``fsq-L4.….4`` (c/2 channels of 4 levels, exactly c
  bits per position); VQ only at 128 bits (K = 256): 256 and 512 bits would need K = 2^16 and
  2^32 codebook vectors per position.
* equal latent grid, the paper's framing: the 32-bit binary vector vs a 1,024-entry codebook per
  position (``vq-K1024``, and ``fsq-L8.5.5.5``, 1,000 codes at the same ~10 bits), and the
  continuous latent (``continuous-d8``) as the ceiling.

Metrics (variant = the format name): PSNR and SSIM of the test split's reconstructions
(deterministic codes), ``rfd`` — the Fréchet distance between reconstructions and originals on the
dataset's classifier features — ``bits_per_image``, ``perplexity`` (exp of the entropy of the
per-position code histogram over train + test: every discrete latent's "effective codebook"),
``code_usage`` (VQ / FSQ: fraction of the codes used; binary kinds: fraction of bits that are not
constant) and ``bit_entropy`` (binary kinds: mean per-bit entropy, bits).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from discrete_priors import metrics, pipeline
from experiments.common import AE_SEED, Preset, ensure_autoencoder, pending, record, scoring_for

BIT_BUDGETS = (8, 16, 32)  # bits per position; x 16 positions = 128, 256, 512 bits per image


def fsq_name(bits_per_position: int) -> str:
    """FSQ with bits/2 channels of 4 levels: exactly ``bits_per_position`` bits per position."""
    return "fsq-L" + ".".join(["4"] * (bits_per_position // 2))


MATCHED_BITS = tuple(f"{family}-c{c}" for c in BIT_BUDGETS for family in ("binary", "binary-det", "lfq", "bsq")) \
    + tuple(fsq_name(c) for c in BIT_BUDGETS) + ("vq-K256",)
MATCHED_GRID = ("vq-K1024", "fsq-L8.5.5.5", "continuous-d8")  # beside binary-c32 & co. from MATCHED_BITS
LATENTS = MATCHED_BITS + MATCHED_GRID


def code_statistics(codes, spec) -> dict:
    """Usage of a set of codes in the library layout (see the module doc); {} for continuous."""
    if spec.kind == "continuous":
        return {}  # no finite bit count
    tokens = codes.reshape(-1) if spec.kind == "categorical" else codes.reshape(-1, spec.channels)
    counts = torch.unique(tokens, dim=None if spec.kind == "categorical" else 0, return_counts=True)[1].double()
    freq = counts / counts.sum()
    values = {"bits_per_image": spec.bits, "perplexity": math.exp(float(-(freq * freq.log()).sum()))}
    if spec.kind == "binary":
        stats = metrics.binary_code_stats(codes)
        return values | {"code_usage": 1.0 - stats.dead_fraction, "bit_entropy": stats.bit_entropy}
    return values | {"code_usage": len(counts) / spec.vocab_size}


def run(preset: Preset, out: Path, *, latents=LATENTS, data_dir=None, progress=None) -> None:
    out = Path(out)
    configs = {name: pipeline.latent_config(name) for name in latents}  # bad names fail before any training
    # the autoencoders at AE_SEED, the ones every prior seed shares: one seed, whatever preset.seeds
    todo = {AE_SEED: pending(out, preset=preset, experiment="reconstruction", variants=latents, seed=AE_SEED)}
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
