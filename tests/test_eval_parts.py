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


def test_eval_defaults_sample_at_the_priors_default_steps_and_estimate_the_nll_from_32_timesteps(tiny_runs, tmp_path,
                                                                                                   capsys):
    """A prior trained from the command line samples at train-prior's default S (16 of T = 64
    here: cli.CLI_DEFAULT_STEPS) and eval, given neither --steps nor --nll-timesteps, samples at
    that S and estimates the VLB from cli.DEFAULT_NLL_TIMESTEPS = 32 of the T steps — the same
    number as the direct estimate on the same codes, seed and M; ``all`` gives the full bound."""
    from discrete_priors.cli import CLI_DEFAULT_STEPS, DEFAULT_NLL_TIMESTEPS

    prior_dir = tmp_path / "prior"
    assert main(["train-prior", "--latents", str(tiny_runs.latents), "--net", "tiny", "--timesteps", "64",
                 "--steps", "2", "--batch-size", "8", "--out", str(prior_dir), *RUNTIME]) == 0
    prior = pipeline.load_prior(prior_dir, device="cpu")
    assert prior.default_steps == CLI_DEFAULT_STEPS["bernoulli"] == 16
    assert main(["sample", "--ae", str(tiny_runs.ae), "--prior", str(prior_dir), "-n", "2",
                 "--out", str(tmp_path / "samples"), *RUNTIME]) == 0
    assert json.loads((tmp_path / "samples" / "samples.json").read_text())["steps"] == 16  # the steps it sampled at
    args = ["eval", "--ae", str(tiny_runs.ae), "--prior", str(prior_dir), "--latents", str(tiny_runs.latents),
            "-n", "8", "--batch-size", "8", "--nll-codes", "4", "--no-memorisation", "--no-speed",
            "--cache-dir", str(tiny_runs.root / "classifiers"), *RUNTIME]
    assert main([*args, "--out", str(tmp_path / "default")]) == 0
    record, log = last_record(tmp_path / "default"), capsys.readouterr().err
    assert (record["steps"], record["nll_timesteps"], record["variant"]) == (16, DEFAULT_NLL_TIMESTEPS, "bernoulli/S=16")
    assert "eval: sampling at 16 steps (the prior's default" in log
    assert "eval: sampling (8 samples in 1 batch, steps 16) ..." in log
    assert "NLL: estimated from 32 stratified random timesteps of T=64" in log
    codes = load_latent_cache(tiny_runs.latents / "test.safetensors").codes[:4]
    direct = evaluate.nll_row(prior, codes, seed=0, num_timesteps=32)
    assert record["nll_bits_per_bit"] == pytest.approx(direct["nll_bits_per_bit"], rel=1e-6)
    for text in ("all", "0"):
        out = tmp_path / f"full-{text}"
        assert main([*args, "--nll-timesteps", text, "--out", str(out)]) == 0
        full = last_record(out)
        assert full["nll_timesteps"] == "all"
        assert "NLL: the full bound over all T=64 timesteps" in capsys.readouterr().err
    assert full["nll_bits_per_bit"] == pytest.approx(evaluate.nll_row(prior, codes, seed=0)["nll_bits_per_bit"], rel=1e-6)
    assert full["nll_bits_per_bit"] != pytest.approx(direct["nll_bits_per_bit"], rel=1e-6)


def test_a_prior_shorter_than_the_default_estimate_gets_its_full_bound(tiny_runs, tmp_path, capsys):
    """The shared fixture's prior has T = 8 < 32 timesteps: the default is its full bound, and
    its default sampling steps are capped at T."""
    assert pipeline.load_prior(tiny_runs.bernoulli, device="cpu").default_steps == 8
    out = tmp_path / "short"
    assert main(eval_args(tiny_runs, tiny_runs.bernoulli, out, "--nll-codes", "3", "--no-memorisation", "--no-speed")) == 0
    assert last_record(out)["nll_timesteps"] == "all"
    assert "NLL: the full bound over all T=8 timesteps" in capsys.readouterr().err


def test_nll_timesteps_rejects_a_negative_or_a_word_at_parse_time(tiny_runs, tmp_path, capsys):
    for bad in ("-3", "some"):
        with pytest.raises(SystemExit):
            main(eval_args(tiny_runs, tiny_runs.bernoulli, tmp_path / "out", "--nll-timesteps", bad))
        assert "or 'all' (or 0) for the full bound" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_default_steps_is_refused_for_a_prior_without_it(tiny_runs, tmp_path):
    with pytest.raises(ValueError, match=r"the autoregressive prior takes no default_steps \(--default-steps"):
        main(["train-prior", "--latents", str(tiny_runs.latents), "--prior", "autoregressive", "--net", "tiny",
              "--default-steps", "4", "--steps", "2", "--batch-size", "8", "--out", str(tmp_path / "p"), *RUNTIME])
    assert not (tmp_path / "p").exists()
