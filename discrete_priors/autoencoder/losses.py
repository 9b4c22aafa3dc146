"""Autoencoder losses: reconstruction, an LPIPS-style perceptual distance on a VGG feature net
loaded from a user-supplied local weights file, PatchGAN hinge losses and the adaptive weight of
VQGAN (Esser et al. 2021, https://arxiv.org/abs/2012.09841, eq. 7)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

RECON_LOSSES = ("l1", "mse")

# Feature net layouts: numbers are 3x3 conv widths (each followed by ReLU), "M" a 2x2 max-pool.
# Features are tapped at the last ReLU before each pool and at the end (LPIPS' relu1_2 ... relu5_3).
# "vgg16" matches torchvision's ``vgg16().features`` indexing, so its state dict loads as is.
FEATURE_NETS = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    "tiny": [8, 8, "M", 16],  # for tests
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean over all elements of |recon - target| (``l1``) or (recon - target)^2 (``mse``)."""
    assert kind in RECON_LOSSES, f"unknown reconstruction loss {kind!r}, expected one of {RECON_LOSSES}"
    return F.l1_loss(recon, target) if kind == "l1" else F.mse_loss(recon, target)


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A ``.safetensors`` file or a torch state dict (loaded with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"perceptual loss weights not found at {str(path)!r}: supply a local VGG16 feature file "
            "(safetensors or a torch state dict, e.g. torchvision's vgg16 weights); nothing is downloaded"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    return state


class PerceptualLoss(nn.Module):
    """LPIPS-like distance (Zhang et al. 2018, https://arxiv.org/abs/1801.03924): channel-normalised
    VGG features of both images, squared difference, spatial mean, optional per-channel linear
    weights (``lin{i}.weight`` of shape (channels,) in the file; uniform when absent), summed over taps.

    weights_path: local file holding ``features.{i}.weight`` / ``features.{i}.bias`` (torchvision
    naming; the ``features.`` prefix may be omitted). The net is frozen.
    images: (B, C, H, W) in [0, 1], 1 or 3 channels -> (B,) distances.
    """

    def __init__(self, weights_path: str | os.PathLike, *, arch: str = "vgg16"):
        super().__init__()
        assert arch in FEATURE_NETS, f"unknown perceptual feature net {arch!r}, expected one of {sorted(FEATURE_NETS)}"
        layers, taps, channels, in_channels = [], [], [], 3
        for spec in FEATURE_NETS[arch]:
            if spec == "M":
                taps.append(len(layers) - 1)
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(in_channels, spec, 3, padding=1), nn.ReLU()]
                in_channels = spec
                channels.append(spec)
        taps.append(len(layers) - 1)
        self.features = nn.Sequential(*layers)
        self.taps = taps
        state = load_state_dict_file(weights_path)
        feature_state = {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("lin")}
        missing = set(self.features.state_dict()) - set(feature_state)
        if missing:
            raise ValueError(f"{weights_path}: missing feature-net weights {sorted(missing)[:4]} for arch {arch!r}")
        self.features.load_state_dict({k: feature_state[k] for k in self.features.state_dict()})
        tap_channels = [self.features[i - 1].out_channels for i in taps]
        self.lin = nn.ParameterList(
            [nn.Parameter(state.get(f"lin{i}.weight", torch.ones(c)).reshape(c).float(), requires_grad=False)
             for i, c in enumerate(tap_channels)]
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True):
        return super().train(False)  # frozen feature net: never in training mode

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - self.mean) / self.std
        out, wanted = [], set(self.taps)
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in wanted:
                out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        distance = recon.new_zeros(recon.shape[0])
        for weight, a, b in zip(self.lin, self._taps(recon), self._taps(target)):
            distance = distance + torch.einsum("bchw,c->b", (a - b).pow(2), weight) / (a.shape[2] * a.shape[3])
        return distance


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """0.5 * (E[relu(1 - D(x))] + E[relu(1 + D(x_hat))])."""
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def hinge_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


def adaptive_weight(recon_loss: torch.Tensor, generator_loss: torch.Tensor, last_layer: torch.Tensor,
                    *, max_weight: float = 1e4) -> torch.Tensor:
    """||grad_last recon_loss|| / (||grad_last generator_loss|| + 1e-4), clamped to [0, max_weight] and
    detached: balances the adversarial gradient against the reconstruction gradient at the
    decoder's last layer (VQGAN eq. 7)."""
    recon_grad = torch.autograd.grad(recon_loss, last_layer, retain_graph=True)[0]
    gen_grad = torch.autograd.grad(generator_loss, last_layer, retain_graph=True)[0]
    weight = recon_grad.norm() / (gen_grad.norm() + 1e-4)
    return weight.clamp(0.0, max_weight).detach()


__all__ = [
    "FEATURE_NETS", "RECON_LOSSES", "PerceptualLoss", "adaptive_weight", "hinge_discriminator_loss",
    "hinge_generator_loss", "load_state_dict_file", "reconstruction_loss",
]
