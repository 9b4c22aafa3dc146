"""eval tells where its time goes and lets each part be skipped or limited: the skipped parts are
absent from the row, a limited NLL equals the NLL computed directly on the same codes and
timesteps, the feature classifier is trained once and then reused, and conditional samples are
scored for class accuracy."""

from __future__ import annotations

import json

import pytest

from discrete_priors import evaluate, pipeline
from discrete_priors.cli import main
from discrete_priors.data import load_latent_cache
from discrete_priors.data.datasets import image_folder_fingerprint

RUNTIME = ["--device", "cpu", "--threads", "1"]
MEMORISATION = {"nn_pixel_distance", "nn_feature_distance", "frac_closer_than_test"}
NLL = {"nll_bits_per_bit", "nll_is_exact", "nll_codes", "nll_timesteps"}
SPEED = {"samples_per_s", "nfe_per_sample", "batch_size"}


def eval_args(runs, prior, out, *more):
    return ["eval", "--ae", str(runs.ae), "--prior", str(prior), "--latents", str(runs.latents), "-n", "12",
            "--steps", "2", "--batch-size", "8", "--cache-dir", str(runs.root / "classifiers"), "--out", str(out),
            *RUNTIME, *more]


def last_record(out) -> dict:
    return json.loads((out / "results.jsonl").read_text().splitlines()[-1])


def test_skipped_parts_are_absent_and_every_run_part_is_timed(tiny_runs, tmp_path, capsys):
    out = tmp_path / "skipped"
    assert main(eval_args(tiny_runs, tiny_runs.bernoulli, out, "--no-nll", "--no-memorisation", "--no-speed")) == 0
    record, log = last_record(out), capsys.readouterr().err
    assert not (MEMORISATION | NLL | SPEED) & set(record)
    assert {"fd", "precision", "recall", "density", "coverage", "params"} <= set(record)
    assert set(record["seconds"]) == {"features", "sampling", "quality"}
    for part in record["seconds"]:
        assert f"eval: {part} took" in log
    # the conditional prior's samples cycle over the classes and are judged by the feature classifier
    assert 0.0 <= record["class_accuracy"] <= 1.0 and "eval: class accuracy of the conditional samples" in log


def test_a_limited_nll_equals_the_direct_estimate_on_the_same_codes(tiny_runs, tmp_path, capsys):
    out = tmp_path / "limited"
    assert main(eval_args(tiny_runs, tiny_runs.bernoulli, out, "--nll-codes", "5", "--nll-timesteps", "3")) == 0
    record = last_record(out)
    assert (record["nll_codes"], record["nll_timesteps"]) == (5, 3)
    assert MEMORISATION <= set(record) and SPEED <= set(record)
    assert set(record["seconds"]) == {"features", "sampling", "quality", "memorisation", "speed", "nll"}
    cache = load_latent_cache(tiny_runs.latents / "test.safetensors")
    prior = pipeline.load_prior(tiny_runs.bernoulli, device="cpu")
    direct = evaluate.nll_row(prior, cache.codes[:5], cache.labels[:5], seed=0, num_timesteps=3)
    assert record["nll_bits_per_bit"] == pytest.approx(direct["nll_bits_per_bit"], rel=1e-6)
    full = evaluate.nll_row(prior, cache.codes[:5], cache.labels[:5], seed=0)
    assert full["nll_bits_per_bit"] != pytest.approx(direct["nll_bits_per_bit"], rel=1e-6)  # the flag took effect
    assert "eval: nll (5 held-out codes, 3 timesteps each)" in capsys.readouterr().err


def test_the_feature_classifier_is_trained_once_then_reused(tiny_runs, tmp_path, capsys):
    cache = tmp_path / "classifiers"
    args = ["eval", "--ae", str(tiny_runs.ae), "--prior", str(tiny_runs.autoregressive), "-n", "8", "--batch-size", "8",
            "--no-memorisation", "--no-speed", "--cache-dir", str(cache), *RUNTIME]
    assert main([*args, "--out", str(tmp_path / "first")]) == 0
    assert "eval: feature classifier trained" in capsys.readouterr().err
    (weights,) = cache.glob("*/model.safetensors")
    stamp = weights.stat().st_mtime_ns
    assert main([*args, "--out", str(tmp_path / "second")]) == 0
    assert f"eval: feature classifier reused from {weights.parent}" in capsys.readouterr().err
    assert weights.stat().st_mtime_ns == stamp
    assert "class_accuracy" not in last_record(tmp_path / "second")  # an unconditional prior


@pytest.mark.parametrize("latents, more, message", [
    (True, ["--no-nll", "--nll-codes", "3"], "--nll-codes limit the NLL, which --no-nll skips"),
    (False, ["--nll-timesteps", "3"], "needs --latents"),
])
def test_contradicting_nll_flags_are_refused_writing_nothing(tiny_runs, tmp_path, latents, more, message):
    args = eval_args(tiny_runs, tiny_runs.bernoulli, tmp_path / "out", *more)
    if not latents:
        at = args.index("--latents")
        del args[at:at + 2]
    with pytest.raises(SystemExit, match=message):
        main(args)
    assert not (tmp_path / "out").exists()


def test_a_prior_without_a_timestep_estimate_refuses_nll_timesteps(tiny_runs, tmp_path):
    with pytest.raises(SystemExit, match="autoregressive prior's NLL has no timestep estimate"):
        main(eval_args(tiny_runs, tiny_runs.autoregressive, tmp_path / "out", "--nll-timesteps", "2"))
    assert not (tmp_path / "out").exists()


def test_image_folder_fingerprint_tells_folders_and_contents_apart(tmp_path):
    from PIL import Image

    for folder in ("a", "b"):
        (tmp_path / folder / "cls").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / folder / "cls" / "x.png")
    first = image_folder_fingerprint(tmp_path / "a")
    assert first == image_folder_fingerprint(tmp_path / "a")
    assert first != image_folder_fingerprint(tmp_path / "b")  # same files, another folder
    Image.new("RGB", (9, 9)).save(tmp_path / "a" / "cls" / "y.png")
    assert first != image_folder_fingerprint(tmp_path / "a")  # a file added
