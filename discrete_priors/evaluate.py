"""Turn images, codes and priors into the metric dictionaries that become result rows.

One place computes each table's columns, so the CLI ``eval``, the demo and the experiment
runners report the same numbers in the same way: :func:`score_prior` is the row of a trained
prior, :class:`SampleScorer` the quality columns of any set of images.
"""

from __future__ import annotations

from functools import cached_property
from typing import NamedTuple

import torch

from discrete_priors import metrics, pipeline


def sample_quality(images: torch.Tensor, *, reference: torch.Tensor, train: torch.Tensor, extractor,
                   reference_features: torch.Tensor | None = None, train_features: torch.Tensor | None = None) -> dict:
    """Distribution and memorisation metrics of ``images`` (M, C, H, W) in [0, 1].

    reference: held-out real images the distribution is compared with (the test split);
    train: the training images, for nearest-neighbour memorisation distances.
    """
    feats = extractor.features(images)
    ref_feats = extractor.features(reference) if reference_features is None else reference_features
    train_feats = extractor.features(train) if train_features is None else train_features
    prdc = metrics.precision_recall(ref_feats, feats)
    mem = metrics.memorisation(images, train, test=reference, sample_features=feats, train_features=train_feats,
                               test_features=ref_feats)
    return {
        "fd": metrics.frechet_distance(ref_feats, feats),
        "precision": prdc.precision,
        "recall": prdc.recall,
        "density": prdc.density,
        "coverage": prdc.coverage,
        "nn_pixel_distance": mem.pixels.distance.mean().item(),
        "nn_feature_distance": mem.features.distance.mean().item(),
        "frac_closer_than_test": mem.features.fraction_closer,
    }


class SampleScorer:
    """``sample_quality`` against fixed real data: the features of the test split (the reference)
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

    def __call__(self, images: torch.Tensor) -> dict:
        return sample_quality(images, reference=self.reference, train=self.train, extractor=self.extractor,
                              reference_features=self.reference_features, train_features=self.train_features)

    def real_row(self, n: int) -> dict:
        """Where "good" lies: the first n training images scored like samples, except that the
        memorisation columns are the test images' own distances to the training set (training
        images are trivially at distance 0 from themselves)."""
        row, held_out = self(self.train[:n]), self(self.reference)
        return row | {k: held_out[k] for k in ("nn_pixel_distance", "nn_feature_distance", "frac_closer_than_test")}


@torch.no_grad()
def prior_nll(prior, codes: torch.Tensor, labels: torch.Tensor | None = None, *, batch_size: int = 256,
              seed: int = 0) -> tuple[float, bool]:
    """Mean NLL over held-out ``codes`` in the prior's ``nll_unit`` (bits per latent bit for the
    discrete priors, bits per latent dimension for the Gaussian one), and whether it is exact."""
    device = next(prior.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    total, exact = 0.0, True
    for start in range(0, len(codes), batch_size):
        batch_labels = None if labels is None else labels[start:start + batch_size].to(device)
        out = prior.nll(codes[start:start + batch_size].to(device), batch_labels, generator=generator)
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
                progress: bool | None = None) -> ScoredPrior:
    """Every metric of one trained prior: ``num_samples`` samples decoded by ``ae`` and scored by
    ``scorer``; samples per second at ``min(speed_batch_size, num_samples)``; the NLL of held-out
    ``test_codes`` (B, N, c) when given (:func:`nll_row`; labels only reach a
    class-conditional prior); the parameter count. All draws are functions of ``seed``.
    ``temperature=None``: the prior's own default (timed at τ = 1)."""
    options = {"steps": steps, "guidance": guidance} | ({} if temperature is None else {"temperature": temperature})
    samples = pipeline.sample_images(ae, prior, num_samples, batch_size=batch_size, seed=seed, labels=labels,
                                     progress=progress, **options)
    row = scorer(samples.images)
    row |= sampling_speed(prior, batch_size=min(speed_batch_size, num_samples), seed=seed, repeats=speed_repeats,
                          **options)
    if test_codes is not None:
        row |= nll_row(prior, test_codes, test_labels, seed=seed)
    row["params"] = count_parameters(prior)
    return ScoredPrior(row, samples)


def nll_row(prior, codes: torch.Tensor, labels: torch.Tensor | None = None, *, seed: int = 0) -> dict:
    """The NLL columns of held-out ``codes``: ``nll_<unit>`` and whether it is exact (AR) or the
    VLB bound (diffusions). The column is named by the prior's unit — ``nll_bits_per_bit`` for
    discrete codes, ``nll_bits_per_dim`` for a continuous density on the float16 grid — so the two
    never share a column. ``labels`` only reach a class-conditional prior."""
    nll, exact = prior_nll(prior, codes, labels if prior.num_classes else None, seed=seed)
    return {f"nll_{prior.nll_unit}": nll, "nll_is_exact": float(exact)}
