"""``python -m analysis --results results/results.csv --out results/report``: REPORT.md, tables, plots."""

from __future__ import annotations

import argparse
import sys

from analysis.report import write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=(
        "Regenerate REPORT.md, Markdown/LaTeX tables and plots from a tidy results CSV alone."))
    parser.add_argument("--results", required=True, help="results CSV written by the experiment runners")
    parser.add_argument("--out", required=True, help="output directory (REPORT.md, tables/, plots/)")
    parser.add_argument("--samples", default=None, help="directory searched for sample-grid PNGs to link")
    parser.add_argument("--budget-note", default="", help="text stating the scale and compute budget of the runs")
    args = parser.parse_args(argv)
    try:
        report = write_report(args.results, args.out, samples_dir=args.samples, budget_note=args.budget_note)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
