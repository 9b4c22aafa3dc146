"""Image datasets as in-memory tensors: ``digits`` (sklearn), ``fashion-mnist`` (idx files) and
``image-folder`` (a directory of png/jpg files).

Every loader returns :class:`ImageData` with ``images: (N, C, H, W)`` float32 in ``[0, 1]``.
Splits are deterministic: they depend only on ``seed`` (and, for ``image-folder``, on the sorted
file list); ``fashion-mnist`` uses its official train/t10k files.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

DATASETS = ("digits", "fashion-mnist", "image-folder")
SPLITS = ("train", "test")
TEST_FRACTION = 0.2  # digits and image-folder: share of each class held out for "test"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DATA_ENV_VAR = "DISCRETE_PRIORS_DATA"
# Debian package dataset-fashion-mnist installs the four idx.gz files here.
SYSTEM_FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class ImageData(NamedTuple):
    """images: (N, C, H, W) float32 in [0, 1]; labels: (N,) long or None;
    num_classes: number of classes or None; name: the dataset name."""

    images: torch.Tensor
    labels: torch.Tensor | None
    num_classes: int | None
    name: str


def load_dataset(
    name: str,
    *,
    split: str = "train",
    size: int | None = None,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    channels: int | None = None,
) -> ImageData:
    """Load a dataset split into memory.

    name:     ``digits`` (sklearn 8x8 digits, 1797 images, 10 classes; default size 16),
              ``fashion-mnist`` (28x28, 60000 train / 10000 test, 10 classes) or
              ``image-folder`` (needs ``data_dir`` and ``size``).
    split:    ``train`` or ``test``.
    size:     output height = width; ``None`` keeps the dataset default (digits 16, fashion 28).
    data_dir: where to look for files (fashion-mnist, image-folder).
    seed:     the only input of the digits / image-folder train-test split.
    channels: 1 or 3; ``None`` means the dataset's own (1 for digits and fashion-mnist, 3 for
              image-folder). Grayscale data asked for 3 channels is repeated across them.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}, expected one of {DATASETS}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}, expected one of {SPLITS}")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None, got {channels!r}")
    if size is not None and (not isinstance(size, int) or size < 1):
        raise ValueError(f"size must be a positive int or None, got {size!r}")

    if name == "digits":
        data = _load_digits(split=split, size=16 if size is None else size, seed=seed)
    elif name == "fashion-mnist":
        data = _load_fashion_mnist(split=split, size=size, data_dir=data_dir)
    else:
        if data_dir is None:
            raise ValueError("dataset 'image-folder' needs data_dir (the folder holding the images)")
        if size is None:
            raise ValueError("dataset 'image-folder' needs size (images are resized and center-cropped to size x size)")
        data = _load_image_folder(Path(data_dir), split=split, size=size, seed=seed, channels=channels or 3)
    if channels == 3 and data.images.shape[1] == 1:
        data = data._replace(images=data.images.expand(-1, 3, -1, -1).contiguous())
    return data


FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")


def class_names(name: str, *, data_dir: str | os.PathLike | None = None) -> list[str] | None:
    """The name of each class label (label i is ``class_names(...)[i]``): for ``image-folder`` the
    sorted first-level sub-folder names (None when the images sit in the folder itself)."""
    if name == "digits":
        return [str(i) for i in range(10)]
    if name == "fashion-mnist":
        return list(FASHION_MNIST_CLASSES)
    if name == "image-folder":
        if data_dir is None:
            raise ValueError("dataset 'image-folder' needs data_dir (the folder holding the images)")
        return list_image_files(Path(data_dir))[1]
    raise ValueError(f"unknown dataset {name!r}, expected one of {DATASETS}")


