"""The pipeline stages the CLI and the experiment runners share:

autoencoder → latent cache → prior → samples → metrics.

Every stage reads and writes a run directory, so each can be rerun or resumed on its own:

    <run>/ae/            autoencoder checkpoints (trainer layout) + model_config.json
    <run>/latents/       train.safetensors, test.safetensors (the latent cache)
    <run>/prior/         prior checkpoints + model_config.json
    <run>/samples/       grid.png, samples.safetensors
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from discrete_priors.io import config_hash, read_json, save_tensors, write_json
from discrete_priors.training.distributed import resolve_device  # defined once there; re-exported for callers


def progress_enabled(progress: bool | None = None) -> bool:
    """Progress bars only on an interactive terminal unless asked for."""
    import sys

    return sys.stderr.isatty() if progress is None else progress


def training_progress(progress: bool | None = None) -> bool:
    """What a Trainer is given: on unless asked off. The Trainer itself draws a bar on a terminal
    and writes a plain line per log window when the output is redirected (a log file, CI)."""
    return progress is not False


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------


def latest_checkpoint(run_dir: str | Path) -> Path:
    """The newest complete checkpoint directory of a trainer run directory."""
    from discrete_priors.training import latest_checkpoint as _latest

    if not Path(run_dir).is_dir():
        raise FileNotFoundError(f"{run_dir} does not exist: expected a run directory written by train-ae or "
                                "train-prior (the --out it was given)")
    ckpt = _latest(Path(run_dir) / "checkpoints")
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint under {run_dir}: train it first")
    return Path(ckpt)


def load_autoencoder(run_dir: str | Path, *, ema: bool = True, device: str | torch.device = "auto"):
    """Rebuild an autoencoder from its JSON config and load its (EMA) safetensors weights, on
    ``device`` ("auto": CUDA when present, else the CPU)."""
    from discrete_priors.autoencoder import Autoencoder
    from discrete_priors.training import load_model_weights

    ckpt = latest_checkpoint(run_dir)
    model = Autoencoder(**read_json(ckpt / "model_config.json"))
    load_model_weights(model, ckpt, ema=ema)
    return model.to(resolve_device(device)).eval()


def load_prior(run_dir: str | Path, *, ema: bool = True, device: str | torch.device = "auto",
               checkpoint: str | Path | None = None):
    """Rebuild a prior from its JSON config and load its (EMA) weights, on ``device`` (as above).
    ``checkpoint``: a folder holding ``model_config.json`` and the weights (a checkpoint of the run,
    or a learning-curve snapshot) to load instead of the run's latest checkpoint."""
    from discrete_priors.priors import prior_from_config
    from discrete_priors.training import load_model_weights

    ckpt = latest_checkpoint(run_dir) if checkpoint is None else Path(checkpoint)
    config = read_json(ckpt / "model_config.json")
    config.setdefault("name", read_json(Path(run_dir) / "prior.json")["name"])
    model = prior_from_config(config)
    load_model_weights(model, ckpt, ema=ema)
    return model.to(resolve_device(device)).eval()


def autoencoder_fingerprint(run_dir: str | Path) -> str:
    """Hash of the autoencoder's config and of the exact weights a latent cache was made with."""
    ckpt = latest_checkpoint(run_dir)
    digest = hashlib.sha256()
    for name in ("model.safetensors", "ema.safetensors"):
        if (ckpt / name).exists():
            digest.update((ckpt / name).read_bytes())
    return config_hash({"config": read_json(ckpt / "model_config.json"), "weights": digest.hexdigest()})


