"""Metrics against known answers: closed forms, hand-computed cases and independent references."""

import math

import numpy as np
import pytest
import scipy.ndimage
import torch

from discrete_priors.metrics import (
    FeatureStats,
    binary_code_stats,
    binary_entropy_bits,
    categorical_code_stats,
    feature_stats,
    frechet_distance,
    knn_radii,
    measure_throughput,
    memorisation,
    nearest_neighbours,
    precision_recall,
    psnr,
    reconstruction_metrics,
    ssim,
)
from tests import gen


# ------------------------------------------------------------------------- Fréchet distance


def test_fd_between_shifted_unit_gaussians_is_squared_mean_shift():
    # FD(N(0,I), N(mu,I)) = |mu|^2 = 4. With n = 20000 per set in d = 4 the estimate's spread is
    # dominated by the cross term 2 mu·(noise), std 2|mu| sqrt(2/n) = 0.04; the covariance bias
    # is O(d^2/n) = 0.001. Tolerance 0.15 ≈ 3.7 std.
    n, d = 20_000, 4
    mu = torch.tensor([1.0, -1.0, 1.0, 1.0], dtype=torch.float64)
    a = torch.randn(n, d, generator=gen(1), dtype=torch.float64)
    b = torch.randn(n, d, generator=gen(2), dtype=torch.float64) + mu
    assert abs(frechet_distance(a, b) - 4.0) < 0.15


def _axis_cross(scales, mean, rotation):
    """2d points ±s_i e_i (then rotated, shifted): exact mean ``mean`` and exact unbiased
    covariance R diag(2 s_i^2 / (2d - 1)) R^T."""
    d = len(scales)
    points = torch.cat([torch.diag(scales), -torch.diag(scales)])
    return points @ rotation.T + mean


def test_fd_exact_on_constructed_sets_with_known_covariances():
    d = 5
    rotation, _ = torch.linalg.qr(torch.randn(d, d, generator=gen(3), dtype=torch.float64))
    scales_a = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.5], dtype=torch.float64)
    scales_b = torch.tensor([2.0, 1.0, 0.5, 1.0, 4.0], dtype=torch.float64)
    mean_a = torch.zeros(d, dtype=torch.float64)
    mean_b = torch.tensor([1.0, 0.0, -2.0, 0.5, 0.0], dtype=torch.float64)
    a = _axis_cross(scales_a, mean_a, rotation)
    b = _axis_cross(scales_b, mean_b, rotation)
    std_a = scales_a * math.sqrt(2 / (2 * d - 1))
    std_b = scales_b * math.sqrt(2 / (2 * d - 1))
    # Commuting covariances: Tr(Σa + Σb − 2(ΣaΣb)^½) = Σ (σa_i − σb_i)².
    expected = ((mean_a - mean_b) ** 2).sum() + ((std_a - std_b) ** 2).sum()
    assert frechet_distance(a, b) == pytest.approx(expected.item(), rel=1e-10)


def test_fd_one_dimensional_closed_form():
    a = np.array([[0.0], [1.0], [5.0], [2.0]])
    b = np.array([[3.0], [3.5], [-1.0]])
    expected = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-12)


def test_fd_of_identical_sets_is_zero_and_inputs_are_interchangeable():
    a = torch.randn(500, 32, generator=gen(4))
    stats = feature_stats(a)
    value = frechet_distance(a, a)
    assert abs(value) < 1e-6 * np.trace(stats.sigma)
    b = torch.randn(300, 32, generator=gen(5)) * 1.3
    reference = frechet_distance(a, b)
    assert frechet_distance(a.numpy(), b.double()) == pytest.approx(reference, rel=1e-12)
    assert frechet_distance(stats, feature_stats(b)) == pytest.approx(reference, rel=1e-12)
    assert isinstance(stats, FeatureStats) and stats.n == 500 and stats.sigma.shape == (32, 32)


