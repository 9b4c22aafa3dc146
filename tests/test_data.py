"""Datasets: digits, fashion-mnist (synthetic idx files + the real Debian files when present),
image-folder (PNGs written here)."""

from __future__ import annotations

import gzip
import hashlib
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from discrete_priors.data import datasets
from discrete_priors.data.datasets import load_dataset, split_indices

REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")


def _expected_test_count(labels: torch.Tensor) -> int:
    return sum(math.floor(0.2 * int(n) + 0.5) for n in torch.bincount(labels))


# ------------------------------------------------------------------------------------ digits


def test_digits_shapes_ranges_and_counts():
    from sklearn.datasets import load_digits

    all_labels = torch.from_numpy(load_digits().target)
    train, test = load_dataset("digits", split="train"), load_dataset("digits", split="test")
    assert train.images.shape[1:] == (1, 16, 16) and test.images.shape[1:] == (1, 16, 16)
    assert train.images.dtype == torch.float32
    assert len(train.images) + len(test.images) == 1797
    assert len(test.images) == _expected_test_count(all_labels) == 359  # stratified 20 %
    for data in (train, test):
        assert data.num_classes == 10 and data.name == "digits"
        assert data.labels.dtype == torch.long and len(data.labels) == len(data.images)
        assert set(data.labels.tolist()) == set(range(10))
        assert data.images.min() >= 0.0 and data.images.max() <= 1.0
    assert train.images.max() == 1.0  # 16/16 exists in the data and survives the resize clamp


def test_digits_native_size_keeps_exact_pixel_values():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    labels = torch.from_numpy(bunch.target).long()
    idx = split_indices(1797, split="test", seed=0, labels=labels)
    data = load_dataset("digits", split="test", size=8)
    expected = torch.from_numpy(bunch.images[idx.numpy()]).float() / 16
    assert torch.equal(data.images[:, 0], expected)
    assert torch.equal(data.labels, labels[idx])


def test_digits_split_deterministic_disjoint_and_seeded():
    from sklearn.datasets import load_digits

    a, b = load_dataset("digits", split="test", seed=0), load_dataset("digits", split="test", seed=0)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, load_dataset("digits", split="test", seed=1).images)

    bunch = load_digits()
    labels = torch.from_numpy(bunch.target)
    train_idx = split_indices(1797, split="train", seed=0, labels=labels)
    test_idx = split_indices(1797, split="test", seed=0, labels=labels)
    assert len(set(train_idx.tolist()) & set(test_idx.tolist())) == 0
    assert sorted(train_idx.tolist() + test_idx.tolist()) == list(range(1797))
    for c in range(10):  # stratified: each class holds out round(0.2 * n_class)
        n_c = int((labels == c).sum())
        assert int((labels[test_idx] == c).sum()) == math.floor(0.2 * n_c + 0.5)

    # by content: an image in both splits must occur more than once in the raw data
    def digest(x) -> str:
        return hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest()

    raw_counts = {}
    for x in bunch.images:
        raw_counts[digest(x)] = raw_counts.get(digest(x), 0) + 1
    train8, test8 = (load_dataset("digits", split=s, size=8).images[:, 0] * 16 for s in ("train", "test"))
    as_raw = lambda imgs: {digest(x.double().numpy()) for x in imgs}  # noqa: E731  (sklearn stores float64)
    shared = as_raw(train8) & as_raw(test8)
    assert all(raw_counts[h] > 1 for h in shared)
    assert as_raw(test8) <= set(raw_counts)