def check_prior_matches_autoencoder(prior_dir: str | Path, ae_dir: str | Path, *, allow_mismatch: bool = False) -> None:
    """Refuse to decode a prior's codes with an autoencoder they were not trained on: the prior
    records the fingerprint (:func:`autoencoder_fingerprint`) of the autoencoder that made its
    latent cache, in ``prior.json``. Same code shape is not enough — another autoencoder reads the
    same bits as other images. ``allow_mismatch`` turns the error into a warning (deliberate use)."""
    info_path = Path(prior_dir) / "prior.json"
    if not info_path.exists():
        raise FileNotFoundError(f"{prior_dir} has no prior.json: is it a prior run directory (from train-prior)?")
    recorded = read_json(info_path).get("autoencoder_hash")
    actual = autoencoder_fingerprint(ae_dir)
    if recorded == actual:
        return
    message = (f"the prior in {prior_dir} was trained on codes of autoencoder {recorded or '(not recorded)'} "
               f"(latents: {read_json(info_path).get('latents')}), but {ae_dir} is autoencoder {actual}")
    if allow_mismatch:
        import warnings

        warnings.warn(message + "; decoding anyway (--allow-mismatch)", RuntimeWarning, stacklevel=2)
        return
    raise ValueError(message + ": pass the autoencoder the prior was trained with, or --allow-mismatch "
                     "(allow_mismatch=True) if decoding with another one is deliberate")


def load_prior_and_autoencoder(prior_dir: str | Path, ae_dir: str | Path, *, allow_mismatch: bool = False,
                               ema: bool = True, device: str | torch.device = "auto"):
    """(prior, autoencoder) after :func:`check_prior_matches_autoencoder`: the loader for sampling
    images from a trained prior."""
    check_prior_matches_autoencoder(prior_dir, ae_dir, allow_mismatch=allow_mismatch)
    return load_prior(prior_dir, ema=ema, device=device), load_autoencoder(ae_dir, device=device)


# ---------------------------------------------------------------------------------------------
# encoding and decoding in batches
# ---------------------------------------------------------------------------------------------


class Encoded(NamedTuple):
    codes: torch.Tensor  # library layout (see latents/base.py)
    probs: torch.Tensor | None  # (B, N, c) Bernoulli probabilities for binary latents


@torch.no_grad()
def encode_images(ae, images: torch.Tensor, *, batch_size: int = 256, mode: str = "deterministic",
                  with_probs: bool = False, generator: torch.Generator | None = None, progress: bool | None = None) -> Encoded:
    device = next(ae.parameters()).device
    codes, probs = [], []
    for start in tqdm(range(0, len(images), batch_size), desc="encode", disable=not progress_enabled(progress), leave=False):
        batch = images[start:start + batch_size].to(device)
        codes.append(ae.encode(batch, mode=mode, generator=generator).cpu())
        if with_probs:
            probs.append(ae.encode(batch, mode="probs").cpu())
    return Encoded(torch.cat(codes), torch.cat(probs) if with_probs else None)


