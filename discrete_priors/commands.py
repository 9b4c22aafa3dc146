"""What each CLI command does: parsed arguments in, a stage of pipeline.py (or a row of
evaluate.py) out. Argument parsing lives in cli.py, on top of this module; nothing here
imports it."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from discrete_priors import evaluate, metrics, pipeline
from discrete_priors.data import load_dataset, load_latent_cache
from discrete_priors.demo import run_demo
from discrete_priors.io import append_text, load_tensors
from discrete_priors.results import append_rows, make_rows
from discrete_priors.training import autocast_context
from discrete_priors.training.distributed import is_main_process

PRIOR_FLAGS = ("timesteps", "schedule", "parameterization", "reverse", "loss_balance", "vlb_weight", "time_sampling",
               "final_step", "loss_weighting", "target", "sampler", "eta")


def train_ae(args) -> dict:
    latent = pipeline.latent_kwargs(args.latent, bits=args.bits, codebook_size=args.codebook_size, dim=args.latent_dim,
                                    kl_weight=args.kl_weight, levels=args.levels, deterministic=args.deterministic)
    overrides = {"adversarial_weight": args.adversarial_weight, "disc_start": args.disc_start}
    if args.recon_loss:
        overrides["recon_loss"] = args.recon_loss
    if args.perceptual_weights:
        overrides |= {"perceptual_weight": args.perceptual_weight, "perceptual_weights_path": args.perceptual_weights}
    result = pipeline.train_autoencoder(out=args.out, dataset=args.dataset, size=args.size, data_dir=args.data_dir,
                                        latent=latent, preset=args.preset, overrides=overrides,
                                        train_config=train_config_from_args(args), data_seed=args.data_seed)
    record = {"run": args.out, "result": result._asdict() if hasattr(result, "_asdict") else result}
    if is_main_process():
        from discrete_priors import reports

        with autocast_context(pipeline.resolve_device(args.device), args.precision):
            test = reports.autoencoder_test_report(args.out, device=args.device)
        log_line(f"train-ae: test split ({test['num_test']} images): PSNR {test['psnr']:.2f} dB, SSIM {test['ssim']:.4f} "
                 f"(train_log.jsonl's psnr is on training batches); grid of test images over reconstructions: {test['grid']}")
        record |= {"test": test, "plot": str(reports.plot_train_log(args.out))}
    return record


def train_config_from_args(args) -> dict:
    """The trainer's config from the ``training`` flags of train-ae and train-prior."""
    return pipeline.train_config(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                 ema_decay=args.ema_decay, warmup_steps=args.warmup_steps,
                                 checkpoint_every=args.checkpoint_every, schedule=args.lr_schedule,
                                 min_lr_ratio=args.min_lr_ratio, weight_decay=args.weight_decay,
                                 grad_clip=args.grad_clip, device=args.device, amp=args.precision,
                                 compile=args.compile)


def recorded_data(args) -> dict:
    """The dataset flags of a command given ``--ae``: those not set come from its data.json
    (pipeline.recorded_dataset)."""
    return pipeline.recorded_dataset(args.ae, dataset=args.dataset, size=args.size, data_dir=args.data_dir,
                                     data_seed=args.data_seed)


def encode(args) -> dict:
    data = recorded_data(args)
    with autocast_context(pipeline.resolve_device(args.device), args.precision):
        paths = pipeline.write_latent_cache(ae_dir=args.ae, out_dir=args.out, dataset=data["name"], size=data["size"],
                                            data_dir=data["data_dir"], splits=tuple(args.splits.split(",")), mode=args.mode,
                                            with_probs=not args.no_probs, seed=args.seed, data_seed=data["seed"],
                                            device=args.device)
    names = pipeline.read_json(Path(args.ae) / "data.json").get("classes") if (Path(args.ae) / "data.json").exists() else None
    log_line(f"encode: {data['name']} classes (label=name): {pipeline.describe_classes(names)}")
    return {split: str(p) for split, p in paths.items()}


def prior_kwargs_from_args(args) -> dict:
    kwargs = {flag: getattr(args, flag) for flag in PRIOR_FLAGS if getattr(args, flag, None) is not None}
    kwargs["preset"] = args.net  # the same network-size preset names for every prior
    if getattr(args, "default_steps", None) is not None:
        kwargs["default_steps"] = args.default_steps
    else:
        steps = cli_default_steps(args.prior, kwargs, getattr(args, "cli_default_steps", {}))
        if steps is not None:
            kwargs["default_steps"] = steps
    return kwargs


