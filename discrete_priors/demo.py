"""``make demo``: the whole pipeline on the embedded digits data, in minutes on two CPU cores.

binary autoencoder (16x16 → 4x4 positions x 32 bits) → latent cache → Bernoulli diffusion prior
(residual target) → sample grids at 16 and 64 steps → one row of metrics per setting, next to
the same metrics for held-out real images and for the autoencoder's reconstructions.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from discrete_priors import evaluate, metrics, pipeline
from discrete_priors.data import load_dataset, load_latent_cache
from discrete_priors.io import write_json
from discrete_priors.results import append_rows, make_rows

FULL = {
    "ae_preset": "cpu-digits", "ae_steps": 1000, "ae_batch": 64, "ae_lr": 2e-3,
    "net": "cpu", "prior_steps": 3500, "prior_batch": 128, "prior_lr": 1e-3,
    "num_samples": 500, "sample_steps": (16, 64),
}
QUICK = {
    "ae_preset": "tiny", "ae_steps": 60, "ae_batch": 32, "ae_lr": 2e-3,
    "net": "tiny", "prior_steps": 60, "prior_batch": 32, "prior_lr": 1e-3,
    "num_samples": 64, "sample_steps": (4, 8),
}


def run_demo(*, out: Path, quick: bool = False, seed: int = 0, progress: bool | None = None) -> dict:
    cfg = QUICK if quick else FULL
    out = Path(out)
    timings = {}
    torch.manual_seed(seed)

    start = time.perf_counter()
    pipeline.train_autoencoder(out=out / "ae", dataset="digits", size=16, latent={"kind": "binary", "bits": 32},
                               preset=cfg["ae_preset"],
                               train_config=pipeline.train_config(steps=cfg["ae_steps"], batch_size=cfg["ae_batch"],
                                                                  lr=cfg["ae_lr"], seed=seed, ema_decay=0.0,
                                                                  min_lr_ratio=0.0),
                               progress=progress)
    timings["autoencoder_s"] = time.perf_counter() - start

    start = time.perf_counter()
    pipeline.write_latent_cache(ae_dir=out / "ae", out_dir=out / "latents", dataset="digits", size=16, seed=seed,
                                progress=progress)
    timings["encode_s"] = time.perf_counter() - start

    start = time.perf_counter()
    pipeline.train_prior(out=out / "prior", latents_dir=out / "latents", prior="bernoulli",
                         prior_kwargs={"preset": cfg["net"], "parameterization": "residual"},
                         train_config=pipeline.train_config(steps=cfg["prior_steps"], batch_size=cfg["prior_batch"],
                                                            lr=cfg["prior_lr"], seed=seed, min_lr_ratio=0.0),
                         resample=True, progress=progress)
    timings["prior_s"] = time.perf_counter() - start

    start = time.perf_counter()
    rows = evaluate_demo(out, cfg, seed=seed, progress=progress)
    timings["evaluate_s"] = time.perf_counter() - start
    summary = {"outputs": str(out), "results": str(out / "results.csv"), "timings_s": timings, "rows": rows}
    write_json(out / "summary.json", summary)
    return summary


def evaluate_demo(out: Path, cfg: dict, *, seed: int, progress: bool | None = None) -> dict:
    ae = pipeline.load_autoencoder(out / "ae")
    prior = pipeline.load_prior(out / "prior")
    train = load_dataset("digits", split="train", size=16).images
    test = load_dataset("digits", split="test", size=16).images
    extractor = metrics.get_extractor("classifier:digits", size=16, seed=0,
                                      cache_dir=out / "classifier")
    quality = evaluate.SampleScorer(extractor, reference=test, train=train)

    results, counts = {}, {}
    # where "good" lies: real images and the autoencoder's reconstructions
    results["real-images"] = quality.real_row(cfg["num_samples"])
    counts["real-images"] = min(len(train), cfg["num_samples"])
    recon = pipeline.decode_codes(ae, pipeline.encode_images(ae, test).codes)
    results["ae-reconstructions"] = quality(recon) | metrics.reconstruction_metrics(recon, test)
    counts["ae-reconstructions"] = len(test)
    # the NLL does not depend on the sampling steps: measured once, reported in each prior row
    nll = evaluate.nll_row(prior, load_latent_cache(out / "latents" / "test.safetensors").codes, seed=seed)
    for steps in cfg["sample_steps"]:
        scored = evaluate.score_prior(prior, ae, quality, num_samples=cfg["num_samples"], seed=seed, steps=steps,
                                      speed_repeats=2, progress=progress)
        pipeline.save_samples(scored.samples, out / "samples" / f"steps{steps}", meta={"seed": seed, "steps": steps})
        results[f"bernoulli-S{steps}"] = scored.row | nll
    (out / "results.csv").unlink(missing_ok=True)  # the demo's rows describe its latest run only
    for variant, values in results.items():
        append_rows(out / "results.csv", make_rows(experiment="demo", variant=variant, seed=seed, metrics=values,
                                                   extractor=extractor.name,
                                                   num_samples=counts.get(variant, cfg["num_samples"])))
    return {variant: {k: round(v, 4) for k, v in values.items()} for variant, values in results.items()}
