"""``python -m experiments gpu_check --out DIR``: one unattended check of a GPU machine, one JSON.

Within ``--budget-s`` (480 s), on synthetic data (the machine needs no dataset and no internet):

1. trains the paper autoencoder (k = 16 on 256x256 images, binary c = 32 -> 16x16x32 codes) and
   the Bernoulli, absorbing and autoregressive priors (the paper's 24 x 768 network, the paper
   preset's recipes) for ``--steps`` steps each through the library's own :class:`Trainer`, in
   ``--precision`` (bf16 autocast on CUDA);
2. samples a batch from each prior (its default step count) and decodes a few Bernoulli samples
   with the autoencoder;
3. under ``torchrun`` (1 process): one Trainer step, then one forward/backward through
   DistributedDataParallel (the gradient all-reduce over NCCL, gloo on CPU; the library itself
   runs a world of one without a process group);
4. counts host-device syncs: one training step and one sampling loop of each model under
   ``torch.cuda.set_sync_debug_mode("warn")`` (null on CPU, with the reason).

Per training part: steps/s, examples/s, tokens/s (latent positions x batch per second), network
FLOPs per step counted by ``torch.utils.flop_counter.FlopCounterMode`` on one real step (matmuls,
convolutions and attention, forward + backward; the priors also carry the closed form
3 x (2 x params x tokens + 4 x N^2 x dim x depth x batch) as a cross-check), achieved TFLOP/s,
% of the device's dense bf16 peak (:data:`PEAK_BF16_TFLOPS` by device name, or ``--peak-tflops``;
null when unknown) and peak memory. Each part stops early when its share of the budget is spent
and says so under ``cut``; an error in one part is recorded under its ``error`` and the others
still run. The JSON is rewritten after every part, so even a killed run leaves what it measured.
``--size tiny`` (``--tiny``) runs everything on a CPU in seconds (the test suite does).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import resource
import subprocess
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import torch

PEAK_BF16_TFLOPS = (  # dense bf16 tensor-core peak by a substring of torch.cuda.get_device_name(); first match wins
    ("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0),
    ("RTX 4090", 165.0), ("A10G", 70.0),
)
PRIORS = ("bernoulli", "absorbing", "autoregressive")
TRAIN_KEYS = ("ok", "error", "steps", "steps_planned", "seconds", "steps_per_s", "examples_per_s", "tokens_per_s",
              "flops_per_step", "flops_method", "tflops", "pct_of_peak", "peak_mem_gb", "params", "batch", "loss_first",
              "loss_last")
SAMPLE_KEYS = ("ok", "error", "batch", "steps", "seconds", "samples_per_s", "peak_mem_gb")
SYNC_KEYS = ("ok", "error", "train_step", "sampling_loop", "messages", "reason")
DDP_KEYS = ("ok", "error", "rc", "world_size", "ddp_wrapped", "backend", "grads_finite", "loss", "seconds")
TOP_KEYS = ("device", "torch", "cuda", "size", "precision", "budget_s", "elapsed_s", "peak_tflops_bf16", "peak_source",
            "peak_mem_method", "data", "train", "sample", "ddp", "syncs", "cut", "errors", "complete")
# share of the budget each part may use (the rest is slack for start-up and the JSON)
SHARES = {"train/autoencoder": 0.22, **{f"train/{p}": 0.11 for p in PRIORS}, **{f"sample/{p}": 0.04 for p in PRIORS},
          "ddp": 0.15, "syncs": 0.07}


@dataclass(frozen=True)
class Size:
    name: str
    ae_preset: str
    image_size: int
    bits: int
    net: str
    recipes: str  # the experiments preset whose prior_recipes are used
    ae_batch: int
    prior_batch: int
    sample_batch: int
    steps: int
    examples: int  # synthetic training examples held on the device


SIZES = {
    "paper": Size("paper", "paper", 256, 32, "paper", "paper", ae_batch=8, prior_batch=64, sample_batch=64, steps=300,
                  examples=512),
    "tiny": Size("tiny", "tiny", 16, 8, "tiny", "smoke", ae_batch=4, prior_batch=8, sample_batch=4, steps=4, examples=16),
}


def autocast(device: torch.device, precision: str):
    """:func:`discrete_priors.training.autocast_context` for ``precision`` (fp32: none), without
    its warning about emulated bf16 on a CPU: the tiny CPU run only checks that every part works."""
    from discrete_priors.training import autocast_context

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="bf16 on a CPU without", category=RuntimeWarning)
        return autocast_context(device, precision)


def trainer_amp(device: torch.device, precision: str) -> str:
    """TrainConfig.amp for ``precision``: the trainer autocasts on CUDA only (fp32 elsewhere)."""
    return {"fp32": "off", "bf16": "bf16", "fp16": "fp16"}[precision] if device.type == "cuda" else "off"


def peak_for_name(name: str) -> tuple[float | None, str | None]:
    """(dense bf16 TFLOP/s, the table key that matched) for a CUDA device name; (None, None) if unknown."""
    for key, value in PEAK_BF16_TFLOPS:
        if key in name:
            return value, f"table ({key})"
    return None, None


def peak_tflops(device: torch.device, override: float | None) -> tuple[float | None, str | None]:
    if override is not None:
        if not override > 0:
            raise ValueError(f"--peak-tflops must be > 0, got {override}")
        return float(override), "--peak-tflops"
    return peak_for_name(torch.cuda.get_device_name(device)) if device.type == "cuda" else (None, None)


class Clock:
    """The run's budget: ``part(name)`` is the deadline of a part (its share, never past the end)."""

    def __init__(self, budget_s: float):
        self.start, self.budget = time.perf_counter(), budget_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def deadline(self, part: str) -> float:
        return min(time.perf_counter() + SHARES[part] * self.budget, self.start + self.budget)

    def left(self) -> float:
        return self.start + self.budget - time.perf_counter()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # the process so far, KiB on Linux