def cli_default_steps(prior: str, kwargs: dict, defaults: dict) -> int | None:
    """The sampling steps a prior trained from the command line samples at by default:
    ``defaults[prior]`` (cli.CLI_DEFAULT_STEPS) capped at its T, or None (the prior's own: T
    for absorbing, one per position for autoregressive; the direct parameterization must use T)."""
    import inspect

    from discrete_priors.priors import PRIORS

    if prior not in defaults or kwargs.get("parameterization") == "direct":
        return None
    timesteps = kwargs.get("timesteps", inspect.signature(PRIORS[prior]).parameters["timesteps"].default)
    return min(defaults[prior], timesteps)


def train_prior(args) -> dict:
    result = pipeline.train_prior(out=args.out, latents_dir=args.latents, prior=args.prior,
                                  prior_kwargs=prior_kwargs_from_args(args), train_config=train_config_from_args(args),
                                  resample=getattr(args, "resample", None),  # unset: chosen by the cache
                                  class_conditional=args.class_conditional)
    record = {"run": args.out, "result": result._asdict() if hasattr(result, "_asdict") else result,
              "resample": pipeline.read_json(Path(args.out) / "prior.json")["resample"]}
    if is_main_process():
        from discrete_priors import reports

        record["plot"] = str(reports.plot_train_log(args.out))
    return record


def plot_log(args) -> dict:
    from discrete_priors import reports

    return {"plot": str(reports.plot_train_log(args.run, out=args.out))}


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


def labels_for_prior(args, prior, n: int, *, default: torch.Tensor | None = None) -> torch.Tensor | None:
    """The (n,) labels of a sampling command: ``--labels`` cycled, else ``default`` (kept only
    for a class-conditional prior), checked against the prior with errors that name the fix."""
    labels = parse_labels(args.labels, n)
    if labels is not None:
        if not prior.num_classes:
            raise ValueError(f"--labels given, but the prior in {args.prior} is unconditional (trained without "
                             "--class-conditional): drop --labels, or train a prior with --class-conditional")
        given = torch.tensor([int(v) for v in args.labels.split(",") if v.strip()])  # also those past n
        outside = given[(given < 0) | (given >= prior.num_classes)]
        if len(outside):
            raise ValueError(f"--labels: {int(outside[0])} is not a class of the prior in {args.prior}, which has "
                             f"{prior.num_classes} classes: pass labels in 0..{prior.num_classes - 1}")
    elif prior.num_classes:
        labels = default
    if args.guidance != 0 and labels is None:
        if not prior.num_classes:
            raise ValueError(f"--guidance {args.guidance:g} needs a class-conditional prior, and the prior in {args.prior} "
                             "is unconditional: drop --guidance, or train a prior with --class-conditional")
        raise ValueError(f"--guidance {args.guidance:g} needs labels (the classes to guide towards): pass e.g. "
                         f"--labels 0,1,2 (cycled over the samples; classes 0..{prior.num_classes - 1})")
    return labels


def sample(args) -> dict:
    device = pipeline.resolve_device(args.device)
    prior, ae = pipeline.load_prior_and_autoencoder(args.prior, args.ae, allow_mismatch=args.allow_mismatch, device=device)
    labels = labels_for_prior(args, prior, args.num_samples)
    start = time.perf_counter()
    with autocast_context(device, args.precision):
        out = pipeline.sample_images(ae, prior, args.num_samples, batch_size=args.batch_size, seed=args.seed, labels=labels,
                                     steps=args.steps, temperature=args.temperature, guidance=args.guidance)
    seconds = time.perf_counter() - start
    meta = {"seed": args.seed, "steps": sampling_steps(prior, args.steps), "temperature": args.temperature,
            "guidance": args.guidance, "seconds": seconds}
    return pipeline.save_samples(out, Path(args.out), meta=meta)


def demo(args) -> dict:
    return run_demo(out=Path(args.out), quick=args.quick, seed=args.seed)


