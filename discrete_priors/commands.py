"""What each CLI command does: parsed arguments in, a stage of pipeline.py (or a row of
evaluate.py) out. Argument parsing lives in cli.py, on top of this module; nothing here
imports it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from discrete_priors import evaluate, metrics, pipeline
from discrete_priors.data import load_dataset, load_latent_cache
from discrete_priors.demo import run_demo
from discrete_priors.io import append_text, load_tensors
from discrete_priors.results import append_rows, make_rows
from discrete_priors.training import autocast_context

PRIOR_FLAGS = ("timesteps", "schedule", "parameterization", "reverse", "loss_balance", "vlb_weight", "time_sampling",
               "final_step", "loss_weighting")


def train_ae(args) -> dict:
    latent = pipeline.latent_kwargs(args.latent, bits=args.bits, codebook_size=args.codebook_size, dim=args.latent_dim,
                                    kl_weight=args.kl_weight)
    overrides = {"adversarial_weight": args.adversarial_weight, "disc_start": args.disc_start}
    if args.recon_loss:
        overrides["recon_loss"] = args.recon_loss
    if args.perceptual_weights:
        overrides |= {"perceptual_weight": args.perceptual_weight, "perceptual_weights_path": args.perceptual_weights}
    result = pipeline.train_autoencoder(out=args.out, dataset=args.dataset, size=args.size, data_dir=args.data_dir,
                                        latent=latent, preset=args.preset, overrides=overrides,
                                        train_config=train_config_from_args(args), data_seed=args.data_seed)
    return {"run": args.out, "result": result._asdict() if hasattr(result, "_asdict") else result}


def train_config_from_args(args) -> dict:
    """The trainer's config from the ``training`` flags of train-ae and train-prior."""
    return pipeline.train_config(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                 ema_decay=args.ema_decay, warmup_steps=args.warmup_steps,
                                 checkpoint_every=args.checkpoint_every, schedule=args.lr_schedule,
                                 min_lr_ratio=args.min_lr_ratio, weight_decay=args.weight_decay,
                                 grad_clip=args.grad_clip, device=args.device, amp=args.precision,
                                 compile=args.compile)


def encode(args) -> dict:
    with autocast_context(pipeline.resolve_device(args.device), args.precision):
        paths = pipeline.write_latent_cache(ae_dir=args.ae, out_dir=args.out, dataset=args.dataset, size=args.size,
                                            data_dir=args.data_dir, splits=tuple(args.splits.split(",")), mode=args.mode,
                                            with_probs=not args.no_probs, seed=args.seed, data_seed=args.data_seed,
                                            device=args.device)
    return {split: str(p) for split, p in paths.items()}


def prior_kwargs_from_args(args) -> dict:
    kwargs = {flag: getattr(args, flag) for flag in PRIOR_FLAGS if getattr(args, flag, None) is not None}
    kwargs["preset"] = args.net  # the same network-size preset names for every prior
    return kwargs


def train_prior(args) -> dict:
    result = pipeline.train_prior(out=args.out, latents_dir=args.latents, prior=args.prior,
                                  prior_kwargs=prior_kwargs_from_args(args), train_config=train_config_from_args(args),
                                  resample=args.resample, class_conditional=args.class_conditional)
    return {"run": args.out, "result": result._asdict() if hasattr(result, "_asdict") else result}


def parse_labels(text: str | None, n: int) -> torch.Tensor | None:
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--labels: expected comma-separated integers, got {text!r}") from None
    if not values:
        raise ValueError("--labels: no label given")
    return torch.tensor(values).repeat(n // len(values) + 1)[:n]


def sample(args) -> dict:
    device = pipeline.resolve_device(args.device)
    prior, ae = pipeline.load_prior_and_autoencoder(args.prior, args.ae, allow_mismatch=args.allow_mismatch, device=device)
    labels = parse_labels(args.labels, args.num_samples)
    start = time.perf_counter()
    with autocast_context(device, args.precision):
        out = pipeline.sample_images(ae, prior, args.num_samples, batch_size=args.batch_size, seed=args.seed, labels=labels,
                                     steps=args.steps, temperature=args.temperature, guidance=args.guidance)
    seconds = time.perf_counter() - start
    meta = {"seed": args.seed, "steps": args.steps, "temperature": args.temperature, "guidance": args.guidance,
            "seconds": seconds}
    return pipeline.save_samples(out, Path(args.out), meta=meta)


def demo(args) -> dict:
    return run_demo(out=Path(args.out), quick=args.quick, seed=args.seed)


def eval(args) -> dict:  # noqa: A001 - the CLI command is called eval
    """One result row for a prior (sampled here) or for a folder of saved samples."""
    if (args.prior is None) == (args.samples is None):
        raise SystemExit("eval: give exactly one of --prior (with --ae) or --samples")
    if args.prior is not None and args.ae is None:
        raise SystemExit("eval: --prior needs --ae to decode the sampled codes")
    device = pipeline.resolve_device(args.device)
    if args.prior is not None:  # a mismatched pair is refused before any data is loaded
        prior, ae = pipeline.load_prior_and_autoencoder(args.prior, args.ae, allow_mismatch=args.allow_mismatch,
                                                        device=device)
    train = load_dataset(args.dataset, split="train", size=args.size, data_dir=args.data_dir, seed=args.data_seed).images
    test = load_dataset(args.dataset, split="test", size=args.size, data_dir=args.data_dir, seed=args.data_seed).images
    extractor_name = args.extractor or f"classifier:{args.dataset}"
    extractor = metrics.get_extractor(extractor_name, size=args.size, data_seed=args.data_seed, cache_dir=args.cache_dir,
                                      data_dir=args.data_dir, weights=args.inception_weights, device=device)
    scorer = evaluate.SampleScorer(extractor, reference=test, train=train)
    if args.samples is not None:
        images = load_tensors(Path(args.samples) / "samples.safetensors")["images"]
        row, num_samples = scorer(images), len(images)
        variant = args.variant or Path(args.samples).name
    else:
        labels = parse_labels(args.labels, args.num_samples)
        if args.guidance != 0.0 and labels is None:
            labels = torch.arange(args.num_samples) % prior.num_classes if prior.num_classes else None
        test_cache = None
        if args.latents is not None:  # held-out codes of another autoencoder would score a meaningless NLL
            fingerprint = None if args.allow_mismatch else pipeline.autoencoder_fingerprint(args.ae)
            test_cache = load_latent_cache(Path(args.latents) / "test.safetensors", expect_autoencoder_hash=fingerprint)
        with autocast_context(device, args.precision):
            row = evaluate.score_prior(prior, ae, scorer, num_samples=args.num_samples, seed=args.seed,
                                       batch_size=args.batch_size, steps=args.steps, temperature=args.temperature,
                                       guidance=args.guidance, labels=labels, speed_batch_size=args.batch_size,
                                       test_codes=None if test_cache is None else test_cache.codes,
                                       test_labels=None if test_cache is None else test_cache.labels).row
        num_samples = args.num_samples
        variant = args.variant or f"{pipeline.read_json(Path(args.prior) / 'prior.json')['name']}/S={args.steps or 'default'}"
    out = Path(args.out)
    append_rows(out / "results.csv", make_rows(experiment=args.experiment, variant=variant, seed=args.seed, metrics=row,
                                               extractor=extractor.name, num_samples=num_samples))
    record = {"experiment": args.experiment, "variant": variant, "seed": args.seed, "extractor": extractor.name,
              "num_samples": num_samples, **row}
    append_text(out / "results.jsonl", json.dumps(record) + "\n")  # a crash leaves the previous file whole
    return record