def test_fd_with_singular_covariances_is_finite_and_correct():
    # A dead feature (constant column) and fewer samples than dimensions make Σ singular.
    a = torch.randn(20, 40, generator=gen(6), dtype=torch.float64)
    a[:, 0] = 1.0
    shift = torch.zeros(40, dtype=torch.float64)
    shift[3] = 2.0
    # Same covariance, shifted mean: FD = |shift|² = 4 up to O(eps · d) from the offset.
    value = frechet_distance(a, a + shift)
    assert math.isfinite(value) and abs(value - 4.0) < 1e-3


def test_fd_retries_with_offset_when_root_is_not_finite(monkeypatch):
    from discrete_priors.metrics import distances

    real_sqrtm, seen = distances.scipy.linalg.sqrtm, []

    def flaky_sqrtm(matrix):  # fails like a singular product would, on the first attempt only
        seen.append(matrix.copy())
        return np.full_like(matrix, np.nan) if len(seen) == 1 else real_sqrtm(matrix)

    monkeypatch.setattr(distances.scipy.linalg, "sqrtm", flaky_sqrtm)
    a = FeatureStats(mu=np.zeros(3), sigma=np.diag([1.0, 4.0, 9.0]), n=10)
    b = FeatureStats(mu=np.ones(3), sigma=np.diag([4.0, 4.0, 1.0]), n=10)
    eps = 1e-2
    value = distances.frechet_distance(a, b, eps=eps)
    # Second call saw (Σa + εI)(Σb + εI); the result uses that root: Σ sqrt((a_i+ε)(b_i+ε)).
    np.testing.assert_allclose(seen[1], np.diag([(1 + eps) * (4 + eps), (4 + eps) ** 2, (9 + eps) * (1 + eps)]))
    roots = np.sqrt(np.array([(1 + eps) * (4 + eps), (4 + eps) ** 2, (9 + eps) * (1 + eps)]))
    assert value == pytest.approx(3 + 14 + 9 - 2 * roots.sum(), rel=1e-12)


def test_fd_rejects_complex_root_and_bad_inputs():
    bad = FeatureStats(mu=np.zeros(2), sigma=np.diag([1.0, -1.0]), n=10)  # not a covariance
    good = FeatureStats(mu=np.zeros(2), sigma=np.eye(2), n=10)
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance(bad, good)
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.full((5, 3), np.nan), np.zeros((5, 3)))


def test_fd_eigh_method_agrees_with_sqrtm_on_full_rank_covariances():
    a = torch.randn(400, 24, generator=gen(7), dtype=torch.float64) @ torch.randn(24, 24, generator=gen(8), dtype=torch.float64)
    b = torch.randn(300, 24, generator=gen(9), dtype=torch.float64) * 1.5 + 0.3
    assert frechet_distance(a, b, method="eigh") == pytest.approx(frechet_distance(a, b), rel=1e-9)
    assert abs(frechet_distance(a, a, method="eigh")) < 1e-9 * np.trace(feature_stats(a).sigma)
    with pytest.raises(ValueError, match="unknown method 'svd'"):
        frechet_distance(a, b, method="svd")


def test_fd_eigh_method_is_exact_with_fewer_samples_than_dimensions():
    # n < D: Σ = XᵀX/(n−1) with centred X, and the nonzero eigenvalues of Σ_a Σ_b are those of
    # M Mᵀ, M = X_a X_bᵀ / sqrt((n_a−1)(n_b−1)): Tr (Σ_a Σ_b)^½ is M's nuclear norm, no offset.
    a = torch.randn(12, 64, generator=gen(10), dtype=torch.float64).numpy()
    b = (torch.randn(9, 64, generator=gen(11), dtype=torch.float64) * 0.7 + 0.2).numpy()
    xa, xb = a - a.mean(0), b - b.mean(0)
    nuclear = np.linalg.svd(xa @ xb.T / math.sqrt((len(a) - 1) * (len(b) - 1)), compute_uv=False).sum()
    sa, sb = feature_stats(a).sigma, feature_stats(b).sigma
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(sa) + np.trace(sb) - 2 * nuclear
    assert frechet_distance(a, b, method="eigh") == pytest.approx(expected, rel=1e-10)
    assert abs(frechet_distance(a, a, method="eigh")) < 1e-10 * np.trace(sa)


