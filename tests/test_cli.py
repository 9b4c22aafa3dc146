"""The command line: help texts, input validation, and the whole pipeline through the CLI."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from discrete_priors.cli import build_parser
from discrete_priors.commands import parse_labels

COMMANDS = ["train-ae", "encode", "train-prior", "sample", "inpaint", "eval", "plot-log", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_of_every_command_has_help(command):
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    for action in sub._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{command} {action.option_strings} has no help text"


def test_module_help_runs():
    out = subprocess.run([sys.executable, "-m", "discrete_priors", "--help"], capture_output=True, text=True, check=True)
    for command in COMMANDS:
        assert command in out.stdout


def test_parse_labels_cycles_and_rejects_garbage():
    assert parse_labels("1,2", 5).tolist() == [1, 2, 1, 2, 1]
    assert parse_labels(None, 3) is None
    with pytest.raises(ValueError, match="comma-separated integers"):
        parse_labels("a,b", 2)


def _choices(command: str) -> dict:
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    return {action.dest: tuple(action.choices) for action in sub._actions if action.choices}


def test_choices_are_the_registries():
    from discrete_priors.autoencoder.presets import PRESETS
    from discrete_priors.data import DATASETS
    from discrete_priors.latents import LATENTS
    from discrete_priors.pipeline import LATENT_FORMATS
    from discrete_priors.priors import PRIORS, absorbing, bernoulli, bernoulli_math, schedules

    prior = _choices("train-prior")
    # the registries may hold more than the built-ins: tests/test_howto_*.py register dummies at collection
    assert prior["prior"] == tuple(PRIORS) and prior["prior"][:3] == ("bernoulli", "absorbing", "autoregressive")
    assert prior["schedule"] == schedules.SCHEDULES
    assert prior["parameterization"] == bernoulli_math.PARAMETERIZATIONS
    assert prior["reverse"] == bernoulli_math.REVERSE_FORMS
    assert prior["loss_balance"] == bernoulli.LOSS_BALANCES  # read from the source, not imported
    assert prior["time_sampling"] == bernoulli.TIME_SAMPLINGS and prior["final_step"] == bernoulli.FINAL_STEPS
    from discrete_priors.priors import gaussian, gaussian_math

    assert set(prior["loss_weighting"]) == set(absorbing.LOSS_WEIGHTINGS) | set(gaussian.LOSS_WEIGHTINGS)
    assert prior["target"] == gaussian_math.TARGETS and prior["sampler"] == gaussian_math.SAMPLERS
    assert set(schedules.GAUSSIAN_SCHEDULES) <= set(prior["schedule"])
    ae = _choices("train-ae")
    assert ae["latent"] == tuple(LATENTS) and ae["latent"][:3] == ("binary", "vq", "continuous")
    assert {fmt.latent or name for name, fmt in LATENT_FORMATS.items()} <= set(LATENTS)
    assert ae["preset"] == tuple(PRESETS) and ae["dataset"] == DATASETS


def test_help_does_not_import_x_transformers():
    code = "import sys; from discrete_priors.cli import build_parser; build_parser(); print('x_transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_latent_flags_give_each_kind_its_own_config():
    from discrete_priors.pipeline import latent_kwargs

    flags = {"bits": 16, "codebook_size": 64, "dim": 4, "kl_weight": 1e-6}
    assert latent_kwargs("binary", **flags) == {"kind": "binary", "bits": 16}
    assert latent_kwargs("vq", **flags) == {"kind": "vq", "codebook_size": 64, "dim": 4}
    assert latent_kwargs("continuous", **flags) == {"kind": "continuous", "dim": 4, "kl_weight": 1e-6}
    with pytest.raises(ValueError, match="unknown latent kind 'gauss', expected one of binary, vq, continuous"):
        latent_kwargs("gauss")


def test_train_config_of_the_flags_is_a_trainer_config():
    from discrete_priors.commands import train_config_from_args
    from discrete_priors.training import TrainConfig

    args = build_parser().parse_args(["train-prior", "--latents", "x", "--out", "y", "--steps", "40", "--lr", "0.01"])
    config = train_config_from_args(args)
    assert config == {"steps": 40, "batch_size": 128, "lr": 0.01, "warmup_steps": 4, "ema_decay": 0.999,
                      "checkpoint_every": 4, "seed": 0, "schedule": "cosine", "min_lr_ratio": 0.1,
                      "weight_decay": 0.0, "grad_clip": 1.0, "device": "auto", "amp": "auto", "compile": False}
    assert TrainConfig.from_dict(config).steps == 40
    # warm-up and checkpoints: a tenth of the run by default (at most 100 / 1000 steps), as pipeline.train_config
    long = train_config_from_args(build_parser().parse_args(["train-ae", "--out", "y", "--steps", "20000"]))
    assert (long["warmup_steps"], long["checkpoint_every"]) == (100, 1000)
    args = build_parser().parse_args(["train-ae", "--out", "y", "--precision", "bf16", "--compile", "--device", "cuda:1"])
    config = TrainConfig.from_dict(train_config_from_args(args))
    assert (config.amp, config.compile, config.device) == ("bf16", True, "cuda:1")


@pytest.mark.parametrize("command", ["train-ae", "encode", "train-prior", "sample", "inpaint", "eval"])
def test_every_network_command_takes_device_precision_and_threads(command):
    required = {"train-ae": ["--out", "o"], "encode": ["--ae", "a", "--out", "o"], "train-prior": ["--latents", "l", "--out", "o"],
                "sample": ["--ae", "a", "--prior", "p", "--out", "o"], "inpaint": ["--ae", "a", "--prior", "p", "--out", "o"],
                "eval": ["--out", "o"]}[command]
    args = build_parser().parse_args([command, *required])
    assert (args.device, args.precision, args.threads) == ("auto", "auto", 0)  # 0: PyTorch's default
    args = build_parser().parse_args([command, *required, "--precision", "fp32", "--threads", "2"])
    assert (args.precision, args.threads) == ("fp32", 2)
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, *required, "--precision", "fp8"])


def test_threads_flag_sets_the_torch_thread_count(tmp_path):
    code = ("import torch; from discrete_priors.cli import main; import sys\n"
            "try:\n    main(['sample', '--ae', 'missing', '--prior', 'missing', '--out', 'o', '--threads', '2'])\n"
            "except Exception:\n    pass\nprint(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert out.stdout.strip().splitlines()[-1] == "2"  # the flag wins over the environment's 1


def test_unknown_prior_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train-prior", "--latents", "x", "--out", "y", "--prior", "gauss"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.slow
def test_whole_pipeline_through_the_cli(tmp_path):
    """train-ae → encode → train-prior → sample → eval, with tiny models, through main()."""
    from discrete_priors.cli import main
    from discrete_priors.data import load_latent_cache
    from discrete_priors.io import load_tensors

    ae, latents, prior, samples, results = (tmp_path / d for d in ("ae", "latents", "prior", "samples", "results"))
    common = ["--steps", "20", "--batch-size", "16", "--checkpoint-every", "10", "--device", "cpu"]
    assert main(["train-ae", "--preset", "tiny", "--bits", "8", "--out", str(ae), *common]) == 0
    assert main(["encode", "--ae", str(ae), "--out", str(latents), "--device", "cpu"]) == 0
    cache = load_latent_cache(latents / "train.safetensors")
    assert cache.spec.kind == "binary" and cache.spec.shape == (16, 8) and len(cache) == 1438
    assert main(["train-prior", "--latents", str(latents), "--net", "tiny", "--timesteps", "8", "--resample",
                 "--out", str(prior), *common]) == 0
    assert main(["sample", "--ae", str(ae), "--prior", str(prior), "-n", "12", "--steps", "4", "--seed", "3",
                 "--out", str(samples), "--device", "cpu"]) == 0
    saved = load_tensors(samples / "samples.safetensors")
    assert saved["codes"].shape == (12, 16, 8) and set(saved["codes"].unique().tolist()) <= {0.0, 1.0}
    assert saved["images"].shape == (12, 1, 16, 16) and 0 <= saved["images"].min() <= saved["images"].max() <= 1
    assert (samples / "grid.png").stat().st_size > 0
    # the same seed gives the same samples
    assert main(["sample", "--ae", str(ae), "--prior", str(prior), "-n", "12", "--steps", "4", "--seed", "3",
                 "--out", str(tmp_path / "again"), "--device", "cpu"]) == 0
    assert torch.equal(load_tensors(tmp_path / "again" / "samples.safetensors")["codes"], saved["codes"])
    # a second autoencoder with the same code shape: sampling the prior through it is refused, naming both
    other = tmp_path / "other-ae"
    assert main(["train-ae", "--preset", "tiny", "--bits", "8", "--out", str(other), "--seed", "1", *common]) == 0
    with pytest.raises(ValueError, match=r"trained on codes of autoencoder .* but .*other-ae is autoencoder .*--allow-mismatch"):
        main(["sample", "--ae", str(other), "--prior", str(prior), "-n", "4", "--out", str(tmp_path / "bad"), "--device", "cpu"])
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ValueError, match="--allow-mismatch"):
        main(["eval", "--ae", str(other), "--prior", str(prior), "-n", "4", "--cache-dir", str(tmp_path / "clf"),
              "--out", str(tmp_path / "bad-eval")])
    with pytest.warns(RuntimeWarning, match="decoding anyway"):
        assert main(["sample", "--ae", str(other), "--prior", str(prior), "-n", "4", "--steps", "2", "--allow-mismatch",
                     "--out", str(tmp_path / "deliberate"), "--device", "cpu"]) == 0
    assert main(["eval", "--samples", str(samples), "--cache-dir", str(tmp_path / "clf"), "--out", str(results)]) == 0
    import pandas as pd

    rows = pd.read_csv(results / "results.csv")
    assert {"fd", "precision", "recall", "nn_pixel_distance"} <= set(rows["metric"])
    assert rows["value"].notna().all() and (rows["num_samples"] == 12).all()


@pytest.mark.slow
def test_gaussian_prior_on_continuous_latents_through_the_cli(tmp_path):
    """train-ae (continuous) → encode → train-prior --prior gaussian → sample → eval, tiny models:
    the latent scale is 1/std of the training cache, samples come back un-scaled in the cache's
    layout, and eval writes the NLL in its own column, bits per latent dimension."""
    import pandas as pd

    from discrete_priors.cli import main
    from discrete_priors.data import load_latent_cache
    from discrete_priors.io import load_tensors, read_json
    from discrete_priors.pipeline import latest_checkpoint, load_prior

    ae, latents, prior, samples, results = (tmp_path / d for d in ("ae", "latents", "prior", "samples", "results"))
    common = ["--steps", "20", "--batch-size", "16", "--checkpoint-every", "10", "--device", "cpu"]
    assert main(["train-ae", "--preset", "tiny", "--latent", "continuous", "--latent-dim", "4", "--out", str(ae), *common]) == 0
    assert main(["encode", "--ae", str(ae), "--out", str(latents), "--device", "cpu"]) == 0
    cache = load_latent_cache(latents / "train.safetensors")
    assert cache.spec.kind == "continuous" and cache.spec.shape == (16, 4)
    assert main(["train-prior", "--latents", str(latents), "--prior", "gaussian", "--net", "tiny", "--timesteps", "16",
                 "--schedule", "linear", "--target", "v", "--sampler", "ancestral", "--out", str(prior), *common]) == 0
    config = read_json(latest_checkpoint(prior) / "model_config.json")
    assert config["latent_scale"] == pytest.approx(1 / cache.codes.double().std(correction=0).item(), rel=1e-9)
    assert (config["schedule"], config["target"], config["sampler"]) == ("linear", "v", "ancestral")
    assert main(["sample", "--ae", str(ae), "--prior", str(prior), "-n", "12", "--steps", "4", "--seed", "3",
                 "--out", str(samples), "--device", "cpu"]) == 0
    codes = load_tensors(samples / "samples.safetensors")["codes"]
    assert codes.shape == (12, 16, 4) and codes.dtype == torch.float32 and torch.isfinite(codes).all()
    # un-scaled: the prior's own draw divided by its scale, not the network's unit-variance space
    again = load_prior(prior, device="cpu").sample(12, steps=4, generator=torch.Generator("cpu").manual_seed(3))
    torch.testing.assert_close(codes, again)
    assert main(["eval", "--ae", str(ae), "--prior", str(prior), "--latents", str(latents), "-n", "16", "--steps", "4",
                 "--cache-dir", str(tmp_path / "clf"), "--out", str(results), "--device", "cpu"]) == 0
    rows = pd.read_csv(results / "results.csv")
    metrics = set(rows["metric"])
    assert {"fd", "nll_bits_per_dim", "nll_is_exact", "samples_per_s"} <= metrics and "nll_bits_per_bit" not in metrics
    nll = rows.loc[rows["metric"] == "nll_bits_per_dim", "value"].item()
    # 20 steps from v̂ = 0 (the N(0, I) model of the scaled codes): near the ~13-14 bits/dim of
    # float16-discretised standard normals, well under 5x the 16 bits of float16 storage
    assert 0 < nll < 5 * 16
    assert (rows["variant"] == "gaussian/S=4").all()


@pytest.mark.parametrize("argv", [
    ["train-prior", "--latents", "l", "--out", "o", "--steps", "0"],
    ["train-ae", "--out", "o", "--steps", "-5"],
    ["train-ae", "--out", "o", "--bits", "0"],
    ["sample", "--ae", "a", "--prior", "p", "--out", "o", "-n", "0"],
    ["sample", "--ae", "a", "--prior", "p", "--out", "o", "-n", "-5"],
    ["sample", "--ae", "a", "--prior", "p", "--out", "o", "--steps", "0"],
    ["eval", "--out", "o", "--batch-size", "x"],
    ["inpaint", "--ae", "a", "--prior", "p", "--out", "o", "--samples", "0"],
    ["eval", "--out", "o", "--nll-codes", "0"],
    ["train-ae", "--out", "o", "--size", "0"],
])
def test_non_positive_counts_are_refused_at_parse_time_writing_nothing(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    assert "expected a whole number >= 1" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_encode_prints_the_class_mapping_recorded_by_the_autoencoder(tiny_runs, tmp_path, capsys):
    from discrete_priors.cli import main
    from discrete_priors.io import read_json
    from discrete_priors.pipeline import describe_classes

    names = read_json(tiny_runs.ae / "data.json")["classes"]
    assert main(["encode", "--ae", str(tiny_runs.ae), "--splits", "test", "--out", str(tmp_path / "l"),
                 "--device", "cpu", "--threads", "1"]) == 0
    assert len(names) == 10
    assert f"encode: digits classes (label=name): {describe_classes(names)}" in capsys.readouterr().err
    assert describe_classes(names).startswith(f"0={names[0]}, 1={names[1]}")
