"""The sampling-overhead benchmark runs (tiny sizes) and counts the network passes each sampler makes."""

import pytest

from experiments.bench_sampling_overhead import CONFIGS, measure_overhead


@pytest.mark.parametrize("config", list(CONFIGS))
def test_overhead_benchmark_counts_the_passes_of_each_sampler(config):
    out = measure_overhead(config, preset="tiny", grid=(2, 2), channels=3, batch=2, repeats=1)
    steps = CONFIGS[config][2].get("steps", 4)  # the autoregressive prior: one pass per position
    if config.startswith("absorbing"):
        assert 1 <= out["evals"] <= steps  # it stops once every position is revealed
    else:
        assert out["evals"] == steps
    assert out["sample_ms"] > 0 and out["bare_ms"] > 0 and out["overhead"] > -1
    # the in-run accounting and its floor (the bare passes, same accounting); AR both boundaries
    assert out["overhead_in_run"] > -1 and out["overhead_in_run_floor"] > -1
    assert ("overhead_in_run_wrapper" in out) == config.startswith("autoregressive")


def test_tree_comparison_alternates_processes_and_reports_medians(tmp_path):
    """--baseline/--rounds: one process per (round, config, tree); here the baseline is this tree."""
    import json
    from pathlib import Path

    from experiments import bench_sampling_overhead as bench

    root = str(Path(bench.__file__).resolve().parents[1])
    out = tmp_path / "cmp.json"
    report = bench.main(["--configs", "autoregressive-kv", "--preset", "tiny", "--grid", "2", "2", "--channels", "3",
                         "--batch", "2", "--repeats", "1", "--baseline", root, "--rounds", "2", "--out", str(out)])
    assert json.loads(out.read_text()) == report
    assert set(report["median_over_rounds"]) == {"autoregressive-kv/baseline", "autoregressive-kv/new"}
    rows = report["runs"]["autoregressive-kv/new"]
    assert len(rows) == 2 and all(r["evals"] == 4 for r in rows)
    assert all(r["overhead_in_run_net"] == r["overhead_in_run"] - r["overhead_in_run_floor"] for r in rows)
    summary = report["median_over_rounds"]["autoregressive-kv/new"]
    assert summary["overhead_in_run"] == pytest.approx((rows[0]["overhead_in_run"] + rows[1]["overhead_in_run"]) / 2, rel=1e-12)
