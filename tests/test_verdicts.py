"""The verdict rule on constructed tables: an ordering within noise is never "supported", a clear
separation is, a reversal is "contradicted", and the curve helper names the right steps."""

import math

import pandas as pd
import pytest

from analysis.tables import aggregate
from analysis.verdicts import (BOOTSTRAP_STD_SUFFIX, RULE, Estimate, compare, seed_estimate, seed_estimates,
                               verdict_along_curve)


def _rows(experiment: str, values: dict, metric: str = "fd", **extra) -> list[dict]:
    """Tidy result rows: variant -> list of per-seed values."""
    return [{"experiment": experiment, "variant": variant, "seed": seed, "metric": metric, "value": value, **extra}
            for variant, per_seed in values.items() for seed, value in enumerate(per_seed)]


def test_ordering_within_noise_is_not_supported():
    # A's mean is lower (better) by 0.5, but three seeds scatter by ~1: se = sqrt(2/3) ≈ 0.82, 2·se ≈ 1.63
    df = pd.DataFrame(_rows("samplers", {"a": [9.0, 10.0, 11.0], "b": [9.5, 10.5, 11.5]}))
    cells = seed_estimates(df, "samplers", "fd")
    assert cells["a"] == Estimate(10.0, 1.0, 3, "seeds") and cells["b"] == Estimate(10.5, 1.0, 3, "seeds")
    result = compare(cells["a"], cells["b"], lower_is_better=True)
    assert result.verdict == "within noise"
    assert result.gap == pytest.approx(0.5) and result.se == pytest.approx(math.sqrt(2 / 3))
    assert compare(cells["b"], cells["a"], lower_is_better=True).verdict == "within noise"  # nor the reverse


def test_clear_separation_is_supported_and_its_reverse_contradicted():
    df = pd.DataFrame(_rows("samplers", {"a": [9.5, 10.0, 10.5], "b": [13.5, 14.0, 14.5]}))
    cells = seed_estimates(df, "samplers", "fd")
    assert compare(cells["a"], cells["b"], lower_is_better=True).verdict == "supported"
    assert compare(cells["b"], cells["a"], lower_is_better=True).verdict == "contradicted"
    # higher-is-better metric (recall): the same numbers now favour b
    assert compare(cells["b"], cells["a"], lower_is_better=False).verdict == "supported"


def test_rule_threshold_is_strict_at_z_standard_errors():
    a, b = Estimate(0.0, 1.0, 4, "seeds"), Estimate(2.0 * math.sqrt(0.5), 1.0, 4, "seeds")  # gap = exactly 2·se
    assert compare(a, b, lower_is_better=True).verdict == "within noise"
    assert compare(a, b._replace(mean=b.mean + 1e-9), lower_is_better=True).verdict == "supported"
    assert compare(a, b, lower_is_better=True, z=1.0).verdict == "supported"
    with pytest.raises(ValueError, match="z must be positive"):
        compare(a, b, lower_is_better=True, z=0)
    assert "z = 2" in RULE.format(z=2.0)


def test_one_seed_uses_its_bootstrap_std_or_is_never_supported():
    rows = _rows("samplers", {"a": [10.0], "b": [20.0], "c": [10.2]})
    rows += _rows("samplers", {"a": [0.3], "b": [0.4]}, metric="fd" + BOOTSTRAP_STD_SUFFIX)
    cells = seed_estimates(pd.DataFrame(rows), "samplers", "fd")
    assert cells["a"] == Estimate(10.0, 0.3, 1, "bootstrap") and cells["c"].source == "none"
    assert compare(cells["a"], cells["b"], lower_is_better=True).verdict == "supported"  # 10 vs 2·0.5
    # a huge gap without any uncertainty is still not "supported"
    assert compare(cells["c"], cells["b"], lower_is_better=True).verdict == "no uncertainty"
    # ... but the text says which way the point estimates lean (c = 10.2 is better than b = 20 by 9.8)
    assert str(compare(cells["c"], cells["b"], lower_is_better=True)).endswith("put the first better by 9.8)")
    assert str(compare(cells["b"], cells["c"], lower_is_better=True)).endswith("put the first worse by 9.8)")
    assert seed_estimate([3.0, 5.0]) == Estimate(4.0, math.sqrt(2.0), 2, "seeds")


def test_curve_reports_the_step_from_which_the_claim_holds_and_where_it_flips():
    def at(a_mean, b_mean):
        return Estimate(a_mean, 0.5, 3, "seeds"), Estimate(b_mean, 0.5, 3, "seeds")  # 2·se ≈ 0.82

    # A worse beyond noise early, within noise at 200, better beyond noise from 400 on
    curve = verdict_along_curve({800: at(5.0, 7.0), 100: at(12.0, 10.0), 200: at(9.0, 9.3), 400: at(6.0, 8.0)},
                                lower_is_better=True)
    assert curve.steps == [100, 200, 400, 800]
    assert [c.verdict for c in curve.comparisons] == ["contradicted", "within noise", "supported", "supported"]
    assert curve.holds_from == 400 and curve.contradicted_from is None and curve.flips_at == [400]
    assert curve.summary() == "supported from step 400 on; flips at step 400 (contradicted → supported)"
    # supported early, lost in noise, supported again: it holds only from the last unbroken run
    dip = verdict_along_curve({100: at(5.0, 7.0), 200: at(5.0, 7.0), 400: at(5.0, 5.2), 800: at(5.0, 7.0)},
                              lower_is_better=True)
    assert dip.holds_from == 800 and dip.flips_at == []
    # the reverse: better early, worse at the end
    late = verdict_along_curve({100: at(5.0, 7.0), 200: at(7.0, 5.0)}, lower_is_better=True)
    assert late.contradicted_from == 200 and late.holds_from is None and late.flips_at == [200]
    assert late.summary() == "contradicted from step 200 on; flips at step 200 (supported → contradicted)"
    assert verdict_along_curve({1: at(5.0, 5.1)}, lower_is_better=True).summary() == "within noise at the last step (1)"


def test_seed_estimates_group_by_train_step():
    rows = _rows("samplers", {"a": [1.0, 2.0, 3.0]}, train_step=100) + _rows("samplers", {"a": [4.0, 4.0]}, train_step=200)
    df = pd.DataFrame(rows)
    cells = seed_estimates(df, "samplers", "fd", keys=("variant", "train_step"))
    assert cells[("a", 100)] == Estimate(2.0, 1.0, 3, "seeds") and cells[("a", 200)] == Estimate(4.0, 0.0, 2, "seeds")
    with pytest.raises(ValueError, match=r"group keys \['extractor'\] are not result columns"):
        aggregate(df, "samplers", keys=("variant", "extractor"))
