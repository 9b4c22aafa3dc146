"""Tidy result rows: one metric value per row, appended to a CSV atomically.

Columns: experiment, variant, seed, train_step, metric, value, extractor, num_samples, config_hash,
code_version, machine, timestamp. Tables and plots are made from these rows alone (analysis/).

``train_step``: the training step at which the prior whose samples a row scores was evaluated (its
EMA weights at that step; a learning curve has one row set per step, the last at the full budget),
empty for rows that do not come from a trained prior (real data, untrained timings, lr sweeps).
CSVs written before the column existed read with it empty (:func:`read_rows`); appending to one is
refused (the header would not match the rows).
"""

from __future__ import annotations

import csv
import io
import platform
import subprocess
import time
from functools import lru_cache
from pathlib import Path

import torch

from discrete_priors.io import append_text

# Metric-name suffixes the runners write and analysis/ reads (one definition for both sides):
# <metric>_bootstrap_std: the spread of <metric> over resamples of one cell's sample set (its one-seed
# uncertainty); <metric>@curve: a curve's last point scored on as many samples as its earlier points.
BOOTSTRAP_STD_SUFFIX = "_bootstrap_std"
CURVE_SUFFIX = "@curve"

COLUMNS = ("experiment", "variant", "seed", "train_step", "metric", "value", "extractor", "num_samples", "config_hash",
           "code_version", "machine", "timestamp")


@lru_cache(maxsize=1)
def code_version() -> str:
    """git commit of the library (with '+dirty' for uncommitted changes), or the package version."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from discrete_priors import __version__

        return __version__


def machine() -> str:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu x{torch.get_num_threads()} threads"
    return f"{platform.machine()} {device}"


def make_rows(*, experiment: str, variant: str, seed: int, metrics: dict, extractor: str = "", num_samples: int = 0,
              config_hash: str = "", train_step: int | None = None) -> list[dict]:
    """One row per metric; non-finite or non-numeric values are refused so a table never hides a NaN."""
    rows, stamp = [], time.strftime("%Y-%m-%dT%H:%M:%S")
    for metric, value in metrics.items():
        if isinstance(value, torch.Tensor):
            value = value.item()
        value = float(value)
        if value != value:
            raise ValueError(f"metric {metric!r} of {experiment}/{variant} is NaN")
        rows.append({"experiment": experiment, "variant": variant, "seed": seed,
                     "train_step": "" if train_step is None else int(train_step), "metric": metric, "value": value,
                     "extractor": extractor, "num_samples": num_samples, "config_hash": config_hash,
                     "code_version": code_version(), "machine": machine(), "timestamp": stamp})
    return rows


def append_csv(path: str | Path, rows: list[dict], columns) -> None:
    """Append dict rows to a CSV with ``columns`` (the header comes with the first rows), atomically."""
    path = Path(path)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    if not path.exists() or path.stat().st_size == 0:
        writer.writeheader()
    else:
        with path.open(newline="") as f:
            header = next(csv.reader(f), [])
        if header != list(columns):
            # appending rows of other columns would misalign every later row
            raise ValueError(f"{path} has columns {header}, but rows now have {list(columns)} (it was written by an "
                             f"older version): write to a new output directory (a new --out), or read it with "
                             f"read_rows / analysis, which fill the missing columns")
    for row in rows:
        unknown = set(row) - set(columns)
        if unknown:
            raise ValueError(f"unknown result columns {sorted(unknown)} for {path.name}, expected {list(columns)}")
        writer.writerow(row)
    append_text(path, buffer.getvalue())


def append_rows(path: str | Path, rows: list[dict]) -> None:
    """Append result rows to the CSV, atomically: a crash leaves the old file whole."""
    append_csv(path, rows, COLUMNS)


def read_rows(path: str | Path):
    """The rows as a DataFrame with every column of :data:`COLUMNS` (an older CSV's missing
    ``train_step`` filled empty)."""
    import pandas as pd

    df = pd.read_csv(path)
    return with_columns(df)


def with_columns(df):
    """``df`` with the columns an older CSV lacks (``train_step``) added empty, in COLUMNS order."""
    if "train_step" not in df.columns:
        df.insert(list(df.columns).index("seed") + 1 if "seed" in df.columns else len(df.columns), "train_step", "")
    return df


def _step_matches(recorded: str | None, train_step: int | None) -> bool:
    recorded = (recorded or "").strip()
    if train_step is None:
        return recorded == ""
    return recorded != "" and int(float(recorded)) == int(train_step)


def _cell_rows(path: Path, *, experiment: str, variant: str, seed: int, train_step: int | None):
    """The CSV rows of one (experiment, variant, seed, train_step) cell; none when there is no file."""
    if not path.exists():
        return []
    with path.open() as f:
        return [r for r in csv.DictReader(f)
                if r["experiment"] == experiment and r["variant"] == variant and int(r["seed"]) == seed
                and _step_matches(r.get("train_step"), train_step)]


def has_cell(path: str | Path, *, experiment: str, variant: str, seed: int, config_hash: str | None = None,
             train_step: int | None = None) -> bool:
    """True when rows for this (experiment, variant, seed, train_step) are already in the CSV (reruns
    skip it); ``train_step=None`` matches rows with an empty train_step (not from a trained prior).

    With ``config_hash``, a cell recorded under another config raises instead: mixing rows of two
    configurations in one table would be silently wrong."""
    path = Path(path)
    hashes = {r["config_hash"] for r in _cell_rows(path, experiment=experiment, variant=variant, seed=seed,
                                                   train_step=train_step)}
    if config_hash is not None and hashes - {config_hash}:
        raise ValueError(f"{path} already holds {experiment}/{variant}/seed {seed}"
                         f"{'' if train_step is None else f'/step {train_step}'} from another configuration "
                         f"({sorted(hashes)}, now {config_hash}): use a new output directory")
    return bool(hashes)


def cell_values(path: str | Path, *, experiment: str, variant: str, seed: int,
                train_step: int | None = None) -> dict[str, float]:
    """metric -> value of one recorded (experiment, variant, seed, train_step) cell ({} when it is not there)."""
    return {r["metric"]: float(r["value"]) for r in _cell_rows(Path(path), experiment=experiment, variant=variant,
                                                                seed=seed, train_step=train_step)}
