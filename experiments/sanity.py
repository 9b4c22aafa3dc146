"""Where "good" and "garbage" lie on each metric: the distribution metrics of real training
images, of the autoencoder's reconstructions of the test split, and of uniformly random codes
decoded by the same autoencoder — all against the test split, on the dataset's classifier features.

Rows: experiment "sanity", variants "<dataset>/real", "<dataset>/recon", "<dataset>/random-codes";
metrics fd, precision, recall, density, coverage (+ psnr/ssim for the reconstructions).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from discrete_priors import metrics, pipeline
from experiments.common import Preset, binary_name, done, ensure_autoencoder, record, scoring_for

# Setups for a dataset the preset itself does not use: digits at 16x16 (4x4 positions),
# Fashion-MNIST at its native 28x28 with the cpu-fashion backbone (7x7 positions).
SETUPS = {"digits": {"dataset": "digits", "size": 16, "ae_preset": "cpu-digits"},
          "fashion-mnist": {"dataset": "fashion-mnist", "size": 28, "ae_preset": "cpu-fashion"}}


def run(preset: Preset, out: Path, *, data_dir=None, datasets=("digits", "fashion-mnist"), progress=None) -> None:
    for dataset in datasets:
        if dataset != preset.dataset and dataset not in SETUPS:
            raise ValueError(f"sanity: no setup for dataset {dataset!r}, expected one of {sorted(SETUPS)}")
        setup = preset if dataset == preset.dataset else replace(preset, **SETUPS[dataset])
        # the preset's own dataset shares the other runners' autoencoder; another gets a sub-folder
        runs = Path(out) if dataset == preset.dataset else Path(out) / dataset
        run_dataset(setup, Path(out), runs=runs, data_dir=data_dir)


def run_dataset(preset: Preset, out: Path, *, runs: Path, data_dir=None) -> None:
    """``out``: where results.csv lives; ``runs``: where this dataset's autoencoder and classifier live."""
    name = preset.dataset
    variants = [f"{name}/{v}" for v in ("real", "recon", "random-codes")]
    seeds = [s for s in preset.seeds if not all(done(out, preset=preset, experiment="sanity", variant=v, seed=s) for v in variants)]
    if not seeds:
        return
    scoring = scoring_for(preset, runs, data_dir=data_dir)
    extractor, train, test = scoring.extractor, scoring.train, scoring.test
    n = min(preset.num_samples, len(test))
    ref = scoring.scorer.reference_features

    def quality(images):
        feats = extractor.features(images)
        prdc = metrics.precision_recall(ref, feats)
        return {"fd": metrics.frechet_distance(ref, feats), "precision": prdc.precision, "recall": prdc.recall,
                "density": prdc.density, "coverage": prdc.coverage}

    for seed in seeds:
        generator = torch.Generator().manual_seed(seed)
        real = train[torch.randperm(len(train), generator=generator)[:n]]
        ae_dir = ensure_autoencoder(preset, runs, latent=pipeline.latent_config(binary_name(preset)), name=binary_name(preset),
                                    seed=seed, data_dir=data_dir)
        ae = pipeline.load_autoencoder(ae_dir)
        recon = pipeline.decode_codes(ae, pipeline.encode_images(ae, test).codes)
        spec = ae.code_spec
        random_codes = (torch.rand((n, *spec.shape), generator=generator) < 0.5).float()
        rows = {
            "real": quality(real),
            "recon": quality(recon) | {k: v for k, v in metrics.reconstruction_metrics(recon, test).items()
                                       if v == v},
            "random-codes": quality(pipeline.decode_codes(ae, random_codes)),
        }
        for variant, values in rows.items():
            record(out, experiment="sanity", variant=f"{name}/{variant}", seed=seed, values=values,
                   extractor=extractor.name, num_samples=len(test) if variant == "recon" else n, preset=preset)


__all__ = ["run"]