def _finite(value):
    return value if value is None or math.isfinite(value) else None


def _failed(keys, error: BaseException) -> dict:
    text = f"{type(error).__name__}: {error}"
    return {k: None for k in keys} | {"ok": False, "error": text[:2000], "traceback": traceback.format_exc()[-4000:]}


def build_models(size: Size, device: torch.device):
    """(autoencoder factory, {prior: factory}, code spec): factories so a failed part leaves no model behind."""
    from discrete_priors import pipeline
    from discrete_priors.autoencoder import Autoencoder, autoencoder_preset
    from discrete_priors.latents.base import CodeSpec
    from discrete_priors.priors import build_prior
    from experiments.common import PRESETS

    grid = size.image_size // autoencoder_preset(size.ae_preset, latent={}, image_size=size.image_size,
                                                 image_channels=3)["downsample"]
    spec = CodeSpec("binary", (grid, grid), size.bits)
    recipes = PRESETS[size.recipes].prior_recipes

    def autoencoder():
        torch.manual_seed(0)
        return Autoencoder(**autoencoder_preset(size.ae_preset, latent=pipeline.latent_kwargs("binary", bits=size.bits),
                                                image_size=size.image_size, image_channels=3))

    def prior(name):
        torch.manual_seed(0)
        return build_prior(name, spec, **({"preset": size.net} | recipes[name].kwargs))

    return autoencoder, {name: (lambda name=name: prior(name)) for name in PRIORS}, spec


def synthetic_images(size: Size) -> torch.Tensor:
    """Smooth random images in [0, 1] (bilinear upsampling of 8x8 noise): (examples, 3, H, W)."""
    g = torch.Generator().manual_seed(0)
    low = torch.rand(size.examples, 3, 8, 8, generator=g)
    return torch.nn.functional.interpolate(low, size=(size.image_size,) * 2, mode="bilinear", align_corners=False)


def synthetic_codes(size: Size, spec) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return (torch.rand(size.examples, *spec.shape, generator=g) < 0.5).float()


def transformer_flops(prior, batch: int) -> float:
    """3 x forward FLOPs of one training step: 2 x params x tokens for the matmuls plus 4 N^2 d per
    layer and example for attention (scores and weighted sum)."""
    params = sum(p.numel() for p in prior.parameters())
    n = prior.spec.num_positions
    dim, depth = prior.config.get("dim"), prior.config.get("depth")
    if dim is None or depth is None:
        return float("nan")
    return 3.0 * (2.0 * params * batch * n + 4.0 * batch * n * n * dim * depth)


