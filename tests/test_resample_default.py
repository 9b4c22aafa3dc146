"""train-prior's --resample default (issue 16): codes are redrawn from the cached Bernoulli
probabilities exactly when the cache holds them (a sampled binary latent), and used as they are
when the cache holds fixed codes; --no-resample turns it off, --resample on a cache that cannot
resample is refused naming the problem and the fix, the choice is printed and stored in
prior.json, and a resumed run keeps the choice it started with."""

from __future__ import annotations

import hashlib

import pytest

from discrete_priors import pipeline
from discrete_priors.cli import main
from discrete_priors.data import load_latent_cache
from discrete_priors.io import read_json

RUNTIME = ["--device", "cpu", "--threads", "1"]
TRAIN = ["--steps", "2", "--batch-size", "8", *RUNTIME]


def train_prior(latents, out, *more):
    return main(["train-prior", "--latents", str(latents), "--net", "tiny", "--timesteps", "8", "--out", str(out),
                 *TRAIN, *more])


@pytest.fixture(scope="module")
def fixed_caches(tmp_path_factory, tiny_runs):
    """Two caches that cannot resample: the tiny binary autoencoder encoded with --no-probs, and
    a deterministic binary autoencoder (fixed codes, no probabilities at all)."""
    root = tmp_path_factory.mktemp("fixed-caches")
    no_probs = root / "no-probs"
    assert main(["encode", "--ae", str(tiny_runs.ae), "--no-probs", "--out", str(no_probs), *RUNTIME]) == 0
    det_ae, det = root / "det-ae", root / "det"
    assert main(["train-ae", "--preset", "tiny", "--bits", "8", "--deterministic", "--out", str(det_ae), *TRAIN]) == 0
    assert main(["encode", "--ae", str(det_ae), "--out", str(det), *RUNTIME]) == 0
    return {"no-probs": no_probs, "deterministic": det}


def test_a_cache_with_bernoulli_probabilities_resamples_by_default(tiny_runs, tmp_path, capsys):
    assert load_latent_cache(tiny_runs.latents / "train.safetensors").can_resample
    assert train_prior(tiny_runs.latents, tmp_path / "p") == 0
    info = read_json(tmp_path / "p" / "prior.json")
    assert info["resample"] is True and info["resample_reason"].startswith("default: the cache holds Bernoulli")
    assert "train-prior: resample on (default" in capsys.readouterr().err
    # the shared fixture's prior, trained without either flag, resamples too
    assert read_json(tiny_runs.bernoulli / "prior.json")["resample"] is True


def test_prior_json_fingerprints_the_autoencoder_and_the_exact_latent_cache(tiny_runs, fixed_caches, tmp_path):
    """issue 16 item 4: the prior records which autoencoder and which cache file it learned; two caches
    of one autoencoder (with and without probabilities) share the first and differ in the second."""
    info = [read_json(tiny_runs.bernoulli / "prior.json")]
    assert train_prior(fixed_caches["no-probs"], tmp_path / "p") == 0
    info.append(read_json(tmp_path / "p" / "prior.json"))
    digest = hashlib.sha256((tiny_runs.latents / "train.safetensors").read_bytes()).hexdigest()[:16]
    assert info[0]["latents_hash"] == digest
    assert info[0]["autoencoder_hash"] == info[1]["autoencoder_hash"] == pipeline.autoencoder_fingerprint(tiny_runs.ae)
    assert info[0]["latents_hash"] != info[1]["latents_hash"]


def test_no_resample_turns_it_off_on_a_cache_that_could(tiny_runs, tmp_path, capsys):
    assert train_prior(tiny_runs.latents, tmp_path / "p", "--no-resample") == 0
    info = read_json(tmp_path / "p" / "prior.json")
    assert info["resample"] is False and "--no-resample" in info["resample_reason"]
    assert "train-prior: resample off (asked" in capsys.readouterr().err


@pytest.mark.parametrize("cache", ["no-probs", "deterministic"])
def test_fixed_codes_are_not_resampled_by_default(fixed_caches, tmp_path, cache, capsys):
    assert not load_latent_cache(fixed_caches[cache] / "train.safetensors").can_resample
    assert train_prior(fixed_caches[cache], tmp_path / "p") == 0
    info = read_json(tmp_path / "p" / "prior.json")
    assert info["resample"] is False and info["resample_reason"].startswith("default: the cache holds fixed binary codes")
    assert "train-prior: resample off (default" in capsys.readouterr().err


@pytest.mark.parametrize("cache, problem, fix", [
    ("no-probs", r"was encoded without Bernoulli probabilities \(encode --no-probs\)",
     r"drop --resample .*, or encode again without --no-probs"),
    ("deterministic", r"holds fixed codes of a binary latent space without Bernoulli probabilities",
     r"drop --resample \(the default trains on fixed codes as they are\)$"),
])
def test_resample_on_a_cache_that_cannot_is_refused_naming_problem_and_fix(fixed_caches, tmp_path, cache, problem, fix):
    out = tmp_path / "p"
    with pytest.raises(ValueError, match=problem) as refused:
        train_prior(fixed_caches[cache], out, "--resample")
    assert refused.match(fix)
    assert not out.exists()  # refused before anything is written


def test_resample_choice_for_categorical_codes_is_off_and_resample_refused():
    import torch

    from discrete_priors.data import LatentCache
    from discrete_priors.latents import CodeSpec

    spec = CodeSpec(kind="categorical", grid=(2, 2), channels=1, vocab_size=4)
    cache = LatentCache(spec=spec, stored_codes=torch.zeros(3, 4, dtype=torch.long), fixed_codes=True)
    assert pipeline.resample_choice(cache, None) == (False, "default: the cache holds fixed categorical codes "
                                                             "(no Bernoulli probabilities to draw from)")
    with pytest.raises(ValueError, match=r"holds fixed codes \(categorical; only binary codes have Bernoulli"):
        pipeline.resample_choice(cache, True)


def test_a_resumed_run_keeps_the_choice_it_started_with(tiny_runs, tmp_path, capsys):
    out = tmp_path / "p"
    assert train_prior(tiny_runs.latents, out, "--no-resample") == 0
    capsys.readouterr()
    # rerun for more steps without either flag: the default would resample, the record says no
    assert main(["train-prior", "--latents", str(tiny_runs.latents), "--net", "tiny", "--timesteps", "8",
                 "--out", str(out), "--steps", "4", "--batch-size", "8", *RUNTIME]) == 0
    info = read_json(out / "prior.json")
    assert info["resample"] is False and info["resample_reason"].startswith("asked")  # the reason as first given
    assert "train-prior: resample off (resumed run, as recorded in prior.json" in capsys.readouterr().err