@torch.no_grad()
def decode_codes(ae, codes: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    device = next(ae.parameters()).device
    out = [ae.decode(codes[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(codes), batch_size)]
    return torch.cat(out).clamp(0, 1)


# ---------------------------------------------------------------------------------------------
# stages
# ---------------------------------------------------------------------------------------------


class LatentFormat(NamedTuple):
    """How a latent space is named and configured from the command line."""

    letter: str  # the letter of its size in format names: binary-c32, vq-K256, continuous-d8, fsq-L8.6.5
    flags: tuple[str, ...]  # config keys the CLI's flat flags fill; the first is the size a name gives
    named: dict  # what a format name fixes besides its size
    latent: str | None = None  # its name in discrete_priors.latents.LATENTS when not the format's own
    levels: bool = False  # the size is a dot-separated list of integers (fsq-L8.6.5), not one integer


# the latent spaces of discrete_priors.latents.LATENTS that the CLI flags and runner folder names
# can configure; a new latent space adds its line here to be trained from the command line
LATENT_FORMATS = {
    "binary": LatentFormat("c", ("bits",), {}),
    "vq": LatentFormat("K", ("codebook_size", "dim"), {"dim": 8}),
    "continuous": LatentFormat("d", ("dim", "kl_weight"), {}),
    "lfq": LatentFormat("c", ("bits",), {}),
    "bsq": LatentFormat("c", ("bits",), {}),
    "fsq": LatentFormat("L", ("levels",), {}, levels=True),
    # the binary latent trained on thresholded codes (no Bernoulli sampling): binary-det-c32
    "binary-det": LatentFormat("c", ("bits",), {"deterministic": True}, latent="binary"),
}


def latent_kwargs(kind: str, *, bits: int = 32, codebook_size: int = 512, dim: int = 8, kl_weight: float = 0.0,
                  levels=(8, 5, 5, 5), deterministic: bool = False) -> dict:
    """The latent-space config of ``kind`` (a name in ``LATENTS``) from the CLI's flat flags (each
    kind takes its own); ``deterministic`` (binary only) trains on thresholded codes."""
    kinds = [k for k, f in LATENT_FORMATS.items() if f.latent is None]
    if kind not in kinds:
        raise ValueError(f"unknown latent kind {kind!r}, expected one of {', '.join(kinds)} "
                         "(a latent space of discrete_priors.latents needs a line in pipeline.LATENT_FORMATS)")
    if deterministic and kind != "binary":
        raise ValueError(f"deterministic (--deterministic) applies to the binary latent only, got latent {kind!r} "
                         "(lfq, bsq, fsq and vq codes are deterministic already)")
    flags = {"bits": bits, "codebook_size": codebook_size, "dim": dim, "kl_weight": kl_weight,
             "levels": [int(v) for v in levels]}
    config = {"kind": kind} | {key: flags[key] for key in LATENT_FORMATS[kind].flags}
    return config | ({"deterministic": True} if deterministic else {})


def _format_size(fmt: LatentFormat, size: str):
    """The size of a format name (``c32`` -> 32, ``L8.6.5`` -> [8, 6, 5]), or None if malformed."""
    if not size.startswith(fmt.letter):
        return None
    parts = size[1:].split(".") if fmt.levels else [size[1:]]
    smallest = 2 if fmt.levels else 1  # a scalar needs two levels to carry anything
    if not all(p.isdigit() and int(p) >= smallest for p in parts):
        return None
    values = [int(p) for p in parts]
    return values if fmt.levels else values[0]


def latent_config(name: str) -> dict:
    """Latent config of a format name: ``binary-c<bits>``, ``binary-det-c<bits>`` (thresholded
    codes), ``lfq-c<bits>``, ``bsq-c<bits>``, ``vq-K<codebook size>`` (dim 8), ``fsq-L<levels
    joined by dots>`` or ``continuous-d<dim>`` — the names of autoencoder and cache folders,
    shared by every runner."""
    kind, _, size = name.rpartition("-")
    fmt = LATENT_FORMATS.get(kind)
    value = None if fmt is None else _format_size(fmt, size)
    if value is None:
        examples = ", ".join(f"{k}-{f.letter}<{f.flags[0].replace('_', ' ')}>" for k, f in LATENT_FORMATS.items())
        raise ValueError(f"unknown latent format {name!r}, expected one of {examples} (e.g. binary-c32, vq-K256, "
                         "fsq-L8.5.5.5)")
    return {"kind": fmt.latent or kind, fmt.flags[0]: value} | fmt.named


def train_config(*, steps: int, batch_size: int, lr: float, seed: int = 0, ema_decay: float = 0.999,
                 warmup_steps: int | None = None, checkpoint_every: int | None = None, schedule: str = "cosine",
                 min_lr_ratio: float = 0.1, **more) -> dict:
    """The trainer's config (a :class:`~discrete_priors.training.TrainConfig` dict) for a stage.

    Defaults: warm-up over a tenth of the steps (at most 100), a checkpoint every tenth of the run
    (at most 1,000 steps apart, so a kill loses at most a tenth), cosine decay to a tenth of
    ``lr``; ``more`` are further TrainConfig keys.
    Autoencoders pass ``ema_decay=0``: an averaged VQ encoder no longer matches its codebook
    (26.3 dB with EMA vs 34.4 dB without on digits)."""
    warmup_steps = min(100, steps // 10) if warmup_steps is None else warmup_steps
    checkpoint_every = max(min(1000, steps // 10), 1) if checkpoint_every is None else checkpoint_every
    return {"steps": steps, "batch_size": batch_size, "lr": lr, "warmup_steps": warmup_steps, "ema_decay": ema_decay,
            "checkpoint_every": checkpoint_every, "seed": seed, "schedule": schedule, "min_lr_ratio": min_lr_ratio,
            **more}


def train_autoencoder(*, out: str | Path, dataset: str = "digits", size: int | None = None, data_dir: str | None = None,
                      latent: dict, preset: str = "cpu-digits", overrides: dict | None = None, train_config: dict,
                      data_seed: int = 0, progress: bool | None = None):
    """Train (or resume) an autoencoder into ``out``; returns the trainer's result.

    ``data_seed`` fixes the train/test split; it is separate from the training seed so that runs
    with different seeds never see each other's test images."""
    from discrete_priors.autoencoder import Autoencoder, autoencoder_preset
    from discrete_priors.data import class_names, load_dataset
    from discrete_priors.training import TrainConfig, Trainer

    config = TrainConfig.from_dict(train_config)  # every check before any image is decoded or file written
    data = load_dataset(dataset, split="train", size=size, data_dir=data_dir, seed=data_seed)
    # the test split too: every image of the dataset is decoded (a corrupt one named) before anything is written
    load_dataset(dataset, split="test", size=size, data_dir=data_dir, seed=data_seed)
    check_batch_size(config.batch_size, len(data.images), what=f"training images of {dataset}")
    _, channels, height, _ = data.images.shape
    model_config = autoencoder_preset(preset, latent=latent, image_size=height, image_channels=channels) | (overrides or {})
    torch.manual_seed(train_config.get("seed", 0))  # initial weights are a function of the seed
    model = Autoencoder(**model_config)
    trainer = Trainer(model, (data.images,), config, Path(out), hook=model.training_hook(),
                      progress=training_progress(progress))
    names = class_names(dataset, data_dir=data_dir)
    extra = {"classes": names, "data_dir": None if data_dir is None else str(Path(data_dir).resolve())}
    check_data_record(out, {"dataset": dataset, "size": height, "data_seed": data_seed}, create=True, extra=extra)
    if trainer.dist.rank == 0:
        print(f"train-ae: {dataset} classes (label=name): {describe_classes(names)}", file=sys.stderr, flush=True)
    return trainer.fit()


def check_batch_size(batch_size: int, num_examples: int, *, what: str) -> None:
    """Refuse a batch larger than the data: it would hold the same examples twice in one step."""
    if batch_size > num_examples:
        raise ValueError(f"--batch-size {batch_size} is larger than the {num_examples} {what}: one batch would repeat "
                         f"examples; pass --batch-size {num_examples} or less")


def write_latent_cache(*, ae_dir: str | Path, out_dir: str | Path, dataset: str = "digits", size: int | None = None,
                       data_dir: str | None = None, splits=("train", "test"), mode: str = "deterministic",
                       with_probs: bool = True, seed: int = 0, data_seed: int = 0, device: str = "auto",
                       progress: bool | None = None) -> dict:
    """Encode dataset splits once and store them compactly (see discrete_priors/data/cache.py).
    ``seed`` drives sampled codes (mode="sample"); ``data_seed`` fixes the train/test split."""
    from discrete_priors.data import class_names, load_dataset, save_latent_cache

    device = resolve_device(device)
    ae = load_autoencoder(ae_dir, device=device)
    fingerprint = autoencoder_fingerprint(ae_dir)
    # every split is loaded (each image decoded) before any file is written: a corrupt image or an
    # unknown split leaves the cache folder as it was
    datasets = {split: load_dataset(dataset, split=split, size=size, data_dir=data_dir, seed=data_seed) for split in splits}
    for data in datasets.values():
        check_data_record(ae_dir, {"dataset": dataset, "size": data.images.shape[-1], "data_seed": data_seed})
    names = class_names(dataset, data_dir=data_dir)
    binary = ae.code_spec.kind == "binary"
    encoded = {}
    for split_index, (split, data) in enumerate(datasets.items()):
        # one generator per split, so a split's sampled codes do not depend on the others encoded with it
        generator = torch.Generator(device).manual_seed(seed * 1000 + split_index)
        # LFQ, BSQ and the deterministic binary latent have no Bernoulli probabilities: the cache
        # records that its codes are fixed, and resampling from it is refused
        encoded[split] = encode_images(ae, data.images, mode=mode, with_probs=with_probs and ae.latent.has_probs, generator=generator,
                                       progress=progress)
    paths = {}
    for split, data in datasets.items():
        path = Path(out_dir) / f"{split}.safetensors"
        save_latent_cache(path, codes=encoded[split].codes, spec=ae.code_spec, labels=data.labels,
                          probs=encoded[split].probs, autoencoder_hash=fingerprint,
                          fixed_codes=not ae.latent.has_probs,
                          extra={"dataset": dataset, "split": split, "size": size, "mode": mode, "ae_dir": str(ae_dir),
                                 "num_classes": data.num_classes, "data_seed": data_seed, "classes": names})
        paths[split] = path
    return paths


def resample_choice(cache, resample: bool | None) -> tuple[bool, str]:
    """Whether a prior trained on ``cache`` redraws its codes from the cached Bernoulli
    probabilities, and why (a sentence for the log and prior.json). ``resample=None``: on exactly
    when the cache can (:attr:`LatentCache.can_resample`: binary codes stored with their
    probabilities, i.e. a sampled binary latent), off for fixed codes (VQ, FSQ, LFQ, BSQ, the
    deterministic binary latent, continuous, or a cache encoded with --no-probs). ``True`` on a
    cache that cannot resample is refused, naming the problem and the fix."""
    if resample is None:
        if cache.can_resample:
            return True, ("default: the cache holds Bernoulli probabilities, so every step draws fresh codes from "
                          "them (--no-resample to train on the thresholded codes)")
        return False, f"default: the cache holds fixed {cache.spec.kind} codes (no Bernoulli probabilities to draw from)"
    if resample and not cache.can_resample:
        if cache.spec.kind != "binary":
            problem = f"holds fixed codes ({cache.spec.kind}; only binary codes have Bernoulli probabilities)"
        elif cache.fixed_codes:
            problem = ("holds fixed codes of a binary latent space without Bernoulli probabilities (LFQ, BSQ or the "
                       "deterministic binary latent)")
        else:
            problem = "was encoded without Bernoulli probabilities (encode --no-probs)"
        raise ValueError(f"--resample (resample=True) draws codes from the cache's Bernoulli probabilities, but this "
                         f"cache {problem}: drop --resample (the default trains on fixed codes as they are)"
                         + (", or encode again without --no-probs" if cache.spec.kind == "binary"
                            and not cache.fixed_codes else ""))
    return bool(resample), ("asked: " + ("codes redrawn from the cached Bernoulli probabilities every step" if resample
                                         else "the cache's thresholded codes as they are (--no-resample)"))


def train_prior(*, out: str | Path, latents_dir: str | Path, prior: str = "bernoulli", prior_kwargs: dict | None = None,
                train_config: dict, resample: bool | None = None, class_conditional: bool = False,
                progress: bool | None = None, until: int | None = None):
    """Train (or resume) a prior on a latent cache's train split; the cache's batch source hands
    the trainer codes (redrawn from the stored Bernoulli probabilities with ``resample``, the
    reference code's implicit augmentation) and, when class-conditional, labels.
    ``resample=None`` (the default, as on the command line) chooses by the cache
    (:func:`resample_choice`: on for sampled binary latents, off for fixed codes); the runners
    pass it explicitly, except the Gaussian baseline, whose continuous cache is never resampled.
    The choice and its reason are printed and stored in ``prior.json``. ``until``: stop after that
    many steps (a checkpoint is written there) with the schedule of the full ``train_config["steps"]``
    run, which a later call continues (exact resume)."""
    from discrete_priors.data import load_latent_cache
    from discrete_priors.priors import build_prior
    from discrete_priors.training import TrainConfig, Trainer

    cache = load_latent_cache(Path(latents_dir) / "train.safetensors")
    info_path = Path(out) / "prior.json"
    recorded = read_json(info_path) if info_path.exists() else {}
    if recorded and recorded.get("autoencoder_hash") != cache.autoencoder_hash:
        raise ValueError(f"the prior in {out} was trained on codes of another autoencoder than the cache in "
                         f"{latents_dir} now holds: use a new --out (or delete {out}) to train on the new codes")
    if resample is None and "resample" in recorded:  # a resumed run keeps the choice it started with
        resample, resample_reason = bool(recorded["resample"]), recorded.get("resample_reason", "")
        shown_reason = "resumed run, as recorded in prior.json: " + resample_reason
    else:
        resample, resample_reason = resample_choice(cache, resample)
        shown_reason = resample_reason
    num_classes = None
    if class_conditional:
        if cache.labels is None:
            raise ValueError(f"--class-conditional needs labels, but the cache in {latents_dir} has none")
        num_classes = int(cache.labels.max()) + 1
    config = TrainConfig.from_dict(train_config)
    check_batch_size(config.batch_size, len(cache), what=f"training codes in {latents_dir}")
    source = cache.batches(resample=resample, labels=class_conditional)  # checks before anything is written
    kwargs = data_config(prior, cache) | (prior_kwargs or {})  # what the caller gives wins
    torch.manual_seed(train_config.get("seed", 0))
    model = build_prior(prior, cache.spec, num_classes=num_classes, **kwargs)
    trainer = Trainer(model, source, config, Path(out), progress=training_progress(progress))
    with open(Path(latents_dir) / "train.safetensors", "rb") as f:  # which exact codes it learned (16 hex of sha256)
        latents_hash = hashlib.file_digest(f, "sha256").hexdigest()[:16]
    write_json(info_path, {"name": prior, "latents": str(latents_dir), "resample": resample,
                           "resample_reason": resample_reason, "autoencoder_hash": cache.autoencoder_hash,
                           "latents_hash": latents_hash})
    if trainer.dist.rank == 0:
        print(f"train-prior: resample {'on' if resample else 'off'} ({shown_reason})", file=sys.stderr, flush=True)
    return trainer.fit(until=until)


def autoencoder_config(run_dir: str | Path) -> dict:
    """The autoencoder's constructor config (image_size, image_channels, downsample, latent, ...),
    read from its latest checkpoint's JSON without loading any weights: enough to validate
    image-level arguments before anything heavy is loaded."""
    return read_json(latest_checkpoint(run_dir) / "model_config.json")


def recorded_dataset(ae_dir: str | Path | None, *, dataset: str | None = None, size: int | None = None,
                     data_dir: str | None = None, data_seed: int | None = None) -> dict:
    """``load_dataset`` keywords (name, size, data_dir, seed) for data used with the autoencoder in
    ``ae_dir``: each one given here wins, the others come from the autoencoder's ``data.json``
    (digits at its default size and data seed 0 when there is none, or ``ae_dir`` is None). Callers check the loaded
    data against that record (:func:`check_data_record`), so another split is refused."""
    path = None if ae_dir is None else Path(ae_dir) / "data.json"
    stored = read_json(path) if path is not None and path.exists() else {}
    name = dataset or stored.get("dataset", "digits")
    same = name == stored.get("dataset")  # size and folder of another dataset mean nothing here
    return {"name": name,
            "size": size if size is not None else (stored.get("size") if same else None),
            "data_dir": data_dir if data_dir is not None else (stored.get("data_dir") if same else None),
            "seed": data_seed if data_seed is not None else stored.get("data_seed", 0)}


def load_split(ae_dir: str | Path, split: str = "test"):
    """``split`` ("train" or "test") of the data the autoencoder in ``ae_dir`` was trained on —
    dataset, size, folder and split seed from its ``data.json`` (:func:`recorded_dataset`) — as
    ``load_dataset`` returns it (``.images`` (B, C, H, W) in [0, 1], ``.labels``): e.g. the
    held-out images to inpaint in Python, the same ones ``inpaint --indices`` reads."""
    from discrete_priors.data import load_dataset

    data = recorded_dataset(ae_dir)
    loaded = load_dataset(data["name"], split=split, size=data["size"], data_dir=data["data_dir"], seed=data["seed"])
    check_data_record(ae_dir, {"dataset": data["name"], "size": loaded.images.shape[-1], "data_seed": data["seed"]})
    return loaded


def data_config(prior: str, cache) -> dict:
    """The constructor keywords prior ``prior`` computes once from the training codes of ``cache``
    (:meth:`Prior.config_from_codes`, e.g. the Gaussian prior's ``latent_scale`` = 1/std, as LDM);
    stored in the prior's config, so sampling and evaluation reuse the very same values. Only a
    prior that overrides the hook pays for decoding the whole cache."""
    from discrete_priors.priors import PRIORS, Prior

    cls = PRIORS[prior]
    if cls.config_from_codes.__func__ is Prior.config_from_codes.__func__:
        return {}
    return cls.config_from_codes(cache.codes)


def check_data_record(run_dir: str | Path, record: dict, *, create: bool = False, extra: dict | None = None) -> None:
    """The autoencoder run remembers which data (and train/test split) it was trained on, so that
    encoding or evaluating with another split — which would put training images into "test" —
    fails loudly instead. ``record`` (dataset, size, data_seed) must equal the stored one; with
    ``create`` a missing record is written, with ``extra`` beside it (the data folder and the class
    names: reused as defaults by later commands, never compared — a folder may move)."""
    path = Path(run_dir) / "data.json"
    if path.exists():
        stored = read_json(path)
        if {key: stored.get(key) for key in record} != record:
            shown = {key: stored.get(key) for key in record}
            raise ValueError(f"{run_dir} was trained on {shown}, but this call uses {record}: "
                             "pass the same --dataset, --size and --data-seed (or leave them out: they default to the "
                             "recorded ones)")
    elif create:
        write_json(path, record | (extra or {}))


def describe_classes(names: list[str] | None) -> str:
    """``"0=cats, 1=dogs"``: the label of each class name, as printed by train-ae and encode."""
    return "no class labels" if not names else ", ".join(f"{i}={name}" for i, name in enumerate(names))


class Samples(NamedTuple):
    codes: torch.Tensor
    images: torch.Tensor
    labels: torch.Tensor | None


@torch.no_grad()
def sample_images(ae, prior, n: int, *, batch_size: int = 256, seed: int = 0, labels: torch.Tensor | None = None,
                  progress: bool | None = None, **sample_kwargs) -> Samples:
    """Draw n codes from the prior in batches (one generator, so the result is a function of the
    seed and the batch size) and decode them to images. Per-sample inpainting inputs
    (``known_codes`` and an ``inpaint_mask`` of the same batch size) are split along with the batches."""
    device = next(prior.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    codes = []
    for start in tqdm(range(0, n, batch_size), desc="sample", disable=not progress_enabled(progress), leave=False):
        m = min(batch_size, n - start)
        batch_labels = None if labels is None else labels[start:start + m].to(device)
        kwargs = dict(sample_kwargs)
        if kwargs.get("known_codes") is not None:
            kwargs["known_codes"] = kwargs["known_codes"][start:start + m].to(device)
            kwargs["inpaint_mask"] = kwargs["inpaint_mask"][start:start + m].to(device)
        codes.append(prior.sample(m, labels=batch_labels, generator=generator, **kwargs).cpu())
    codes = torch.cat(codes)
    return Samples(codes, decode_codes(ae, codes), labels)


def save_samples(samples: Samples, out: str | Path, *, meta: dict) -> dict:
    """Write ``<out>/samples.safetensors`` (codes, images, labels), ``grid.png`` (the first 64)
    and ``samples.json`` (``meta`` and the count); returns the paths and ``meta``."""
    from discrete_priors.images import save_grid

    out = Path(out)
    tensors = {"codes": samples.codes, "images": samples.images}
    if samples.labels is not None:
        tensors["labels"] = samples.labels
    save_tensors(out / "samples.safetensors", tensors)
    save_grid(samples.images[:64], out / "grid.png", scale=2)
    write_json(out / "samples.json", meta | {"n": len(samples.codes)})
    return {"grid": str(out / "grid.png"), "samples": str(out / "samples.safetensors"), **meta}
