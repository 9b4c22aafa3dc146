"""The README quick start's helpers: the Fashion-MNIST image folder it trains on
(experiments/make_image_folder.py) and the reference rows it reads eval's numbers against
(experiments/reference_samples.py: random codes, reconstructions)."""

from __future__ import annotations

import torch

from discrete_priors import pipeline
from discrete_priors.data import class_names, load_dataset
from discrete_priors.io import load_tensors
from discrete_priors.latents import CodeSpec
from experiments.make_image_folder import write_image_folder
from experiments.reference_samples import random_codes, write_references
from tests.test_data import _fake_fashion, no_system_fashion  # noqa: F401 - the fixture is used by name


def test_image_folder_holds_fashion_images_under_their_class_folders(tmp_path, no_system_fashion):  # noqa: F811
    _fake_fashion(tmp_path / "idx", n_train=35, n_test=3)  # labels 0..9 in turn: 4 of classes 0-4, 3 of 5-9
    assert write_image_folder(tmp_path / "photos", size=32, per_class=3, data_dir=tmp_path / "idx") == 30
    folders = class_names("image-folder", data_dir=tmp_path / "photos")
    assert folders == [f"{i}-{name.replace('/', '-')}" for i, name in enumerate(class_names("fashion-mnist"))]
    source = load_dataset("fashion-mnist", split="train", size=32, data_dir=tmp_path / "idx")
    read = {split: load_dataset("image-folder", split=split, size=32, data_dir=tmp_path / "photos", channels=1)
            for split in ("train", "test")}
    assert sum(len(d.images) for d in read.values()) == 30  # 1 test image per class
    first_three = torch.cat([(source.labels == c).nonzero().squeeze(1)[:3] for c in range(10)])
    wanted = source.images[first_three]
    for data in read.values():  # every image read back is one of the chosen sources, of its own class, to 8 bits
        distance = (data.images[:, None] - wanted[None]).abs().amax(dim=(2, 3, 4))
        nearest = distance.argmin(dim=1)
        assert distance.min(dim=1).values.max() <= 0.5 / 255 + 1e-6
        assert torch.equal(source.labels[first_three][nearest], data.labels)


def test_random_codes_are_fair_bits_and_uniform_tokens():
    generator = torch.Generator().manual_seed(0)
    bits = random_codes(CodeSpec(kind="binary", grid=(4, 4), channels=32), 500, generator=generator)
    assert bits.shape == (500, 16, 32) and set(bits.unique().tolist()) == {0.0, 1.0}
    assert abs(bits.mean().item() - 0.5) < 4 * 0.5 / bits.numel() ** 0.5  # 4 sigma of 256,000 fair bits
    tokens = random_codes(CodeSpec(kind="categorical", grid=(4, 4), channels=1, vocab_size=8), 4000, generator=generator)
    counts = torch.bincount(tokens.flatten(), minlength=8).float()
    expected = tokens.numel() / 8
    assert tokens.shape == (4000, 16) and (counts - expected).abs().max() < 4 * (expected * 7 / 8) ** 0.5


def test_reference_folders_hold_decoded_random_codes_and_test_reconstructions(tiny_runs, tmp_path):
    paths = write_references(tiny_runs.ae, tmp_path, n=12, seed=3)
    ae = pipeline.load_autoencoder(tiny_runs.ae, device="cpu")
    noise = load_tensors(paths["random-codes"]["samples"])
    assert torch.equal(noise["codes"], random_codes(ae.code_spec, 12, generator=torch.Generator().manual_seed(3)))
    assert (noise["images"] - pipeline.decode_codes(ae, noise["codes"])).abs().max() < 1e-5  # float32 rounding
    test = load_dataset(**pipeline.recorded_dataset(tiny_runs.ae), split="test").images
    recon = load_tensors(paths["reconstructions"]["samples"])
    assert torch.equal(recon["codes"], pipeline.encode_images(ae, test).codes) and len(recon["images"]) == len(test)
    real = load_tensors(paths["real"]["samples"])["images"]
    train = load_dataset(**pipeline.recorded_dataset(tiny_runs.ae), split="train").images
    assert len(real) == 12 and all((train == image).all(dim=(1, 2, 3)).any() for image in real)  # training images
    assert (tmp_path / "random-codes" / "grid.png").is_file()
