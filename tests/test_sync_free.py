"""No host-device sync in the training step or the sampling loop of any prior.

On CUDA (skipped elsewhere) each prior's ``loss`` + backward and ``sample`` run under
``torch.cuda.set_sync_debug_mode("error")``, which raises on any synchronising call; the one
sync each public entry may make (its input check) is done before that mode is switched on by
calling the checks themselves. On CPU: schedule lookups and jump grids stay on the device of
the steps — checked with ``meta`` tensors, which have no values to read, so any read-back
in a lookup would raise — and the absorbing sampler's lagged loop exit gives the same codes as
running every step.
"""

import pytest
import torch

from discrete_priors.latents.base import CodeSpec
from discrete_priors.priors import bernoulli_math as bm
from discrete_priors.priors import build_prior, sampling
from discrete_priors.priors.bernoulli import sampling_grid
from discrete_priors.priors.schedules import SCHEDULES, make_schedule

BITS = CodeSpec(kind="binary", grid=(3, 3), channels=5)
TOKENS = CodeSpec(kind="categorical", grid=(3, 3), channels=1, vocab_size=7)
FLOATS = CodeSpec(kind="continuous", grid=(3, 3), channels=5)


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_lookups_and_jumps_stay_on_the_steps_device_without_reading_them(name):
    schedule = make_schedule(name, 16)
    t = torch.tensor([1, 5, 16], device="meta")
    for lookup in (schedule.k, schedule.b, schedule.beta, schedule.flip_prob):
        out = lookup(t, check=False)
        assert out.device.type == "meta" and out.dtype == torch.float64 and out.shape == (3,)
    assert schedule.skip(t, t - 1, check=False).device.type == "meta"
    jump = bm.make_jump(schedule, t, t - 1, device="meta", check=False)
    assert all(c.device.type == "meta" and c.shape == (3, 1, 1) and c.dtype == torch.float32 for c in jump)
    with pytest.raises(NotImplementedError):  # what check=True would do: read the steps back
        schedule.k(t)
    # a CPU lookup returns the table's own values, bit for bit
    cpu = torch.tensor([0, 3, 16])
    assert torch.equal(schedule.k(cpu, check=False), schedule.k()[cpu])
    assert torch.equal(schedule.b(cpu, check=False), (1 - schedule.k()[cpu]) / 2)


def test_schedule_keeps_its_validation_errors_at_the_public_lookups():
    schedule = make_schedule("linear", 4)
    with pytest.raises(ValueError, match=r"0\.\.4, got \[-1, 5\]"):
        schedule.k(torch.tensor([-1, 5]))
    with pytest.raises(ValueError, match="integers"):
        schedule.k(torch.tensor([0.5]), check=False)  # the dtype check is free, so always on


@pytest.mark.parametrize("steps", [1, 4, 16])
def test_jump_grid_of_one_sample_call_equals_each_step_jump_exactly(steps):
    schedule = make_schedule("cosine", 16)
    grid = sampling_grid(16, steps)
    jumps = bm.make_jump(schedule, grid[:-1], grid[1:], ndim=1, check=False)
    for i, (t, s) in enumerate(zip(grid[:-1].tolist(), grid[1:].tolist())):
        one = bm.make_jump(schedule, t, s)
        assert all(torch.equal(a, b) for a, b in zip(jumps.at(i), one))


@pytest.mark.parametrize("spec,order,steps", [(BITS, "random", 16), (TOKENS, "random", 16), (TOKENS, "confidence", 8)])
def test_absorbing_lagged_exit_gives_the_codes_of_running_every_step(monkeypatch, spec, order, steps):
    prior = build_prior("absorbing", spec, preset="tiny", timesteps=16, order=order).eval()
    early = prior.sample(6, steps=steps, generator=torch.Generator().manual_seed(3))
    monkeypatch.setattr(sampling.LaggedFlag, "__call__", lambda self, flag: False)  # never stop early
    full = prior.sample(6, steps=steps, generator=torch.Generator().manual_seed(3))
    assert torch.equal(early, full)


def test_lagged_flag_reads_directly_off_cuda():
    flag = sampling.LaggedFlag("cpu")
    assert flag(torch.tensor(True)) is True and flag(torch.tensor(False)) is False


CASES = [("bernoulli", BITS, dict(timesteps=16)), ("bernoulli", BITS, dict(timesteps=16, num_classes=3, cond="adaln")),
         ("absorbing", BITS, dict(timesteps=16)), ("absorbing", TOKENS, dict(timesteps=16, num_classes=3, order="confidence")),
         ("autoregressive", BITS, dict()), ("autoregressive", TOKENS, dict(num_classes=3)),
         ("gaussian", FLOATS, dict(timesteps=16)), ("gaussian", FLOATS, dict(timesteps=16, num_classes=3, sampler="ancestral"))]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (sync debug mode)")
@pytest.mark.parametrize("name,spec,kwargs", CASES)
def test_loss_backward_and_sample_make_no_host_device_sync_on_cuda(name, spec, kwargs):
    device = torch.device("cuda")
    prior = build_prior(name, spec, preset="tiny", **kwargs).to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    codes = prior.sample(8, generator=gen)  # warm-up (allocations, kernels)
    labels = torch.arange(8, device=device) % 3 if kwargs.get("num_classes") else None
    prior.train()
    prior.loss(codes, labels, generator=gen).loss.backward()
    checks = (lambda: prior.check_codes(codes), lambda: prior.check_labels(labels, 8))
    try:
        for check in checks:  # their one sync each is allowed: patched out below, run here
            check()
        torch.cuda.set_sync_debug_mode("error")
        prior.check_codes = lambda c, **_: c
        prior.check_labels = lambda lab, batch: lab
        out = prior.loss(codes, labels, generator=gen, log_terms=False)
        out.loss.backward()
        prior.eval()
        prior.sample(8, labels=labels, guidance=1.0 if labels is not None else 0.0, generator=gen)
    finally:
        torch.cuda.set_sync_debug_mode("default")
        del prior.check_codes, prior.check_labels
