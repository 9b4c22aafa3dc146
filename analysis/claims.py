"""What every claim of the report is built from: the Claim record, per-variant cells (mean, std,
seeds) of one metric, and the verdict of a list of comparisons."""

from __future__ import annotations

import math
from typing import NamedTuple

import pandas as pd

from analysis.tables import format_mean_std


class Claim(NamedTuple):
    title: str
    verdict: str         # "supported" | "partly supported" | "not supported" | "not measured" (or a named cause)
    evidence: list[str]  # one line per comparison, with the numbers
    rule: str


class Cell(NamedTuple):
    mean: float
    std: float  # 0 with one seed
    n: int

    def __str__(self) -> str:
        return format_mean_std(self.mean, self.std if self.n > 1 else math.nan)


def cells(df: pd.DataFrame, experiment: str, metric: str) -> dict[str, Cell]:
    """variant -> Cell of ``metric`` over the seeds of ``experiment``."""
    rows = df[(df["experiment"] == experiment) & (df["metric"] == metric)]
    out = {}
    for variant, values in rows.groupby("variant", sort=False)["value"]:
        out[variant] = Cell(float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0, len(values))
    return out


def verdict(outcomes: list[bool | None]) -> str:
    """All comparisons hold -> supported; all contradict -> not supported; else partly (None = mixed)."""
    if not outcomes:
        return "not measured"
    if all(o is True for o in outcomes):
        return "supported"
    if all(o is False for o in outcomes):
        return "not supported"
    return "partly supported"


__all__ = ["Cell", "Claim", "cells", "verdict"]
