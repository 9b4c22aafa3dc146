"""Shared fixtures: one tiny trained pipeline (autoencoder, latent cache, priors) per test session,
built through the command line, for the tests of the commands that read trained runs (inpaint,
eval, the bad-input catalogue). The models are barely trained (a few steps): these tests check
plumbing, shapes, files and errors, never sample quality."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import pytest


class TinyRuns(NamedTuple):
    root: Path
    ae: Path  # binary autoencoder on digits (16x16 images, 4x4 grid of 8 bits, downsampling 4)
    latents: Path  # its train/test latent cache (with probabilities)
    bernoulli: Path  # class-conditional Bernoulli prior (T = 8)
    autoregressive: Path  # unconditional autoregressive prior


TRAIN = ["--steps", "3", "--batch-size", "16", "--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> TinyRuns:
    from discrete_priors.cli import main

    root = tmp_path_factory.mktemp("tiny-runs")
    runs = TinyRuns(root, root / "ae", root / "latents", root / "bernoulli", root / "autoregressive")
    assert main(["train-ae", "--preset", "tiny", "--bits", "8", "--out", str(runs.ae), *TRAIN]) == 0
    assert main(["encode", "--ae", str(runs.ae), "--out", str(runs.latents), "--device", "cpu", "--threads", "1"]) == 0
    assert main(["train-prior", "--latents", str(runs.latents), "--net", "tiny", "--timesteps", "8",
                 "--class-conditional", "--out", str(runs.bernoulli), *TRAIN]) == 0
    assert main(["train-prior", "--latents", str(runs.latents), "--prior", "autoregressive", "--net", "tiny",
                 "--out", str(runs.autoregressive), *TRAIN]) == 0
    return runs


# ``--precision auto`` picks bf16 on a CPU with native bf16 (training/precision.py): the suite's
# numbers are written for fp32, so it takes every CPU as without native bf16 -- in this process and
# in the subprocesses it starts -- and the tests of that rule set the variable themselves.
os.environ["DISCRETE_PRIORS_CPU_BF16"] = "0"
