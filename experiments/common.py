"""Shared pieces of the experiment runners: presets, and stages that are trained once and reused.

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
separate, so the spread over seeds is the priors' alone). The reconstruction runner, whose rows are
the autoencoders, is the exception: it trains one autoencoder per seed.
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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import torch

from discrete_priors import evaluate, metrics, pipeline
from discrete_priors.data import load_dataset, load_latent_cache
from discrete_priors.io import config_hash, read_json, write_json
from discrete_priors.metrics.speed import count_flops
from discrete_priors.training import checkpoint as ckpt
from discrete_priors.results import append_csv, append_rows, cell_values, has_cell, machine, make_rows


@dataclass(frozen=True)
class PriorRecipe:
    """How one prior is trained in every runner: its constructor keywords (on top of the preset's
    network size) and whether binary codes are resampled from the cached encoder probabilities
    each step. Field names are part of the preset hash: ``asdict`` of a recipe is the dict the
    results were recorded under."""

    kwargs: dict = field(default_factory=dict)
    resample: bool = True


@dataclass(frozen=True)
class ScalingNet:
    """One network size of the sampling-cost scaling study: the ``nets.presets`` name, the batch
    it is timed at, and ``timed_passes`` k: a sampler needing more than k network passes is timed
    over k of them (``steps=k``) and scaled by its full count (None: every pass is run)."""

    size: str
    batch: int
    timed_passes: int | None = None


@dataclass(frozen=True)
class ScalingGrid:
    """The grid of the efficiency runner's scaling study (``experiments efficiency-scaling``):
    latent grids (h, w) x bits per position x network sizes, for every prior of the preset's
    ``prior_recipes`` with no trained weights (sampling cost does not depend on the weights).
    ``steps``: the sampling steps each prior is timed at (a prior not listed: its own default,
    e.g. one per position for the autoregressive prior). ``precision``: fp32 | bf16 (autocast).
    Not part of :meth:`Preset.hash`; the study's rows carry :meth:`Preset.scaling_hash`."""

    grids: tuple[tuple[int, int], ...] = ((4, 4), (8, 8), (16, 16))
    bits: tuple[int, ...] = (32, 64)
    # batch 64 at the cpu size; 4 at the paper size, which on CPU takes ~5 s per pass at 16x16
    nets: tuple[ScalingNet, ...] = (ScalingNet("cpu", 64, timed_passes=4), ScalingNet("paper", 4, timed_passes=2))
    steps: dict[str, tuple[int, ...]] = field(default_factory=lambda: {"bernoulli": (16,), "absorbing": (256, 16)})
    precision: str = "fp32"

    def __post_init__(self):
        assert self.precision in {"fp32", "bf16"}, f"unknown precision {self.precision!r}, expected 'fp32' or 'bf16'"
        if not self.grids or any(len(g) != 2 or min(g) < 1 for g in self.grids):
            raise ValueError(f"scaling grids must be (h, w) pairs of positive ints, got {self.grids}")
        if not self.bits or min(self.bits) < 1 or not self.nets:
            raise ValueError(f"scaling study needs bits >= 1 and at least one net, got bits {self.bits}, nets {self.nets}")
        for net in self.nets:
            if net.batch < 1 or (net.timed_passes is not None and net.timed_passes < 1):
                raise ValueError(f"scaling net {net}: expected batch >= 1 and timed_passes None or >= 1")
        for prior, counts in self.steps.items():
            if not counts or any(not isinstance(s, int) or s < 1 for s in counts):
                raise ValueError(f"scaling steps of {prior!r} must be positive ints, got {counts!r}")


