"""Shared pieces of the experiment runners: the stages that are trained once and reused, scoring and
recording (the presets are in ``experiments/presets.py``, re-exported here).

Layout of an experiment directory (``--out``)::

    <out>/ae/<latent-name>-seed<k>/        autoencoder runs (shared by every runner)
    <out>/latents/<latent-name>-seed<k>/   latent caches
    <out>/priors/<prior-variant>-seed<k>/  prior runs (training seed k); curve/step_<n>/: the EMA
                                           weights at each learning-curve step n
    <out>/classifier/                      the feature extractor's cached classifier
    <out>/results.csv                      tidy rows of every runner (analysis/ reads only this)

Every stage is resumable: the trainer resumes from its last checkpoint, a finished run is not
retrained, and a (experiment, variant, seed, train_step) cell already in results.csv is skipped.

Seeds: the autoencoders and latent caches are trained once, at :data:`AE_SEED` (data seed 0); each
seed of ``preset.seeds`` trains its own priors on them (the prior seed and the autoencoder seed are
separate, so the spread over seeds is the priors' alone). The reconstruction runner's rows are those
autoencoders, at AE_SEED alone (one seed, labelled in its table). Which rows are trained for every
seed and which for the first seed only (the reference rows, the other ablations, the speed table)
is each runner's choice, stated in its docstring: the issue-15 budget.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import shutil
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import torch

from discrete_priors import evaluate, metrics, pipeline
from discrete_priors.data import load_dataset, load_latent_cache
from discrete_priors.io import read_json, write_json
from discrete_priors.metrics.speed import count_flops
from discrete_priors.training import checkpoint as ckpt
from discrete_priors.results import (BOOTSTRAP_STD_SUFFIX, CURVE_SUFFIX, append_csv, append_rows, cell_values, has_cell,
                                     machine, make_rows)
from experiments.presets import (PRESETS, ContinuousBaseline, LrSweep, Preset, PriorRecipe, ScalingGrid, ScalingNet,
                                 get_preset)


def with_available_data(preset: Preset, *, data_dir=None) -> Preset:
    """The preset itself, or — when it asks for Fashion-MNIST and the files are not installed —
    the same preset on digits, with a warning (results then carry the digits config hash)."""
    if preset.dataset != "fashion-mnist":
        return preset
    try:
        load_dataset("fashion-mnist", split="test", size=preset.size, data_dir=data_dir)
    except FileNotFoundError as err:
        warn_fallback(f"preset {preset.name!r}: Fashion-MNIST is not available ({err}); falling back to the "
                      "digits dataset. Install it with `apt-get install dataset-fashion-mnist` or pass --data-dir.")
        return replace(preset, dataset="digits")
    return preset


def ensure_autoencoder(preset: Preset, out: Path, *, latent: dict, name: str, seed: int, data_dir=None) -> Path:
    run = out / "ae" / f"{name}-seed{seed}"
    pipeline.train_autoencoder(out=run, dataset=preset.dataset, size=preset.size, data_dir=data_dir, latent=latent,
                               preset=preset.ae_preset,
                               train_config=pipeline.train_config(steps=preset.ae_steps, batch_size=preset.ae_batch,
                                                                  lr=preset.ae_lr, seed=seed, ema_decay=0.0))
    return run


def ensure_latents(preset: Preset, out: Path, *, ae_dir: Path, name: str, seed: int, data_dir=None) -> Path:
    latents = out / "latents" / f"{name}-seed{seed}"
    fingerprint = pipeline.autoencoder_fingerprint(ae_dir)
    try:
        for split in ("train", "test"):
            load_latent_cache(latents / f"{split}.safetensors", expect_autoencoder_hash=fingerprint)
        return latents
    except (FileNotFoundError, ValueError):
        pass
    pipeline.write_latent_cache(ae_dir=ae_dir, out_dir=latents, dataset=preset.dataset, size=preset.size,
                                data_dir=data_dir, seed=seed)
    return latents


class SharedLatents(NamedTuple):
    name: str  # e.g. "binary-c32": the name the autoencoder, cache and prior folders carry
    ae_dir: Path
    latents: Path


AE_SEED = 0  # the seed of the autoencoders and latent caches every seed's priors share


def shared_latents(preset: Preset, out: Path, *, name: str, seed: int = AE_SEED, data_dir=None) -> SharedLatents:
    """An autoencoder (shared with the reconstruction runner by ``name``) and its latent cache,
    each trained / written once per experiment directory; ``seed``: the autoencoder's (the prior
    comparisons keep :data:`AE_SEED` whatever their prior seeds)."""
    ae_dir = ensure_autoencoder(preset, out, latent=pipeline.latent_config(name), name=name, seed=seed, data_dir=data_dir)
    return SharedLatents(name, ae_dir, ensure_latents(preset, out, ae_dir=ae_dir, name=name, seed=seed, data_dir=data_dir))


def continuous_latents(preset: Preset, out: Path, *, kl: bool, seed: int = AE_SEED, data_dir=None) -> SharedLatents:
    """The plain (``kl=False``) or KL-regularised continuous autoencoder of ``preset.continuous``
    and its latent cache, trained / written once per experiment directory."""
    name, latent = list(preset.continuous.latents().items())[int(kl)]
    ae_dir = ensure_autoencoder(preset, out, latent=latent, name=name, seed=seed, data_dir=data_dir)
    return SharedLatents(name, ae_dir, ensure_latents(preset, out, ae_dir=ae_dir, name=name, seed=seed, data_dir=data_dir))


def ensure_gaussian_prior(preset: Preset, out: Path, *, latents: SharedLatents, seed: int,
                          class_conditional: bool = False) -> Path:
    """The continuous baseline's Gaussian diffusion on ``latents`` (its latent scale from their
    training cache), trained once and shared by every runner."""
    return ensure_prior(preset, out, latents=latents.latents, prior="gaussian", seed=seed,
                        variant=f"gaussian{'-cond' * class_conditional}-{latents.name}", class_conditional=class_conditional)


def shared_binary_latents(preset: Preset, out: Path, *, seed: int = AE_SEED, data_dir=None) -> SharedLatents:
    """The one binary autoencoder and latent cache the prior comparisons share (every prior seed's)."""
    return shared_latents(preset, out, name=binary_name(preset), seed=seed, data_dir=data_dir)


def binary_name(preset: Preset) -> str:
    """The format name of the preset's binary latents (``binary-c<bits>``): its folders' names."""
    return f"binary-c{preset.bits}"


def ensure_prior(preset: Preset, out: Path, *, latents: Path, prior: str, variant: str, seed: int,
                 extra_kwargs: dict | None = None, class_conditional: bool = False) -> Path:
    """``prior`` (its recipe, ``extra_kwargs`` on top) trained on ``latents`` at its tuned learning
    rate (:func:`tuned_lr`: the recipe's sweep on these latents; ablation variants and class-conditional
    priors use the rate of their base recipe), with training seed ``seed``. It is trained in segments
    ending at each of ``preset.curve_steps()`` (same schedule as one run: exact resume) and the EMA
    weights at each end are kept (:func:`curve_snapshot`, read back by :func:`curve_point`), whichever
    runner trains it first."""
    run = out / "priors" / f"{variant.replace('/', '_')}-seed{seed}"
    lr = tuned_lr(preset, out, prior=prior, latents=latents)
    for step in preset.curve_steps():
        _train_recipe(preset, run, latents=latents, prior=prior, lr=lr, steps=preset.prior_steps, seed=seed,
                      extra_kwargs=extra_kwargs, class_conditional=class_conditional, until=step)
        _snapshot(run, step)
    return run


def curve_snapshot(run: Path, step: int) -> Path:
    """Where the EMA weights of ``run`` at learning-curve step ``step`` are kept."""
    return Path(run) / "curve" / ckpt.step_dir_name(step)


def _snapshot(run: Path, step: int) -> None:
    """Copy the weights, config and trainer state of ``run``'s checkpoint at ``step`` (pruned later
    by the trainer, which keeps its newest 3) to :func:`curve_snapshot`, once; nothing when the run
    has no checkpoint there (trained past it before curves were kept)."""
    target = curve_snapshot(run, step)
    source = Path(run) / "checkpoints" / ckpt.step_dir_name(step)
    if target.is_dir() or not source.is_dir():
        return
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ("ema.safetensors", "model.safetensors", "model_config.json", "trainer_state.json"):
        if (source / name).exists() and (name != "model.safetensors" or not (source / "ema.safetensors").exists()):
            shutil.copy2(source / name, tmp / name)
    os.replace(tmp, target)


class CurvePoint(NamedTuple):
    """A prior's EMA weights at one learning-curve step: ``weights`` (load with
    ``pipeline.load_prior(run, checkpoint=weights)``) and the training compute up to there."""

    step: int
    run: Path
    weights: Path
    train_seconds: float
    train_flops: float

    def load(self):
        return pipeline.load_prior(self.run, checkpoint=self.weights)

    def values(self) -> dict:
        return {"train_flops": self.train_flops, "train_seconds": self.train_seconds}


def curve_point(preset: Preset, run: Path, step: int, *, latents: Path) -> CurvePoint:
    """The learning-curve point of a trained ``run`` (see :func:`ensure_prior`) at ``step``."""
    weights = curve_snapshot(run, step)
    if not weights.is_dir():
        raise FileNotFoundError(f"{run} has no weights at learning-curve step {step} ({weights}): it was trained past "
                                f"that step before learning curves were kept. Delete {run} to retrain it, or use a new --out")
    state = read_json(weights / "trainer_state.json")
    return CurvePoint(step, Path(run), weights, float(state.get("train_seconds", math.nan)),
                      flops_per_step(run, latents=latents) * step)


def flops_per_step(run: Path, *, latents: Path) -> float:
    """Network FLOPs of one training step of ``run``'s prior (forward and backward of its loss on one
    batch of its latent cache, :func:`~discrete_priors.metrics.speed.count_flops`), counted once and
    kept in ``<run>/flops.json``."""
    record_path = Path(run) / "flops.json"
    if record_path.exists():
        return float(read_json(record_path)["flops_per_step"])
    state = read_json(pipeline.latest_checkpoint(run) / "trainer_state.json")
    batch_size, info = int(state["config"]["batch_size"]), read_json(Path(run) / "prior.json")
    prior = pipeline.load_prior(run, ema=False, device="cpu").train()
    cache = load_latent_cache(Path(latents) / "train.safetensors")
    source = cache.batches(resample=bool(info.get("resample")), labels=prior.num_classes is not None
                           and bool(prior.num_classes))
    batch = source(torch.arange(min(batch_size, len(cache))), torch.Generator().manual_seed(0))

    def step():
        prior(*batch, generator=torch.Generator().manual_seed(0)).loss.backward()

    flops = count_flops(step, prior)
    write_json(record_path, {"flops_per_step": flops, "batch_size": batch_size,
                             "method": "FlopCounterMode, one training batch, forward + backward"})
    return flops


def _train_recipe(preset: Preset, run: Path, *, latents: Path, prior: str, lr: float, steps: int, seed: int,
                  extra_kwargs: dict | None = None, class_conditional: bool = False, until: int | None = None) -> None:
    recipe = preset.recipe(prior)
    kwargs = {"preset": preset.net} | recipe.kwargs | (extra_kwargs or {})
    # resampling draws binary codes from the encoder's Bernoulli probabilities; VQ and FSQ tokens and
    # the signs of LFQ / BSQ / deterministic binary latents are fixed (the cache has no probabilities)
    resample = recipe.resample and load_latent_cache(latents / "test.safetensors").can_resample
    pipeline.train_prior(out=run, latents_dir=latents, prior=prior, prior_kwargs=kwargs,
                         train_config=pipeline.train_config(steps=steps, batch_size=preset.prior_batch, lr=lr, seed=seed),
                         resample=resample, class_conditional=class_conditional, until=until)


def sweep_variant(prior: str, latents: Path, lr: float) -> str:
    """Row name of one lr-sweep run: ``<prior>/latents=<cache folder>/lr=<lr>``."""
    return f"{prior}/latents={Path(latents).name}/lr={lr:g}"


SWEEP_SEED = 0  # the lr sweep's training seed: one sweep per (prior, latents) serves every prior seed


def tuned_lr(preset: Preset, out: Path, *, prior: str, latents: Path) -> float:
    """The learning rate ``prior`` is trained at on ``latents`` (see :class:`LrSweep`): ``preset.prior_lr``
    without a sweep; else each rate's short run is trained once (``<out>/priors/lr-sweep/``, at
    :data:`SWEEP_SEED`: the rate is part of the recipe, the same for every prior seed) and its
    tail training loss recorded, and the lowest-loss rate returned (ties: the smaller rate)."""
    seed = SWEEP_SEED
    sweep = preset.lr_sweep
    if sweep is None:
        return preset.prior_lr
    steps, losses = sweep.steps(preset.prior_steps), {}
    for lr in sweep.grid:
        variant = sweep_variant(prior, latents, lr)
        recorded = cell_values(out / "results.csv", experiment="lr-sweep", variant=variant, seed=seed)
        if not done(out, preset=preset, experiment="lr-sweep", variant=variant, seed=seed):
            run = out / "priors" / "lr-sweep" / f"{variant.replace('/', '_').replace('=', '-')}-seed{seed}"
            _train_recipe(preset, run, latents=latents, prior=prior, lr=lr, steps=steps, seed=seed)
            recorded = {"train_loss": tail_loss(run / "train_log.jsonl", steps=steps, tail=sweep.tail),
                        "sweep_steps": steps}
            record(out, experiment="lr-sweep", variant=variant, seed=seed, values=recorded, extractor="",
                   num_samples=0, preset=preset)
        losses[lr] = recorded["train_loss"]
    return min(sorted(losses), key=losses.__getitem__)


def tail_loss(log: Path, *, steps: int, tail: float) -> float:
    """Mean logged training loss over the records of the last ``tail`` of a ``steps``-step run."""
    records = [json.loads(line) for line in Path(log).read_text().splitlines() if line]
    last = [r["loss"] for r in records if r["step"] > (1 - tail) * steps] or [records[-1]["loss"]]
    return sum(last) / len(last)


def ensure_samplers_prior(preset: Preset, out: Path, *, latents: SharedLatents, prior: str, seed: int) -> Path:
    """The samplers runner's ``prior`` on ``latents``: trained once, shared by the steps and
    efficiency runners, the ablation (its baseline) and the figures."""
    return ensure_prior(preset, out, latents=latents.latents, prior=prior, variant=f"samplers-{prior}-{latents.name}",
                        seed=seed)


def comparison_prior(preset: Preset, out: Path, *, prior: str, seed: int, data_dir=None) -> tuple[SharedLatents, Path]:
    """(latents, trained run) of ``prior`` as the samplers runner has it, for the runners that reuse
    it (steps, efficiency): ``gaussian`` on the plain continuous latents, the others on the shared
    binary latents."""
    if prior == "gaussian":
        latents = continuous_latents(preset, out, kl=False, data_dir=data_dir)
        return latents, ensure_gaussian_prior(preset, out, latents=latents, seed=seed)
    latents = shared_binary_latents(preset, out, data_dir=data_dir)
    return latents, ensure_samplers_prior(preset, out, latents=latents, prior=prior, seed=seed)


def extractor_for(preset: Preset, out: Path, *, data_dir=None):
    """The dataset's features: a classifier trained on it (one per experiment directory, data seed 0),
    or for an image folder (the paper preset) the TF-FID Inception network (``inception-tf-2015``,
    the installed, hash-checked file of metrics/inception.py), so its ``fd`` is the standard FID."""
    if preset.dataset == "image-folder":
        from discrete_priors.metrics.inception import FEATURE_SPACE

        return metrics.get_extractor(FEATURE_SPACE)
    return metrics.get_extractor(f"classifier:{preset.dataset}", size=preset.size, seed=0,
                                 cache_dir=out / "classifier", data_dir=data_dir)


class Scoring:
    """What every runner scores samples with: the dataset's feature extractor, its train and test
    images, and a :class:`~discrete_priors.evaluate.SampleScorer` against them. Each is built on
    first use (the SampleScorer computes its features on first use too), so a rerun whose cells
    are all recorded loads no data and computes no feature."""

    def __init__(self, preset: Preset, out: Path, *, data_dir=None):
        self._preset, self._out, self._data_dir = preset, Path(out), data_dir

    @functools.cached_property
    def extractor(self):
        return extractor_for(self._preset, self._out, data_dir=self._data_dir)

    def _images(self, split: str) -> torch.Tensor:
        return load_dataset(self._preset.dataset, split=split, size=self._preset.size, data_dir=self._data_dir).images

    @functools.cached_property
    def train(self) -> torch.Tensor:
        return self._images("train")

    @functools.cached_property
    def test(self) -> torch.Tensor:
        return self._images("test")

    @functools.cached_property
    def scorer(self) -> evaluate.SampleScorer:
        return evaluate.SampleScorer(self.extractor, reference=self.test, train=self.train)

    @functools.cached_property
    def fid(self) -> evaluate.FrechetScorer | None:
        """The Inception FID scorer against the test split (reference statistics kept in
        ``<out>/inception/``, so each runner computes them once), or None — with a warning naming
        the fix — when the preset asks for none or the extractor is not installed."""
        from discrete_priors.io import load_tensors, save_tensors
        from discrete_priors.metrics.inception import FEATURE_SPACE, INSTALL_HINT

        if not self._preset.inception_fid:
            return None
        try:
            extractor = metrics.get_extractor(FEATURE_SPACE)
        except (FileNotFoundError, ValueError) as err:
            warn_fallback(f"Inception FID skipped (no `fid` column): {err}. Install it with {INSTALL_HINT}")
            return None
        reference = self.test[:self._preset.fid_reference]
        scorer = evaluate.FrechetScorer(extractor, reference=reference)
        path = self._out / "inception" / f"{self._preset.dataset}-{self._preset.size}-test{len(reference)}-stats.safetensors"
        if path.exists():
            stats = load_tensors(path)
            scorer.reference_stats = metrics.FeatureStats(stats["mu"].numpy(), stats["sigma"].numpy(), int(stats["n"]))
        else:
            st = scorer.reference_stats
            save_tensors(path, {"mu": torch.from_numpy(st.mu), "sigma": torch.from_numpy(st.sigma),
                                "n": torch.tensor(st.n)}, metadata={"extractor": scorer.name})
        return scorer


BOOTSTRAP_METRICS = ("fd", "precision", "recall")


def bootstrap_values(preset: Preset, scorer: evaluate.SampleScorer, images: torch.Tensor, *, seed: int) -> dict:
    """``<metric>_bootstrap_std`` of :data:`BOOTSTRAP_METRICS` for ``images`` against the scorer's
    reference: the spread over ``preset.bootstrap_resamples`` resamples of the sample set (seeded by
    ``seed``); {} when the preset asks for none."""
    if preset.bootstrap_resamples < 2:
        return {}
    from discrete_priors.metrics.bootstrap import bootstrap_quality

    out = bootstrap_quality(scorer.reference_features, scorer.extractor.features(images), metrics=BOOTSTRAP_METRICS,
                            resamples=preset.bootstrap_resamples, seed=seed, fd_method="eigh")
    return {f"{metric}{BOOTSTRAP_STD_SUFFIX}": estimate.std for metric, estimate in out.items()}


def curve_subset_values(preset: Preset, scorer: evaluate.SampleScorer, images: torch.Tensor, *, step: int,
                        seed: int) -> dict:
    """At the last point of a curve whose earlier points draw fewer samples (``curve_samples``):
    fd / precision / recall (and their bootstrap std) of its first ``curve_samples`` samples, as
    ``<metric>@curve``, so the curve compares its points at one sample count (FD's bias depends on
    it); {} otherwise."""
    n = preset.samples_at(min(preset.curve_steps()))
    if step != preset.prior_steps or n >= len(images):
        return {}
    subset = images[:n]
    quality = scorer.quality(subset)
    out = {f"{m}{CURVE_SUFFIX}": quality[m] for m in BOOTSTRAP_METRICS}
    boot = bootstrap_values(preset, scorer, subset, seed=seed)
    return out | {f"{m}{CURVE_SUFFIX}{BOOTSTRAP_STD_SUFFIX}": boot[f"{m}{BOOTSTRAP_STD_SUFFIX}"]
                  for m in BOOTSTRAP_METRICS if boot}


def fid_rows(scoring: Scoring, images: torch.Tensor, *, preset: Preset, experiment: str, variant: str, seed: int,
             train_step: int | None = None, cache: dict | None = None) -> list[dict]:
    """The ``fid`` row of ``images`` (Inception feature space, its extractor named in the row) of one
    cell, for :func:`record`'s ``extra_rows``; no row when FID is off or not installed. ``cache``:
    a dict the metrics of these images are kept in, for cells that record the same samples."""
    if scoring.fid is None:
        return []
    images = images[:preset.fid_samples]
    if cache is None or "fid" not in cache:
        cache = {} if cache is None else cache
        cache["fid"] = scoring.fid(images)
    return make_rows(experiment=experiment, variant=variant, seed=seed, metrics=cache["fid"],
                     extractor=scoring.fid.name, num_samples=len(images), config_hash=cell_hash(preset, variant),
                     train_step=train_step)


def scoring_for(preset: Preset, out: Path, *, data_dir=None) -> Scoring:
    """The runner preamble: :func:`extractor_for` and the preset's train and test images, lazily."""
    return Scoring(preset, out, data_dir=data_dir)


def cell_hash(preset: Preset, variant: str) -> str:
    """The config hash a cell is recorded under: the continuous baseline's for a Gaussian-diffusion
    variant (one naming ``gaussian``: ``gaussian/S=16``, ``inpainting/gaussian``,
    ``class-conditional/prior=gaussian/w=1``), the preset's otherwise."""
    return preset.continuous_hash() if "gaussian" in re.split(r"[/=]", variant) else preset.hash()


def record(out: Path, *, experiment: str, variant: str, seed: int, values: dict, extractor: str, num_samples: int,
           preset: Preset, train_step: int | None = None, extra_rows=()) -> None:
    """Append one cell's rows (and ``extra_rows``, e.g. its :func:`fid_rows`) in one atomic write,
    so a cell is either whole or absent."""
    rows = make_rows(experiment=experiment, variant=variant, seed=seed, metrics=values, extractor=extractor,
                     num_samples=num_samples, config_hash=cell_hash(preset, variant), train_step=train_step)
    append_rows(out / "results.csv", rows + list(extra_rows))


def done(out: Path, *, preset: Preset, experiment: str, variant: str, seed: int, train_step: int | None = None) -> bool:
    """Whether the cell (at learning-curve step ``train_step``; None: a row not from a curve) is
    already recorded; a cell recorded under another preset config raises."""
    return has_cell(out / "results.csv", experiment=experiment, variant=variant, seed=seed,
                    config_hash=cell_hash(preset, variant), train_step=train_step)


def pending(out: Path, *, preset: Preset, experiment: str, variants, seed: int, train_step: int | None = None) -> list[str]:
    """The ``variants`` not yet recorded for ``seed`` (at ``train_step``). A runner asks before it
    trains or loads anything, so a rerun over a finished results.csv — even one whose models were
    deleted — trains nothing."""
    return [v for v in variants
            if not done(out, preset=preset, experiment=experiment, variant=v, seed=seed, train_step=train_step)]


def pending_steps(out: Path, *, preset: Preset, experiment: str, variant: str, seed: int, steps=None) -> list[int]:
    """The learning-curve steps (default: all of ``preset.curve_steps()``) of one variant and seed not yet recorded."""
    steps = preset.curve_steps() if steps is None else steps
    return [k for k in steps if not done(out, preset=preset, experiment=experiment, variant=variant, seed=seed,
                                         train_step=k)]


TIMING_COLUMNS = ("runner", "preset", "config_hash", "seconds", "machine", "timestamp")


def log_timing(out: Path, *, runner: str, seconds: float, preset: Preset) -> None:
    """Append one line to ``<out>/timings.csv``: the wall time of one runner invocation (a rerun
    that finds everything cached logs its own, short, line). The report states the budget from it."""
    row = {"runner": runner, "preset": preset.name, "config_hash": preset.hash(), "seconds": f"{seconds:.1f}",
           "machine": machine(), "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S")}
    append_csv(Path(out) / "timings.csv", [row], TIMING_COLUMNS)


def warn_fallback(message: str) -> None:
    warnings.warn(message, stacklevel=2)


__all__ = ["AE_SEED", "CurvePoint", "PRESETS", "SWEEP_SEED", "ContinuousBaseline", "curve_point", "curve_snapshot",
           "CURVE_SUFFIX", "bootstrap_values", "curve_subset_values", "fid_rows", "flops_per_step", "pending_steps", "LrSweep", "Preset", "PriorRecipe", "ScalingGrid", "ScalingNet", "Scoring", "binary_name",
           "cell_hash", "comparison_prior", "continuous_latents", "done", "ensure_autoencoder", "ensure_gaussian_prior", "ensure_latents", "ensure_prior",
           "ensure_samplers_prior", "extractor_for", "get_preset", "log_timing", "sweep_variant", "tuned_lr", "pending", "read_json", "record",
           "scoring_for", "shared_binary_latents", "shared_latents", "warn_fallback", "with_available_data"]
