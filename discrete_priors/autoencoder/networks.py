"""Convolutional encoder / decoder (VQGAN-style: Esser et al. 2021, https://arxiv.org/abs/2012.09841)
and the PatchGAN discriminator (Isola et al. 2017, https://arxiv.org/abs/1611.07004).

One backbone for every latent space: the latent space only decides how many channels the encoder
emits and the decoder receives. ``channel_mult`` has one entry per resolution level, so
``len(channel_mult) - 1`` = log2(downsampling factor) halvings.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    # The largest group count <= groups that divides channels (narrow CPU widths are not multiples of 32).
    return nn.GroupNorm(math.gcd(groups, channels), channels, eps=1e-6)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv3x3, twice, plus a (1x1-projected) skip connection."""

    def __init__(self, in_channels: int, out_channels: int, *, groups: int = 32, dropout: float = 0.0):
        super().__init__()
        self.body = nn.Sequential(
            group_norm(in_channels, groups), nn.SiLU(), nn.Conv2d(in_channels, out_channels, 3, padding=1),
            group_norm(out_channels, groups), nn.SiLU(), nn.Dropout(dropout),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x):
        return self.skip(x) + self.body(x)


class AttnBlock(nn.Module):
    """Single-head self-attention over the h*w positions of a feature map, with a residual."""

    def __init__(self, channels: int, *, groups: int = 32):
        super().__init__()
        self.norm = group_norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        _, _, height, width = x.shape
        q, k, v = rearrange(self.qkv(self.norm(x)), "b (three c) h w -> three b 1 (h w) c", three=3)
        attended = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(rearrange(attended, "b 1 (h w) c -> b c h w", h=height, w=width))


def _middle(channels: int, *, attention: bool, groups: int, dropout: float) -> nn.Sequential:
    layers = [ResBlock(channels, channels, groups=groups, dropout=dropout)]
    if attention:
        layers += [AttnBlock(channels, groups=groups), ResBlock(channels, channels, groups=groups, dropout=dropout)]
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """images (B, C, H, W) in [-1, 1] -> (B, out_channels, H / k, W / k), k = 2 ** (len(channel_mult) - 1)."""

    def __init__(self, *, in_channels: int, out_channels: int, width: int, channel_mult, num_res_blocks: int,
                 attention: bool = False, groups: int = 32, dropout: float = 0.0):
        super().__init__()
        widths = [width * m for m in channel_mult]
        self.conv_in = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        blocks, channels = [], widths[0]
        for level, level_width in enumerate(widths):
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(channels, level_width, groups=groups, dropout=dropout))
                channels = level_width
            if level < len(widths) - 1:
                blocks.append(nn.Conv2d(channels, channels, 3, stride=2, padding=1))
        self.blocks = nn.Sequential(*blocks)
        self.middle = _middle(channels, attention=attention, groups=groups, dropout=dropout)
        self.conv_out = nn.Sequential(group_norm(channels, groups), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))

    def forward(self, x):
        return self.conv_out(self.middle(self.blocks(self.conv_in(x))))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Decoder(nn.Module):
    """(B, in_channels, h, w) -> images (B, out_channels, h * k, w * k) in roughly [-1, 1] (unclamped)."""

    def __init__(self, *, in_channels: int, out_channels: int, width: int, channel_mult, num_res_blocks: int,
                 attention: bool = False, groups: int = 32, dropout: float = 0.0):
        super().__init__()
        widths = [width * m for m in channel_mult][::-1]
        channels = widths[0]
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.middle = _middle(channels, attention=attention, groups=groups, dropout=dropout)
        blocks = []
        for level, level_width in enumerate(widths):
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(channels, level_width, groups=groups, dropout=dropout))
                channels = level_width
            if level < len(widths) - 1:
                blocks.append(Upsample(channels))
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = nn.Sequential(group_norm(channels, groups), nn.SiLU())
        self.conv_out = nn.Conv2d(channels, out_channels, 3, padding=1)

    @property
    def last_layer(self) -> torch.Tensor:
        """Weight of the final conv: where the adaptive adversarial weight compares gradient norms."""
        return self.conv_out.weight

    def forward(self, z):
        return self.conv_out(self.norm_out(self.blocks(self.middle(self.conv_in(z)))))


def default_disc_layers(image_size: int, max_layers: int = 3) -> int:
    """Most stride-2 layers (<= max_layers) that leave a non-empty patch map: the stride-2 stack
    maps s -> s / 2 ** n and the two final stride-1 4x4 convs remove 2 more pixels."""
    layers = max_layers
    while layers > 1 and image_size // 2 ** layers - 2 < 1:
        layers -= 1
    return layers


class PatchDiscriminator(nn.Module):
    """PatchGAN: a stack of 4x4 stride-2 convs that scores overlapping patches as real/fake.

    images (B, C, H, W) in [-1, 1] -> logits (B, 1, h', w'). GroupNorm instead of the original
    BatchNorm, so the result does not depend on the batch split across DDP processes.
    """

    def __init__(self, *, in_channels: int, width: int = 64, num_layers: int = 3, groups: int = 32):
        super().__init__()
        layers = [nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        channels = width
        for i in range(1, num_layers + 1):
            out = width * min(2 ** i, 8)
            stride = 2 if i < num_layers else 1
            layers += [nn.Conv2d(channels, out, 4, stride=stride, padding=1, bias=False), group_norm(out, groups),
                       nn.LeakyReLU(0.2)]
            channels = out
        layers.append(nn.Conv2d(channels, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)
        self.config = {"in_channels": in_channels, "width": width, "num_layers": num_layers, "groups": groups}

    def forward(self, x):
        return self.net(x)


__all__ = ["AttnBlock", "Decoder", "Encoder", "PatchDiscriminator", "ResBlock", "Upsample", "default_disc_layers"]
