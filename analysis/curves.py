"""Learning curves: metrics against a prior's training step and compute, with seed bands, and
whether each prior has stopped improving.

The runners (samplers, steps, ablation's target × λ grid) record every prior at the steps of
``Preset.curve_steps()``: rows with ``train_step`` set, plus ``train_flops`` and ``train_seconds``.
Everything here reads only those rows; the tables and claims elsewhere use the last point of each
curve (:func:`analysis.tables.final_points`).

Stopping rule (:data:`PLATEAU_RULE`): a prior "has stopped improving" on a metric when its gain over
the last half of the curve — from the point nearest half the budget to the last point — is within
noise by the 2·se rule of :mod:`analysis.verdicts`; "still improving" when the gain is beyond it;
"got worse" when the change is beyond it the other way; "no uncertainty" with one seed and no
bootstrap std (then the relative change is shown, not judged).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from analysis.tables import DEFAULT_DIRECTION, format_mean_std, variant_sort_key
from analysis.verdicts import Estimate, compare, seed_estimates
from discrete_priors.io import atomic_path
from discrete_priors.results import CURVE_SUFFIX  # a final point's metric on the earlier points' sample count

CURVE_EXPERIMENTS = ("samplers", "steps", "ablation")
PLATEAU_RULE = ("a prior has stopped improving on a metric when the change from the curve point nearest half its "
                "budget to the last point is within noise (|gap| ≤ 2·se, se over seeds or, with one seed, the "
                "bootstrap std); still improving when the gain exceeds 2·se; got worse when the loss does; "
                "'no uncertainty' when neither spread is recorded (one seed): then the change is only shown.")
PLATEAU_WORDS = {"supported": "still improving", "within noise": "stopped improving", "contradicted": "got worse",
                 "no uncertainty": "no uncertainty"}


def curve_rows(df: pd.DataFrame, experiment: str | None = None) -> pd.DataFrame:
    """The rows of learning-curve points (``train_step`` set), of one experiment when given."""
    if "train_step" not in df.columns:
        return df.iloc[0:0]
    rows = df[df["train_step"].notna()]
    return rows if experiment is None else rows[rows["experiment"] == experiment]


def curve_estimates(df: pd.DataFrame, experiment: str, metric: str) -> dict[str, dict[int, Estimate]]:
    """variant -> train_step -> Estimate over seeds of ``metric`` (curve rows only). Where the last
    point also recorded ``<metric>@curve`` (its first samples, as many as the earlier points drew),
    that value stands for it, so every point of a curve has the same sample count."""
    rows = curve_rows(df, experiment)
    out: dict[str, dict[int, Estimate]] = {}
    present = set(rows["metric"]) if not rows.empty else set()
    for name in (metric, metric + CURVE_SUFFIX):
        if name not in present:
            continue
        for (variant, step), estimate in seed_estimates(rows, experiment, name, keys=("variant", "train_step")).items():
            out.setdefault(variant, {})[int(step)] = estimate
    return out


def plateau(points: dict[int, Estimate], *, lower_is_better: bool) -> tuple[str, str]:
    """(verdict word of :data:`PLATEAU_WORDS`, evidence) for one curve by :data:`PLATEAU_RULE`."""
    steps = sorted(points)
    if len(steps) < 2:
        return "not measured", "one point only"
    last = steps[-1]
    middle = min(steps[:-1], key=lambda s: abs(s - last / 2))
    comparison = compare(points[last], points[middle], lower_is_better=lower_is_better)
    before, after = points[middle], points[last]
    relative = (after.mean - before.mean) / abs(before.mean) if before.mean else math.nan
    evidence = (f"step {middle}: {format_mean_std(before.mean, before.std)} → step {last}: "
                f"{format_mean_std(after.mean, after.std)} ({relative:+.1%}; {comparison})")
    return PLATEAU_WORDS[comparison.verdict], evidence


NLL_METRICS = ("nll_bits_per_bit", "nll_bits_per_dim")


def curve_metrics(rows: pd.DataFrame) -> list[str]:
    """The quality metrics a curve is shown for: fd and the NLL present."""
    present = set(rows["metric"])
    return [m for m in ("fd", *NLL_METRICS) if m in present]


def plot_curves(df: pd.DataFrame, experiment: str, path: str | Path) -> Path:
    """One row of panels per metric (fd, NLL): the metric vs train_step (left) and vs train_flops
    (right), one line per variant, band = ± one std over seeds (none with one seed)."""
    rows = curve_rows(df, experiment)
    metrics = curve_metrics(rows)
    if not metrics:
        raise ValueError(f"no learning-curve rows (train_step set) of fd or NLL for {experiment!r}")
    flops = {(v, int(s)): e.mean for (v, s), e in seed_estimates(rows, experiment, "train_flops",
                                                                     keys=("variant", "train_step")).items()} \
        if "train_flops" in set(rows["metric"]) else {}
    fig = Figure(figsize=(10.0, 3.2 * len(metrics)), dpi=100, layout="constrained")
    axes = fig.subplots(len(metrics), 2, squeeze=False)
    palette = sns.color_palette("tab20", len(set(rows["variant"])))
    colour = {v: palette[i] for i, v in enumerate(sorted(set(rows["variant"]), key=variant_sort_key))}  # one per variant
    for i, metric in enumerate(metrics):
        curves = curve_estimates(df, experiment, metric)
        for variant in sorted(curves, key=variant_sort_key):
            points = curves[variant]
            steps = sorted(points)
            mean = np.array([points[s].mean for s in steps])
            std = np.array([points[s].std if points[s].source == "seeds" else 0.0 for s in steps])
            for ax, x in ((axes[i, 0], steps), (axes[i, 1], [flops.get((variant, s), math.nan) for s in steps])):
                ax.plot(x, mean, marker="o", label=variant, color=colour[variant])
                if (std > 0).any():
                    ax.fill_between(x, mean - std, mean + std, alpha=0.2, color=colour[variant])
        axes[i, 0].set(xlabel="training step", ylabel=metric, title=f"{experiment}: {metric} vs training steps")
        axes[i, 1].set(xlabel="training FLOPs (network)", ylabel=metric, xscale="log",
                       title=f"{experiment}: {metric} vs training compute")
        axes[i, 0].legend(fontsize="x-small")
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def section_lines(df: pd.DataFrame, out_dir: Path) -> list[str]:
    """The report's learning-curve section: per experiment a plot and a table of each variant's
    metric at every step (mean ± std over seeds) with its stopping verdict."""
    rows = curve_rows(df)
    if rows.empty:
        return ["## Learning curves", "", "_No learning-curve rows (train_step) in this CSV._", ""]
    lines = ["## Learning curves", "",
             "Each prior evaluated from its EMA weights at fixed fractions of its training budget (`train_step`); "
             "compute is network FLOPs of one training step × steps (`train_flops`) and the trainer's wall seconds "
             "(`train_seconds`). Bands: ± one std over seeds. Earlier points may use fewer samples than the last "
             "(`num_samples` per point below), which biases their FD upward.", "",
             f"Stopping rule: {PLATEAU_RULE}", "",
             "Cells: mean ± std over seeds; ᵇ: one seed, ± the bootstrap std over its sample set; no ±: one seed "
             "and no bootstrap (the NLL's spread over held-out codes is not recorded).", "",
             "Every seed's priors are trained on the same autoencoder and latent cache (`ae/<latents>-seed0`, "
             "`latents/<latents>-seed0`: autoencoder seed 0), so the spread over seeds is the priors' alone.", ""]
    for experiment in (e for e in CURVE_EXPERIMENTS if e in set(rows["experiment"])):
        exp_rows = rows[rows["experiment"] == experiment]
        samples = exp_rows.groupby("train_step")["num_samples"].max()
        lines += [f"### {experiment}", "",
                  "Samples per point: " + ", ".join(f"step {int(k)}: {int(n)}" for k, n in samples.items())
                  + (f" (the last point's curve value: its first {int(samples.iloc[0])} samples, `<metric>{CURVE_SUFFIX}`)"
                     if any(m.endswith(CURVE_SUFFIX) for m in set(exp_rows["metric"])) else ""), ""]
        try:
            path = plot_curves(df, experiment, Path(out_dir) / "plots" / f"curves-{experiment}.png")
            lines += [f"![learning curves {experiment}](plots/{path.name})", ""]
        except ValueError as error:
            lines += [f"_Plot skipped: {error}_", ""]
        for metric in curve_metrics(exp_rows):
            curves = curve_estimates(df, experiment, metric)
            steps = sorted({s for points in curves.values() for s in points})
            lines += [f"| {experiment}: {metric} | " + " | ".join(f"step {s}" for s in steps) + " | last half |",
                      "| :-- | " + " | ".join("--:" for _ in steps) + " | :-- |"]
            for variant in sorted(curves, key=variant_sort_key):
                points = curves[variant]
                word, evidence = plateau(points, lower_is_better=DEFAULT_DIRECTION.get(metric, True) is not False)
                change = evidence[evidence.find("(") + 1:evidence.find(";")] if "(" in evidence else ""
                word = f"{word} ({change})" if change else word
                cells = [format_mean_std(points[s].mean, points[s].std) + ("ᵇ" if points[s].source == "bootstrap" else "")
                         if s in points else "–" for s in steps]
                lines.append(f"| {variant} | " + " | ".join(cells) + f" | {word} |")
            lines.append("")
    return lines


__all__ = ["CURVE_EXPERIMENTS", "PLATEAU_RULE", "curve_estimates", "curve_rows", "plateau", "plot_curves",
           "section_lines"]