# ----------------------------------------------------------------------------------- helpers


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> (N, C, size, size), bilinear; antialiased when shrinking
    (plain bilinear would alias), clamped because antialiased kernels can overshoot [0, 1]."""
    if images.shape[-2:] == (size, size):
        return images
    shrink = size < min(images.shape[-2:])
    out = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
    return out.clamp_(0.0, 1.0)


def split_indices(num_items: int, *, split: str, seed: int = 0, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Sorted indices of ``split`` among ``num_items`` items.

    A seeded permutation; the first ``round(TEST_FRACTION * n_class)`` items of each class in
    permuted order go to ``test`` (stratified when ``labels`` is given), the rest to ``train``.
    Depends on nothing but ``num_items``, ``labels`` and ``seed``.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}, expected one of {SPLITS}")
    order = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed))
    groups = [order] if labels is None else [order[labels[order] == c] for c in torch.unique(labels)]
    is_test = torch.zeros(num_items, dtype=torch.bool)
    for group in groups:
        is_test[group[: math.floor(TEST_FRACTION * len(group) + 0.5)]] = True
    chosen = is_test if split == "test" else ~is_test
    return chosen.nonzero().squeeze(1)


# ------------------------------------------------------------------------------------ digits


def _load_digits(*, split: str, size: int, seed: int) -> ImageData:
    from sklearn.datasets import load_digits

    bunch = load_digits()  # bundled with scikit-learn: no download
    images = torch.from_numpy(bunch.images).float().div_(16.0)  # pixel values are 0..16
    labels = torch.from_numpy(bunch.target).long()
    idx = split_indices(len(labels), split=split, seed=seed, labels=labels)
    images = resize_images(rearrange(images[idx], "n h w -> n 1 h w"), size)
    return ImageData(images.contiguous(), labels[idx], 10, "digits")


# ----------------------------------------------------------------------------- fashion-mnist


def fashion_mnist_search_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Directories searched, in order: ``data_dir``, ``$DISCRETE_PRIORS_DATA``, the Debian
    location; each root also as ``root/fashion-mnist`` and torchvision's ``root/FashionMNIST/raw``."""
    roots = [data_dir, os.environ.get(DATA_ENV_VAR), *SYSTEM_FASHION_MNIST_DIRS]
    dirs = []
    for root in roots:
        if root:
            root = Path(root).expanduser()
            dirs += [root, root / "fashion-mnist", root / "FashionMNIST" / "raw"]
    return list(dict.fromkeys(dirs))


