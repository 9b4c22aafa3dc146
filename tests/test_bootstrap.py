"""The sample-set bootstrap against answers known in closed form: the standard error of FD for a
shifted Gaussian (delta method) and of precision (a mean of fixed indicators), plus the identity
that the no-resampling case reproduces precision_recall exactly."""

import math

import numpy as np
import pytest
import torch

from discrete_priors.metrics import frechet_distance, precision_recall
from discrete_priors.metrics.bootstrap import BootstrapEstimate, _Manifolds, bootstrap_quality
from tests import gen


def test_fd_bootstrap_std_matches_the_delta_method_standard_error():
    # 1-D: FD(sample, ref) = (m − μ_r)² + (s − s_r)², sample mean m ~ N(δ, s²/n) with the reference
    # held fixed, so sd(FD) ≈ 2|δ| s/√n (the (s − s_r)² term adds O(1/n)). With B = 200 resamples
    # the bootstrap std itself is uncertain by ≈ 1/√(2B) = 5%; tolerance 20% = 4 of those (with
    # B = 2000 on three other draws the ratio was 1.01-1.05).
    n, delta = 2000, 1.0
    real = torch.randn(20000, 1, generator=gen(0), dtype=torch.float64)
    fake = torch.randn(n, 1, generator=gen(1), dtype=torch.float64) + delta
    boot = bootstrap_quality(real, fake, metrics=("fd",), resamples=200, seed=0)["fd"]
    observed_shift = (fake.mean() - real.mean()).abs().item()
    analytic = 2 * observed_shift * fake.std().item() / math.sqrt(n)
    assert boot.std == pytest.approx(analytic, rel=0.2), (boot, analytic)
    assert boot.estimate == pytest.approx(frechet_distance(real, fake), rel=1e-12)
    assert boot.low < boot.estimate < boot.high and boot.resamples == 200 and boot.level == 0.95
    assert boot.high - boot.low == pytest.approx(2 * 1.96 * analytic, rel=0.3)  # ≈ normal 95% width


def test_precision_bootstrap_std_is_the_binomial_standard_error():
    # Precision is the mean over samples of a fixed indicator (inside the real manifold), so the
    # ideal bootstrap std is sqrt(p(1 − p)/M) exactly; B = 400 → ≈ 3.5% noise; tolerance 15%.
    real = torch.randn(800, 2, generator=gen(2), dtype=torch.float64)
    fake = torch.randn(600, 2, generator=gen(3), dtype=torch.float64) * 2.0 + 1.5
    boot = bootstrap_quality(real, fake, metrics=("precision", "recall"), resamples=400, seed=1)
    p = boot["precision"].estimate
    assert 0.2 < p < 0.8  # an informative case, away from 0 and 1
    assert boot["precision"].std == pytest.approx(math.sqrt(p * (1 - p) / len(fake)), rel=0.15)
    assert boot["recall"].std > 0


def test_identity_resample_reproduces_precision_recall_exactly():
    real = torch.randn(300, 5, generator=gen(4), dtype=torch.float64)
    fake = torch.randn(250, 5, generator=gen(5), dtype=torch.float64) + 0.4
    reference = precision_recall(real, fake, k=3, chunk_size=64)  # float64 in, float64 distances
    values = _Manifolds(real, fake, k=3, chunk_size=64).values(torch.arange(len(fake)))
    assert values == pytest.approx(reference._asdict(), rel=1e-12)
    boot = bootstrap_quality(real, fake, metrics=("precision", "recall", "density", "coverage"), chunk_size=64)
    assert {m: b.estimate for m, b in boot.items()} == pytest.approx(reference._asdict(), rel=1e-12)
    # duplicates keep their full-set radii: resampling one point many times cannot reach more
    # real points than that point alone
    repeated = _Manifolds(real, fake, k=3, chunk_size=64).values(torch.zeros(250, dtype=torch.long))
    single = _Manifolds(real, fake, k=3, chunk_size=64).values(torch.zeros(1, dtype=torch.long))
    assert repeated == pytest.approx(single, rel=1e-12)


def test_bootstrap_is_seeded_and_validates_its_options():
    real = torch.randn(100, 3, generator=gen(6))
    fake = torch.randn(80, 3, generator=gen(7))
    a = bootstrap_quality(real, fake, resamples=20, seed=3)
    assert a == bootstrap_quality(real, fake, resamples=20, seed=3)
    assert a["fd"] != bootstrap_quality(real, fake, resamples=20, seed=4)["fd"]
    assert set(a) == {"fd", "precision", "recall"} and all(isinstance(b, BootstrapEstimate) for b in a.values())
    assert all(b.low <= b.mean <= b.high and np.isfinite(b.std) for b in a.values())
    with pytest.raises(ValueError, match="unknown or no bootstrap metrics \\['is'\\]"):
        bootstrap_quality(real, fake, metrics=("fd", "is"))
    with pytest.raises(ValueError, match="resamples must be >= 2"):
        bootstrap_quality(real, fake, resamples=1)
    with pytest.raises(ValueError, match="level must lie in"):
        bootstrap_quality(real, fake, level=95)
