"""Saving image grids as PNG (PIL; no torchvision needed)."""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from einops import rearrange
from PIL import Image

from discrete_priors.io import atomic_path


def make_grid(images: torch.Tensor, *, nrow: int | None = None, padding: int = 1, scale: int = 1) -> np.ndarray:
    """images: (B, C, H, W) in [0, 1] -> uint8 array (rows*H, cols*W, C) with ``padding`` white pixels."""
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(images.shape)}")
    images = images.detach().float().clamp(0, 1).cpu()
    if scale > 1:
        images = images.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    b, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(b))
    rows = math.ceil(b / nrow)
    pad = torch.ones(rows * nrow - b, c, h, w)
    images = torch.cat([images, pad])
    images = torch.nn.functional.pad(images, (padding, padding, padding, padding), value=1.0)
    grid = rearrange(images, "(r n) c h w -> (r h) (n w) c", n=nrow)
    return (grid.numpy() * 255 + 0.5).astype(np.uint8)


def save_grid(images: torch.Tensor, path: str | os.PathLike, **kwargs) -> None:
    """Write a PNG grid of ``images`` (B, C, H, W) in [0, 1] atomically."""
    grid = make_grid(images, **kwargs)
    img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
