"""Turn images, codes and priors into the metric dictionaries that become result rows.

One place computes each table's columns, so the CLI ``eval``, the demo and the experiment
runners report the same numbers in the same way: :func:`score_prior` is the row of a trained
prior, :class:`SampleScorer` the quality columns of any set of images, :class:`FrechetScorer` the
distance in a second feature space (the standard Inception FID).
"""

from __future__ import annotations

import inspect
import time
from contextlib import contextmanager
from functools import cached_property
from typing import NamedTuple

import torch

from discrete_priors import metrics, pipeline


def distribution_row(features: torch.Tensor, reference_features: torch.Tensor) -> dict:
    """Fréchet distance and precision/recall/density/coverage of sample ``features`` (M, D)
    against the real ``reference_features`` (held-out test images)."""
    prdc = metrics.precision_recall(reference_features, features)
    return {"fd": metrics.frechet_distance(reference_features, features), "precision": prdc.precision,
            "recall": prdc.recall, "density": prdc.density, "coverage": prdc.coverage}


def memorisation_row(images: torch.Tensor, features: torch.Tensor, *, reference: torch.Tensor, train: torch.Tensor,
                     reference_features: torch.Tensor, train_features: torch.Tensor) -> dict:
    """Nearest-training-image distances of ``images`` (M, C, H, W) in pixels and features, and
    the fraction of samples closer to the training set than the test images are."""
    mem = metrics.memorisation(images, train, test=reference, sample_features=features, train_features=train_features,
                               test_features=reference_features)
    return {"nn_pixel_distance": mem.pixels.distance.mean().item(),
            "nn_feature_distance": mem.features.distance.mean().item(),
            "frac_closer_than_test": mem.features.fraction_closer}


class PartTimes:
    """Wall-clock seconds of each part of an evaluation (``seconds``: part -> s). With ``log``
    (e.g. ``print``) a line is written when a part starts and one with its time when it ends, so
    a user sees where an evaluation spends its time, also when output goes to a file."""

    def __init__(self, log=None):
        self.log, self.seconds = log, {}

    @contextmanager
    def __call__(self, part: str, detail: str = ""):
        if self.log:
            self.log(f"eval: {part}{f' ({detail})' if detail else ''} ...")
        start = time.perf_counter()
        yield
        self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - start
        if self.log:
            self.log(f"eval: {part} took {self.seconds[part]:.1f} s")


class SampleScorer:
    """Sample metrics against fixed real data: the features of the test split (the reference)
    and of the training split (for memorisation) are computed once, on first use (a rerun whose
    cells are all recorded computes none), and reused for every sample set."""

    def __init__(self, extractor, *, reference: torch.Tensor, train: torch.Tensor):
        self.extractor, self.reference, self.train = extractor, reference, train

    @cached_property
    def reference_features(self) -> torch.Tensor:
        return self.extractor.features(self.reference)

    @cached_property
    def train_features(self) -> torch.Tensor:
        return self.extractor.features(self.train)

    def quality(self, images: torch.Tensor, features: torch.Tensor | None = None) -> dict:
        """The distribution columns of ``images`` (their ``features`` when already computed)."""
        return distribution_row(self.extractor.features(images) if features is None else features,
                                self.reference_features)

    def memorisation(self, images: torch.Tensor, features: torch.Tensor | None = None) -> dict:
        """The memorisation columns of ``images`` (computes the training split's features once)."""
        features = self.extractor.features(images) if features is None else features
        return memorisation_row(images, features, reference=self.reference, train=self.train,
                                reference_features=self.reference_features, train_features=self.train_features)

    def __call__(self, images: torch.Tensor, *, memorisation: bool = True) -> dict:
        """Distribution and (unless ``memorisation=False``) memorisation metrics of ``images``
        (M, C, H, W) in [0, 1]."""
        features = self.extractor.features(images)
        row = self.quality(images, features)
        return (row | self.memorisation(images, features)) if memorisation else row

    def real_row(self, n: int) -> dict:
        """Where "good" lies: the first n training images scored like samples, except that the
        memorisation columns are the test images' own distances to the training set (training
        images are trivially at distance 0 from themselves)."""
        row, held_out = self(self.train[:n]), self(self.reference)
        return row | {k: held_out[k] for k in ("nn_pixel_distance", "nn_feature_distance", "frac_closer_than_test")}