def train_part(name: str, model, data: torch.Tensor, *, batch: int, steps: int, tokens_per_example: int,
               device: torch.device, precision: str, out: Path, deadline: float, peak: float | None,
               hook=None) -> tuple[dict, object]:
    """Train ``model`` ``steps`` steps (fewer when ``deadline`` passes); returns (row, trainer)."""
    from discrete_priors.metrics.speed import count_flops
    from discrete_priors.training import TrainConfig, Trainer

    config = TrainConfig(steps=steps, batch_size=batch, lr=1e-4, warmup_steps=0, ema_decay=0.999, amp=trainer_amp(device, precision),
                         checkpoint_every=0, log_every=0, seed=0, device=str(device))
    _reset_peak(device)
    trainer = Trainer(model, (data,), config, out / name, hook=hook, progress=False)
    trainer.train_model.train()
    first = {}

    def step():
        first.update(trainer.train_step(0))

    # the first step, counted (also the warm-up); on a CPU attention runs the plain path so it is counted
    flops = count_flops(step, model if device.type == "cpu" else None)
    loss_first = float(first["loss"])
    warmup = min(2, max(steps - 2, 0))
    for step in range(1, 1 + warmup):
        trainer.train_step(step)
    _sync(device)
    start, done, record = time.perf_counter(), 1 + warmup, first
    while done < steps and time.perf_counter() < deadline:
        record = trainer.train_step(done)
        done += 1
        if done % 10 == 0:
            _sync(device)  # the deadline is checked against finished work, not queued kernels
    _sync(device)
    seconds = time.perf_counter() - start
    timed = done - 1 - warmup
    rate = timed / seconds if timed > 0 and seconds > 0 else None
    tflops = flops * rate / 1e12 if rate else None
    row = {"ok": True, "error": None, "steps": done, "steps_planned": steps, "seconds": seconds,
           "steps_per_s": rate, "examples_per_s": rate * batch if rate else None,
           "tokens_per_s": rate * batch * tokens_per_example if rate else None,
           "flops_per_step": flops, "flops_method": "FlopCounterMode (one real training step, fwd + bwd)",
           "tflops": tflops, "pct_of_peak": 100 * tflops / peak if tflops and peak else None,
           "peak_mem_gb": _peak_gb(device), "params": sum(p.numel() for p in model.parameters()), "batch": batch,
           "loss_first": loss_first, "loss_last": float(record["loss"])}
    return {k: _finite(v) if isinstance(v, float) else v for k, v in row.items()}, trainer


def sample_part(prior, *, batch: int, device: torch.device, precision: str, deadline: float) -> dict:
    generator = torch.Generator(device).manual_seed(0)
    prior.eval()
    _reset_peak(device)
    with torch.no_grad(), autocast(device, precision):
        start = time.perf_counter()
        prior.sample(min(2, batch), generator=generator)  # warm-up at a small batch
        _sync(device)
        warm = time.perf_counter() - start
        # a small batch is latency-bound on a GPU, so the full batch takes about as long; refuse
        # only when not even that fits in what is left of this part's share
        if time.perf_counter() + warm > deadline:
            raise TimeoutError(f"the warm-up at batch 2 took {warm:.1f} s: a batch of {batch} would pass this part's budget")
        start = time.perf_counter()
        codes = prior.sample(batch, generator=generator)
        _sync(device)
        seconds = time.perf_counter() - start
    return {"ok": True, "error": None, "batch": batch, "steps": prior.network_evals_per_sample(None),
            "seconds": seconds, "samples_per_s": batch / seconds, "peak_mem_gb": _peak_gb(device)}, codes


def count_syncs(device: torch.device, fn) -> tuple[int, list[str]]:
    """Warnings raised by ``fn()`` under ``set_sync_debug_mode("warn")``: (count, distinct messages)."""
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fn()
            _sync(device)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    found = [str(w.message) for w in caught if "synchroniz" in str(w.message).lower()]
    return len(found), sorted(set(m.splitlines()[0][:300] for m in found))


