"""Trainer speed options (issue 11): precision, fused AdamW, log-only terms on log steps, compile,
threads, and the training-step benchmark harness."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from typing import NamedTuple

import pytest
import torch
from torch import nn

from discrete_priors.training import TrainConfig, Trainer, load_model_weights
from discrete_priors.training import checkpoint as ckpt
from discrete_priors.training.precision import autocast_context, resolve_precision, set_threads
from discrete_priors.training.trainer import adamw
from discrete_priors.io import load_tensors, read_json, write_json
from tests._ddp_worker import init_
from tests.test_trainer import REPO, NoisyMLP, assert_same_state, config, regression_data


class Out(NamedTuple):
    loss: torch.Tensor
    terms: dict


def test_fused_adamw_tracks_the_default_loop_within_1e_6(tmp_path):
    def run(make):
        torch.manual_seed(0)
        module = nn.Sequential(nn.Linear(33, 64), nn.LayerNorm(64), nn.Linear(64, 5))
        optimizer = make(module)
        g = torch.Generator().manual_seed(1)
        for step in range(50):
            for p in module.parameters():
                p.grad = torch.randn(p.shape, generator=g)
            for group in optimizer.param_groups:
                group["lr"] = 1e-3 * (step + 1) / 50
            optimizer.step()
        return [p.detach().clone() for p in module.parameters()], optimizer

    cfg = TrainConfig(weight_decay=0.1, device="cpu")
    ours, optimizer = run(lambda m: adamw(m, 1e-3, cfg))
    assert all(group["fused"] for group in optimizer.param_groups)
    loop, _ = run(lambda m: torch.optim.AdamW([{"params": [p for p in m.parameters() if p.ndim >= 2], "weight_decay": 0.1},
                                               {"params": [p for p in m.parameters() if p.ndim < 2], "weight_decay": 0.0}],
                                              lr=1e-3, betas=cfg.betas, foreach=False))
    ours_groups = [p for p in ours if p.ndim >= 2] + [p for p in ours if p.ndim < 2]
    loop_groups = [p for p in loop if p.ndim >= 2] + [p for p in loop if p.ndim < 2]
    for a, b in zip(ours_groups, loop_groups, strict=True):
        assert (a - b).abs().max() <= 1e-6 * b.abs().max()


def test_checkpoint_of_the_old_optimizer_resumes_with_the_fused_kernel_exactly(tmp_path):
    full = Trainer(init_(NoisyMLP(), 0), regression_data(), config(), tmp_path / "full", progress=False)
    full.fit()
    Trainer(init_(NoisyMLP(), 0), regression_data(), config(), tmp_path / "old", progress=False).fit(until=5)
    # what the baseline code wrote: default kernel flags, amp "auto"; "off" is its fp32 spelling
    folder = ckpt.latest_checkpoint(tmp_path / "old" / "checkpoints")
    meta = read_json(folder / "optimizer.json")
    for group in meta["param_groups"]:
        group.update(foreach=None, fused=None)
    write_json(folder / "optimizer.json", meta)
    state = read_json(folder / "trainer_state.json")
    state["config"]["amp"] = "off"
    del state["config"]["compile"]  # a field the old code did not have
    write_json(folder / "trainer_state.json", state)
    resumed = Trainer(init_(NoisyMLP(), 99), regression_data(), config(amp="off"), tmp_path / "old", progress=False)
    assert resumed.fit().step == 12
    assert all(group["fused"] for group in resumed.optimizer.param_groups)
    assert_same_state(full, resumed)


class LogTermsModel(nn.Module):
    """Records the log_terms it was given; an extra term (the step index) only when asked."""

    accepts_log_terms = True

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))
        self.calls = []

    def forward(self, x, *, generator=None, log_terms=True):
        self.calls.append(log_terms)
        terms = {"always": torch.tensor(1.0)}
        if log_terms:
            terms["only_logged"] = torch.tensor(float(len(self.calls) - 1))
        return Out((self.w * x).mean(), terms)


def test_log_only_terms_are_computed_on_logged_steps_and_averaged_over_them(tmp_path):
    model = LogTermsModel()
    records = []
    t = Trainer(model, (torch.ones(8, 1),), config(steps=10, log_every=4, checkpoint_every=0), tmp_path,
                progress=False, log_fn=records.append)
    t.fit()
    assert [i for i, flag in enumerate(model.calls) if flag] == [3, 7, 9]  # logs after steps 4, 8, 10
    assert [r["step"] for r in records] == [4, 8, 10]
    assert [r["terms"]["only_logged"] for r in records] == [3.0, 7.0, 9.0]
    assert [r["terms"]["always"] for r in records] == [1.0, 1.0, 1.0]
    # outside fit, train_step decides from the config; a caller may force it
    assert t.is_log_step(3) and not t.is_log_step(4) and t.is_log_step(9)
    t.train_step(4, log_terms=True)
    assert model.calls[-1] is True


def test_a_model_without_the_attribute_gets_no_log_terms(tmp_path):
    class Plain(nn.Module):  # a forward without log_terms= must keep working
        log_terms = True  # an unrelated attribute of that name is no opt-in

        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def forward(self, x, *, generator=None):
            return Out((self.w * x).mean(), {})

    assert Trainer(Plain(), (torch.ones(8, 1),), config(steps=3, checkpoint_every=0), tmp_path, progress=False).fit().step == 3


def test_autoencoder_leaves_out_log_only_terms_when_asked():
    from discrete_priors.autoencoder import Autoencoder, autoencoder_preset

    torch.manual_seed(0)
    model = Autoencoder(**autoencoder_preset("tiny", latent={"kind": "binary", "bits": 8}, image_size=16, image_channels=1))
    images = torch.rand(4, 1, 16, 16)
    full = model(images, generator=torch.Generator().manual_seed(0))
    lean = model(images, generator=torch.Generator().manual_seed(0), log_terms=False)
    assert torch.equal(full.loss, lean.loss) and "psnr" in full.terms and "psnr" not in lean.terms
    assert set(lean.terms) == {"recon", "latent_loss"}


def test_bf16_on_cpu_trains_with_fp32_losses_close_to_fp32(tmp_path):
    from discrete_priors.autoencoder import Autoencoder, autoencoder_preset

    def first_loss(amp, sub):
        torch.manual_seed(0)
        model = Autoencoder(**autoencoder_preset("tiny", latent={"kind": "binary", "bits": 8}, image_size=16, image_channels=1))
        images = torch.rand(16, 1, 16, 16, generator=torch.Generator().manual_seed(0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            t = Trainer(model, (images,), config(steps=2, batch_size=8, amp=amp, checkpoint_every=0), tmp_path / sub, progress=False)
        with t.autocast():
            out = model(images[:8], generator=torch.Generator().manual_seed(0))
        assert out.loss.dtype == torch.float32 and out.recon.dtype == torch.float32
        record = t.train_step(0)
        assert torch.isfinite(record["loss"])
        return out.loss.item()

    fp32, bf16 = first_loss("fp32", "a"), first_loss("bf16", "b")
    assert bf16 == pytest.approx(fp32, rel=2e-2) and bf16 != fp32


def test_precision_helper_for_sampling_and_evaluation():
    with autocast_context("cpu", "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with autocast_context("cpu", "bf16"):
            assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert resolve_precision("auto", "cpu") == "fp32" and resolve_precision("off", "cpu") == "fp32"
    with pytest.raises(ValueError, match="needs a CUDA device"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="unknown precision"):
        autocast_context("cpu", "half")
    with pytest.raises(ValueError, match="threads must be >= 1"):
        set_threads(0)
    assert set_threads(None) == torch.get_num_threads()


@pytest.mark.skipif(not hasattr(torch, "compile"), reason="torch.compile unavailable")
def test_compiled_training_saves_the_eager_module(tmp_path, monkeypatch):
    # aot_eager: the same tracing, wrapping and autograd as the default inductor backend, without
    # its C++ code generation (~70 s for this MLP on the shared 2 cores)
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda module, **kw: compile_(module, **{"backend": "aot_eager", **kw}))
    t = Trainer(init_(NoisyMLP(), 0), regression_data(), config(steps=3, compile=True, checkpoint_every=0), tmp_path,
                progress=False)
    assert t.train_model is not t.model
    result = t.fit()
    assert result.step == 3 and torch.isfinite(torch.tensor(result.terms["loss"]))
    assert not any("_orig_mod" in k for k in load_tensors(result.checkpoint / "model.safetensors"))
    fresh = load_model_weights(init_(NoisyMLP(), 99), tmp_path, ema=False)
    for (k, u), v in zip(fresh.state_dict().items(), t.model.state_dict().values(), strict=True):
        assert "_orig_mod" not in k and torch.equal(u, v), k
    assert read_json(result.checkpoint / "trainer_state.json")["config"]["compile"] is True


def test_bench_train_step_prints_medians(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "experiments.bench_train_step", "--configs", "autoencoder", "--rounds", "1",
                    "--steps", "1", "--warmup", "0", "--out", str(out)], cwd=REPO, env=env, check=True, capture_output=True)
    result = json.loads(out.read_text())
    assert result["median_s_per_step"]["autoencoder/fp32"] > 0 and result["baseline"] is None


def test_bench_train_step_loss_curves_compare_seeds_and_precisions(tmp_path):
    out = tmp_path / "curves.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "experiments.bench_train_step", "--configs", "absorbing", "--curve", "4",
                    "--precision", "fp32", "bf16", "--out", str(out)], cwd=REPO, env=env, check=True, capture_output=True)
    result = json.loads(out.read_text())["configs"]["absorbing"]
    assert set(result["losses"]) == {"fp32/seed0", "fp32/seed1", "bf16/seed0"}
    assert all(len(v) == 4 for v in result["losses"].values())
    # the same seed and precision in two processes would give the same curve: seed 1 does not
    assert result["losses"]["fp32/seed1"] != result["losses"]["fp32/seed0"]
    gap = result["max_window_gap_from_fp32_seed0"]["fp32/seed1"]
    assert gap == max(abs(a - b) for a, b in zip(result["losses"]["fp32/seed1"], result["losses"]["fp32/seed0"]))


def test_every_prior_gets_log_terms_only_on_logged_steps(tmp_path):
    """Priors opt in through Prior.accepts_log_terms: the Bernoulli VLB (logged only, λ = 0) is
    computed on the 2 logged steps of 8, not on every step."""
    from discrete_priors.latents.base import CodeSpec
    from discrete_priors.priors import build_prior

    prior = build_prior("bernoulli", CodeSpec(kind="binary", grid=(2, 2), channels=4), preset="tiny", timesteps=8)
    calls, loss = [], prior.loss

    def spy(*args, **kwargs):
        calls.append(kwargs["log_terms"])
        return loss(*args, **kwargs)

    prior.loss = spy
    codes = (torch.rand(64, 4, 4, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    Trainer(prior, (codes,), TrainConfig(steps=8, batch_size=8, log_every=4, device="cpu", checkpoint_every=0), tmp_path,
            progress=False).fit()
    assert calls == [False, False, False, True] * 2
    logged = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [4, 8] and all("vlb" in r["terms"] for r in logged)