def log_line(text: str) -> None:
    """A progress line on stderr (stdout carries the command's JSON result), flushed at once so a
    redirected log shows it while the command runs."""
    print(text, file=sys.stderr, flush=True)


def check_eval_args(args) -> None:
    """eval's argument combinations, refused before anything is loaded or written."""
    if (args.prior is None) == (args.samples is None):
        raise SystemExit("eval: give exactly one of --prior (with --ae) or --samples")
    if args.prior is not None and args.ae is None:
        raise SystemExit("eval: --prior needs --ae to decode the sampled codes")
    nll_limits = [flag for flag, value in (("--nll-codes", args.nll_codes), ("--nll-timesteps", args.nll_timesteps))
                  if value is not None]
    if nll_limits and args.no_nll:
        raise SystemExit(f"eval: {' and '.join(nll_limits)} limit the NLL, which --no-nll skips: drop one of them")
    if nll_limits and (args.latents is None or args.prior is None):
        raise SystemExit(f"eval: {' and '.join(nll_limits)} limit the held-out NLL of a --prior, which needs --latents "
                         "(the latent cache whose test split is scored)")


def eval(args) -> dict:  # noqa: A001 - the CLI command is called eval
    """One result row for a prior (sampled here) or for a folder of saved samples. Each part
    (features, sampling, quality, memorisation, speed, NLL) logs a start line and its time."""
    check_eval_args(args)
    device = pipeline.resolve_device(args.device)
    times = evaluate.PartTimes(log=log_line)
    if args.prior is not None:  # a mismatched pair is refused before any data is loaded
        prior, ae = pipeline.load_prior_and_autoencoder(args.prior, args.ae, allow_mismatch=args.allow_mismatch,
                                                        device=device)
        if args.nll_timesteps and not evaluate.nll_takes_timesteps(prior):
            raise SystemExit(f"eval: the {prior.name} prior's NLL has no timestep estimate (--nll-timesteps); limit "
                             "the held-out codes with --nll-codes instead")
        nll_timesteps = eval_nll_timesteps(args, prior)
        log_line(f"eval: sampling at {sampling_steps(prior, args.steps)} steps "
                 f"({'--steps' if args.steps else 'the prior' + chr(39) + 's default; --steps to change'})"
                 + ("" if args.latents is None or args.no_nll else f"; NLL: {describe_nll(prior, nll_timesteps)}"))
        every_class = torch.arange(args.num_samples) % prior.num_classes if prior.num_classes else None
        labels = labels_for_prior(args, prior, args.num_samples, default=every_class)  # conditional: all classes in turn
        test_cache = None
        if args.latents is not None and not args.no_nll:  # held-out codes of another autoencoder: a meaningless NLL
            fingerprint = None if args.allow_mismatch else pipeline.autoencoder_fingerprint(args.ae)
            test_cache = load_latent_cache(Path(args.latents) / "test.safetensors", expect_autoencoder_hash=fingerprint)
    elif not (Path(args.samples) / "samples.safetensors").is_file():
        raise FileNotFoundError(f"--samples {args.samples} holds no samples.safetensors: pass a folder written by `sample`")
    memorisation = not args.no_memorisation
    data = pipeline.recorded_dataset(args.ae, dataset=args.dataset, size=args.size, data_dir=args.data_dir,
                                     data_seed=args.data_seed)
    with times("features", "real images, feature extractor, features of the test" + " and train" * memorisation + " split"):
        train = load_dataset(**data, split="train").images
        test = load_dataset(**data, split="test").images
        if args.ae is not None:
            pipeline.check_data_record(args.ae, {"dataset": data["name"], "size": test.shape[-1], "data_seed": data["seed"]})
        extractor_name = args.extractor or f"classifier:{data['name']}"
        extractor = metrics.get_extractor(extractor_name, size=data["size"], data_seed=data["seed"],
                                          cache_dir=args.cache_dir, data_dir=data["data_dir"],
                                          weights=args.inception_weights, device=device)
        if getattr(extractor, "cache_entry", None) is not None:
            state = "reused from" if extractor.from_cache else f"trained ({extractor.info['train_seconds']:.1f} s) into"
            log_line(f"eval: feature classifier {state} {extractor.cache_entry} "
                     f"(test accuracy {extractor.test_accuracy:.3f})")
        scorer = evaluate.SampleScorer(extractor, reference=test, train=train)
        reference_features = scorer.reference_features  # computed here (cached), so this part's time holds them
        train_features = scorer.train_features if memorisation else None
    del reference_features, train_features
    extra = {}
    if args.samples is not None:
        images = load_tensors(Path(args.samples) / "samples.safetensors")["images"]
        with times("quality" + " and memorisation" * memorisation):
            row = scorer(images, memorisation=memorisation)
        num_samples = len(images)
        variant = args.variant or Path(args.samples).name
    else:
        steps = sampling_steps(prior, args.steps)  # resolved here, so the log and the row name it
        nll_codes = None if test_cache is None else test_cache.codes[:args.nll_codes]
        nll_labels = None if test_cache is None or test_cache.labels is None else test_cache.labels[:args.nll_codes]
        with autocast_context(device, args.precision):
            scored = evaluate.score_prior(prior, ae, scorer, num_samples=args.num_samples, seed=args.seed,
                                          batch_size=args.batch_size, steps=steps, temperature=args.temperature,
                                          guidance=args.guidance, labels=labels, speed_batch_size=args.speed_batch_size,
                                          test_codes=nll_codes, test_labels=nll_labels, memorisation=memorisation,
                                          speed=not args.no_speed, nll_timesteps=nll_timesteps, times=times)
        row = scored.row
        if labels is not None and hasattr(extractor, "predict") and extractor.num_classes == prior.num_classes:
            row["class_accuracy"] = metrics.class_agreement(extractor, scored.samples.images, labels).accuracy
            log_line(f"eval: class accuracy of the conditional samples {row['class_accuracy']:.3f} "
                     f"(the classifier's on real test images: {extractor.test_accuracy:.3f})")
        if nll_codes is not None:
            extra = {"nll_codes": len(nll_codes)}
            if evaluate.nll_takes_timesteps(prior):  # M of T stratified timesteps, or "all" (the full bound)
                extra["nll_timesteps"] = "all" if nll_timesteps >= prior.timesteps else nll_timesteps
        extra["steps"] = steps
        num_samples = args.num_samples
        variant = args.variant or f"{pipeline.read_json(Path(args.prior) / 'prior.json')['name']}/S={steps}"
    out = Path(args.out)
    append_rows(out / "results.csv", make_rows(experiment=args.experiment, variant=variant, seed=args.seed, metrics=row,
                                               extractor=extractor.name, num_samples=num_samples))
    record = {"experiment": args.experiment, "variant": variant, "seed": args.seed, "extractor": extractor.name,
              "num_samples": num_samples, **row, **extra, "seconds": {k: round(v, 2) for k, v in times.seconds.items()}}
    append_text(out / "results.jsonl", json.dumps(record) + "\n")  # a crash leaves the previous file whole
    log_line("eval: " + ", ".join(f"{part} {seconds:.1f} s" for part, seconds in times.seconds.items()))
    return record