def ddp_part(size: Size, out: Path, *, precision: str, timeout: float) -> dict:
    """One training step of the Bernoulli prior under ``torchrun --nproc_per_node=1``."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                           "-m", "experiments.gpu_check", "--ddp-worker", str(out / "ddp"),
                           "--size", size.name, "--prior-batch", str(size.prior_batch), "--precision", precision],
                          env=env, cwd=root, capture_output=True, text=True, timeout=max(timeout, 10))
    row = {k: None for k in DDP_KEYS} | {"ok": False, "rc": proc.returncode, "seconds": time.perf_counter() - start}
    result = out / "ddp" / "worker.json"
    if proc.returncode == 0 and result.is_file():
        from discrete_priors.io import read_json

        row |= read_json(result)
        row["ok"] = bool(row["grads_finite"])
        if not row["ok"]:
            row["error"] = "the DDP backward gave non-finite gradients"
    else:
        row["error"] = f"torchrun exited with {proc.returncode}: " + (proc.stdout[-1500:] + proc.stderr[-2500:])
    return row


def ddp_worker(out: Path, size: Size, precision: str) -> int:
    """The torchrun side of :func:`ddp_part`: one step, then worker.json with what it saw."""
    from torch.nn.parallel import DistributedDataParallel

    from discrete_priors.io import write_json
    from discrete_priors.training import TrainConfig, Trainer, cleanup_distributed

    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    _, priors, spec = build_models(size, device)
    config = TrainConfig(steps=1, batch_size=size.prior_batch, lr=1e-4, ema_decay=0.0, amp=trainer_amp(device, precision),
                         checkpoint_every=0, log_every=1, seed=0, device="cuda" if device.type == "cuda" else "cpu")
    codes = synthetic_codes(size, spec)
    trainer = Trainer(priors["bernoulli"](), (codes,), config, out, progress=False)
    result = trainer.fit()  # the library's own step under torchrun
    # The library treats a world of one as no world (no process group, no DDP wrapper); bring the
    # group up from torchrun's env and wrap the model here, so the NCCL gradient all-reduce runs.
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", init_method="env://")
    model = DistributedDataParallel(trainer.model, device_ids=[device.index] if device.type == "cuda" else None)
    with autocast(device, precision) if device.type == "cuda" else contextlib.nullcontext():
        loss = model(codes[:size.prior_batch].to(device), generator=torch.Generator(device).manual_seed(1)).loss
    loss.backward()
    grads_finite = all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
    if trainer.dist.rank == 0:
        write_json(out / "worker.json", {"world_size": trainer.dist.world_size, "loss": result.terms.get("loss"),
                                         "ddp_wrapped": True, "backend": torch.distributed.get_backend(),
                                         "grads_finite": grads_finite})
    cleanup_distributed()
    return 0


def run(out: Path, *, size: Size, precision: str = "bf16", budget_s: float = 480.0, peak_override: float | None = None,
        device: str = "auto") -> dict:
    """Every part, each isolated from the others' errors; returns (and writes) ``out/gpu_check.json``."""
    from discrete_priors.io import write_json
    from discrete_priors.training.distributed import resolve_device

    clock = Clock(budget_s)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(device)
    peak, source = peak_tflops(device, peak_override)
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads",
              "torch": torch.__version__, "cuda": torch.version.cuda, "size": size.__dict__, "precision": precision,
              "budget_s": budget_s, "elapsed_s": None, "peak_tflops_bf16": peak, "peak_source": source,
              "peak_mem_method": "torch.cuda.max_memory_allocated per part" if device.type == "cuda"
              else "process peak RSS so far (getrusage), not per part",
              "data": "synthetic (smooth random images, Bernoulli(0.5) codes): speed does not depend on the data",
              "train": {}, "sample": {}, "ddp": None, "syncs": None, "cut": [], "errors": {}, "complete": False}

    def save():
        report["elapsed_s"] = clock.elapsed()
        write_json(out / "gpu_check.json", report)

    def part(section: str, name: str, keys, fn):
        key = f"{section}/{name}" if name else section
        if clock.left() <= 5:
            report["cut"].append(f"{key}: skipped, the {budget_s:.0f} s budget was spent")
            row = {k: None for k in keys} | {"ok": False, "error": "skipped: budget spent"}
        else:
            try:
                row = fn(clock.deadline(key))
            except Exception as error:  # noqa: BLE001 - recorded, and the next part still runs
                row = _failed(keys, error)
            if not row["ok"]:
                report["errors"][key] = row["error"]
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if name:
            report[section][name] = row
        else:
            report[section] = row
        save()
        return row

    try:
        make_ae, make_priors, spec = build_models(size, device)
    except Exception as error:  # noqa: BLE001
        report["errors"]["build"] = f"{type(error).__name__}: {error}"
        save()
        return report
    models = {}

    def train(name, factory, data, batch, tokens):
        def fn(deadline):
            model = factory()
            hook = model.training_hook() if name == "autoencoder" else None
            row, trainer = train_part(name, model, data, batch=batch, steps=size.steps, tokens_per_example=tokens,
                                      device=device, precision=precision, out=out, deadline=deadline, peak=peak, hook=hook)
            if name != "autoencoder":
                row["flops_per_step_analytic"] = _finite(transformer_flops(trainer.model, batch))
            if row["steps"] < row["steps_planned"]:
                report["cut"].append(f"train/{name}: stopped at step {row['steps']} of {row['steps_planned']} (its budget share)")
            models[name] = trainer.model
            return row
        return fn

    grid_tokens = spec.num_positions
    part("train", "autoencoder", TRAIN_KEYS, train("autoencoder", make_ae, synthetic_images(size), size.ae_batch, grid_tokens))
    codes = synthetic_codes(size, spec)
    samples = {}
    for name in PRIORS:
        part("train", name, TRAIN_KEYS, train(name, make_priors[name], codes, size.prior_batch, grid_tokens))
    for name in PRIORS:
        def sample(deadline, name=name):
            if name not in models:
                raise RuntimeError(f"no trained {name} prior (its training part failed or was skipped)")
            row, samples[name] = sample_part(models[name], batch=size.sample_batch, device=device, precision=precision,
                                             deadline=deadline)
            if name == "bernoulli" and "autoencoder" in models:
                with torch.no_grad(), autocast(device, precision):
                    images = models["autoencoder"].eval().decode(samples[name][:4])
                row["decoded_shape"] = list(images.shape)
            return row
        part("sample", name, SAMPLE_KEYS, sample)
    part("ddp", "", DDP_KEYS, lambda deadline: ddp_part(size, out, precision=precision,
                                                         timeout=deadline - time.perf_counter()))

    def syncs(deadline):
        if device.type != "cuda":
            return {k: None for k in SYNC_KEYS} | {"ok": True, "reason": "no CUDA device: host-device syncs do not exist on CPU"}
        row = {"ok": True, "error": None, "train_step": {}, "sampling_loop": {}, "messages": {}, "reason": None}
        from discrete_priors.training import TrainConfig, Trainer

        for name, model in models.items():
            if time.perf_counter() > deadline:
                report["cut"].append(f"syncs: {name} not checked (budget share spent)")
                continue
            data = synthetic_images(size) if name == "autoencoder" else codes
            config = TrainConfig(steps=2, batch_size=size.ae_batch if name == "autoencoder" else size.prior_batch,
                                 lr=1e-4, amp=trainer_amp(device, precision), checkpoint_every=0, log_every=0,
                                 device=str(device))
            trainer = Trainer(model.train(), (data,), config, out / f"syncs-{name}", progress=False,
                              hook=model.training_hook() if name == "autoencoder" else None)
            trainer.train_step(0)  # lazy initialisation is not a hot-loop sync
            row["train_step"][name], train_msgs = count_syncs(device, lambda: trainer.train_step(1))
            msgs = list(train_msgs)
            if name != "autoencoder":
                model.eval()
                gen = torch.Generator(device).manual_seed(0)

                def loop():
                    with torch.no_grad(), autocast(device, precision):
                        model.sample(2, generator=gen)
                row["sampling_loop"][name], sample_msgs = count_syncs(device, loop)
                msgs += sample_msgs
            row["messages"][name] = sorted(set(msgs))[:10]
        return row
    part("syncs", "", SYNC_KEYS, syncs)
    report["complete"] = not report["errors"] and not report["cut"]
    save()
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="folder for gpu_check.json (and the parts' scratch runs)")
    parser.add_argument("--size", choices=sorted(SIZES), default="paper", help="paper (default) or tiny (CPU, seconds)")
    parser.add_argument("--tiny", action="store_true", help="same as --size tiny")
    parser.add_argument("--precision", choices=("bf16", "fp16", "fp32"), default="bf16")
    parser.add_argument("--budget-s", type=float, default=480.0, help="wall-time budget of the whole check (8 min)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per model (size default)")
    parser.add_argument("--ae-batch", type=int, default=None)
    parser.add_argument("--prior-batch", type=int, default=None)
    parser.add_argument("--sample-batch", type=int, default=None)
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak, overriding the table")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--ddp-worker", default=None, help=argparse.SUPPRESS)  # the torchrun side of the DDP part
    args = parser.parse_args(argv)
    size = SIZES["tiny" if args.tiny else args.size]
    overrides = {"steps": args.steps, "ae_batch": args.ae_batch, "prior_batch": args.prior_batch,
                 "sample_batch": args.sample_batch}
    for key, value in overrides.items():
        if value is not None and value < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1, got {value}")
    size = replace(size, **{k: v for k, v in overrides.items() if v is not None})
    if args.budget_s <= 0:
        parser.error(f"--budget-s must be > 0, got {args.budget_s}")
    if args.peak_tflops is not None and not args.peak_tflops > 0:
        parser.error(f"--peak-tflops must be > 0, got {args.peak_tflops}")
    if args.ddp_worker:
        return ddp_worker(Path(args.ddp_worker), size, args.precision)
    if args.out is None:
        parser.error("--out is required (the folder gpu_check.json is written to)")
    report = run(Path(args.out), size=size, precision=args.precision, budget_s=args.budget_s,
                 peak_override=args.peak_tflops, device=args.device)
    print(f"{Path(args.out) / 'gpu_check.json'}: complete={report['complete']}, errors={sorted(report['errors'])}, "
          f"cut={len(report['cut'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
