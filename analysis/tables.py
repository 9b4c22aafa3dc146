"""Summary tables from the tidy results CSV: mean ± std over seeds, best value in bold.

A table is a ``pandas.DataFrame`` of strings: a ``variant`` column, one column per metric (cells
``"12.3 ± 0.4"``, the best mean per metric wrapped in Markdown bold ``**…**``), and a ``seeds``
column. ``to_markdown`` and ``to_latex`` render it (LaTeX turns ``**x**`` into ``\\textbf{x}``);
neither needs ``tabulate`` nor ``jinja2``.

Variant strings follow the grammar documented in ``analysis/__init__.py`` and parsed by
``parse_variant``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from discrete_priors.results import COLUMNS, with_columns

# Direction of each known metric: True = lower is better, False = higher is better, None = no
# ranking (a size or a setting, not a quality). Runners adding a metric should add it here.
DEFAULT_DIRECTION: dict[str, bool | None] = {
    "fd": True, "rfd": True, "psnr": False, "ssim": False, "precision": False, "recall": False,
    "nll_bits_per_bit": True, "nll_bits_per_dim": True, "bits_per_image": None, "code_usage": False, "nn_distance": None,
    "frac_closer_than_test": None, "samples_per_s": False, "params": None, "nfe_per_sample": True,
    "batch_size": None, "fid": True, "density": False, "coverage": False, "train_flops": None, "train_seconds": None,
    "lr": None,
}
# Fixed decimals where 3 significant digits read badly (PSNR in dB is quoted to 0.01).
DEFAULT_DECIMALS: dict[str, int] = {"psnr": 2, "ssim": 3, "batch_size": 0}
MISSING = "–"


class Variant(NamedTuple):
    name: str               # the plain prefix ("bernoulli"), "" when there is none
    params: dict[str, str]  # the key=value parts, in order


def parse_variant(variant: str) -> Variant:
    """``"bernoulli/S=16"`` -> ``Variant("bernoulli", {"S": "16"})``; ``"target=x0/vlb=0.1"`` ->
    ``Variant("", {"target": "x0", "vlb": "0.1"})``; ``"binary-c32"`` -> ``Variant("binary-c32", {})``."""
    parts = str(variant).split("/")
    name, params = "", {}
    for i, part in enumerate(parts):
        if "=" not in part:
            if i != 0 or not part:
                raise ValueError(f"bad variant {variant!r}: a plain name is allowed only as the first part, "
                                 f"expected 'name/key=value/...' or 'key=value/...'")
            name = part
            continue
        key, _, value = part.partition("=")
        if not key or not value or "=" in value:
            raise ValueError(f"bad variant {variant!r}: part {part!r} is not 'key=value'")
        if key in params:
            raise ValueError(f"bad variant {variant!r}: key {key!r} appears twice")
        params[key] = value
    return Variant(name, params)


def variant_sort_key(variant: str):
    """Sort by name, then by each parameter, numerically where the value is a number (S=2 < S=16)."""
    name, params = parse_variant(variant)

    def as_key(value: str):
        try:
            return (0, float(value), "")
        except ValueError:
            return (1, 0.0, value)

    return (name, tuple((k, as_key(v)) for k, v in params.items()))


def load_results(path: str | Path) -> pd.DataFrame:
    """Read the results CSV and check its columns (a stale or foreign CSV fails here, not in a plot)."""
    df = pd.read_csv(path, dtype={"experiment": str, "variant": str, "metric": str, "extractor": str,
                                  "config_hash": str, "code_version": str, "machine": str},
                     keep_default_na=False, na_values={"value": ["nan", "NaN", ""]})
    df = with_columns(df)  # a CSV from before the train_step column: every row not from a curve point
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing result columns {missing}, expected {list(COLUMNS)}")
    df["value"] = df["value"].astype(float)
    df["train_step"] = pd.to_numeric(df["train_step"].replace("", None)).astype("Int64")
    return df


def final_points(df: pd.DataFrame) -> pd.DataFrame:
    """The rows every table and claim is made from: those not from a learning curve (empty
    ``train_step``) and, of a curve, those at its last step (the full budget) per experiment and
    variant. The earlier points are the learning-curve sections' (analysis/curves.py)."""
    if "train_step" not in df.columns or df["train_step"].isna().all():
        return df
    last = df.groupby(["experiment", "variant"])["train_step"].transform("max")
    keep = df["train_step"].isna() | (df["train_step"] == last)
    return df[keep.fillna(True).astype(bool)]


