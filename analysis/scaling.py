"""The sampling-cost scaling study in the report: rows of experiment ``efficiency-scaling``
(``experiments/efficiency.py::run_scaling``), variants ``<prior>[/S=<steps>]/N=<N>/c=<c>/net=<size>``.

* :func:`scaling_frame`: one row per cell (sampler, N, c, net) with its metrics as columns;
* :func:`growth_slopes`: least-squares slope of log samples/s against log N per (sampler, c, net):
  cost per sample grows like N^(-slope);
* :func:`loglog_plot`: samples/s vs N on log-log axes, one line per sampler and net size, one
  panel per bit width;
* :func:`section_lines`: the report section — Table 6's shape at the paper's latent size
  (16x16 positions x 32 bits, the 24 x 768 network), the growth sentences, the plot, and every cell.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from analysis.plots import DPI, _save
from analysis.tables import parse_variant, to_latex, to_markdown
from discrete_priors.io import atomic_path

EXPERIMENT = "efficiency-scaling"
TITLE = "Sampling cost vs latent size (paper Table 6 at its own scale)"
PAPER_CELL = {"N": 256, "c": 32, "net": "paper"}  # 16x16 positions x 32 bits, 24 layers x 768
MEMORY_NOTE = {"cpu": "peak RSS of each cell's own fresh process during its sample calls, minus its RSS before them "
                      "(includes ~20 MiB of code pages and allocator pools touched on first use)",
               "cuda": "torch.cuda.max_memory_allocated minus the memory allocated before the first sample call"}


def scaling_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Columns: sampler (``"absorbing S=256"``), prior, steps, N, c, net, and one per metric
    (samples_per_s, peak_mem_mb, nfe_per_sample, timed_passes, extrapolated, ...), machine."""
    rows = df[df["experiment"] == EXPERIMENT]
    if rows.empty:
        raise ValueError(f"no {EXPERIMENT!r} rows; experiments present: {sorted(df['experiment'].unique())}")
    wide = rows.pivot_table(index="variant", columns="metric", values="value", aggfunc="mean")
    machines = rows.groupby("variant")["machine"].first()
    cells = []
    for variant in wide.index:
        name, params = parse_variant(variant)
        missing = {"N", "c", "net"} - set(params)
        if missing:
            raise ValueError(f"scaling variant {variant!r} lacks {sorted(missing)}; "
                             "expected '<prior>[/S=<steps>]/N=<N>/c=<c>/net=<size>'")
        steps = params.get("S")
        cells.append({"variant": variant, "prior": name, "steps": steps,
                      "sampler": name + (f" S={steps}" if steps else ""), "N": int(params["N"]), "c": int(params["c"]),
                      "net": params["net"], "machine": machines[variant], **wide.loc[variant].to_dict()})
    return pd.DataFrame(cells).sort_values(["net", "c", "sampler", "N"], ignore_index=True)


