"""Trainer: exact resume, crash-safe checkpoints, DDP equivalence, schedule, EMA, clipping, docs/method.md §8.3."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from torch import nn

from discrete_priors.autoencoder import AdversarialTraining
from discrete_priors.training import TrainConfig, Trainer, latest_checkpoint, learning_rate, load_model_weights, resolve_device
from discrete_priors.training.trainer import ema_decay_at
from discrete_priors.training import checkpoint as ckpt
from discrete_priors.training.distributed import shard_size
from discrete_priors.training.distributed import global_batch_indices
from tests._ddp_worker import ToyAutoencoder, init_, run_toy, toy_images

REPO = Path(__file__).resolve().parents[1]


class Out(NamedTuple):
    loss: torch.Tensor
    terms: dict


class NoisyMLP(nn.Module):
    """Regression MLP with dropout-like noise drawn from the trainer's generator (so resume must
    restore the random stream too)."""

    def __init__(self, *, dim: int = 4, hidden: int = 8, noise: float = 0.3):
        super().__init__()
        self.config = dict(dim=dim, hidden=hidden, noise=noise)
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x, y, *, generator=None):
        h = x + self.config["noise"] * torch.randn(x.shape, generator=generator)
        mse = (self.net(h).squeeze(-1) - y).pow(2).mean()
        return Out(mse, {"mse": mse.detach()})


class Scalar(nn.Module):
    """loss = <c, w> with a fixed c: gradient c whatever w, for EMA / clipping closed forms."""

    def __init__(self, c):
        super().__init__()
        self.w = nn.Parameter(torch.zeros_like(c))
        self.register_buffer("c", c)

    def forward(self, x, *, generator=None):
        loss = (self.w * self.c).sum() + 0 * x.sum()
        return Out(loss, {})


def regression_data(n=40, dim=4):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, dim, generator=g)
    return x, x @ torch.randn(dim, generator=g)


class NoisySource:
    """Batch source (as a latent cache with Bernoulli resampling is): noise from the trainer's generator."""

    def __init__(self):
        self.x, self.y = regression_data()

    def __len__(self):
        return len(self.y)

    def __call__(self, index, generator):
        return self.x[index] + 0.1 * torch.randn(self.x[index].shape, generator=generator), self.y[index]


def config(**kw):
    base = dict(steps=12, batch_size=16, lr=1e-2, warmup_steps=3, schedule="cosine", min_lr_ratio=0.1,
                grad_clip=0.5, ema_decay=0.8, checkpoint_every=5, log_every=4, seed=7, device="cpu", weight_decay=0.1)
    return TrainConfig(**{**base, **kw})


def trainer(out_dir, init_seed=0, source=False, **kw):
    return Trainer(init_(NoisyMLP(), init_seed), NoisySource() if source else regression_data(), config(**kw), out_dir,
                   progress=False)


def assert_same_state(a: Trainer, b: Trainer):
    for x, y in [(a.model, b.model), (a.ema_model, b.ema_model)]:
        for (k, u), v in zip(x.state_dict().items(), y.state_dict().values()):
            assert torch.equal(u, v), k
    sa, sb = a.optimizer.state_dict(), b.optimizer.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    for i in sa["state"]:
        for k in sa["state"][i]:
            assert torch.equal(sa["state"][i][k], sb["state"][i][k]), (i, k)


@pytest.mark.parametrize("kill,source", [("until", False), ("shorter_steps", False), ("until", True)])
def test_killed_and_resumed_run_equals_uninterrupted_run(tmp_path, kill, source):
    # 12 steps x 16 of 40 examples crosses epoch boundaries; noise in the source and in forward.
    schedule = "cosine" if kill == "until" else "constant"
    full = trainer(tmp_path / "full", schedule=schedule, source=source)
    full.fit()
    if kill == "until":  # stops at 6 but keeps the 12-step cosine schedule
        trainer(tmp_path / "resumed", schedule=schedule, source=source).fit(until=6)
    else:
        trainer(tmp_path / "resumed", schedule=schedule, steps=6).fit()
    # a different initialisation proves the weights come from the checkpoint
    resumed = trainer(tmp_path / "resumed", init_seed=99, schedule=schedule, source=source)
    result = resumed.fit()
    assert result.step == 12 and result.checkpoint.name == "step_0000012"
    assert_same_state(full, resumed)
    log = (tmp_path / "full" / "train_log.jsonl").read_text().splitlines()
    assert len(log) == 3  # steps 4, 8, 12