def sampling_steps(prior, steps: int | None) -> int:
    """The sampling steps a prior's ``sample(steps=steps)`` takes: ``steps``, else its config's
    ``default_steps``, else T (absorbing), else one per position (autoregressive)."""
    if steps is not None:
        return steps
    default = getattr(prior, "default_steps", None) or getattr(prior, "timesteps", None)
    return default if default is not None else prior.spec.num_positions


def eval_nll_timesteps(args, prior) -> int | None:
    """The ``num_timesteps`` eval passes to the NLL: ``--nll-timesteps M``, T for ``all`` / 0 (the
    full bound), and unset the CLI default (cli.DEFAULT_NLL_TIMESTEPS, 32) for a prior whose
    bound sums over timesteps; None for the others (their own NLL: exact or N network calls)."""
    if not evaluate.nll_takes_timesteps(prior):
        return None
    if args.nll_timesteps is None:
        return min(getattr(args, "default_nll_timesteps", None) or prior.timesteps, prior.timesteps)
    return prior.timesteps if args.nll_timesteps == 0 else args.nll_timesteps


def describe_nll(prior, nll_timesteps: int | None) -> str:
    """How eval computes the held-out NLL, for its log line."""
    if nll_timesteps is None:
        return f"the {prior.name} prior's own ({'exact' if prior.name == 'autoregressive' else 'bound'})"
    if nll_timesteps >= prior.timesteps:
        return f"the full bound over all T={prior.timesteps} timesteps"
    how = "stratified random" if prior.name == "bernoulli" else "random"
    return (f"estimated from {nll_timesteps} {how} timesteps of T={prior.timesteps}, unbiased "
            "(--nll-timesteps all for the full bound)")


