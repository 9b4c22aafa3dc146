"""A small CNN classifier trained on a dataset's training split: the feature extractor for
FID-style distances and precision/recall on CPU-scale data, and the judge of class-conditional
samples (``predict``).

Trained once per (dataset, size, seed) and cached on disk as safetensors weights + JSON config:
    <cache_dir>/<dataset>-<size>-seed<seed>[-data<data_seed>][-<folder hash>]/{model.safetensors, config.json}
(image-folder entries carry the hash of the folder's path and files, datasets.image_folder_fingerprint).
config.json is written last, so its presence marks a complete cache entry.
"""

from __future__ import annotations

import inspect
import math
import os
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from discrete_priors.io import load_tensors, read_json, save_tensors, state_dict_for_save, write_json

CACHE_ENV_VAR = "DISCRETE_PRIORS_CACHE"
CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV_VAR)
    return Path(root).expanduser() / "classifiers" if root else Path.home() / ".cache" / "discrete_priors" / "classifiers"


class SmallCNN(nn.Module):
    """Three 3×3 conv blocks (two 2× max-pools) → 4×4 adaptive average pool → ``feature_dim``
    hidden layer → logits. Works for any image size ≥ 4 (16, 28, 32, 64, ...).

    ``embed`` returns the hidden layer *before* its ReLU: dense features with no dead units,
    so feature covariances stay full rank for Fréchet distances."""

    def __init__(self, *, in_channels: int = 1, num_classes: int = 10, width: int = 16, feature_dim: int = 128, dropout: float = 0.2):
        super().__init__()
        self.config = dict(in_channels=in_channels, num_classes=num_classes, width=width, feature_dim=feature_dim, dropout=dropout)

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.trunk = nn.Sequential(
            *block(in_channels, width), nn.MaxPool2d(2),
            *block(width, 2 * width), nn.MaxPool2d(2),
            *block(2 * width, 2 * width), nn.AdaptiveAvgPool2d(4),
        )  # fmt: skip
        self.hidden = nn.Linear(2 * width * 16, feature_dim)
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, C, H, W) in [0, 1] -> (B, feature_dim)."""
        # Centre the [0, 1] input so the first conv starts near a zero-mean regime. channels_last
        # roughly halves CPU time for these narrow convolutions (oneDNN's preferred layout).
        x = (images * 2 - 1).contiguous(memory_format=torch.channels_last)
        return self.hidden(self.trunk(x).flatten(1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(images))


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by an integer offset in [−max_shift, max_shift]² with zero fill."""
    if max_shift == 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, b, 1), generator=generator).to(images.device)
    rows = torch.arange(h, device=images.device) + dy  # (B, H)
    cols = torch.arange(w, device=images.device) + dx  # (B, W)
    batch = torch.arange(b, device=images.device)[:, None, None]
    shifted = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return rearrange(shifted, "b h w c -> b c h w")


def default_train_config(num_train: int) -> dict:
    """300 steps of 64 for small sets (digits: ~1400 images → 13 epochs, ≥ 98% test accuracy in
    ~5 s on one thread) and 4 epochs of 128 for large ones (Fashion-MNIST: 60k images)."""
    batch_size = 64 if num_train < 10_000 else 128
    steps_per_epoch = math.ceil(num_train / batch_size)
    return dict(batch_size=batch_size, steps=max(300, 4 * steps_per_epoch), lr=3e-3, weight_decay=5e-4, max_shift=2, warmup_steps=50)