# ----------------------------------------------------------------- precision / recall / PRDC


def test_prdc_hand_computed_one_dimensional_case():
    # real 0..4, k = 1: every real radius is 1; fake {0.5, 10}: both fake radii are 9.5.
    real = torch.arange(5, dtype=torch.float64)[:, None]
    fake = torch.tensor([[0.5], [10.0]], dtype=torch.float64)
    out = precision_recall(real, fake, k=1)
    assert out.precision == 0.5  # 0.5 lies in the balls of 0 and 1; 10 in none
    assert out.recall == 1.0  # every real point is within 9.5 of 0.5
    assert out.density == 2 / (1 * 2)  # 0.5 counted in 2 balls, 10 in 0
    assert out.coverage == 2 / 5  # only 0 and 1 have a fake point inside their ball


def test_prdc_identical_sets_are_perfect_and_density_is_k_plus_one_over_k():
    x = torch.randn(300, 8, generator=gen(7), dtype=torch.float64)
    out = precision_recall(x, x.clone(), k=3)
    # Each fake copy lies in its own ball and in those of the points it is one of the 3-NN of:
    # Σ_i |ball_i ∩ fake| = N (k + 1) for points in general position.
    assert (out.precision, out.recall, out.coverage) == (1.0, 1.0, 1.0)
    assert out.density == pytest.approx(4 / 3, abs=1e-12)


def test_prdc_far_apart_clusters_score_zero():
    real = torch.randn(200, 8, generator=gen(8))
    fake = torch.randn(200, 8, generator=gen(9)) + 100.0
    assert tuple(precision_recall(real, fake)) == (0.0, 0.0, 0.0, 0.0)


def test_prdc_same_distribution_density_one_coverage_one_minus_half_to_the_k():
    # Naeem et al. 2020: for real and fake i.i.d. from one distribution, E[density] = 1 and
    # coverage → 1 − 2^−k (= 0.875 for k = 3) as N = M grows. N = 2000: the std of a mean of
    # 2000 (weakly dependent) indicators is ≈ 0.01 for coverage, tolerances ≈ 4 std.
    real = torch.randn(2000, 16, generator=gen(10), dtype=torch.float64)
    fake = torch.randn(2000, 16, generator=gen(11), dtype=torch.float64)
    out = precision_recall(real, fake, k=3)
    assert abs(out.density - 1.0) < 0.1
    assert abs(out.coverage - 0.875) < 0.04
    assert 0.5 < out.precision < 1.0 and 0.5 < out.recall < 1.0


def test_prdc_chunked_equals_unchunked_and_radii_match_brute_force():
    real = torch.randn(257, 6, generator=gen(12), dtype=torch.float64)
    fake = torch.randn(190, 6, generator=gen(13), dtype=torch.float64) * 1.2 + 0.3
    full = precision_recall(real, fake, chunk_size=10_000)
    for chunk in (1, 7, 64, 256):
        assert precision_recall(real, fake, chunk_size=chunk) == full
    brute = (real[:, None] - real[None]).norm(dim=-1).sort(dim=1).values[:, 3]
    torch.testing.assert_close(knn_radii(real, k=3, chunk_size=13), brute, rtol=1e-9, atol=1e-9)


def test_prdc_accepts_numpy_and_validates():
    x = np.random.default_rng(0).normal(size=(50, 4))
    assert precision_recall(x, x).precision == 1.0
    with pytest.raises(ValueError, match="dimensions differ"):
        precision_recall(x, x[:, :3])
    with pytest.raises(ValueError, match="more than k"):
        precision_recall(x[:3], x)


# ------------------------------------------------------------------------------ PSNR / SSIM