def growth_slopes(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (sampler, c, net) with at least two N: the slope of log samples/s on log N (ordinary
    least squares) and the N range it was fitted over."""
    fits = []
    for (sampler, c, net), group in frame.groupby(["sampler", "c", "net"], sort=True):
        if group["N"].nunique() < 2:
            continue
        slope = np.polyfit(np.log(group["N"]), np.log(group["samples_per_s"]), 1)[0]
        fits.append({"sampler": sampler, "c": c, "net": net, "slope": float(slope),
                     "N_min": int(group["N"].min()), "N_max": int(group["N"].max())})
    return pd.DataFrame(fits, columns=["sampler", "c", "net", "slope", "N_min", "N_max"])


def loglog_plot(df: pd.DataFrame, path: str | Path) -> Path:
    """samples/s vs latent positions N (both log), colour = sampler, line style = net size, one
    panel per bit width c."""
    frame = scaling_frame(df)
    widths = sorted(frame["c"].unique())
    fig = Figure(figsize=(4.5 * len(widths) + 1.6, 4.0), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(widths), squeeze=False, sharey=True)[0]
    samplers = sorted(frame["sampler"].unique())
    nets = sorted(frame["net"].unique())
    for ax, c in zip(axes, widths):
        sns.lineplot(data=frame[frame["c"] == c], x="N", y="samples_per_s", hue="sampler", hue_order=samplers,
                     style="net", style_order=nets, marker="o", ax=ax, legend=ax is axes[-1])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ticks = sorted(frame["N"].unique())
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set(xlabel="latent positions N", ylabel="samples/s (log)", title=f"c = {c} bits per position")
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")  # beside the lines, not over them
    return _save(fig, path)


def _timing(row) -> str:
    if row.get("extrapolated", 0) >= 0.5:
        return f"extrapolated from {int(row['timed_passes'])} steps"
    return "full run"


def _fmt(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _table(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "sampler": frame["sampler"], "N": frame["N"], "c": frame["c"], "net": frame["net"],
        "steps (NFE)": frame["nfe_per_sample"].map(lambda v: f"{v:.0f}"),
        "samples/s": frame["samples_per_s"].map(_fmt), "s / batch": frame["seconds_per_batch"].map(_fmt),
        "peak MiB": frame["peak_mem_mb"].map(_fmt), "batch": frame["batch_size"].map(lambda v: f"{v:.0f}"),
        "params": frame["params"].map(lambda v: f"{v / 1e6:.1f}M"),
        "timing": [_timing(r) for r in frame.to_dict("records")]})


def _write(out_dir: Path, name: str, table: pd.DataFrame, caption: str) -> None:
    for suffix, text in ((".md", to_markdown(table)), (".tex", to_latex(table, caption=caption, label=f"tab:{name}"))):
        with atomic_path(out_dir / "tables" / f"{name}{suffix}") as tmp:
            tmp.write_text(text)


def growth_sentences(frame: pd.DataFrame) -> list[str]:
    """One sentence per sampler: its slope at the smallest c of each net, the range over the rest."""
    slopes = growth_slopes(frame)
    lines = []
    for sampler, fits in slopes.groupby("sampler", sort=True):
        parts = []
        for net, by_net in fits.groupby("net", sort=True):
            first = by_net.sort_values("c").iloc[0]
            others = by_net["slope"]
            spread = f" (all c: {others.min():.2f} to {others.max():.2f})" if len(by_net) > 1 else ""
            parts.append(f"{net} net: samples/s ∝ N^{first['slope']:.2f} at c = {first['c']}{spread}, "
                         f"i.e. cost per sample ∝ N^{-first['slope']:.2f}")
        lines.append(f"- **{sampler}**, N = {int(fits['N_min'].min())}–{int(fits['N_max'].max())}: " + "; ".join(parts) + ".")
    return lines


def section_lines(df: pd.DataFrame, out_dir: Path) -> list[str]:
    """The report section of the scaling study (tables/efficiency-scaling*.{md,tex}, plots/efficiency-scaling.png)."""
    frame = scaling_frame(df)
    out_dir = Path(out_dir)
    machines = sorted(frame["machine"].unique())
    on_gpu = not all("cpu" in m for m in machines)
    batches = ", ".join(f"{net} net: batch {', '.join(str(int(b)) for b in sorted(g['batch_size'].unique()))}"
                        for net, g in frame.groupby("net"))
    lines = [f"## {TITLE}", "",
             "Untrained weights: the cost of a sampling loop does not depend on what the network learned "
             "(the same passes run on the same shapes; absorbing diffusion's early exit depends only on its "
             "unmasking schedule), so no prior is trained for these rows. "
             f"Measured on {', '.join(machines)}; {batches}. Peak memory: "
             f"{MEMORY_NOTE['cuda' if on_gpu else 'cpu']}. A row marked \"extrapolated from k steps\" timed k "
             "network passes (`steps=k`) and scaled the seconds per batch by the full pass count; the "
             "autoregressive prior (one pass per position, KV cache) always runs in full.", ""]
    paper = frame[(frame["N"] == PAPER_CELL["N"]) & (frame["c"] == PAPER_CELL["c"]) & (frame["net"] == PAPER_CELL["net"])]
    if paper.empty:  # e.g. the smoke preset: its largest cell stands in, said so
        largest = frame.sort_values(["N", "c"]).iloc[-1]
        paper = frame[(frame["N"] == largest["N"]) & (frame["c"] == largest["c"]) & (frame["net"] == largest["net"])]
        where = (f"No row at the paper's latent size (N = 256, c = 32, paper net); the largest measured cell "
                 f"instead: N = {largest['N']}, c = {largest['c']}, {largest['net']} net.")
    else:
        where = "At the paper's latent size: 16x16 positions x 32 bits, the 24-layer 768-wide network."
    table = _table(paper).drop(columns=["N", "c", "net"])
    _write(out_dir, EXPERIMENT + "-paper-size", table, TITLE)
    lines += ["### Table 6 at the paper's scale", "", where, "", to_markdown(table), ""]
    lines += ["### How the cost grows with N", "",
              "Slope of log samples/s against log N (least squares over the measured N):", ""]
    lines += growth_sentences(frame) or ["- fewer than two N per sampler: no slope"]
    lines += [""]
    try:
        path = loglog_plot(df, out_dir / "plots" / f"{EXPERIMENT}.png")
        lines += [f"![{EXPERIMENT}](plots/{path.name})", ""]
    except ValueError as error:
        lines += [f"_Plot skipped: {error}_", ""]
    full = _table(frame)
    _write(out_dir, EXPERIMENT, full, TITLE)
    lines += ["### Every cell", "", to_markdown(full),
              f"Files: [Markdown](tables/{EXPERIMENT}.md) · [LaTeX](tables/{EXPERIMENT}.tex) · "
              f"paper size: [Markdown](tables/{EXPERIMENT}-paper-size.md)", ""]
    return lines