def train_classifier(
    net: SmallCNN,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int,
    batch_size: int = 128,
    lr: float = 3e-3,
    weight_decay: float = 5e-4,
    max_shift: int = 2,
    warmup_steps: int = 50,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> SmallCNN:
    """AdamW with linear warm-up then cosine decay; random shifts as light augmentation.
    images: (N, C, H, W) in [0, 1], labels: (N,) long. Returns ``net`` in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    net.to(device=device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)

    def lr_factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / max(1, steps - warmup_steps)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    order, cursor = torch.randperm(len(images), generator=generator), 0
    for _ in range(steps):
        if cursor + batch_size > len(order):
            order, cursor = torch.randperm(len(images), generator=generator), 0
        idx = order[cursor : cursor + batch_size]
        cursor += batch_size
        x = random_shift(images[idx].to(device), max_shift, generator)
        loss = F.cross_entropy(net(x), labels[idx].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    return net.eval()


def _full_model_config(overrides: dict) -> dict:
    """SmallCNN's config for these keyword arguments, without building it (which would draw
    initial weights from the global RNG)."""
    params = inspect.signature(SmallCNN.__init__).parameters
    unknown = set(overrides) - set(params)
    if unknown:
        raise ValueError(f"unknown SmallCNN arguments {sorted(unknown)}, expected some of {sorted(p for p in params if p != 'self')}")
    return {name: overrides.get(name, p.default) for name, p in params.items() if name != "self"}


class ClassifierExtractor:
    """Feature extractor ``classifier:<dataset>``: penultimate features of a :class:`SmallCNN`.

    ``info`` records dataset, size, seed, test accuracy and training time for result rows;
    ``cache_entry`` is its folder in the cache, ``from_cache`` whether it was read from there
    (False: trained by this call)."""

    def __init__(self, net: SmallCNN, *, dataset: str, image_shape: tuple[int, int, int], info: dict, device: str | torch.device = "cpu",
                 cache_entry: Path | None = None, from_cache: bool = False):
        self.cache_entry, self.from_cache = cache_entry, from_cache
        self.net = net.to(device=device, memory_format=torch.channels_last).eval()
        self.device = torch.device(device)
        self.dataset = dataset
        self.image_shape = tuple(image_shape)
        self.info = info
        self.name = f"classifier:{dataset}"

    @property
    def test_accuracy(self) -> float:
        return self.info["test_accuracy"]

    @property
    def num_classes(self) -> int:
        return self.net.config["num_classes"]

    def to(self, device: str | torch.device) -> ClassifierExtractor:
        self.device = torch.device(device)
        self.net.to(self.device)
        return self

    def _batches(self, images: torch.Tensor, fn, batch_size: int) -> torch.Tensor:
        if images.dim() != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(f"{self.name} expects images of shape (N, {', '.join(map(str, self.image_shape))}), got {tuple(images.shape)}")
        with torch.no_grad():
            outs = [fn(images[i : i + batch_size].to(self.device, torch.float32)).float().cpu() for i in range(0, len(images), batch_size)]
        return torch.cat(outs) if outs else torch.empty(0)

    def features(self, images: torch.Tensor, *, batch_size: int = 512) -> torch.Tensor:
        """images: (N, C, H, W) in [0, 1] -> (N, feature_dim) float32 on CPU."""
        return self._batches(images, self.net.embed, batch_size)

    def logits(self, images: torch.Tensor, *, batch_size: int = 512) -> torch.Tensor:
        """images: (N, C, H, W) in [0, 1] -> (N, num_classes) float32 on CPU."""
        return self._batches(images, self.net, batch_size)

    def predict(self, images: torch.Tensor, *, batch_size: int = 512) -> torch.Tensor:
        """images: (N, C, H, W) in [0, 1] -> (N,) long predicted classes."""
        return self.logits(images, batch_size=batch_size).argmax(dim=1)


class ClassAgreement(NamedTuple):
    """accuracy: fraction of samples classified as the label they were generated for;
    histogram: (K,) predicted-class frequencies (sums to 1)."""

    accuracy: float
    histogram: torch.Tensor


def class_agreement(extractor: ClassifierExtractor, images: torch.Tensor, labels: torch.Tensor | None = None) -> ClassAgreement:
    """Class histogram of ``images`` and, given the conditioning ``labels`` (N,), the
    class-conditional accuracy (NaN without labels)."""
    predicted = extractor.predict(images)
    histogram = torch.bincount(predicted, minlength=extractor.num_classes).double() / max(1, len(predicted))
    accuracy = math.nan if labels is None else (predicted == labels.cpu()).double().mean().item()
    return ClassAgreement(accuracy=accuracy, histogram=histogram)


def load_or_train_classifier(
    dataset: str,
    *,
    size: int | None = None,
    seed: int = 0,
    data_seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    train_config: dict | None = None,
    model_config: dict | None = None,
) -> ClassifierExtractor:
    """The cached classifier for (dataset, size, seed), trained first when absent or when the
    cached one was trained with a different config.

    seed: initialisation, data order and augmentation of the training run.
    data_seed: the ``seed`` given to ``load_dataset`` (it decides the digits / image-folder
    train-test split); keep it equal to the experiments' so the classifier never trains on
    their test images."""
    from discrete_priors.data.datasets import load_dataset

    train = load_dataset(dataset, split="train", size=size, data_dir=data_dir, seed=data_seed)
    if train.labels is None or train.num_classes is None:
        raise ValueError(f"dataset {dataset!r} has no labels here; a classifier extractor needs a labelled training split")
    image_shape = tuple(train.images.shape[1:])
    model_config = dict(in_channels=image_shape[0], num_classes=train.num_classes, **(model_config or {}))
    train_config = dict(default_train_config(len(train.images)), **(train_config or {}))
    suffix = f"-data{data_seed}" if data_seed else ""
    wanted = dict(
        format=CACHE_FORMAT, dataset=dataset, size=image_shape[-1], seed=seed, data_seed=data_seed, image_shape=list(image_shape), train=train_config
    )
    if dataset == "image-folder":  # one name for every folder: the entry is keyed by the folder's content
        from discrete_priors.data.datasets import image_folder_fingerprint

        wanted["folder"] = image_folder_fingerprint(data_dir)
        suffix += f"-{wanted['folder']}"
    entry = Path(cache_dir or default_cache_dir()) / f"{dataset}-{image_shape[-1]}-seed{seed}{suffix}"
    config_path, weights_path = entry / "config.json", entry / "model.safetensors"

    if config_path.is_file() and weights_path.is_file():
        stored = read_json(config_path)
        if {k: stored.get(k) for k in wanted} == wanted and stored.get("model") == _full_model_config(model_config):
            with torch.device("meta"):  # no random init (it would draw from the global RNG)
                net = SmallCNN(**stored["model"])
            net.load_state_dict(load_tensors(weights_path), assign=True)
            return ClassifierExtractor(net, dataset=dataset, image_shape=image_shape, info=stored, device=device,
                                       cache_entry=entry, from_cache=True)
        warnings.warn(f"classifier cache {entry} was trained with another config; retraining", stacklevel=2)

    # Module init draws from the global RNG; fork it so training is seeded without touching
    # the caller's random state.
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        net = SmallCNN(**model_config)
        start = time.perf_counter()
        train_classifier(net, train.images, train.labels, seed=seed, device=device, **train_config)
        train_seconds = time.perf_counter() - start
    test = load_dataset(dataset, split="test", size=size, data_dir=data_dir, seed=data_seed)
    extractor = ClassifierExtractor(net, dataset=dataset, image_shape=image_shape, info={}, device=device, cache_entry=entry)
    accuracy = (extractor.predict(test.images) == test.labels).double().mean().item()
    info = dict(wanted, model=net.config, test_accuracy=accuracy, train_seconds=round(train_seconds, 2), num_train=len(train.images), num_test=len(test.images))
    save_tensors(weights_path, state_dict_for_save(net))
    write_json(config_path, info)
    extractor.info = info
    return extractor
