"""Tables, plots and REPORT.md regenerated from the tidy results CSV alone.

    python -m analysis --results results/results.csv --out results/report [--samples runs/] [--budget-note "..."]

Variant strings (the ``variant`` column; runners must follow this so the analysis can read them):

    variant := part ("/" part)*
    part    := key "=" value          a setting, e.g. "S=16", "bs=64", "target=residual", "vlb=0.1"
             | name                   a plain name, allowed only as the first part, e.g. "bernoulli"

Keys are unique within a variant; neither keys nor values contain "/" or "="; numbers are written
as Python would parse them ("0.1", "16"). Examples: ``"bernoulli/S=16"`` (experiment "steps":
the step count is the ``S`` key), ``"absorbing/bs=64"`` (experiment "efficiency"),
``"target=residual/vlb=0.1"`` and ``"reverse=joint/balance=class_balanced"`` (experiment
"ablation"), ``"binary-c32"`` / ``"vq-K512"`` / ``"continuous-d8"`` (experiment "reconstruction":
the latent family is the name up to the last "-", e.g. ``binary-det`` for ``"binary-det-c32"``,
or a ``latent=`` key). ``parse_variant``
turns one into ``Variant(name, params)``.
"""

from analysis.plots import ablation_bars, speed_bars, steps_curve
from analysis.report import Claim, evaluate_claims, write_report
from analysis.tables import (Variant, aggregate, format_mean_std, format_value, load_results, parse_variant,
                             summary_table, to_latex, to_markdown)
from analysis.verdicts import (CurveVerdict, Estimate, compare, seed_estimate, seed_estimates,
                               verdict_along_curve)

__all__ = ["Claim", "CurveVerdict", "Estimate", "Variant", "ablation_bars", "aggregate", "compare", "evaluate_claims",
           "format_mean_std", "format_value", "load_results", "parse_variant", "seed_estimate", "seed_estimates",
           "speed_bars", "steps_curve", "summary_table", "to_latex", "to_markdown", "verdict_along_curve",
           "write_report"]