def test_psnr_of_constant_offset_is_closed_form():
    x = torch.rand(3, 1, 8, 8, generator=gen(14), dtype=torch.float64)
    offsets = torch.tensor([0.1, 0.01, 0.5], dtype=torch.float64)
    out = psnr(x, x + offsets[:, None, None, None])
    torch.testing.assert_close(out.per_image, -20 * torch.log10(offsets), rtol=1e-12, atol=1e-9)
    assert out.mean == pytest.approx((-20 * torch.log10(offsets)).mean().item(), rel=1e-12)
    assert psnr(x, x + 0.1, data_range=2.0).mean == pytest.approx(10 * math.log10(4 / 0.01), rel=1e-9)
    assert math.isinf(psnr(x, x).mean)


def test_ssim_identical_is_one_and_constant_offset_is_closed_form():
    x = torch.rand(2, 3, 16, 16, generator=gen(15))
    assert ssim(x, x).per_image.tolist() == pytest.approx([1.0, 1.0], abs=1e-12)
    # Constant image a vs a + c: zero variances, so SSIM = (2a(a+c) + C1) / (a² + (a+c)² + C1).
    a, c = 0.3, 0.2
    c1 = (0.01 * 1.0) ** 2
    flat = torch.full((1, 1, 12, 12), a)
    expected = (2 * a * (a + c) + c1) / (a**2 + (a + c) ** 2 + c1)
    assert ssim(flat, flat + c).mean == pytest.approx(expected, rel=1e-6)  # inputs are float32


def _gaussian_weights_2d(size=11, sigma=1.5):
    r = np.arange(size) - size // 2
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    return g / g.sum()


def _ssim_reference_loop(x, y, data_range=1.0):
    """Straight from Wang et al. 2004: Gaussian-weighted moments in every full 11×11 window."""
    w = _gaussian_weights_2d()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    h, wd = x.shape
    values = []
    for i in range(h - 10):
        for j in range(wd - 10):
            px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
            cxy = (w * (px - mx) * (py - my)).sum()
            values.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def _ssim_reference_filter(x, y, data_range=1.0):
    """skimage's recipe: gaussian_filter (reflect, truncate 3.5 → 11 taps), then crop 5 px."""
    f = lambda img: scipy.ndimage.gaussian_filter(img, sigma=1.5, truncate=3.5, mode="reflect")  # noqa: E731
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = f(x), f(y)
    vx, vy, cxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
    s = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s[5:-5, 5:-5].mean())


def test_ssim_matches_independent_references_per_channel_mean():
    x = torch.rand(2, 3, 16, 13, generator=gen(16), dtype=torch.float64)
    y = (x + 0.2 * torch.randn(x.shape, generator=gen(17), dtype=torch.float64)).clamp(0, 1)
    out = ssim(x, y)
    for b in range(2):
        loop = np.mean([_ssim_reference_loop(x[b, ch].numpy(), y[b, ch].numpy()) for ch in range(3)])
        filt = np.mean([_ssim_reference_filter(x[b, ch].numpy(), y[b, ch].numpy()) for ch in range(3)])
        assert out.per_image[b].item() == pytest.approx(loop, abs=1e-10)
        assert out.per_image[b].item() == pytest.approx(filt, abs=1e-10)
    assert 0.1 < out.mean < 0.95  # noisy copy: clearly between unrelated and identical


def test_ssim_rejects_images_smaller_than_window_and_row_helper_marks_nan():
    x = torch.rand(2, 1, 8, 8, generator=gen(18))
    with pytest.raises(ValueError, match="smaller than the 11x11"):
        ssim(x, x)
    row = reconstruction_metrics(x, x + 0.1)
    assert math.isnan(row["ssim"]) and row["psnr"] == pytest.approx(20.0, rel=1e-5)


# ------------------------------------------------------------------------------ code stats


def test_binary_code_stats_on_hand_built_codes():
    # positions × channels; columns over the 4 codes: (0,0) always 0, (0,1) 0101, (1,0) always 1, (1,1) 0001
    codes = torch.tensor(
        [
            [[0, 0], [1, 0]],
            [[0, 1], [1, 0]],
            [[0, 0], [1, 0]],
            [[0, 1], [1, 1]],
        ],
        dtype=torch.float32,
    )
    h_quarter = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    out = binary_code_stats(codes)
    assert out.bits_per_image == 4
    assert out.dead_fraction == 0.5
    assert out.marginal_entropy_bits == pytest.approx(1 + h_quarter, rel=1e-12)
    assert out.bit_entropy == pytest.approx((1 + h_quarter) / 4, rel=1e-12)
    torch.testing.assert_close(out.bit_entropy_per_channel, torch.tensor([0.0, (1 + h_quarter) / 2], dtype=torch.float64))
    assert out.one_fraction == pytest.approx(7 / 16)
    assert binary_entropy_bits(torch.tensor([0.0, 0.5, 1.0])).tolist() == [0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="values in"):
        binary_code_stats(codes * 0.5)


