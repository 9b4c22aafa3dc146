"""Experiment presets: the scale of a whole run (:class:`Preset`), each prior's recipe, the lr sweep,
the continuous baseline and the sampling-cost scaling grid, and :data:`PRESETS` (smoke, cpu, paper).

A preset's fields are its config: :meth:`Preset.hash` is what every trained-model cell of the
results is recorded under (tests pin the hashes of the committed records). The stages the runners
build from a preset live in ``experiments/common.py``, which re-exports everything here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from discrete_priors import pipeline
from discrete_priors.io import config_hash


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
        # the seeds say which rows there are (each row carries its seed), not how any prior is trained:
        # every seed set hashes as the one-seed presets did, so a 3-seed run extends the 1-seed records
        config["seeds"] = (0,)
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
    # Three prior seeds (issue 15): the comparison rows of samplers, steps and the seeded target x λ
    # grid are trained for each; reference rows and the other ablations for the first (runners' docs).
    "cpu": Preset(name="cpu", dataset="fashion-mnist", ae_steps=1500, prior_steps=1500, nll_codes=2000, seeds=(0, 1, 2),
                  fid_samples=500, fid_reference=1000, curve_samples=500, curve_nll_codes=500),
    "paper": Preset(name="paper", dataset="image-folder", size=256, ae_preset="paper", ae_steps=400_000, ae_batch=32,
                    ae_lr=1e-4, bits=32, net="paper", prior_steps=500_000, prior_batch=256, prior_lr=1e-4,
                    num_samples=50_000, lr_sweep=None,  # a sweep at a third of 500k steps x 3 is not affordable
                    inception_fid=False),  # its fd is already in the inception-tf-2015 space (extractor_for)
}


def get_preset(name: str, **overrides) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}, expected one of {sorted(PRESETS)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return replace(PRESETS[name], **overrides)