def nll_takes_timesteps(prior) -> bool:
    """Whether ``prior.nll`` can estimate its bound from a subset of timesteps (``num_timesteps``)."""
    return "num_timesteps" in inspect.signature(prior.nll).parameters


class FrechetScorer:
    """The Fréchet distance of sample sets to fixed reference images in a second feature space,
    beside a :class:`SampleScorer`'s columns: e.g. ``FrechetScorer(get_extractor("inception-tf-2015"),
    reference=test)`` gives the standard FID next to the classifier FD. The reference statistics
    are computed once, on first use. Its column is ``fid`` when the space is an Inception one and
    ``fd:<name>`` otherwise, so it never collides with the main scorer's ``fd`` in tables that
    group by metric; record :attr:`name` in the rows' ``extractor`` column. ``method``: how the
    trace term is computed (:func:`~discrete_priors.metrics.frechet_distance`); ``"eigh"`` by
    default, exact with fewer samples than the 2048 dimensions and ~10x faster there than sqrtm."""

    def __init__(self, extractor, *, reference: torch.Tensor, method: str = "eigh"):
        if method not in ("sqrtm", "eigh"):
            raise ValueError(f"unknown method {method!r}, expected 'sqrtm' or 'eigh'")
        self.extractor, self.reference, self.method = extractor, reference, method
        self.name = extractor.name
        self.column = "fid" if self.name.startswith("inception") else f"fd:{self.name}"

    @cached_property
    def reference_stats(self) -> metrics.FeatureStats:
        return metrics.feature_stats(self.extractor.features(self.reference))

    def __call__(self, images: torch.Tensor) -> dict:
        """images: (M, C, H, W) in [0, 1] -> {column: Fréchet distance to the reference}."""
        features = self.extractor.features(images)
        return {self.column: metrics.frechet_distance(self.reference_stats, features, method=self.method)}