@dataclass(frozen=True)
class ContinuousBaseline:
    """The continuous-latent reference of the prior comparisons (LDM, Rombach et al. 2022): Gaussian
    diffusion (``priors/gaussian.py``, trained by ``recipe`` at the preset's network size) on the
    codes of continuous autoencoders of the same backbone, a plain one (``continuous-d<dim>``, the
    reconstruction runner's) and a KL-regularised one (``continuous-d<dim>-kl``, weight
    ``kl_weight``; LDM's KL-f autoencoders use 1e-6). Its rows carry :meth:`Preset.continuous_hash`;
    it is not part of :meth:`Preset.hash`, so the records made before it existed keep their hash."""

    recipe: PriorRecipe = field(default_factory=lambda: PriorRecipe(
        # LDM's T = 1000 and DDIM (η = 0, the default sampler) at 100 steps for the samplers row; the
        # held-out VLB from 100 of the T steps (unbiased estimate, see GaussianDiffusion.vlb)
        {"timesteps": 1000, "default_steps": 100, "nll_timesteps": 100}, resample=False))
    dim: int = 8
    kl_weight: float = 1e-6

    def latents(self) -> dict[str, dict]:
        """Folder name -> latent config of the two autoencoders (plain first)."""
        plain = f"continuous-d{self.dim}"
        return {plain: pipeline.latent_config(plain),
                f"{plain}-kl": {"kind": "continuous", "dim": self.dim, "kl_weight": self.kl_weight}}


@dataclass(frozen=True)
class LrSweep:
    """Each prior's own learning rate (issue 12): for every (prior, latents) the runners train, a
    short run at each rate of ``grid`` (``fraction`` of the preset's prior steps, same batch, seed,
    warm-up and cosine shape), and the rate whose mean training loss over the last ``tail`` of that
    run is lowest trains the real prior. The training loss, never a test metric: within one prior
    the objective is the same at every rate, and no held-out code or image is looked at. Rows
    ``lr-sweep`` / ``<prior>/latents=<name>/lr=<lr>`` (metric ``train_loss``); the chosen rate is
    the ``lr`` metric of the rows its prior makes (samplers, steps)."""

    grid: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    fraction: float = 1 / 3
    tail: float = 0.2

    def __post_init__(self):
        if not self.grid or min(self.grid) <= 0:
            raise ValueError(f"lr sweep grid must be positive learning rates, got {self.grid}")
        if not 0 < self.fraction <= 1 or not 0 < self.tail <= 1:
            raise ValueError(f"lr sweep fraction and tail must be in (0, 1], got {self.fraction}, {self.tail}")

    def steps(self, prior_steps: int) -> int:
        return max(1, round(self.fraction * prior_steps))


