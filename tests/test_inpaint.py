"""The inpaint command: the pixel-to-latent rule by enumeration, the kept region exact at the code
level, the grid's layout, every input source, and refused masks leaving nothing written."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from discrete_priors import inpainting, pipeline
from discrete_priors.cli import main
from discrete_priors.data import load_dataset
from discrete_priors.io import load_tensors, read_json, write_json

RUNTIME = ["--device", "cpu", "--threads", "1"]
SIZE, K, GRID = 16, 4, (4, 4)  # the tiny autoencoder of conftest.py: 16x16 images, downsampling 4


def cell_size(samples: int, inputs: int) -> tuple[int, int]:
    """(height, width) of the inpainting grid: 3 + samples columns of 2x-scaled images with a
    1-pixel border on each side."""
    cell = SIZE * 2 + 2
    return inputs * cell, (3 + samples) * cell


def test_every_pixel_maps_to_the_cell_that_holds_it():
    for y in range(SIZE):
        for x in range(SIZE):
            unknown = inpainting.unknown_positions(inpainting.box_mask((y, x, y + 1, x + 1), SIZE), GRID)
            assert unknown.nonzero().flatten().tolist() == [(y // K) * GRID[1] + x // K]


def test_a_box_grows_to_every_cell_it_touches():
    unknown = inpainting.unknown_positions(inpainting.box_mask((3, 3, 5, 9), SIZE), GRID)  # rows 0-1, cols 0-2
    assert unknown.nonzero().flatten().tolist() == [0, 1, 2, 4, 5, 6]


def test_prefix_known_stops_at_the_first_unknown():
    known = torch.tensor([True, True, False, True, False, True])
    assert inpainting.prefix_known(known).tolist() == [True, True, False, False, False, False]


def test_kept_codes_equal_the_encoded_codes_and_the_grid_has_its_size(tiny_runs, tmp_path):
    out = tmp_path / "inpaint"
    assert main(["inpaint", "--ae", str(tiny_runs.ae), "--prior", str(tiny_runs.bernoulli), "--indices", "0,3",
                 "--box", "8,0,16,16", "--samples", "2", "--steps", "4", "--out", str(out), *RUNTIME]) == 0
    saved = load_tensors(out / "inpainted.safetensors")
    expected_known = torch.arange(16) < 8  # the box covers the bottom two rows of the 4x4 grid
    assert torch.equal(saved["known"], expected_known)
    ae = pipeline.load_autoencoder(tiny_runs.ae, device="cpu")
    test = load_dataset("digits", split="test")
    encoded = ae.encode(test.images[[0, 3]])
    assert torch.equal(saved["encoded"], encoded)
    assert torch.equal(saved["codes"][:, expected_known], encoded.repeat_interleave(2, 0)[:, expected_known])
    assert saved["codes"].shape == (4, 16, 8) and saved["images"].shape == (4, 1, SIZE, SIZE)
    assert torch.equal(saved["labels"], test.labels[[0, 3]].repeat_interleave(2))  # a conditional prior gets them
    with Image.open(out / "inpainting.png") as grid:
        assert (grid.height, grid.width) == cell_size(samples=2, inputs=2)
    assert read_json(out / "inpainting.json")["known_positions"] == 8


def test_the_autoregressive_prior_keeps_the_prefix_before_the_box(tiny_runs, tmp_path, capsys):
    out = tmp_path / "ar"
    assert main(["inpaint", "--ae", str(tiny_runs.ae), "--prior", str(tiny_runs.autoregressive), "--indices", "1",
                 "--box", "4,4,8,8", "--samples", "3", "--out", str(out), *RUNTIME]) == 0
    assert "raster-order prefix" in capsys.readouterr().out
    saved = load_tensors(out / "inpainted.safetensors")
    assert torch.equal(saved["known"], torch.arange(16) < 5)  # cell (1, 1) = position 5 is the first unknown
    assert torch.equal(saved["codes"][:, :5], saved["encoded"].repeat_interleave(3, 0)[:, :5])
    with pytest.raises(ValueError, match="nothing would be kept"):
        main(["inpaint", "--ae", str(tiny_runs.ae), "--prior", str(tiny_runs.autoregressive), "--indices", "1",
              "--box", "0,0,2,2", "--out", str(tmp_path / "ar-bad"), *RUNTIME])
    assert not (tmp_path / "ar-bad").exists()


def _write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_a_folder_of_images_with_a_mask_png(tiny_runs, tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "c.jpg"):
        _write_png(tmp_path / "images" / name, rng.integers(0, 255, (24, 20), dtype=np.uint8))
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[:, 12:] = 255  # the right-most column of cells
    _write_png(tmp_path / "mask.png", mask)
    out = tmp_path / "out"
    assert main(["inpaint", "--ae", str(tiny_runs.ae), "--prior", str(tiny_runs.bernoulli), "--input",
                 str(tmp_path / "images"), "--mask", str(tmp_path / "mask.png"), "--samples", "1", "--steps", "2",
                 "--out", str(out), *RUNTIME]) == 0
    saved = load_tensors(out / "inpainted.safetensors")
    assert torch.equal(saved["known"], torch.arange(16) % 4 != 3)
    assert saved["originals"].shape == (3, 1, SIZE, SIZE) and "labels" not in saved  # files carry no labels
    with Image.open(out / "inpainting.png") as grid:
        assert (grid.height, grid.width) == cell_size(samples=1, inputs=3)
    one = tmp_path / "one"
    assert main(["inpaint", "--ae", str(tiny_runs.ae), "--prior", str(tiny_runs.bernoulli), "--input",
                 str(tmp_path / "images" / "b.png"), "--box", "0,0,4,4", "--samples", "2", "--steps", "2",
                 "--out", str(one), *RUNTIME]) == 0
    assert load_tensors(one / "inpainted.safetensors")["originals"].shape == (1, 1, SIZE, SIZE)


@pytest.mark.parametrize("box, message", [
    ("0,0,16,16", "reaches every one of the 4x4 latent cells"),
    ("1,1,15,15", "reaches every one of the 4x4 latent cells"),  # touches every cell: nothing kept
    ("4,4,4,8", "covers at least one pixel"),
    ("0,0,17,4", "covers at least one pixel"),
    ("a,b,c,d", "four comma-separated pixel coordinates"),
])
def test_a_box_covering_nothing_or_everything_is_refused_writing_nothing(tiny_runs, tmp_path, box, message):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=message):
        main(["inpaint", "--ae", str(tiny_runs.ae), "--prior", str(tiny_runs.bernoulli), "--indices", "0",
              "--box", box, "--out", str(out), *RUNTIME])
    assert not out.exists()


def test_a_black_mask_png_is_refused(tiny_runs, tmp_path):
    _write_png(tmp_path / "mask.png", np.zeros((16, 16), dtype=np.uint8))
    with pytest.raises(ValueError, match="covers no pixel: nothing to fill"):
        main(["inpaint", "--ae", str(tiny_runs.ae), "--prior", str(tiny_runs.bernoulli), "--indices", "0",
              "--mask", str(tmp_path / "mask.png"), "--out", str(tmp_path / "out"), *RUNTIME])
    assert not (tmp_path / "out").exists()


def test_inputs_and_indices_are_checked(tiny_runs, tmp_path):
    base = ["inpaint", "--ae", str(tiny_runs.ae), "--prior", str(tiny_runs.bernoulli), "--out", str(tmp_path / "o"), *RUNTIME]
    with pytest.raises(SystemExit, match="exactly one of --input"):
        main([*base, "--box", "0,0,4,4"])
    with pytest.raises(SystemExit, match="exactly one of --box"):
        main([*base, "--indices", "0"])
    with pytest.raises(ValueError, match=r"test split of digits has 359 images \(indices 0..358\), got 9999"):
        main([*base, "--indices", "0,9999", "--box", "0,0,4,4"])
    with pytest.raises(ValueError, match="indices >= 0"):
        main([*base, "--indices", "-1", "--box", "0,0,4,4"])
    with pytest.raises(FileNotFoundError, match="no such image file or folder"):
        main([*base, "--input", str(tmp_path / "missing.png"), "--box", "0,0,4,4"])
    with pytest.raises(ValueError, match="trained on"):  # another split than the autoencoder's
        main([*base, "--indices", "0", "--box", "0,0,4,4", "--data-seed", "1"])
    assert not (tmp_path / "o").exists()


def test_inpaint_refuses_another_autoencoder_like_sample(tiny_runs, tmp_path):
    prior = tmp_path / "prior"
    shutil.copytree(tiny_runs.bernoulli, prior)
    write_json(prior / "prior.json", read_json(prior / "prior.json") | {"autoencoder_hash": "0123456789abcdef"})
    args = ["inpaint", "--ae", str(tiny_runs.ae), "--prior", str(prior), "--indices", "0", "--box", "0,0,4,4",
            "--samples", "1", "--steps", "2", *RUNTIME]
    with pytest.raises(ValueError, match=r"autoencoder 0123456789abcdef .* --allow-mismatch"):
        main([*args, "--out", str(tmp_path / "refused")])
    assert not (tmp_path / "refused").exists()
    with pytest.warns(RuntimeWarning, match="decoding anyway"):
        assert main([*args, "--allow-mismatch", "--out", str(tmp_path / "deliberate")]) == 0