def _find_idx(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _load_fashion_mnist(*, split: str, size: int | None, data_dir) -> ImageData:
    image_stem, label_stem = FASHION_MNIST_FILES[split]
    looked = fashion_mnist_search_dirs(data_dir)
    for directory in looked:
        image_path, label_path = _find_idx(directory, image_stem), _find_idx(directory, label_stem)
        if image_path and label_path:
            break
    else:
        places = "\n  ".join(str(d) for d in looked)
        raise FileNotFoundError(
            f"fashion-mnist {split} files ({image_stem}[.gz], {label_stem}[.gz]) not found; looked in:\n  {places}\n"
            f"Install them with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or pass "
            f"--data-dir / data_dir= (or set ${DATA_ENV_VAR}) to a folder holding the idx files."
        )
    images = read_idx(image_path, ndim=3)
    labels = read_idx(label_path, ndim=1)
    if len(images) != len(labels):
        raise ValueError(f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels")
    if labels.size and labels.max() >= 10:
        raise ValueError(f"{label_path}: labels must lie in 0..9, found {int(labels.max())}")
    images = rearrange(torch.from_numpy(images.copy()), "n h w -> n 1 h w").float().div_(255.0)
    if size is not None:
        images = resize_images(images, size)
    return ImageData(images.contiguous(), torch.from_numpy(labels.astype(np.int64)), 10, "fashion-mnist")


def read_idx(path: str | os.PathLike, *, ndim: int) -> np.ndarray:
    """Read an unsigned-byte idx file (optionally gzipped; detected from its content) holding
    an array with ``ndim`` dimensions. Raises ValueError naming the file if it is corrupt."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{path}: cannot decompress ({err}); the file is truncated or corrupt") from err
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: only {len(raw)} bytes, too short for an idx header with {ndim} dims")
    # magic: two zero bytes, type code 0x08 (unsigned byte), number of dimensions
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08 or raw[3] != ndim:
        raise ValueError(
            f"{path}: bad idx magic number 0x{raw[:4].hex()}, expected 0x000008{ndim:02x} (unsigned bytes, {ndim} dims)"
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) - header != math.prod(dims):
        raise ValueError(
            f"{path}: header promises dims {dims} = {math.prod(dims)} bytes but {len(raw) - header} follow; "
            "the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


# ------------------------------------------------------------------------------ image-folder


def list_image_files(data_dir: str | os.PathLike) -> tuple[list[Path], list[str] | None]:
    """Sorted image files (png/jpg/jpeg, any case, recursive) under ``data_dir`` and the class
    names: the sorted first-level sub-folder names, or None when images sit in the root."""
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"image folder {root} does not exist or is not a directory: pass the folder holding the images as --data-dir")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"image folder {root} holds no {'/'.join(IMAGE_SUFFIXES)} files (searched recursively): put "
                         "the images in it, one sub-folder per class (or all in the folder itself), or pass another --data-dir")
    top = [p.relative_to(root).parts for p in files]
    in_root = [parts for parts in top if len(parts) == 1]
    if len(in_root) == len(files):
        return files, None
    if in_root:
        raise ValueError(
            f"image folder {root} mixes images in its root (e.g. {in_root[0][0]}) with images in sub-folders; "
            "expected either all images in class sub-folders or none"
        )
    return files, sorted({parts[0] for parts in top})


def image_folder_fingerprint(data_dir: str | os.PathLike) -> str:
    """Short hash of an image folder's resolved path and of every image's relative name and byte
    size: what caches derived from the folder (a trained feature classifier) are keyed by, so
    two folders, or a folder whose images changed, never share an entry."""
    import hashlib

    root = Path(data_dir).resolve()
    files, _ = list_image_files(root)
    digest = hashlib.sha256(str(root).encode())
    for path in files:
        digest.update(f"\n{path.relative_to(root).as_posix()}\t{path.stat().st_size}".encode())
    return digest.hexdigest()[:12]


def _load_image(path: Path, *, size: int, mode: str) -> np.ndarray:
    """Decode, resize the shorter side to ``size`` and center-crop: -> (size, size[, 3]) uint8."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert(mode)
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError... for broken files
        raise ValueError(f"cannot decode image {path}: {err}. Remove or replace that file (every image of the "
                         "folder is read before anything is written)") from err
    w, h = img.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)  # PIL antialiases when shrinking
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)))


def load_image_files(paths: list[Path], *, size: int, channels: int = 3) -> torch.Tensor:
    """Decode every file of ``paths`` (resized on the shorter side to ``size``, center-cropped)
    -> (N, channels, size, size) float32 in [0, 1]. All files are decoded before anything is
    returned, so a corrupt one among good ones fails the call (naming the file) before a caller
    writes anything from it."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    mode = "L" if channels == 1 else "RGB"
    arrays = [_load_image(Path(p), size=size, mode=mode) for p in paths]
    images = torch.from_numpy(np.stack(arrays)).float().div_(255.0)
    return rearrange(images, "n h w -> n 1 h w") if channels == 1 else rearrange(images, "n h w c -> n c h w")


def _load_image_folder(root: Path, *, split: str, size: int, seed: int, channels: int) -> ImageData:
    """All selected images are decoded into one float32 tensor: N * C * size^2 * 4 bytes
    (e.g. 10k RGB images at 64x64 take 0.5 GB) — meant for small and medium folders."""
    files, classes = list_image_files(root)
    labels = None
    if classes is not None:
        class_index = {c: i for i, c in enumerate(classes)}
        labels = torch.tensor([class_index[p.relative_to(root).parts[0]] for p in files], dtype=torch.long)
    idx = split_indices(len(files), split=split, seed=seed, labels=labels)
    if len(idx) == 0:
        raise ValueError(f"image folder {root} has only {len(files)} images: its {split!r} split is empty")
    images = load_image_files([files[i] for i in idx.tolist()], size=size, channels=channels)
    return ImageData(
        images.contiguous(),
        None if labels is None else labels[idx],
        None if classes is None else len(classes),
        "image-folder",
    )