@torch.no_grad()
def prior_nll(prior, codes: torch.Tensor, labels: torch.Tensor | None = None, *, batch_size: int = 256,
              seed: int = 0, num_timesteps: int | None = None) -> tuple[float, bool]:
    """Mean NLL over held-out ``codes`` in the prior's ``nll_unit`` (bits per latent bit for the
    discrete priors, bits per latent dimension for the Gaussian one), and whether it is exact.
    ``num_timesteps``: a prior whose bound is a sum over timesteps (:func:`nll_takes_timesteps`)
    estimates it from that many random steps (unbiased, noisier); None: every step."""
    if num_timesteps is not None and not nll_takes_timesteps(prior):
        raise ValueError(f"the {prior.name} prior's NLL has no timestep estimate: leave num_timesteps None "
                         "(--nll-timesteps) or limit the held-out codes instead (--nll-codes)")
    extra = {} if num_timesteps is None else {"num_timesteps": num_timesteps}
    device = next(prior.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    total, exact = 0.0, True
    for start in range(0, len(codes), batch_size):
        batch_labels = None if labels is None else labels[start:start + batch_size].to(device)
        out = prior.nll(codes[start:start + batch_size].to(device), batch_labels, generator=generator, **extra)
        total += out.bits.double().sum().item()
        exact = exact and out.exact
    return total / len(codes), exact


def sampling_speed(prior, *, batch_size: int, steps: int | None = None, seed: int = 0, repeats: int = 3,
                   guidance: float = 0.0, temperature: float = 1.0) -> dict:
    """Samples per second at ``batch_size`` (median of ``repeats`` after one warm-up batch),
    with the same guidance as the evaluated samples (labels cycle over the classes)."""
    device = next(prior.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    labels = None
    if guidance != 0.0:
        labels = torch.arange(batch_size, device=device) % prior.num_classes

    def draw(n):
        return prior.sample(n, steps=steps, generator=generator, labels=labels, guidance=guidance,
                            temperature=temperature)

    out = metrics.measure_throughput(draw, batch_size=batch_size, repeats=repeats, device=device,
                                     network_evals_per_sample=prior.network_evals_per_sample(steps, guidance=guidance))
    return {"samples_per_s": out.samples_per_second, "nfe_per_sample": out.network_evals_per_sample,
            "batch_size": batch_size}


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class ScoredPrior(NamedTuple):
    row: dict  # metric -> value
    samples: pipeline.Samples  # the scored samples (codes, decoded images, labels)


def score_prior(prior, ae, scorer: SampleScorer, *, num_samples: int, seed: int = 0, batch_size: int = 256,
                steps: int | None = None, temperature: float | None = None, guidance: float = 0.0,
                labels: torch.Tensor | None = None, test_codes: torch.Tensor | None = None,
                test_labels: torch.Tensor | None = None, speed_batch_size: int = 64, speed_repeats: int = 3,
                progress: bool | None = None, memorisation: bool = True, speed: bool = True,
                nll_timesteps: int | None = None, times: PartTimes | None = None) -> ScoredPrior:
    """Every metric of one trained prior: ``num_samples`` samples decoded by ``ae`` and scored by
    ``scorer``; samples per second at ``min(speed_batch_size, num_samples)``; the NLL of held-out
    ``test_codes`` (B, N, c) when given (:func:`nll_row`; labels only reach a
    class-conditional prior; ``nll_timesteps`` as in :func:`prior_nll`); the parameter count.
    All draws are functions of ``seed``. ``temperature=None``: the prior's own default (timed at
    τ = 1). ``memorisation=False`` / ``speed=False`` leave those columns out. ``times`` records
    (and logs) the seconds of each part: sampling, quality, memorisation, speed, nll."""
    times = times or PartTimes()
    options = {"steps": steps, "guidance": guidance} | ({} if temperature is None else {"temperature": temperature})
    batches = -(-num_samples // batch_size)
    with times("sampling", f"{num_samples} samples in {batches} batch{'es' * (batches > 1)}, steps {steps or 'default'}"):
        samples = pipeline.sample_images(ae, prior, num_samples, batch_size=batch_size, seed=seed, labels=labels,
                                         progress=progress, **options)
    with times("quality", "sample features, Fréchet distance, precision/recall"):
        features = scorer.extractor.features(samples.images)
        row = scorer.quality(samples.images, features)
    if memorisation:
        with times("memorisation", "nearest training images in pixels and features"):
            row |= scorer.memorisation(samples.images, features)
    if speed:
        speed_batch = min(speed_batch_size, num_samples)
        with times("speed", f"{speed_repeats} timed batches of {speed_batch} after a warm-up"):
            row |= sampling_speed(prior, batch_size=speed_batch, seed=seed, repeats=speed_repeats, **options)
    if test_codes is not None:
        detail = f"{len(test_codes)} held-out codes" + (f", {nll_timesteps} timesteps each" if nll_timesteps else "")
        with times("nll", detail):
            row |= nll_row(prior, test_codes, test_labels, seed=seed, num_timesteps=nll_timesteps)
    row["params"] = count_parameters(prior)
    return ScoredPrior(row, samples)


def nll_row(prior, codes: torch.Tensor, labels: torch.Tensor | None = None, *, seed: int = 0,
            num_timesteps: int | None = None) -> dict:
    """The NLL columns of held-out ``codes``: ``nll_<unit>`` and whether it is exact (AR) or the
    VLB bound (diffusions). The column is named by the prior's unit — ``nll_bits_per_bit`` for
    discrete codes, ``nll_bits_per_dim`` for a continuous density on the float16 grid — so the two
    never share a column. ``labels`` only reach a class-conditional prior; ``num_timesteps`` as in
    :func:`prior_nll`."""
    nll, exact = prior_nll(prior, codes, labels if prior.num_classes else None, seed=seed, num_timesteps=num_timesteps)
    return {f"nll_{prior.nll_unit}": nll, "nll_is_exact": float(exact)}
