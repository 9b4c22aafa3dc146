"""Improved precision / recall and density / coverage on feature k-NN manifolds.

Distances are computed in row blocks (``torch.cdist`` of ``chunk_size`` rows against a whole set),
so memory is O(chunk_size · N) rather than O(N²): 50k × 50k features fit on one GPU or in RAM.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class PRDC(NamedTuple):
    """precision, recall, coverage in [0, 1]; density ≥ 0 (≈ 1 when the sets share a distribution)."""

    precision: float
    recall: float
    density: float
    coverage: float


def _as_features(x, name: str, device, dtype) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"{name}: expected features of shape (N, D), got {getattr(x, 'shape', type(x))}")
    if dtype is None:
        dtype = x.dtype if x.dtype == torch.float64 else torch.float32
    return x.detach().to(device=device, dtype=dtype)


def _row_blocks(n: int, chunk_size: int):
    for start in range(0, n, chunk_size):
        yield slice(start, min(start + chunk_size, n))


def knn_radii(features: torch.Tensor, *, k: int = 3, chunk_size: int = 1024) -> torch.Tensor:
    """features: (N, D) -> (N,) distance from each point to its k-th nearest *other* point.

    The (k+1)-th smallest entry of a row of the self-distance matrix is taken: the first is the
    point itself (distance 0), and this stays right when the set holds duplicates."""
    n = features.shape[0]
    if n <= k:
        raise ValueError(f"need more than k={k} feature vectors for k-NN radii, got {n}")
    radii = torch.empty(n, dtype=features.dtype, device=features.device)
    for rows in _row_blocks(n, chunk_size):
        dist = torch.cdist(features[rows], features)
        radii[rows] = dist.topk(k + 1, dim=1, largest=False).values[:, k]
    return radii


def precision_recall(
    real,
    fake,
    *,
    k: int = 3,
    chunk_size: int = 1024,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> PRDC:
    """Improved precision/recall (Kynkäänniemi et al. 2019, https://arxiv.org/abs/1904.06991) and
    density/coverage (Naeem et al. 2020, https://arxiv.org/abs/2002.09797).

    real: (N, D) reference features, fake: (M, D) generated features (numpy or torch).
    Balls are closed: a point lies on a manifold when its distance to some centre is ≤ that
    centre's k-NN radius (Kynkäänniemi et al.'s eq. 1; the prdc reference code uses <, which
    differs only on exact ties, e.g. duplicated points).
      precision = mean over fake of [fake in the real manifold]
      recall    = mean over real of [real in the fake manifold]
      density   = (1 / kM) Σ_fake Σ_real [fake in B(real, r_real)]
      coverage  = mean over real of [its nearest fake lies in B(real, r_real)]
    Computed on ``device`` (default: where ``real`` lives) in ``dtype`` (default float32, or
    float64 when ``real`` is float64).
    """
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    device = device if device is not None else (real.device if isinstance(real, torch.Tensor) else "cpu")
    real = _as_features(real, "real", device, dtype)
    fake = _as_features(fake, "fake", device, real.dtype)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: real {real.shape[1]} vs fake {fake.shape[1]}")

    real_radii = knn_radii(real, k=k, chunk_size=chunk_size)
    fake_radii = knn_radii(fake, k=k, chunk_size=chunk_size)

    # One pass over real × fake blocks serves all four numbers: rows (real) give recall and
    # coverage directly; columns (fake) accumulate precision (any) and density (count).
    fake_in_real = torch.zeros(fake.shape[0], dtype=torch.bool, device=device)
    fake_ball_count = torch.zeros(fake.shape[0], dtype=torch.long, device=device)
    recalled = torch.zeros(real.shape[0], dtype=torch.bool, device=device)
    covered = torch.zeros(real.shape[0], dtype=torch.bool, device=device)
    for rows in _row_blocks(real.shape[0], chunk_size):
        dist = torch.cdist(real[rows], fake)  # (b, M)
        inside_real_ball = dist <= real_radii[rows, None]
        fake_in_real |= inside_real_ball.any(dim=0)
        fake_ball_count += inside_real_ball.sum(dim=0)
        recalled[rows] = (dist <= fake_radii[None, :]).any(dim=1)
        covered[rows] = dist.min(dim=1).values <= real_radii[rows]

    return PRDC(
        precision=fake_in_real.double().mean().item(),
        recall=recalled.double().mean().item(),
        density=fake_ball_count.sum().item() / (k * fake.shape[0]),
        coverage=covered.double().mean().item(),
    )