def test_categorical_perplexity_of_uniform_usage_over_m_codes_is_m():
    vocab, used = 16, torch.tensor([2, 5, 7, 11, 13])
    codes = used.repeat(6).reshape(10, 3)  # each of the 5 codes 6 times
    out = categorical_code_stats(codes, vocab_size=vocab)
    assert out.perplexity == pytest.approx(5.0, rel=1e-12)
    assert out.usage == 5 / 16
    assert out.entropy_bits == pytest.approx(math.log2(5), rel=1e-12)
    assert out.bits_per_image == 3 * 4
    # counts 2:1:1 → H = 1.5 bits, perplexity 2^1.5
    skewed = categorical_code_stats(torch.tensor([[0, 0, 1, 2]]), vocab_size=4)
    assert skewed.perplexity == pytest.approx(2**1.5, rel=1e-12) and skewed.usage == 0.75
    with pytest.raises(ValueError, match=r"indices in \[0, 4\)"):
        categorical_code_stats(torch.tensor([[0, 4]]), vocab_size=4)


# ------------------------------------------------------------------------------ memorisation


def test_memorisation_copy_of_training_image_has_distance_zero():
    train = torch.rand(50, 1, 8, 8, generator=gen(19))
    test = (train[:20] + 0.05 * torch.randn(20, 1, 8, 8, generator=gen(20))).clamp(0, 1)
    far = torch.rand(10, 1, 8, 8, generator=gen(21)) * 0.1 + 0.9  # far from uniform noise images
    samples = torch.cat([train[[7, 31]], far])
    train_feats, sample_feats = train.flatten(1)[:, :16] * 3, samples.flatten(1)[:, :16] * 3
    test_feats = test.flatten(1)[:, :16] * 3
    out = memorisation(
        samples, train, test=test, sample_features=sample_feats, train_features=train_feats, test_features=test_feats, chunk_size=7
    )
    assert out.pixels.distance[:2].tolist() == [0.0, 0.0]
    assert out.pixels.index[:2].tolist() == [7, 31]
    assert (out.pixels.distance[2:] > 0).all()
    # The two copies are closer than any test image; the far images are not.
    assert out.pixels.fraction_closer == pytest.approx(2 / 12)
    assert out.features.distance[:2].tolist() == [0.0, 0.0]


def test_nearest_neighbours_chunked_matches_brute_force():
    queries = torch.randn(37, 5, generator=gen(22), dtype=torch.float64)
    reference = torch.randn(53, 5, generator=gen(23), dtype=torch.float64)
    full = torch.cdist(queries, reference, compute_mode="donot_use_mm_for_euclid_dist")
    for chunk in (1, 8, 100):
        out = nearest_neighbours(queries, reference, chunk_size=chunk)
        assert out.index.tolist() == full.argmin(dim=1).tolist()
        torch.testing.assert_close(out.distance, full.min(dim=1).values, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------ speed


def test_measure_throughput_counts_calls_and_passes_evals_through():
    calls = []
    out = measure_throughput(lambda n: calls.append(n), batch_size=8, warmup=2, repeats=5, network_evals_per_sample=64)
    assert calls == [8] * 7
    assert out.batch_size == 8 and out.repeats == 5 and out.network_evals_per_sample == 64
    assert out.samples_per_second == pytest.approx(8 / out.seconds_per_batch) or math.isinf(out.samples_per_second)
    with pytest.raises(ValueError, match="batch_size"):
        measure_throughput(lambda n: None, batch_size=0)
