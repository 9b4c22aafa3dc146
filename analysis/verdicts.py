"""Ordering claims judged with their uncertainty, at one point and along a learning curve.

An :class:`Estimate` is a metric's mean over training seeds with its spread: the std over seeds
when there are at least two (each seed draws its own samples, so this spread already holds the
sample-set noise), otherwise — one seed — the bootstrap std over the sample set
(:func:`discrete_priors.metrics.bootstrap.bootstrap_quality`), labelled as such, or nothing.

The rule (:data:`RULE`) for "A is better than B", with gap = how much better A's mean is (B − A
when lower is better, A − B otherwise) and se = sqrt(sd_A²/n_A + sd_B²/n_B), the standard error of
the difference of the two means:
    supported     gap >  z·se
    contradicted  gap < −z·se
    within noise  otherwise
    no uncertainty  se unknown (one seed and no bootstrap): never "supported"
z = 2 by default: about a two-sided 95% normal interval. With 3 seeds a Student-t reading would
ask for z ≈ 2.8, so "supported" at z = 2 means "beyond two standard errors", not a calibrated test.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import pandas as pd

from analysis.tables import aggregate
from discrete_priors.results import BOOTSTRAP_STD_SUFFIX  # a one-seed cell's sample-set spread, e.g. "fd_bootstrap_std"

Z_DEFAULT = 2.0
VERDICTS = ("supported", "within noise", "contradicted", "no uncertainty")
RULE = ("'A better than B' is supported when gap > z·se and contradicted when gap < −z·se, within noise "
        "otherwise; gap = mean_B − mean_A for a lower-is-better metric (mean_A − mean_B otherwise), "
        "se = sqrt(sd_A²/n_A + sd_B²/n_B) with sd the std over n training seeds (with one seed: the "
        "bootstrap std over the sample set, n = 1); z = {z:g}.")


class Estimate(NamedTuple):
    """mean over n seeds; std: over seeds (source "seeds"), the bootstrap std of one seed's value
    (source "bootstrap"), or NaN (source "none")."""

    mean: float
    std: float
    n: int
    source: str

    @property
    def variance_of_mean(self) -> float:
        return self.std ** 2 / self.n


def seed_estimate(values: Iterable[float], *, bootstrap_std: float | None = None) -> Estimate:
    """Mean and spread of one group's values over training seeds (one value per seed)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("seed_estimate needs at least one value")
    n, mean = len(values), math.fsum(values) / len(values)
    if n >= 2:
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
        return Estimate(mean, std, n, "seeds")
    if bootstrap_std is not None and math.isfinite(bootstrap_std):
        return Estimate(mean, float(bootstrap_std), 1, "bootstrap")
    return Estimate(mean, math.nan, 1, "none")


def seed_estimates(df: pd.DataFrame, experiment: str, metric: str, *, keys=("variant",)) -> dict:
    """Estimates per group of ``keys`` (e.g. ("variant",) or ("variant", "train_step")) of one
    metric over seeds, from the tidy results; one-seed groups take their bootstrap std from the
    rows of metric ``metric + BOOTSTRAP_STD_SUFFIX`` when recorded. Keys of the returned dict are
    the group values (a tuple when there are several keys)."""
    keys = list(keys)
    agg = aggregate(df, experiment, [metric], keys=keys + ["metric"])
    boot = aggregate(df, experiment, [metric + BOOTSTRAP_STD_SUFFIX], keys=keys + ["metric"])
    boot_std = {tuple(row[k] for k in keys): row["mean"] for _, row in boot.iterrows()}
    out = {}
    for _, row in agg.iterrows():
        group = tuple(row[k] for k in keys)
        n = int(row["n"])
        if n >= 2:
            estimate = Estimate(float(row["mean"]), float(row["std"]), n, "seeds")
        else:
            estimate = seed_estimate([row["mean"]], bootstrap_std=boot_std.get(group))
        out[group if len(keys) > 1 else group[0]] = estimate
    return out


