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