def test_channels_three_repeats_grayscale():
    data = load_dataset("digits", split="test", channels=3)
    assert data.images.shape[1] == 3
    assert torch.equal(data.images[:, 0], data.images[:, 2])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="mnist"), "digits.*fashion-mnist.*image-folder"),
        (dict(name="digits", split="val"), "train.*test"),
        (dict(name="digits", channels=2), "channels"),
        (dict(name="digits", size=0), "size"),
        (dict(name="image-folder", size=8), "data_dir"),
    ],
)
def test_bad_arguments_name_valid_choices(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset(**kwargs)


# ----------------------------------------------------------------------------- fashion-mnist


def _write_idx(path: Path, array: np.ndarray, *, gz: bool = True, truncate: int = 0) -> None:
    raw = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    raw = raw[: len(raw) - truncate]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_name(path.name + ".gz" if gz else path.name).write_bytes(gzip.compress(raw) if gz else raw)


def _fake_fashion(root: Path, *, n_train=5, n_test=3, gz=True) -> dict:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[0, 0, 0], images[0, 0, 1] = 0, 255  # the extremes map to exactly 0 and 1
        labels = np.arange(n, dtype=np.uint8) % 10
        _write_idx(root / f"{split}-images-idx3-ubyte", images, gz=gz)
        _write_idx(root / f"{split}-labels-idx1-ubyte", labels, gz=gz)
        arrays[split] = (images, labels)
    return arrays


@pytest.fixture
def no_system_fashion(monkeypatch, tmp_path):
    """Hide the real Debian files and the env var so only what a test writes is found."""
    monkeypatch.setattr(datasets, "SYSTEM_FASHION_MNIST_DIRS", (str(tmp_path / "system-absent"),))
    monkeypatch.delenv(datasets.DATA_ENV_VAR, raising=False)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_parses_known_pixel_values(tmp_path, no_system_fashion, gz):
    arrays = _fake_fashion(tmp_path, gz=gz)
    for split, key in (("train", "train"), ("test", "t10k")):
        data = load_dataset("fashion-mnist", split=split, data_dir=tmp_path)
        images, labels = arrays[key]
        assert data.images.shape == (len(images), 1, 28, 28) and data.num_classes == 10
        assert torch.equal(data.images[:, 0], torch.from_numpy(images).float() / 255)
        assert torch.equal(data.labels, torch.from_numpy(labels).long())
    data = load_dataset("fashion-mnist", split="train", data_dir=tmp_path)
    assert data.images[0, 0, 0, 0] == 0.0 and data.images[0, 0, 0, 1] == 1.0


def test_fashion_torchvision_layout_env_var_and_resize(tmp_path, no_system_fashion, monkeypatch):
    arrays = _fake_fashion(tmp_path / "FashionMNIST" / "raw")
    data = load_dataset("fashion-mnist", split="test", data_dir=tmp_path)
    assert torch.equal(data.images[:, 0], torch.from_numpy(arrays["t10k"][0]).float() / 255)
    monkeypatch.setenv(datasets.DATA_ENV_VAR, str(tmp_path))
    small = load_dataset("fashion-mnist", split="train", size=14)
    assert small.images.shape == (5, 1, 14, 14)
    assert small.images.min() >= 0 and small.images.max() <= 1


def test_fashion_missing_lists_every_place(tmp_path, no_system_fashion):
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("fashion-mnist", data_dir=tmp_path / "mine")
    message = str(err.value)
    for place in (tmp_path / "mine", tmp_path / "mine" / "FashionMNIST" / "raw", tmp_path / "system-absent"):
        assert str(place) in message
    assert "apt-get install dataset-fashion-mnist" in message and "--data-dir" in message


@pytest.mark.parametrize(
    "corrupt, match",
    [("truncate_payload", "truncated"), ("truncate_gzip", "decompress"), ("bad_magic", "magic")],
)
def test_fashion_corrupt_file_names_the_file(tmp_path, no_system_fashion, corrupt, match):
    _fake_fashion(tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    if corrupt == "truncate_payload":
        _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((5, 28, 28), np.uint8), truncate=100)
    elif corrupt == "truncate_gzip":
        bad.write_bytes(bad.read_bytes()[:200])
    else:
        _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((5, 28), np.uint8))  # 2 dims, not 3
    with pytest.raises(ValueError, match=match) as err:
        load_dataset("fashion-mnist", data_dir=tmp_path)
    assert str(bad) in str(err.value)


@pytest.mark.skipif(not REAL_FASHION.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist_counts_and_range(monkeypatch):
    monkeypatch.delenv(datasets.DATA_ENV_VAR, raising=False)
    for split, n in (("train", 60000), ("test", 10000)):
        data = load_dataset("fashion-mnist", split=split)
        assert data.images.shape == (n, 1, 28, 28)
        assert data.images.min() == 0.0 and data.images.max() == 1.0
        assert torch.equal(torch.bincount(data.labels), torch.full((10,), n // 10))


# ------------------------------------------------------------------------------ image-folder


def _png(path: Path, color, size=(12, 9)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def test_image_folder_labels_crop_and_split(tmp_path):
    for i in range(5):
        _png(tmp_path / "cats" / f"c{i}.png", (255, 0, 0))
        _png(tmp_path / "dogs" / "nested" / f"d{i}.PNG", (0, 0, 255), size=(20, 31))
    Image.new("RGB", (10, 10), (0, 255, 0)).save(tmp_path / "dogs" / "extra.JPG")
    (tmp_path / "cats" / "notes.txt").write_text("not an image")

    train = load_dataset("image-folder", data_dir=tmp_path, size=8, split="train")
    test = load_dataset("image-folder", data_dir=tmp_path, size=8, split="test")
    assert train.num_classes == test.num_classes == 2 and train.name == "image-folder"
    assert len(train.images) + len(test.images) == 11
    assert len(test.images) == 1 + 1  # round(0.2 * 5) cats + round(0.2 * 6) dogs
    assert train.images.shape[1:] == (3, 8, 8) and train.images.dtype == torch.float32
    for data in (train, test):
        cats = data.images[data.labels == 0]
        assert torch.equal(cats, torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1).expand_as(cats))
    assert torch.equal(train.images, load_dataset("image-folder", data_dir=tmp_path, size=8).images)
    gray = load_dataset("image-folder", data_dir=tmp_path, size=8, channels=1)
    assert gray.images.shape[1:] == (1, 8, 8)


def test_image_folder_center_crop_keeps_the_middle(tmp_path):
    pixels = np.zeros((10, 30, 3), np.uint8)  # 30 wide, 10 high: shorter side already 10
    pixels[:, 10:20] = 255  # white middle third, black sides
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    data = load_dataset("image-folder", data_dir=tmp_path, size=10)
    assert data.labels is None and data.num_classes is None
    assert data.images.shape == (1, 3, 10, 10) and torch.all(data.images == 1.0)


def test_image_folder_corrupt_image_names_the_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"definitely not a png")
    with pytest.raises(ValueError, match="broken.png"):
        load_dataset("image-folder", data_dir=tmp_path, size=8)
    good = tmp_path / "cut" / "half.png"
    _png(good, (1, 2, 3), size=(64, 64))
    good.write_bytes(good.read_bytes()[:60])
    with pytest.raises(ValueError, match="half.png"):
        load_dataset("image-folder", data_dir=tmp_path / "cut", size=8)


def test_image_folder_empty_or_missing_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="empty"):
        load_dataset("image-folder", data_dir=tmp_path / "empty", size=8)
    with pytest.raises(ValueError, match="does not exist"):
        load_dataset("image-folder", data_dir=tmp_path / "nowhere", size=8)