@dataclass(frozen=True)
class Preset:
    """Scale of a whole experiment. ``prior_recipes`` hold each prior's own best-known recipe;
    the network size (``net``) is shared by all priors so comparisons are at equal size."""

    name: str
    dataset: str = "digits"
    size: int | None = 16
    ae_preset: str = "cpu-digits"
    ae_steps: int = 2000
    ae_batch: int = 64
    ae_lr: float = 2e-3
    bits: int = 32
    vq_codebook: int = 256  # the VQ latents of the samplers runner's reference rows (reconstruction's vq-K<K>)
    net: str = "cpu"
    prior_steps: int = 4000
    prior_batch: int = 128
    prior_lr: float = 1e-3
    num_samples: int = 1000
    nll_codes: int | None = None  # held-out codes the NLL is measured on (None: the whole test split)
    seeds: tuple[int, ...] = (0,)
    prior_recipes: dict[str, PriorRecipe] = field(default_factory=lambda: {
        # Bernoulli diffusion: the paper's choices (residual target, mixture reverse on our maths),
        # 16 sampling steps of T = 64, codes resampled from the encoder's probabilities each step;
        # the last step drawn, not thresholded (issue 12, docs/method.md "Bernoulli recipe").
        "bernoulli": PriorRecipe({"parameterization": "residual", "timesteps": 64, "default_steps": 16,
                                  "final_step": "sample"}),
        # absorbing: the reweighted (1 - t/T) loss of Bond-Taylor et al., which trained better here
        # than the plain ELBO weighting at equal steps (see tests/test_absorbing.py notes); T steps.
        # Every prior sees the same data: codes resampled from the cached probabilities.
        "absorbing": PriorRecipe({"loss_weighting": "reweighted", "timesteps": 256}),
        # autoregressive: teacher forcing, one step per position.
        "autoregressive": PriorRecipe(),
    })
    scaling: ScalingGrid = field(default_factory=ScalingGrid)
    # the Gaussian-diffusion reference rows of samplers/steps/efficiency/figures; None: none of them
    continuous: ContinuousBaseline | None = field(default_factory=ContinuousBaseline)
    # each prior's learning rate from a short sweep (None: every prior at prior_lr)
    lr_sweep: LrSweep | None = field(default_factory=LrSweep)
    # learning curves: the fractions of prior_steps at which each prior of the samplers, steps and
    # target x λ runners is evaluated from its EMA weights (the last must be 1: the full budget), and
    # the samples drawn at the points before the last (None: num_samples, so every point of a curve
    # has the same sample-set bias; the last point always draws num_samples)
    curve_fractions: tuple[float, ...] = (1 / 8, 1 / 4, 1 / 2, 1)
    curve_samples: int | None = None
    # the held-out codes of the NLL at the points before the last (None: nll_codes); the last point
    # records the NLL on those codes too, as nll_<unit>@curve
    curve_nll_codes: int | None = None
    # the standard Inception FID beside the classifier FD, at the final point of the samplers rows and
    # of the steps rows at S = 16 and the largest S (when the extractor is installed)
    inception_fid: bool = True
    # its cost on a CPU (~5.5 images/s on one core of this machine at 299x299): FID of the first
    # fid_samples samples against the first fid_reference test images (None: all of them)
    fid_samples: int | None = None
    fid_reference: int | None = None
    # the sample-set noise of fd / precision / recall at every learning-curve point: a bootstrap over
    # the samples (metrics/bootstrap.py) with this many resamples, recorded as <metric>_bootstrap_std
    # (the one-seed uncertainty of analysis/verdicts.py); 0: none
    bootstrap_resamples: int = 20

    def __post_init__(self):
        fractions = tuple(self.curve_fractions)
        if not fractions or fractions[-1] != 1 or any(not 0 < f <= 1 for f in fractions) \
                or list(fractions) != sorted(set(fractions)):
            raise ValueError(f"curve_fractions must increase within (0, 1] and end at 1 (the full budget), got {fractions}")
        if self.curve_samples is not None and self.curve_samples < 1:
            raise ValueError(f"curve_samples must be None (num_samples) or >= 1, got {self.curve_samples}")

    def curve_steps(self) -> list[int]:
        """The training steps of the learning-curve points, ascending, the last = ``prior_steps``."""
        return sorted({max(1, round(f * self.prior_steps)) for f in self.curve_fractions})

    def samples_at(self, step: int) -> int:
        """Samples drawn at a learning-curve point (``num_samples`` at the full budget)."""
        if step >= self.prior_steps or self.curve_samples is None:
            return self.num_samples
        return min(self.curve_samples, self.num_samples)

    def hash(self) -> str:
        """The config hash every trained-model cell is recorded under. ``scaling`` is left out:
        the scaling study trains nothing and records under :meth:`scaling_hash`, and the hashes
        of the records made before it existed stay valid (tests pin them)."""
        config = asdict(self)
        del config["scaling"], config["continuous"]
        # left out: which steps are evaluated and how many samples they draw change which rows there
        # are (each carries its train_step and num_samples), not how any prior is trained (exact
        # resume: stopping at a curve step and continuing is bit-identical to one run); Inception FID
        # and the bootstrap std are columns of their own
        for key in ("curve_fractions", "curve_samples", "curve_nll_codes", "inception_fid", "fid_samples", "fid_reference",
                    "bootstrap_resamples"):
            del config[key]
        if config["lr_sweep"] is None:  # the records made before the sweep existed (one lr) keep their hash
            del config["lr_sweep"]
        return config_hash(config)

    def continuous_hash(self) -> str:
        """Config hash of the Gaussian-diffusion rows: the preset's own hash and the continuous baseline."""
        return config_hash({"preset": self.hash(), "continuous": asdict(self.continuous) if self.continuous else None})

    def continuous_scaling_hash(self) -> str:
        """Config hash of the scaling study's Gaussian-diffusion cells: its grid and the baseline's recipe."""
        return config_hash({"scaling": self.scaling_hash(),
                            "continuous": asdict(self.continuous) if self.continuous else None})

    def priors_with(self, priors) -> list[str]:
        """``priors`` less ``gaussian`` when the preset has no continuous baseline."""
        return [p for p in priors if p != "gaussian" or self.continuous is not None]

    def recipe(self, prior: str) -> PriorRecipe:
        """How ``prior`` is trained: the continuous baseline's recipe for ``gaussian``, else its own."""
        return self.continuous.recipe if prior == "gaussian" else self.prior_recipes[prior]

    def scaling_hash(self) -> str:
        """Config hash of the scaling study's rows: its grid and the priors' recipes."""
        return config_hash({"scaling": asdict(self.scaling),
                            "prior_recipes": {k: asdict(v) for k, v in self.prior_recipes.items()}})


