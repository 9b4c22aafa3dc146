"""What a finished run tells its user: train-ae's test-split PSNR/SSIM and reconstruction grid,
the class-name mapping in the data record, later commands reusing the recorded dataset, and the
training-log plot."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from discrete_priors import pipeline
from discrete_priors.cli import main
from discrete_priors.data import load_dataset, load_latent_cache
from discrete_priors.io import read_json
from discrete_priors.metrics import reconstruction_metrics

RUNTIME = ["--device", "cpu", "--threads", "1"]


def test_train_ae_reports_the_test_split_and_writes_a_reconstruction_grid(tiny_runs):
    report = read_json(tiny_runs.ae / "test_reconstruction.json")
    ae = pipeline.load_autoencoder(tiny_runs.ae, device="cpu")
    test = load_dataset("digits", split="test").images
    expected = reconstruction_metrics(test, pipeline.decode_codes(ae, ae.encode(test)))
    assert report["num_test"] == len(test) == 359
    assert report["psnr"] == pytest.approx(expected["psnr"], rel=1e-5)
    assert report["ssim"] == pytest.approx(expected["ssim"], rel=1e-5)
    with Image.open(tiny_runs.ae / "reconstructions.png") as grid:  # 2 pairs of rows of 8 images, 2x, 1-pixel border
        assert (grid.height, grid.width) == (4 * 34, 8 * 34)


def test_the_class_mapping_is_recorded_and_encode_reuses_the_recorded_dataset(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "photos"
    for cls in ("dogs", "cats"):
        (data / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(data / cls / f"{i}.png")
    ae = tmp_path / "ae"
    assert main(["train-ae", "--dataset", "image-folder", "--data-dir", str(data), "--size", "16", "--preset", "tiny",
                 "--bits", "4", "--steps", "2", "--batch-size", "8", "--out", str(ae), *RUNTIME]) == 0
    assert "classes (label=name): 0=cats, 1=dogs" in capsys.readouterr().err
    record = read_json(ae / "data.json")
    assert record == {"dataset": "image-folder", "size": 16, "data_seed": 0, "classes": ["cats", "dogs"],
                      "data_dir": str(data.resolve())}
    latents = tmp_path / "latents"
    assert main(["encode", "--ae", str(ae), "--out", str(latents), *RUNTIME]) == 0  # no dataset flags repeated
    cache = load_latent_cache(latents / "test.safetensors")
    assert (cache.extra["dataset"], cache.extra["classes"], len(cache)) == ("image-folder", ["cats", "dogs"], 2)
    with pytest.raises(ValueError, match=r"was trained on .* this call uses .*leave them out"):
        main(["encode", "--ae", str(ae), "--size", "8", "--out", str(tmp_path / "other"), *RUNTIME])


def test_training_writes_a_log_plot_and_plot_log_redraws_it(tiny_runs, tmp_path):
    for run in (tiny_runs.ae, tiny_runs.bernoulli, tiny_runs.autoregressive):
        with Image.open(run / "train_log.png") as plot:
            assert plot.width > 300 and plot.height > 200
    out = tmp_path / "plot.png"
    assert main(["plot-log", str(tiny_runs.bernoulli), "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    with pytest.raises(FileNotFoundError, match="no training log at .*pass a run directory"):
        main(["plot-log", str(tmp_path)])