def test_crash_during_checkpoint_leaves_previous_latest_loadable(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_save = ckpt.save_tensors

    def flaky_save(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 5:  # 3 files per checkpoint: dies mid-way through the second one
            raise RuntimeError("simulated crash")
        return real_save(*args, **kw)

    monkeypatch.setattr(ckpt, "save_tensors", flaky_save)
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer(tmp_path / "run").fit()
    monkeypatch.setattr(ckpt, "save_tensors", real_save)

    root = tmp_path / "run" / "checkpoints"
    assert latest_checkpoint(root).name == "step_0000005"
    assert not (root / "step_0000010").exists()
    reference = trainer(tmp_path / "ref")
    reference.fit(until=5)
    loaded = load_model_weights(init_(NoisyMLP(), 99), tmp_path / "run", ema=False)
    ema = load_model_weights(init_(NoisyMLP(), 99), root / "step_0000005", ema=True)
    for x, y in [(loaded, reference.model), (ema, reference.ema_model)]:
        for u, v in zip(x.state_dict().values(), y.state_dict().values()):
            assert torch.equal(u, v)
    # the next run resumes from step 5 and clears the half-written folder
    assert trainer(tmp_path / "run").fit().step == 12
    # log records of the steps redone after the resume were dropped, not duplicated
    log = [json.loads(line)["step"] for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert log == [4, 8, 12]
    assert sorted(p.name for p in root.iterdir()) == ["latest.json", "step_0000005", "step_0000010", "step_0000012"]


def test_keep_last_checkpoints_and_json_only_files(tmp_path):
    trainer(tmp_path, checkpoint_every=2, keep_checkpoints=2).fit()
    root = tmp_path / "checkpoints"
    assert [p.name for _, p in ckpt.list_checkpoints(root)] == ["step_0000010", "step_0000012"]
    files = {p.suffix for p in (root / "step_0000012").iterdir()}
    assert files == {".safetensors", ".json"}


@pytest.mark.slow
def test_two_process_gloo_run_matches_one_process_run(tmp_path):
    run_toy(tmp_path / "single")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                    str(REPO / "tests" / "_ddp_worker.py"), str(tmp_path / "ddp")],
                   env=env, timeout=120, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ["model", "ema", "discriminator"]:
        a = ckpt.load_tensors(tmp_path / "single" / "checkpoints" / "step_0000008" / f"{name}.safetensors")
        b = ckpt.load_tensors(tmp_path / "ddp" / "checkpoints" / "step_0000008" / f"{name}.safetensors")
        assert a.keys() == b.keys()
        for k in a:
            assert torch.allclose(a[k], b[k], atol=1e-5), (name, k, (a[k] - b[k]).abs().max())
    # training did something: weights moved away from the initialisation
    init = init_(ToyAutoencoder(), 0).state_dict()
    a = ckpt.load_tensors(tmp_path / "single" / "checkpoints" / "step_0000008" / "model.safetensors")
    assert (a["encoder.weight"] - init["encoder.weight"]).abs().max() > 1e-2


def test_global_batch_must_split_over_ranks():
    assert shard_size(12, 4) == 3
    with pytest.raises(ValueError, match="not divisible by world size 5"):
        shard_size(12, 5)


def test_batches_are_epoch_permutations_and_pure_functions_of_seed_and_step():
    batches = torch.cat([global_batch_indices(s, seed=1, batch_size=5, num_examples=10) for s in range(4)])
    assert sorted(batches[:10].tolist()) == list(range(10)) and sorted(batches[10:].tolist()) == list(range(10))
    assert torch.equal(global_batch_indices(3, seed=1, batch_size=5, num_examples=10), batches[15:])
    assert not torch.equal(global_batch_indices(0, seed=2, batch_size=10, num_examples=10), batches[:10])


def test_warmup_then_constant_or_cosine_learning_rate(tmp_path):
    cfg = TrainConfig(lr=1.0, warmup_steps=4, steps=14, schedule="constant")
    assert [learning_rate(s, cfg) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    cos = TrainConfig(lr=2.0, warmup_steps=4, steps=14, schedule="cosine", min_lr_ratio=0.1)
    assert learning_rate(2, cos) == 1.5
    assert learning_rate(9, cos) == pytest.approx(2.0 * (0.1 + 0.9 * 0.5), rel=1e-12)  # half-way
    assert learning_rate(14, cos) == pytest.approx(0.2, rel=1e-12)
    # the optimizer really uses these values
    t = Trainer(Scalar(torch.ones(3)), (torch.zeros(8, 1),), TrainConfig(lr=1.0, warmup_steps=4, batch_size=2,
                device="cpu", ema_decay=0), tmp_path, progress=False)
    for s in range(5):
        t.train_step(s)
        assert t.optimizer.param_groups[0]["lr"] == [0.25, 0.5, 0.75, 1.0, 1.0][s]


def test_ema_equals_closed_form_after_two_steps(tmp_path):
    decay = 0.7
    model = Scalar(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    t = Trainer(model, (torch.zeros(4, 1, dtype=torch.float64),), TrainConfig(lr=0.1, batch_size=2, ema_decay=decay,
                ema_warmup=False, grad_clip=0, device="cpu"), tmp_path, progress=False)
    p = [model.w.detach().clone()]
    for s in range(2):
        t.train_step(s)
        p.append(model.w.detach().clone())
    expected = decay**2 * p[0] + decay * (1 - decay) * p[1] + (1 - decay) * p[2]
    assert not torch.allclose(p[2], p[0])
    torch.testing.assert_close(t.ema_model.w, expected, rtol=1e-14, atol=1e-15)


def test_ema_warmup_decay_closed_form_after_two_steps(tmp_path):
    # with the warm-up, update t uses min(decay, (1+t)/(10+t)): 0.1 then 2/11
    model = Scalar(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    t = Trainer(model, (torch.zeros(4, 1, dtype=torch.float64),), TrainConfig(lr=0.1, batch_size=2, ema_decay=0.999,
                grad_clip=0, device="cpu"), tmp_path, progress=False)
    p = [model.w.detach().clone()]
    for s in range(2):
        t.train_step(s)
        p.append(model.w.detach().clone())
    d0, d1 = 0.1, 2 / 11
    expected = d1 * (d0 * p[0] + (1 - d0) * p[1]) + (1 - d1) * p[2]
    torch.testing.assert_close(t.ema_model.w, expected, rtol=1e-14, atol=1e-15)
    assert ema_decay_at(0, 0.999) == 0.1 and ema_decay_at(10**6, 0.999) == 0.999
    assert ema_decay_at(0, 0.999, warmup=False) == 0.999


def test_ema_weight_left_on_the_initialisation_is_below_one_percent_after_500_steps():
    left = math.prod(ema_decay_at(t, 0.999) for t in range(500))
    assert left < 0.01, left
    assert left == pytest.approx(math.factorial(9) / math.prod(range(501, 510)), rel=1e-9)
    # without the warm-up the initialisation keeps 0.999**500 = 61%
    assert math.prod(ema_decay_at(t, 0.999, warmup=False) for t in range(500)) == pytest.approx(0.999**500)


def test_ema_of_a_model_that_jumps_then_stays_constant_equals_it(tmp_path):
    # the EMA copy is made at construction; then w jumps to a new value and lr = 0 holds it there
    model = Scalar(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    t = Trainer(model, (torch.zeros(4, 1, dtype=torch.float64),), TrainConfig(lr=0.0, batch_size=2, ema_decay=0.999,
                grad_clip=0, device="cpu"), tmp_path, progress=False)
    target = torch.tensor([3.0, 4.0, -1.0], dtype=torch.float64)
    with torch.no_grad():
        model.w.copy_(target)
    for s in range(500):
        t.train_step(s)
    # lr = 0 keeps w at the target; the EMA started at the old weights [1, -2, 0.5]
    torch.testing.assert_close(model.w.detach(), target)
    torch.testing.assert_close(t.ema_model.w, target, rtol=0, atol=1e-12)


def test_grad_clipping_caps_the_global_norm_and_logs_the_raw_norm(tmp_path):
    c = torch.full((4,), 100.0)  # gradient norm 200
    model = Scalar(c)
    t = Trainer(model, (torch.zeros(4, 1),), TrainConfig(batch_size=2, grad_clip=1.5, ema_decay=0, device="cpu"),
                tmp_path, progress=False)
    record = t.train_step(0)
    assert record["grad_norm"].item() == pytest.approx(200.0, rel=1e-6)
    assert model.w.grad.norm().item() == pytest.approx(1.5, rel=1e-5)


def test_fp16_on_cpu_is_rejected_auto_is_fp32_and_bf16_autocasts(tmp_path):
    data = (torch.zeros(4, 1),)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        Trainer(Scalar(torch.ones(2)), data, TrainConfig(amp="fp16", device="cpu", batch_size=2), tmp_path)
    with pytest.raises(ValueError, match="unknown precision 'bf32'"):
        TrainConfig(amp="bf32")
    for amp in ("auto", "off", "fp32"):  # "off": the spelling of old checkpoints' configs
        t = Trainer(Scalar(torch.ones(2)), data, TrainConfig(amp=amp, device="cpu", batch_size=2), tmp_path)
        assert t.amp_dtype is None and t.precision == "fp32"
        with t.autocast():
            assert not torch.is_autocast_enabled("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # emulated bf16 on CPUs without AVX512-BF16/AMX
        t = Trainer(Scalar(torch.ones(2)), data, TrainConfig(amp="bf16", device="cpu", batch_size=2), tmp_path)
    assert t.amp_dtype == torch.bfloat16 and not t.scaler.is_enabled()
    with t.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with pytest.raises(AssertionError, match="unknown schedule"):
        TrainConfig(schedule="linear")
    assert TrainConfig.from_dict(TrainConfig(betas=(0.5, 0.6)).to_dict()) == TrainConfig(betas=(0.5, 0.6))


def test_discriminator_trains_only_on_its_own_step(tmp_path):
    model = init_(ToyAutoencoder(adv_start=2), 0)
    disc = init_(model.build_discriminator(), 1)
    hook = AdversarialTraining(disc)
    t = Trainer(model, (toy_images(),), TrainConfig(batch_size=8, lr=1e-2, ema_decay=0, device="cpu"), tmp_path,
                hook=hook, progress=False)
    entry, exit_ = [], []
    real_step = hook.discriminator_step

    def spy(step, images, recon):  # snapshot the discriminator around its own step
        entry.append([p.detach().clone() for p in disc.parameters()])
        record = real_step(step, images, recon)
        exit_.append([p.detach().clone() for p in disc.parameters()])
        return record

    hook.discriminator_step = spy
    before = [p.detach().clone() for p in disc.parameters()]
    ae_before = model.encoder.weight.detach().clone()
    records = [t.train_step(s) for s in range(4)]

    def same(u, v):
        return all(torch.equal(a, b) for a, b in zip(u, v))

    # the main (generator) updates never move the discriminator, even once it is in the loss ...
    assert same(before, entry[0]) and all(same(exit_[s], entry[s + 1]) for s in range(3))
    # ... before adv_start its loss is a constant, so its own step is skipped ...
    assert same(entry[1], exit_[1]) and "disc/grad_norm" not in records[1]
    # ... from adv_start it moves on its own step, and the adversarial term reaches the generator
    assert not same(entry[2], exit_[2]) and not same(entry[3], exit_[3]) and records[3]["disc/grad_norm"] > 0
    assert records[3]["adv"].abs() > 0 and not torch.equal(ae_before, model.encoder.weight)


def test_killed_and_resumed_adversarial_run_equals_uninterrupted_run(tmp_path):
    # the hook's discriminator, its optimizer and scaler are checkpointed under their old names
    def run(out_dir, until=None, disc_seed=1):
        model = init_(ToyAutoencoder(adv_start=1), 0)
        hook = AdversarialTraining(init_(model.build_discriminator(), disc_seed))
        cfg = TrainConfig(steps=6, batch_size=8, lr=1e-2, ema_decay=0.9, checkpoint_every=3, device="cpu", seed=2)
        t = Trainer(model, (toy_images(),), cfg, out_dir, hook=hook, progress=False)
        t.fit(until=until)
        return t, hook

    full, full_hook = run(tmp_path / "full")
    run(tmp_path / "resumed", until=3)
    resumed, resumed_hook = run(tmp_path / "resumed", disc_seed=99)
    assert_same_state(full, resumed)
    for u, v in zip(full_hook.discriminator.state_dict().values(), resumed_hook.discriminator.state_dict().values()):
        assert torch.equal(u, v)
    a, b = full_hook.optimizer.state_dict()["state"], resumed_hook.optimizer.state_dict()["state"]
    assert a.keys() == b.keys() and all(torch.equal(a[i]["exp_avg"], b[i]["exp_avg"]) for i in a)
    files = {p.name for p in (tmp_path / "full" / "checkpoints" / "step_0000006").iterdir()}
    assert {"discriminator.safetensors", "disc_optimizer.safetensors", "disc_optimizer.json"} <= files
    state = json.loads((tmp_path / "full" / "checkpoints" / "step_0000006" / "trainer_state.json").read_text())
    assert "disc_scaler" in state


def test_forward_receives_the_batch_the_generator_and_nothing_else_without_a_hook(tmp_path):
    seen = []

    class Recorder(Scalar):
        def forward(self, *args, **kwargs):
            seen.append((len(args), sorted(kwargs)))
            return super().forward(args[0], generator=kwargs["generator"])

    t = Trainer(Recorder(torch.ones(2)), (torch.zeros(4, 1), torch.zeros(4)), TrainConfig(batch_size=2, device="cpu", ema_decay=0),
                tmp_path, progress=False)
    t.train_step(0)
    assert seen == [(2, ["generator"])]


def test_train_config_accepts_every_cli_device_and_a_missing_gpu_fails_when_resolved(monkeypatch):
    for device in ["auto", "cpu", "cuda", "cuda:0", "cuda:1", "cuda:12"]:
        assert TrainConfig(device=device).device == device
    for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "mps"]:
        with pytest.raises(ValueError, match=f"unknown device '{bad}', expected one of auto | cpu | cuda | cuda:N"):
            TrainConfig(device=bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"'cuda:1' asks for GPU 1, but this machine has no GPU .*pass --device cpu"):
        Trainer(Scalar(torch.ones(2)), (torch.zeros(4, 1),), TrainConfig(device="cuda:1", batch_size=2), "unused")
    with pytest.raises(ValueError, match="'cuda' asks for GPU 0, but this machine has no GPU"):
        resolve_device("cuda")
    # one GPU: cuda:0 (and cuda, outside torchrun) is it, cuda:1 is not there
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert resolve_device("cuda:0") == resolve_device("cuda") == resolve_device("auto") == torch.device("cuda", 0)
    with pytest.raises(ValueError, match=r"asks for GPU 1, but this machine has GPUs 0\.\.0; pass a GPU index below 1"):
        resolve_device("cuda:1")
    assert resolve_device(torch.device("cuda", 3)) == torch.device("cuda", 3)  # a torch.device is taken as is


def test_redirected_output_gets_a_plain_line_per_log_window_and_the_resume_line_always(tmp_path, capsys):
    t = Trainer(init_(NoisyMLP(), 0), regression_data(), config(steps=8, checkpoint_every=4, log_every=4), tmp_path,
                progress=True)
    t.fit(until=4)
    err = capsys.readouterr().err  # captured: not a terminal, so no bar
    assert f"{tmp_path.name}: step 4/4 loss " in err and "steps/s" in err
    quiet = Trainer(init_(NoisyMLP(), 0), regression_data(), config(steps=8, checkpoint_every=4, log_every=4), tmp_path,
                    progress=False)
    quiet.fit()
    err = capsys.readouterr().err
    assert "resuming from" in err and "at step 4" in err  # even without progress
    assert "step 8/8" not in err  # progress lines only with progress=True


def test_train_seconds_accumulate_across_resumes_in_the_checkpoint_state(tmp_path, monkeypatch):
    """trainer_state.json carries the wall seconds spent in fit() so far; a resumed run adds its own.
    The clock is faked (one second per reading) so the test never depends on the machine's speed."""
    import discrete_priors.training.trainer as trainer_module

    ticks = iter(range(10_000))
    monkeypatch.setattr(trainer_module, "time", type("Clock", (), {"perf_counter": staticmethod(lambda: float(next(ticks)))}))
    first = trainer(tmp_path / "run", steps=8, checkpoint_every=0)
    first.fit(until=4)
    at_4 = json.loads((tmp_path / "run" / "checkpoints" / "step_0000004" / "trainer_state.json").read_text())["train_seconds"]
    assert at_4 > 0 and first.train_seconds >= at_4
    second = trainer(tmp_path / "run", steps=8, checkpoint_every=0)
    second.fit()
    at_8 = json.loads((tmp_path / "run" / "checkpoints" / "step_0000008" / "trainer_state.json").read_text())["train_seconds"]
    assert second.train_seconds >= at_8 > at_4  # the first segment's seconds are carried, not restarted
