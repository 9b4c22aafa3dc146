"""Quality at equal steps, fp32 vs bf16 training (and sampling) of the cpu-preset Bernoulli prior on
real Fashion-MNIST binary latents (issue #11, deliver item 2: choosing ``--precision auto``).

    OMP_NUM_THREADS=1 python -m experiments.bf16_quality --latents <cache> --ae <ae run> --out /work/runs/bf16 \
        --classifier /work/runs/bf16/classifier \
        --runs fp32:0 bf16:0 bf16:1 fp32:1

Each run trains the recipe of experiments/common.py's cpu preset (net "cpu", residual, T = 64,
16 sampling steps, final_step sample, resampled codes, batch 128, lr 3e-3, 1,500 steps) at one
precision and seed (log every 10 steps), then scores 1,000 samples at 16 steps (FD, precision,
recall against the test split, classifier features) sampled in fp32 and in bf16, and writes
``<out>/<precision>-seed<k>/quality.json``. Runs are sequential (one heavy job at a time)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from discrete_priors import evaluate, metrics, pipeline
from discrete_priors.data import load_dataset
from discrete_priors.io import write_json
from discrete_priors.training import autocast_context

RECIPE = {"preset": "cpu", "parameterization": "residual", "timesteps": 64, "default_steps": 16, "final_step": "sample"}


def train(out: Path, latents: Path, precision: str, seed: int, steps: int) -> float:
    config = pipeline.train_config(steps=steps, batch_size=128, lr=3e-3, seed=seed, amp=precision, log_every=10,
                                   device="cpu")
    start = time.perf_counter()
    pipeline.train_prior(out=out, latents_dir=latents, prior="bernoulli", prior_kwargs=RECIPE, train_config=config,
                         resample=True, progress=False)
    return time.perf_counter() - start


def score(run: Path, ae_dir: Path, scorer, sample_precision: str, *, num_samples: int, seed: int) -> dict:
    prior, ae = pipeline.load_prior(run, device="cpu"), pipeline.load_autoencoder(ae_dir, device="cpu")
    start = time.perf_counter()
    with autocast_context("cpu", sample_precision):  # as the CLI's sample/evaluate commands do
        samples = pipeline.sample_images(ae, prior, num_samples, batch_size=256, seed=seed, steps=16, progress=False)
    seconds = time.perf_counter() - start
    return scorer.quality(samples.images) | {"sampling_s": seconds, "sample_seed": seed}


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--latents", type=Path, required=True)
    p.add_argument("--ae", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--runs", nargs="+", default=["fp32:0", "bf16:0"])
    p.add_argument("--classifier", type=Path, required=True, help="the cached classifier folder (read)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--rescore-seeds", type=int, default=0,
                   help="instead of training: score the trained runs again at sample seeds 0..N-1, in fp32 and bf16, "
                        "and the FD of the fp32 samples with the classifier features under bf16 autocast "
                        "(<run>/quality_seeds.json)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    extractor = metrics.get_extractor("classifier:fashion-mnist", size=16, seed=0, cache_dir=args.classifier)
    test = load_dataset("fashion-mnist", split="test", size=16).images
    scorer = evaluate.SampleScorer(extractor, reference=test, train=test[:1])
    if args.rescore_seeds:
        return rescore(args, scorer)
    for spec in args.runs:
        precision, seed = spec.split(":")
        run = args.out / f"{precision}-seed{seed}"
        train_s = train(run, args.latents, precision, int(seed), args.steps)
        row = {"precision": precision, "seed": int(seed), "steps": args.steps, "train_s": train_s,
               "train_s_per_step": train_s / args.steps, "torch": torch.__version__,
               "load_avg_after": open("/proc/loadavg").read().split()[:3]}
        sampled = {f"sampled_{sp}": score(run, args.ae, scorer, sp, num_samples=args.num_samples, seed=0)
                   for sp in ("fp32", "bf16")}
        if precision == "fp32":  # the sampling-seed noise of the FD at equal weights
            sampled["sampled_fp32_seed1"] = score(run, args.ae, scorer, "fp32", num_samples=args.num_samples, seed=1)
        row |= sampled
        write_json(run / "quality.json", row)
        print(json.dumps(row), flush=True)


def rescore(args, scorer) -> None:
    """FD / precision / recall of each run at sample seeds 0..N-1 sampled in fp32 and in bf16 (the same
    seed draws the same uniforms both ways: a paired comparison), and the fp32 samples' FD with the
    features (theirs and the test split's) computed under bf16 autocast (what an ``evaluate --precision bf16`` does to the metric)."""
    for spec in args.runs:
        precision, seed = spec.split(":")
        run = args.out / f"{precision}-seed{seed}"
        prior, ae = pipeline.load_prior(run, device="cpu"), pipeline.load_autoencoder(args.ae, device="cpu")
        rows = []
        with autocast_context("cpu", "bf16"):
            reference_bf16 = scorer.extractor.features(scorer.reference).float()
        for sample_seed in range(args.rescore_seeds):
            row = {"sample_seed": sample_seed}
            for sp in ("fp32", "bf16"):
                start = time.perf_counter()
                with autocast_context("cpu", sp):
                    images = pipeline.sample_images(ae, prior, args.num_samples, batch_size=256, seed=sample_seed,
                                                    steps=16, progress=False).images
                row[f"sampled_{sp}"] = scorer.quality(images) | {"sampling_s": time.perf_counter() - start}
                if sp == "fp32":
                    with autocast_context("cpu", "bf16"):
                        features = scorer.extractor.features(images)
                    row["sampled_fp32_features_bf16"] = evaluate.distribution_row(features.float(), reference_bf16)
            rows.append(row)
            print(json.dumps({"run": run.name, **row}), flush=True)
        write_json(run / "quality_seeds.json", {"precision": precision, "seed": int(seed), "rows": rows})


if __name__ == "__main__":
    main()