PRESETS = {
    "smoke": Preset(name="smoke", ae_preset="tiny", ae_steps=60, ae_batch=32, net="tiny", prior_steps=60,
                    prior_batch=32, num_samples=64, curve_fractions=(1 / 2, 1),
                    inception_fid=False,  # Inception at 299x299 on a CPU: minutes; tests run it on its own
                    prior_recipes={
                        "bernoulli": PriorRecipe({"parameterization": "residual", "timesteps": 32, "default_steps": 8,
                                                  "final_step": "sample"}),
                        "absorbing": PriorRecipe({"loss_weighting": "reweighted", "timesteps": 32}),
                        "autoregressive": PriorRecipe()},
                    scaling=ScalingGrid(grids=((2, 2), (4, 4)), bits=(8,), nets=(ScalingNet("tiny", 4, timed_passes=2),),
                                        steps={"bernoulli": (8,), "absorbing": (32, 4)}),
                    continuous=ContinuousBaseline(PriorRecipe({"timesteps": 32, "default_steps": 8}, resample=False),
                                                  dim=4)),
    # Fashion-MNIST at 16x16 (4x4 positions x 32 bits): the 28x28 grid has 49 positions, which makes
    # each prior step ~3x dearer (0.29 vs 0.10 s at batch 128 on 2 cores) and the 16 prior trainings of
    # all runners together would not fit 90 minutes. Budget: 1,500 steps per autoencoder and prior.
    # Inception FID on 500 samples against 1,000 test images: 16 sample sets + the reference take
    # ~27 min on one core here (all 1,000 against all 10,000 would take ~80 min)
    # Learning-curve points before the last draw 500 samples (the last: 1,000, and its first 500 are
    # scored again as <metric>@curve) and measure the NLL on 500 of the 2,000 held-out codes: the
    # NLL of the diffusions (T network passes per code) would otherwise cost most of the curves' time.
    "cpu": Preset(name="cpu", dataset="fashion-mnist", ae_steps=1500, prior_steps=1500, nll_codes=2000,
                  fid_samples=500, fid_reference=1000, curve_samples=500, curve_nll_codes=500),
    "paper": Preset(name="paper", dataset="image-folder", size=256, ae_preset="paper", ae_steps=400_000, ae_batch=32,
                    ae_lr=1e-4, bits=32, net="paper", prior_steps=500_000, prior_batch=256, prior_lr=1e-4,
                    num_samples=50_000, lr_sweep=None),  # a sweep at a third of 500k steps x 3 is not affordable
}


def get_preset(name: str, **overrides) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}, expected one of {sorted(PRESETS)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(PRESETS[name], **overrides)


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
    """The dataset's classifier features (one classifier per experiment directory, data seed 0)."""
    if preset.dataset == "image-folder":
        return metrics.get_extractor("inception")  # weights from $DISCRETE_PRIORS_INCEPTION_WEIGHTS
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
    return {f"{metric}_bootstrap_std": estimate.std for metric, estimate in out.items()}


CURVE_SUFFIX = "@curve"  # a final point's metric on the first curve_samples samples (analysis/curves.py)


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
    return out | {f"{m}{CURVE_SUFFIX}_bootstrap_std": boot[f"{m}_bootstrap_std"] for m in BOOTSTRAP_METRICS if boot}


def fid_rows(scoring: Scoring, images: torch.Tensor, *, preset: Preset, experiment: str, variant: str, seed: int,
             train_step: int | None = None) -> list[dict]:
    """The ``fid`` row of ``images`` (Inception feature space, its extractor named in the row) of one
    cell, for :func:`record`'s ``extra_rows``; no row when FID is off or not installed."""
    if scoring.fid is None:
        return []
    images = images[:preset.fid_samples]
    return make_rows(experiment=experiment, variant=variant, seed=seed, metrics=scoring.fid(images),
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