def aggregate(df: pd.DataFrame, experiment: str, metrics=None, *, keys=("variant", "metric")) -> pd.DataFrame:
    """Long form: one row per group of ``keys`` (default (variant, metric); add e.g. ``"train_step"``
    or ``"extractor"`` for learning curves or a second feature space) with mean, std over seeds
    (sample std, ddof=1; NaN for one seed) and n (number of seeds), groups in order of first appearance."""
    rows = df[df["experiment"] == experiment]
    if metrics is not None:
        rows = rows[rows["metric"].isin(list(metrics))]
    missing = [key for key in keys if key not in rows.columns]
    if missing:
        raise ValueError(f"aggregate: group keys {missing} are not result columns, expected some of {list(rows.columns)}")
    grouped = rows.groupby(list(keys), sort=False)["value"]
    out = grouped.agg(mean="mean", std=lambda v: v.std(ddof=1) if len(v) > 1 else math.nan, n="count")
    return out.reset_index()


def _decimals_for(x: float, digits: int) -> int | None:
    """Decimals giving ``digits`` significant digits, or None when scientific notation reads better."""
    if x == 0 or not math.isfinite(x):
        return max(digits - 1, 0)
    magnitude = math.floor(math.log10(abs(x)))
    if magnitude >= 5 or magnitude < -3:
        return None
    return max(digits - 1 - magnitude, 0)


def format_value(x: float, *, decimals: int | None = None, digits: int = 3) -> str:
    """3 significant digits by default (``12.3``, ``0.0123``, ``1234``, ``1.23e+06``); fixed decimals
    when given."""
    if decimals is None:
        decimals = _decimals_for(x, digits)
        if decimals is None:
            return f"{x:.{digits - 1}e}"
    return f"{x:.{decimals}f}"


def format_mean_std(mean: float, std: float, *, decimals: int | None = None, digits: int = 3) -> str:
    """``"12.3 ± 0.4"``: the std gets the mean's decimals (one significant digit if that would show
    a nonzero std as 0); with one seed (std NaN) only the mean is shown."""
    if decimals is None:
        decimals = _decimals_for(mean if mean != 0 else (std if std == std else 0.0), digits)
    if decimals is None:
        text = f"{mean:.{digits - 1}e}"
        return text if std != std else f"{text} ± {std:.{digits - 1}e}"
    text = f"{mean:.{decimals}f}"
    if std != std:
        return text
    std_text = f"{std:.{decimals}f}"
    if std > 0 and float(std_text) == 0:
        std_text = format_value(std, digits=1)
    return f"{text} ± {std_text}"


