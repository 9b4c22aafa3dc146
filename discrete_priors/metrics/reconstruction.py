"""Reconstruction quality: PSNR and SSIM per image and averaged.

Both are computed in float64 on the inputs' device.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange


class ImageScore(NamedTuple):
    """per_image: (B,) float64 score of each image pair; mean: their average as a float."""

    per_image: torch.Tensor
    mean: float


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.dim() != 4 or x.shape != y.shape:
        raise ValueError(f"expected two image batches of the same shape (B, C, H, W), got {tuple(x.shape)} and {tuple(y.shape)}")
    return x.detach().double(), y.detach().double()


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> ImageScore:
    """Peak signal-to-noise ratio 10·log10(data_range² / MSE) in dB, MSE over (C, H, W) of each image.

    x, y: (B, C, H, W). An identical pair has infinite PSNR (and so then has the mean)."""
    x, y = _check_pair(x, y)
    mse = (x - y).pow(2).flatten(1).mean(dim=1)
    per_image = 10.0 * torch.log10(data_range**2 / mse)
    return ImageScore(per_image=per_image, mean=per_image.mean().item())


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """(size,) float64 normalised 1-D Gaussian taps centred on the middle tap."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    taps = torch.exp(-(offsets**2) / (2 * sigma**2))
    return taps / taps.sum()


def ssim_map(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float = 1.0,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Local SSIM (B, C, H − win_size + 1, W − win_size + 1) of Wang et al. 2004
    (https://doi.org/10.1109/TIP.2003.819861), each channel on its own.

    Border handling: 'valid' — only windows that lie wholly inside the image are kept. This is
    what skimage's ``structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)`` reports too: it filters with reflected borders and then crops
    (win_size − 1) / 2 pixels from every side, which removes exactly the windows that touched
    the reflection. Local (co)variances are the Gaussian-weighted population moments."""
    x, y = _check_pair(x, y)
    if win_size % 2 != 1:
        raise ValueError(f"win_size must be odd, got {win_size}")
    if min(x.shape[-2:]) < win_size:
        raise ValueError(f"images of size {tuple(x.shape[-2:])} are smaller than the {win_size}x{win_size} SSIM window")
    channels = x.shape[1]
    taps = gaussian_window(win_size, sigma).to(x.device)
    # The 2-D Gaussian is separable: filter rows then columns, depthwise (one group per channel).
    row_kernel = rearrange(taps, "k -> 1 1 1 k").repeat(channels, 1, 1, 1)
    col_kernel = rearrange(taps, "k -> 1 1 k 1").repeat(channels, 1, 1, 1)

    def blur(img: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(img, row_kernel, groups=channels), col_kernel, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov_xy = blur(x * y) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, **window) -> ImageScore:
    """Structural similarity per image: the mean of :func:`ssim_map` over channels and valid
    positions (equal to the mean of the per-channel SSIMs, as all channels have the same size).

    x, y: (B, C, H, W) with H, W ≥ 11; ``window`` forwards win_size, sigma, k1, k2."""
    per_image = ssim_map(x, y, data_range=data_range, **window).flatten(1).mean(dim=1)
    return ImageScore(per_image=per_image, mean=per_image.mean().item())


def reconstruction_metrics(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0) -> dict[str, float]:
    """Table row helper: ``{"psnr": .., "ssim": .., "mse": ..}`` averaged over the batch
    (SSIM omitted, as NaN, for images smaller than its 11×11 window)."""
    x64, y64 = _check_pair(x, y)
    row = {"psnr": psnr(x, y, data_range=data_range).mean, "mse": (x64 - y64).pow(2).mean().item()}
    row["ssim"] = ssim(x, y, data_range=data_range).mean if min(x.shape[-2:]) >= 11 else math.nan
    return row