class Comparison(NamedTuple):
    verdict: str  # one of VERDICTS
    gap: float    # how much better A is than B (> 0: A better), in the metric's units
    se: float     # standard error of the gap (NaN: unknown)
    z: float

    def __str__(self) -> str:
        if math.isnan(self.se):
            # no spread to judge by: say at least which way the point estimates lean, and by how much
            lean = "better" if self.gap > 0 else "worse"
            return f"{self.verdict} (one seed, no bootstrap std: point estimates put the first {lean} by {abs(self.gap):.3g})"
        return f"{self.verdict} (gap {self.gap:.3g} vs {self.z:g}·se = {self.z * self.se:.3g})"


def compare(a: Estimate, b: Estimate, *, lower_is_better: bool, z: float = Z_DEFAULT) -> Comparison:
    """Judge "A is better than B" by :data:`RULE`."""
    if not z > 0:
        raise ValueError(f"z must be positive (2 ≈ a 95% normal interval), got {z}")
    gap = (b.mean - a.mean) if lower_is_better else (a.mean - b.mean)
    se = math.sqrt(a.variance_of_mean + b.variance_of_mean)
    if math.isnan(se):
        return Comparison("no uncertainty", gap, se, z)
    verdict = "supported" if gap > z * se else "contradicted" if gap < -z * se else "within noise"
    return Comparison(verdict, gap, se, z)


class CurveVerdict(NamedTuple):
    """The claim along a learning curve. steps: ascending; comparisons: one per step.
    holds_from / contradicted_from: the first step from which every later step is supported /
    contradicted (None when the last step is not); flips_at: steps where the verdict beyond noise
    changed sign since the previous step beyond noise (steps within noise are passed over)."""

    steps: list
    comparisons: list
    holds_from: int | None
    contradicted_from: int | None
    flips_at: list

    @property
    def final(self) -> Comparison:
        return self.comparisons[-1]

    def summary(self) -> str:
        """E.g. "supported from step 400 on; flips at step 400 (contradicted → supported)"."""
        first, last = self.steps[0], self.steps[-1]
        if self.holds_from is not None:
            text = "supported at every step" if self.holds_from == first else f"supported from step {self.holds_from} on"
        elif self.contradicted_from is not None:
            text = ("contradicted at every step" if self.contradicted_from == first
                    else f"contradicted from step {self.contradicted_from} on")
        else:
            text = f"{self.final.verdict} at the last step ({last})"
        beyond = {s: c.verdict for s, c in zip(self.steps, self.comparisons) if c.verdict in ("supported", "contradicted")}
        flips = [f"flips at step {s} ({'supported → contradicted' if beyond[s] == 'contradicted' else 'contradicted → supported'})"
                 for s in self.flips_at]
        return "; ".join([text] + flips)


def _tail_start(steps: list, verdicts: list, wanted: str) -> int | None:
    start = None
    for step, verdict in zip(reversed(steps), reversed(verdicts)):
        if verdict != wanted:
            break
        start = step
    return start


def verdict_along_curve(points: Mapping[int, tuple[Estimate, Estimate]], *, lower_is_better: bool,
                        z: float = Z_DEFAULT) -> CurveVerdict:
    """points: train_step -> (estimate of A, estimate of B) at that step; judged by :func:`compare`
    at every step (see :class:`CurveVerdict` for what is reported)."""
    if not points:
        raise ValueError("verdict_along_curve needs at least one step")
    steps = sorted(points)
    comparisons = [compare(*points[s], lower_is_better=lower_is_better, z=z) for s in steps]
    verdicts = [c.verdict for c in comparisons]
    flips, previous = [], None
    for step, verdict in zip(steps, verdicts):
        if verdict in ("supported", "contradicted"):
            if previous is not None and verdict != previous:
                flips.append(step)
            previous = verdict
    return CurveVerdict(steps, comparisons, _tail_start(steps, verdicts, "supported"),
                        _tail_start(steps, verdicts, "contradicted"), flips)
