"""Fréchet distance between two feature sets (the "FID-style" distance).

FD = ‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^{1/2}), the 2-Wasserstein distance between the two
Gaussians fitted to the features (Heusel et al. 2017, https://arxiv.org/abs/1706.08500). Which
extractor produced the features decides the name of the number (FID for Inception pool3, "FD on
classifier:digits features" otherwise) — callers record ``extractor.name`` next to it.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import scipy.linalg
import torch

# Product Σ_a Σ_b whose square root fails this relative residual ‖X² − A‖_F / ‖A‖_F is treated
# as singular and retried with a small diagonal offset (as in the reference TF/pytorch-fid code).
_SQRTM_RESIDUAL_TOL = 1e-5


class FeatureStats(NamedTuple):
    """Gaussian statistics of a feature set: mu (D,) and sigma (D, D) float64 numpy, n samples.
    Cache these for a reference set (``np.savez`` or safetensors) instead of its features."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int


def _as_float64(features, name: str) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().double().numpy()
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"{name}: expected features of shape (N, D), got shape {features.shape}")
    if features.shape[0] < 2:
        raise ValueError(f"{name}: need at least 2 feature vectors for a covariance, got {features.shape[0]}")
    if not np.isfinite(features).all():
        raise ValueError(f"{name}: features contain NaN or inf")
    return features


def feature_stats(features) -> FeatureStats:
    """features: (N, D) numpy or torch -> FeatureStats with the unbiased (N − 1) covariance,
    the convention of the reference FID code (``np.cov(rowvar=False)``)."""
    features = _as_float64(features, "features")
    return FeatureStats(mu=features.mean(axis=0), sigma=np.cov(features, rowvar=False).reshape(features.shape[1], -1), n=features.shape[0])


def _stats(x, name: str) -> FeatureStats:
    if isinstance(x, FeatureStats):
        return x
    return feature_stats(_as_float64(x, name))


def _sqrtm_with_residual(matrix: np.ndarray) -> tuple[np.ndarray, float]:
    with warnings.catch_warnings():
        # scipy warns on singular input; the residual below detects that case and we retry.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = np.asarray(scipy.linalg.sqrtm(matrix))
    if not np.isfinite(root).all():
        return root, float("inf")
    scale = max(np.linalg.norm(matrix, "fro"), np.finfo(np.float64).tiny)
    return root, float(np.linalg.norm(root @ root - matrix, "fro") / scale)


def _trace_sqrt_product_eigh(sigma_a: np.ndarray, sigma_b: np.ndarray, *, neg_tol: float = 1e-6) -> float:
    """Tr (Σ_a Σ_b)^½ as Σ √λ_i of the symmetric PSD Σ_a^½ Σ_b Σ_a^½, which has the eigenvalues of
    Σ_a Σ_b (XY and YX share their nonzero eigenvalues, X = Σ_a^½, Y = Σ_a^½ Σ_b). Two symmetric
    eigendecompositions: exact for singular covariances (no offset) and, at D = 2048, ~10x faster
    on one CPU thread than ``scipy.linalg.sqrtm`` (7.5 s against 100 s for one eigh / one sqrtm,
    measured on this project's loaded 2-core machine)."""
    def psd_eigenvalues(values: np.ndarray, what: str) -> np.ndarray:
        # Zero eigenvalues come out as ±(D · machine eps · largest); their square roots would add
        # ~1e-8 each, so values below that rounding floor are set to 0 before the root.
        scale = max(float(np.abs(values).max()), np.finfo(np.float64).tiny)
        if values.min() < -neg_tol * scale:
            raise ValueError(f"{what} has eigenvalue {values.min():.3g} < 0 beyond rounding (largest {scale:.3g}); "
                             "expected PSD covariances — check the features")
        return np.where(values > len(values) * np.finfo(np.float64).eps * scale, values, 0.0)

    w, v = np.linalg.eigh(sigma_a)
    root_a = (v * np.sqrt(psd_eigenvalues(w, "covariance Σ_a"))) @ v.T
    inner = root_a @ sigma_b @ root_a
    lam = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sqrt(psd_eigenvalues(lam, "Σ_a^½ Σ_b Σ_a^½")).sum())


def frechet_distance(feats_a, feats_b, *, eps: float = 1e-6, imag_tol: float = 1e-3, method: str = "sqrtm") -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets.

    feats_a, feats_b: (N_a, D), (N_b, D) features (numpy or torch, any float dtype; computed in
    float64), or precomputed :class:`FeatureStats`.
    eps: diagonal offset added to both covariances when Σ_a Σ_b is singular (its square root is
    non-finite or inaccurate), e.g. fewer samples than dimensions or dead feature units.
    imag_tol: the square root of a product of two PSD matrices has real eigenvalues; an imaginary
    part above this on its diagonal means the covariances are broken, and is an error.
    method: ``"sqrtm"`` (default; the reference FID code's ``scipy.linalg.sqrtm`` of Σ_a Σ_b, with
    the ``eps`` retry) or ``"eigh"`` (the same trace from two symmetric eigendecompositions: exact
    without an offset when covariances are singular, and ~10x faster in 2048-d, which is what makes
    Inception FIDs affordable on CPU; ``eps`` and ``imag_tol`` do not apply). The two agree to
    rounding on full-rank covariances.
    """
    if method not in ("sqrtm", "eigh"):
        raise ValueError(f"unknown method {method!r}, expected 'sqrtm' or 'eigh'")
    a, b = _stats(feats_a, "feats_a"), _stats(feats_b, "feats_b")
    if a.mu.shape != b.mu.shape:
        raise ValueError(f"feature dimensions differ: {a.mu.shape[0]} vs {b.mu.shape[0]}")
    diff = a.mu - b.mu
    if method == "eigh":
        return float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2.0 * _trace_sqrt_product_eigh(a.sigma, b.sigma))
    covmean, residual = _sqrtm_with_residual(a.sigma @ b.sigma)
    if residual > _SQRTM_RESIDUAL_TOL:
        offset = eps * np.eye(a.sigma.shape[0])
        covmean, residual = _sqrtm_with_residual((a.sigma + offset) @ (b.sigma + offset))
        if not np.isfinite(covmean).all():
            raise ValueError(f"matrix square root of Σ_a Σ_b is not finite even with a {eps} diagonal offset")
    if np.iscomplexobj(covmean):
        max_imag = float(np.abs(np.diagonal(covmean).imag).max())
        if max_imag > imag_tol:
            raise ValueError(
                f"matrix square root of Σ_a Σ_b has an imaginary component {max_imag:.3g} > {imag_tol} on its "
                "diagonal; expected a (numerically) real root — check the features for NaNs or degenerate sets"
            )
        covmean = covmean.real
    value = diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2.0 * np.trace(covmean)
    return float(value)
