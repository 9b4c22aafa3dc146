"""Memorisation check: how close each generated sample is to its nearest training image.

A sample closer to the training set than held-out test images typically are is a candidate copy:
we report the fraction of samples whose nearest-training distance is below the median
test-to-train nearest-neighbour distance (≈ 0.5 for a model that generalises like the test set,
→ 1 for one that replays its training data).
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class NearestNeighbours(NamedTuple):
    """distance: (M,) Euclidean distance of each query to its nearest reference; index: (M,) long."""

    distance: torch.Tensor
    index: torch.Tensor


class MemorisationStats(NamedTuple):
    """distance / index: (M,) each sample's nearest training item. test_median: median nearest-
    training distance of the test set (None without a test set). fraction_closer: fraction of
    samples strictly closer to the training set than that median (None without a test set)."""

    distance: torch.Tensor
    index: torch.Tensor
    test_median: float | None
    fraction_closer: float | None


class Memorisation(NamedTuple):
    """pixels: the check on flattened images; features: the same on extractor features (or None)."""

    pixels: MemorisationStats
    features: MemorisationStats | None


def _flat(x: torch.Tensor, name: str, device) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise ValueError(f"{name}: expected a tensor of shape (N, ...), got {getattr(x, 'shape', type(x))}")
    return x.detach().flatten(1).to(device=device, dtype=torch.float64)


def nearest_neighbours(queries: torch.Tensor, reference: torch.Tensor, *, chunk_size: int = 1024) -> NearestNeighbours:
    """queries: (M, ...), reference: (N, ...) same trailing shape -> nearest reference per query.

    Blocks of ``chunk_size`` queries × ``chunk_size`` references at a time, so memory stays
    O(chunk_size²) whatever M and N. The search uses the fast ‖a‖² + ‖b‖² − 2a·b form of cdist;
    the reported distance is then recomputed directly as ‖q − r‖ for the chosen neighbour, so an
    exact copy reports exactly 0 rather than a cancellation residue."""
    device = reference.device
    queries, reference = _flat(queries, "queries", device), _flat(reference, "reference", device)
    if queries.shape[1] != reference.shape[1]:
        raise ValueError(f"queries have {queries.shape[1]} values per item, reference {reference.shape[1]}")
    if reference.shape[0] == 0:
        raise ValueError("reference set is empty")
    best = torch.full((queries.shape[0],), float("inf"), dtype=torch.float64, device=device)
    index = torch.zeros(queries.shape[0], dtype=torch.long, device=device)
    for q0 in range(0, queries.shape[0], chunk_size):
        q = queries[q0 : q0 + chunk_size]
        for r0 in range(0, reference.shape[0], chunk_size):
            block_min, block_arg = torch.cdist(q, reference[r0 : r0 + chunk_size]).min(dim=1)
            better = block_min < best[q0 : q0 + chunk_size]
            best[q0 : q0 + chunk_size] = torch.where(better, block_min, best[q0 : q0 + chunk_size])
            index[q0 : q0 + chunk_size] = torch.where(better, block_arg + r0, index[q0 : q0 + chunk_size])
    distance = (queries - reference[index]).norm(dim=1)
    return NearestNeighbours(distance=distance, index=index)


def memorisation_stats(samples: torch.Tensor, train: torch.Tensor, *, test: torch.Tensor | None = None, chunk_size: int = 1024) -> MemorisationStats:
    """samples: (M, ...), train: (N, ...), test: (T, ...) or None, all in one space (pixels or features)."""
    nn = nearest_neighbours(samples, train, chunk_size=chunk_size)
    if test is None:
        return MemorisationStats(nn.distance, nn.index, None, None)
    test_median = nearest_neighbours(test, train, chunk_size=chunk_size).distance.median().item()
    fraction = (nn.distance < test_median).double().mean().item()
    return MemorisationStats(nn.distance, nn.index, test_median, fraction)


def memorisation(
    samples: torch.Tensor,
    train: torch.Tensor,
    *,
    test: torch.Tensor | None = None,
    sample_features: torch.Tensor | None = None,
    train_features: torch.Tensor | None = None,
    test_features: torch.Tensor | None = None,
    chunk_size: int = 1024,
) -> Memorisation:
    """samples: (M, C, H, W), train: (N, C, H, W), test: (T, C, H, W) or None, images in one
    range; optional features (M, D), (N, D), (T, D) of the same sets from a feature extractor."""
    pixels = memorisation_stats(samples, train, test=test, chunk_size=chunk_size)
    features = None
    if sample_features is not None or train_features is not None:
        if sample_features is None or train_features is None:
            raise ValueError("feature-space memorisation needs both sample_features and train_features")
        if (test is None) != (test_features is None):
            raise ValueError("give test_features exactly when test images are given")
        features = memorisation_stats(sample_features, train_features, test=test_features, chunk_size=chunk_size)
    return Memorisation(pixels=pixels, features=features)