def parse_indices(text: str) -> list[int]:
    """``--indices 0,5,7`` -> [0, 5, 7] (each >= 0; the upper bound is checked against the split)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--indices: expected comma-separated test-split indices like 0,5,7, got {text!r}") from None
    if not values or min(values) < 0:
        raise ValueError(f"--indices: expected indices >= 0 into the test split, got {text!r}")
    return values


def inpaint_inputs(args, ae, indices: list[int] | None) -> tuple[torch.Tensor, torch.Tensor | None, list[str]]:
    """The images to inpaint at the autoencoder's size, their labels (test-split inputs only) and
    names: an image file, every image under a folder, or test-split indices."""
    from discrete_priors.data import list_image_files, load_image_files

    if indices is None:
        path = Path(args.input)
        if not path.exists():
            raise FileNotFoundError(f"--input {path}: no such image file or folder")
        files = list_image_files(path)[0] if path.is_dir() else [path]
        images = load_image_files(files, size=ae.image_size, channels=ae.image_channels)  # all decoded first
        return images, None, [str(f) for f in files]
    data = recorded_data(args)
    test = load_dataset(**data, split="test")
    pipeline.check_data_record(args.ae, {"dataset": data["name"], "size": test.images.shape[-1], "data_seed": data["seed"]})
    if max(indices) >= len(test.images):
        raise ValueError(f"--indices: the test split of {data['name']} has {len(test.images)} images "
                         f"(indices 0..{len(test.images) - 1}), got {max(indices)}")
    labels = None if test.labels is None else test.labels[indices]
    return test.images[indices], labels, [f"{data['name']}/test/{i}" for i in indices]


def inpaint(args) -> dict:
    """Fill a region of real images with a prior: every argument is checked (and the pair's
    fingerprints compared) before any image is loaded or any file written."""
    from discrete_priors import inpainting

    if (args.input is None) == (args.indices is None):
        raise SystemExit("inpaint: give exactly one of --input (an image file or folder) or --indices (test split)")
    if (args.box is None) == (args.mask is None):
        raise SystemExit("inpaint: give exactly one of --box y0,x0,y1,x1 or --mask PNG (white = fill)")
    config = pipeline.autoencoder_config(args.ae)
    size, downsample = config["image_size"], config["downsample"]
    grid = (size // downsample, size // downsample)
    pixel_mask = (inpainting.box_mask(inpainting.parse_box(args.box, size), size) if args.box is not None
                  else inpainting.png_mask(args.mask, size))
    inpainting.check_coverage(inpainting.unknown_positions(pixel_mask, grid), grid)
    indices = None if args.indices is None else parse_indices(args.indices)
    device = pipeline.resolve_device(args.device)
    prior, ae = pipeline.load_prior_and_autoencoder(args.prior, args.ae, allow_mismatch=args.allow_mismatch, device=device)
    images, labels, names = inpaint_inputs(args, ae, indices)
    labels = labels_for_prior(args, prior, len(images), default=labels)  # the test images' own labels by default
    if prior.inpaints_prefix_only:
        print(f"inpaint: the {prior.name} prior conditions on a raster-order prefix only: every latent position "
              "from the first masked cell on is regenerated")
    start = time.perf_counter()
    with autocast_context(device, args.precision):
        result = inpainting.inpaint_images(ae, prior, images, pixel_mask, samples_per_input=args.samples, labels=labels,
                                           seed=args.seed, batch_size=args.batch_size, steps=args.steps,
                                           temperature=args.temperature, guidance=args.guidance)
    meta = {"inputs_from": names, "box": args.box, "mask": args.mask, "seed": args.seed,
            "steps": sampling_steps(prior, args.steps),
            "temperature": args.temperature, "guidance": args.guidance, "seconds": time.perf_counter() - start}
    return inpainting.save_inpainting(result, args.out, downsample=downsample, meta=meta)
