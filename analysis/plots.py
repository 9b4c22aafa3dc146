"""Plots from the tidy results: quality vs steps, ablation bars, speed bars.

Figures are built on ``matplotlib.figure.Figure`` (Agg canvas) rather than ``pyplot``: no global
backend switch, no figure registry to leak, nothing ever shown. Each function writes a PNG of
``figsize * dpi`` pixels atomically (temporary file + ``os.replace``) and returns its path.
Error bars / bands are ± one std over seeds (none with one seed).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from analysis.tables import parse_variant, variant_sort_key
from discrete_priors.io import atomic_path

FIGSIZE = (6.0, 4.0)
DPI = 100


def _rows(df: pd.DataFrame, experiment: str, metric: str) -> pd.DataFrame:
    rows = df[(df["experiment"] == experiment) & (df["metric"] == metric)].copy()
    if rows.empty:
        raise ValueError(f"no {metric!r} rows for experiment {experiment!r} to plot; "
                         f"metrics present there: {sorted(df.loc[df['experiment'] == experiment, 'metric'].unique())}")
    return rows


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def steps_curve(df: pd.DataFrame, path: str | Path, *, metric: str = "fd", experiment: str = "steps") -> Path:
    """``metric`` vs sampling steps S (log2 axis), one line per prior, band = ± std over seeds.

    The step count comes from the ``S=<int>`` part of the variant; the line label is the variant
    without it (``"absorbing/S=64"`` -> ``"absorbing"``)."""
    rows = _rows(df, experiment, metric)
    curves, steps = [], []
    for variant in rows["variant"]:
        name, params = parse_variant(variant)
        if "S" not in params:
            raise ValueError(f"steps variant {variant!r} has no 'S=<int>' part, expected e.g. 'bernoulli/S=16'")
        steps.append(int(params.pop("S")))
        curves.append("/".join([name] * bool(name) + [f"{k}={v}" for k, v in params.items()]))
    rows["S"], rows["prior"] = steps, curves
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    sns.lineplot(data=rows, x="S", y="value", hue="prior", hue_order=sorted(set(curves)), errorbar="sd",
                 marker="o", ax=ax)
    ax.set_xscale("log", base=2)
    ticks = sorted(set(steps))
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(s) for s in ticks])
    ax.set(xlabel="sampling steps S", ylabel=metric, title=f"{metric} vs sampling steps")
    return _save(fig, path)


def ablation_bars(df: pd.DataFrame, path: str | Path, *, metric: str = "fd", experiment: str = "ablation") -> Path:
    """Horizontal bars of ``metric`` per variant of ``experiment`` (long labels stay readable), ± std
    over seeds; also used for the samplers' fd."""
    rows = _rows(df, experiment, metric)
    order = sorted(rows["variant"].unique(), key=variant_sort_key)
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    sns.barplot(data=rows, x="value", y="variant", order=order, errorbar="sd", capsize=0.2, orient="h", ax=ax)
    ax.set(xlabel=metric, ylabel="", title=f"{experiment}: {metric}")
    return _save(fig, path)


def speed_bars(df: pd.DataFrame, path: str | Path, *, metric: str = "samples_per_s",
               experiment: str = "efficiency") -> Path:
    """``metric`` per prior on a log axis, ± std over seeds; one bar per setting (e.g. ``bs=64``)
    when a prior was timed in several."""
    rows = _rows(df, experiment, metric)
    parsed = [parse_variant(v) for v in rows["variant"]]
    rows["prior"] = [p.name or v for p, v in zip(parsed, rows["variant"])]
    rows["setting"] = ["/".join(f"{k}={v}" for k, v in p.params.items()) or "default" for p in parsed]
    settings = sorted(rows["setting"].unique(), key=variant_sort_key)
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    sns.barplot(data=rows, x="prior", y="value", hue="setting" if len(settings) > 1 else None,
                hue_order=settings if len(settings) > 1 else None, order=sorted(rows["prior"].unique()),
                errorbar="sd", capsize=0.2, ax=ax)
    ax.set_yscale("log")  # after drawing: seaborn's log_scale= leaves bars starting at 0 invisible
    ax.set(xlabel="", ylabel=f"{metric} (log)", title=f"{experiment}: {metric}")
    return _save(fig, path)