def summary_table(df: pd.DataFrame, experiment: str, metrics=None, *, lower_is_better: dict,
                  variants=None, decimals: dict | None = None) -> pd.DataFrame:
    """Variants x metrics table of ``"mean ± std"`` strings over seeds, best mean per metric in bold.

    df: tidy results (``load_results``); metrics: the columns, in order (None: every metric of the
    experiment, in order of appearance); lower_is_better: metric -> True / False / None (None: do
    not rank) — every shown metric must be listed, so a typo cannot silently drop the bold;
    variants: row order (None: order of appearance); decimals: metric -> fixed decimals
    (default ``DEFAULT_DECIMALS``, else 3 significant digits). Missing cells show ``"–"``.
    """
    agg = aggregate(df, experiment, metrics)
    if agg.empty:
        raise ValueError(f"no rows for experiment {experiment!r}"
                         + (f" and metrics {list(metrics)}" if metrics is not None else "")
                         + f"; experiments present: {sorted(df['experiment'].unique())}")
    metrics = list(dict.fromkeys(agg["metric"])) if metrics is None else list(metrics)
    unranked = [m for m in metrics if m not in lower_is_better]
    if unranked:
        raise ValueError(f"lower_is_better has no entry for metrics {unranked}; "
                         "expected True (lower is better), False (higher is better) or None (no ranking)")
    variants = list(dict.fromkeys(agg["variant"])) if variants is None else list(variants)
    decimals = {**DEFAULT_DECIMALS, **(decimals or {})}
    exp_rows = df[df["experiment"] == experiment]
    table = {"variant": variants}
    for metric in metrics:
        cells = agg[agg["metric"] == metric].set_index("variant").reindex(variants)
        shown_mean = {v: format_mean_std(m, math.nan, decimals=decimals.get(metric))
                      for v, m in cells["mean"].items() if pd.notna(m)}
        best = None
        if lower_is_better[metric] is not None and len(shown_mean) >= 2:
            best = shown_mean[cells["mean"].idxmin() if lower_is_better[metric] else cells["mean"].idxmax()]
        column = []
        for variant, cell in cells.iterrows():
            if pd.isna(cell["mean"]):
                column.append(MISSING)
                continue
            text = format_mean_std(cell["mean"], cell["std"], decimals=decimals.get(metric))
            # Ties are judged on the printed mean, so two cells that read the same are both bold.
            column.append(f"**{text}**" if best is not None and shown_mean[variant] == best else text)
        table[metric] = column
    table["seeds"] = [str(exp_rows.loc[exp_rows["variant"] == v, "seed"].nunique()) for v in variants]
    out = pd.DataFrame(table)
    out.attrs["lower_is_better"] = {m: lower_is_better[m] for m in metrics}
    return out


def _header(column: str, direction: bool | None, *, latex: bool) -> str:
    if direction is None:
        return column
    arrow = ("$\\downarrow$" if latex else "↓") if direction else ("$\\uparrow$" if latex else "↑")
    return f"{column} {arrow}"


def to_markdown(table: pd.DataFrame) -> str:
    """GitHub Markdown table; first column left-aligned, the rest right-aligned."""
    directions = table.attrs.get("lower_is_better", {})
    header = [_header(c, directions.get(c), latex=False) for c in table.columns]
    body = [[str(v).replace("|", "\\|") for v in row] for row in table.itertuples(index=False)]
    align = [":--"] + ["--:"] * (len(header) - 1)
    lines = ["| " + " | ".join(cells) + " |" for cells in [header, align, *body]]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _latex_escape(text: str) -> str:
    text = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)
    return text.replace("±", "$\\pm$").replace("–", "--")


def _latex_cell(text: str) -> str:
    bold = re.fullmatch(r"\*\*(.*)\*\*", text)
    return f"\\textbf{{{_latex_escape(bold.group(1))}}}" if bold else _latex_escape(text)


def to_latex(table: pd.DataFrame, *, caption: str | None = None, label: str | None = None) -> str:
    """A plain ``tabular`` (``\\hline`` rules, so no extra LaTeX package), wrapped in a ``table``
    float when a caption or label is given."""
    directions = table.attrs.get("lower_is_better", {})
    header = [_latex_escape(c) if directions.get(c) is None else
              _header(_latex_escape(c), directions[c], latex=True) for c in table.columns]
    lines = [f"\\begin{{tabular}}{{l{'r' * (len(header) - 1)}}}", "\\hline",
             " & ".join(header) + r" \\", "\\hline"]
    lines += [" & ".join(_latex_cell(str(v)) for v in row) + r" \\" for row in table.itertuples(index=False)]
    lines += ["\\hline", "\\end{tabular}"]
    if caption is None and label is None:
        return "\n".join(lines) + "\n"
    wrapped = ["\\begin{table}[t]", "\\centering", *lines]
    if caption is not None:
        wrapped.append(f"\\caption{{{_latex_escape(caption)}}}")
    if label is not None:
        wrapped.append(f"\\label{{{label}}}")
    return "\n".join(wrapped + ["\\end{table}"]) + "\n"

