"""The bad-input catalogue (issue 16, item 7): each bad input a new user is likely to give gets an
error that names the problem and the fix, and leaves nothing half-written — arguments and data are
checked before any file is written."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from discrete_priors import pipeline
from discrete_priors.cli import main
from discrete_priors.data import load_latent_cache, save_latent_cache
from discrete_priors.io import read_json

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ["--device", "cpu", "--threads", "1"]
TRAIN = ["--steps", "2", "--batch-size", "8", *RUNTIME]


def image_folder(root: Path, *, per_class: int = 6, corrupt: str | None = None) -> Path:
    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    if corrupt:
        (root / corrupt).write_bytes(b"not an image at all")
    return root


def assert_nothing_written(folder: Path) -> None:
    assert not folder.exists() or not any(folder.iterdir()), f"{folder} holds {sorted(folder.iterdir())}"


# -- data --------------------------------------------------------------------------------------------


def test_an_empty_folder_is_one_error_line_naming_the_fix_without_a_traceback(tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "ae"
    run = subprocess.run([sys.executable, "-m", "discrete_priors", "train-ae", "--dataset", "image-folder", "--data-dir",
                          str(tmp_path / "empty"), "--size", "16", "--out", str(out), *RUNTIME],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert "train-ae: error: image folder" in run.stderr and "holds no .png/.jpg/.jpeg files" in run.stderr
    assert "one sub-folder per class" in run.stderr  # the fix
    assert_nothing_written(out)


def test_a_corrupt_image_among_good_ones_is_named_before_anything_is_written(tmp_path, tiny_runs):
    data = image_folder(tmp_path / "photos", corrupt="dogs/broken.png")
    out = tmp_path / "ae"
    with pytest.raises(ValueError, match=r"cannot decode image .*broken\.png.*Remove or replace that file"):
        main(["train-ae", "--dataset", "image-folder", "--data-dir", str(data), "--size", "16", "--preset", "tiny",
              "--out", str(out), *TRAIN])
    assert_nothing_written(out)
    # encode reads every split before it writes one: no train.safetensors beside a failed test split
    latents = tmp_path / "latents"
    with pytest.raises(ValueError, match=r"cannot decode image .*broken\.png"):
        main(["encode", "--ae", str(tiny_runs.ae), "--dataset", "image-folder", "--data-dir", str(data), "--size", "16",
              "--out", str(latents), *RUNTIME])
    assert_nothing_written(latents)


def test_an_unknown_split_writes_no_other_split(tiny_runs, tmp_path):
    with pytest.raises(ValueError, match="unknown split 'bogus'"):
        main(["encode", "--ae", str(tiny_runs.ae), "--splits", "train,bogus", "--out", str(tmp_path / "l"), *RUNTIME])
    assert_nothing_written(tmp_path / "l")


# -- paths and checkpoints -----------------------------------------------------------------------------


def test_a_missing_ae_or_prior_path_is_named(tiny_runs, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere does not exist: expected a run directory written by train-ae"):
        main(["sample", "--ae", str(tmp_path / "nowhere"), "--prior", str(tiny_runs.bernoulli), "--out", str(tmp_path / "s"), *RUNTIME])
    with pytest.raises(FileNotFoundError, match=r"nowhere has no prior.json: is it a prior run directory"):
        main(["sample", "--ae", str(tiny_runs.ae), "--prior", str(tmp_path / "nowhere"), "--out", str(tmp_path / "s"), *RUNTIME])
    with pytest.raises(FileNotFoundError, match="run the encode step first"):
        main(["train-prior", "--latents", str(tmp_path / "nowhere"), "--out", str(tmp_path / "p"), *TRAIN])
    assert_nothing_written(tmp_path / "s")
    assert_nothing_written(tmp_path / "p")


def _latest(run: Path) -> Path:
    return run / "checkpoints" / read_json(run / "checkpoints" / "latest.json")["dir"]


@pytest.mark.parametrize("damage, problem", [
    (lambda ckpt: (ckpt / "model.safetensors").write_bytes((ckpt / "model.safetensors").read_bytes()[:5000]),
     r"model\.safetensors is truncated or corrupt"),
    (lambda ckpt: (ckpt / "model.safetensors").write_bytes(b"\x00" * 3), r"model\.safetensors is truncated"),
    (lambda ckpt: (ckpt / "model_config.json").write_text('{"image_size": 16, '), r"model_config\.json is not valid JSON"),
])
def test_a_broken_latest_checkpoint_falls_back_to_the_previous_one_naming_the_file(tiny_runs, tmp_path, damage, problem):
    run = tmp_path / "ae"
    shutil.copytree(tiny_runs.ae, run)
    latest = _latest(run)
    damage(latest)
    with pytest.warns(RuntimeWarning, match=problem + r".*falling back to the previous checkpoint .*step_0000002"):
        model = pipeline.load_autoencoder(run, device="cpu")
    assert model.image_size == 16


def test_no_readable_checkpoint_is_an_error_naming_the_file_and_the_fix(tiny_runs, tmp_path):
    run = tmp_path / "ae"
    shutil.copytree(tiny_runs.ae, run)
    for folder in (run / "checkpoints").glob("step_*"):
        (folder / "trainer_state.json").write_text("{")
    with pytest.raises(ValueError, match=r"no readable checkpoint under .*trainer_state\.json is not valid JSON.*Delete"):
        pipeline.load_autoencoder(run, device="cpu")


def test_training_resumes_from_the_previous_checkpoint_when_the_latest_is_truncated(tiny_runs, tmp_path, capsys):
    run = tmp_path / "prior"
    shutil.copytree(tiny_runs.autoregressive, run)
    ema = _latest(run) / "ema.safetensors"
    ema.write_bytes(ema.read_bytes()[:-10])
    with pytest.warns(RuntimeWarning, match=r"ema\.safetensors is truncated.*falling back .*step_0000002"):
        assert main(["train-prior", "--latents", str(tiny_runs.latents), "--prior", "autoregressive", "--net", "tiny",
                     "--out", str(run), "--steps", "3", "--batch-size", "16", *RUNTIME]) == 0
    assert "step_0000002 at step 2" in capsys.readouterr().err  # the resume line names the checkpoint it fell back to
    assert _latest(run).name == "step_0000003" and pipeline.load_prior(run, device="cpu") is not None  # rewritten whole


# -- latent caches ---------------------------------------------------------------------------------------


def test_a_latent_cache_from_another_autoencoder_is_refused(tiny_runs, tmp_path):
    other = tmp_path / "other-latents"
    for split in ("train", "test"):
        cache = load_latent_cache(tiny_runs.latents / f"{split}.safetensors")
        save_latent_cache(other / f"{split}.safetensors", codes=cache.codes, spec=cache.spec, labels=cache.labels,
                          autoencoder_hash="ffffffffffffffff", extra=cache.extra)
    with pytest.raises(ValueError, match=r"made by autoencoder ffffffffffffffff, expected .*re-run encode"):
        main(["eval", "--ae", str(tiny_runs.ae), "--prior", str(tiny_runs.bernoulli), "--latents", str(other),
              "--out", str(tmp_path / "results"), *RUNTIME])
    assert_nothing_written(tmp_path / "results")
    prior = tmp_path / "prior"
    shutil.copytree(tiny_runs.bernoulli, prior)
    before = (prior / "prior.json").read_text()
    with pytest.raises(ValueError, match=r"trained on codes of another autoencoder .* use a new --out"):
        main(["train-prior", "--latents", str(other), "--net", "tiny", "--timesteps", "8", "--class-conditional",
              "--out", str(prior), *TRAIN])
    assert (prior / "prior.json").read_text() == before


# -- arguments -------------------------------------------------------------------------------------------


# --bits 0, --steps 0 or negative, sample -n 0 or negative, --steps 0 for sampling, inpaint --samples 0,
# eval --nll-codes 0, --size 0: refused by the parser before anything runs, in
# tests/test_cli.py::test_non_positive_counts_are_refused_at_parse_time_writing_nothing


def test_a_batch_larger_than_the_data_is_refused(tiny_runs, tmp_path):
    with pytest.raises(ValueError, match=r"--batch-size 5000 is larger than the 1438 training codes .*pass --batch-size 1438"):
        main(["train-prior", "--latents", str(tiny_runs.latents), "--net", "tiny", "--out", str(tmp_path / "p"),
              "--steps", "2", "--batch-size", "5000", *RUNTIME])
    assert_nothing_written(tmp_path / "p")
    with pytest.raises(ValueError, match=r"--batch-size 5000 is larger than the 1438 training images of digits"):
        main(["train-ae", "--preset", "tiny", "--out", str(tmp_path / "a"), "--steps", "2", "--batch-size", "5000", *RUNTIME])
    assert_nothing_written(tmp_path / "a")


@pytest.mark.parametrize("argv, error, message", [
    (["train-ae", "--preset", "tiny", "--size", "18"], ValueError, "downsamples by 4, which does not divide image_size 18"),
    (["train-ae", "--preset", "tiny", "--ema-decay", "1.5"], ValueError, r"ema_decay must lie in \[0, 1\)"),
    (["train-prior", "--prior", "autoregressive", "--schedule", "linear"], ValueError,
     r"the autoregressive prior takes no schedule \(--schedule on the command line\): drop them"),
    (["train-prior", "--ema-decay", "2"], ValueError, r"ema_decay must lie in \[0, 1\)"),
])
def test_rejected_training_arguments_leave_no_record_in_out(tiny_runs, tmp_path, argv, error, message):
    out = tmp_path / "out"
    extra = ["--latents", str(tiny_runs.latents), "--net", "tiny"] if argv[0] == "train-prior" else []
    with pytest.raises(error, match=message):
        main([*argv, *extra, "--out", str(out), *TRAIN])
    assert_nothing_written(out)  # no data.json, no prior.json


def test_a_mask_covering_everything_is_refused(tiny_runs, tmp_path):
    with pytest.raises(ValueError, match="nothing of the image would be kept"):
        main(["inpaint", "--ae", str(tiny_runs.ae), "--prior", str(tiny_runs.bernoulli), "--indices", "0",
              "--box", "0,0,16,16", "--out", str(tmp_path / "o"), *RUNTIME])
    assert_nothing_written(tmp_path / "o")


@pytest.mark.parametrize("prior, more, message", [
    ("bernoulli", ["--labels", "3,12"], r"--labels: 12 is not a class of the prior .* 10 classes: pass labels in 0..9"),
    ("bernoulli", ["--labels", "-1"], r"--labels: -1 is not a class"),
    ("autoregressive", ["--labels", "1"], r"unconditional \(trained without --class-conditional\): drop --labels"),
    ("bernoulli", ["--guidance", "2"], r"--guidance 2 needs labels .* pass e.g. --labels 0,1,2"),
    ("autoregressive", ["--guidance", "2"], r"--guidance 2 needs a class-conditional prior"),
])
def test_labels_out_of_range_and_guidance_without_labels(tiny_runs, tmp_path, prior, more, message):
    # inpaint --indices guides a conditional prior towards the test images' own labels: no error there
    commands = ("sample",) if more == ["--guidance", "2"] and prior == "bernoulli" else ("sample", "inpaint")
    for command in commands:
        where = ["--indices", "0", "--box", "0,0,4,4"] if command == "inpaint" else []
        with pytest.raises(ValueError, match=message):
            main([command, "--ae", str(tiny_runs.ae), "--prior", str(getattr(tiny_runs, prior)), *where, *more,
                  "--out", str(tmp_path / command), *RUNTIME])
        assert_nothing_written(tmp_path / command)


def test_redirected_train_ae_prints_a_plain_loss_line_per_log_window(tmp_path):
    """Output to a file (not a terminal): the command's trainer still says where it is, as plain lines."""
    out = tmp_path / "ae"
    run = subprocess.run([sys.executable, "-m", "discrete_priors", "train-ae", "--dataset", "digits", "--latent", "binary",
                          "--bits", "4", "--preset", "tiny", "--steps", "4", "--batch-size", "8",
                          *RUNTIME, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "ae: step 4/4 loss " in run.stderr and "steps/s" in run.stderr, run.stderr[-2000:]
