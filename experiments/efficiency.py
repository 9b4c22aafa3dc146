"""Table 6 of the paper: sampling efficiency of each prior at its usual step count.

The three priors of the samplers runner (same autoencoder, latent cache and trained priors, reused
by variant name; same network-size preset) are timed at the step count of their recipe —
Bernoulli diffusion its ``default_steps``, absorbing diffusion its T, autoregressive one step per
position — at several batch sizes: :data:`BATCH_SIZES` up to the preset's ``num_samples`` (the
smoke preset stops at 64). Rows: variant ``"<prior>/bs=<B>"`` with samples_per_s (median of
three timed batches after one warm-up, :func:`discrete_priors.metrics.measure_throughput`),
nfe_per_sample (network evaluations per sample; an upper bound for absorbing, which stops once
every position is revealed), batch_size and params. No feature extractor is needed, so this runner
also runs at the paper preset without Inception weights. The continuous-latent reference
``gaussian/bs=<B>`` is the samplers runner's Gaussian diffusion on the plain continuous latents at
its recipe's ``default_steps`` (DDIM), recorded under the continuous baseline's config hash.

The scaling study (:func:`run_scaling`, ``python -m experiments efficiency-scaling``) times every
prior with untrained weights over latent grids, bits per position and network sizes
(``preset.scaling``); see its docstring and :data:`MEMORY_METHOD`. The Gaussian diffusion
(continuous baseline) is timed on continuous codes of the same shape — c latent dimensions per
position instead of c bits (N·c·16 bits in float16) — at its recipe's default steps, its cells
under :meth:`Preset.continuous_scaling_hash`.

Throughput depends on the machine and on what else runs on it: the ``machine`` column of each row
says where it was measured; compare rows measured in one run.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import statistics
import time
from pathlib import Path
from typing import NamedTuple

import torch

from discrete_priors import evaluate, pipeline
from discrete_priors.latents.base import CodeSpec
from discrete_priors.priors import PRIORS as REGISTRY, build_prior
from discrete_priors.results import append_rows, has_cell, make_rows
from discrete_priors.training import autocast_context
from discrete_priors.training.distributed import resolve_device
from experiments.common import Preset, ScalingNet, comparison_prior, done, record

PRIORS = ("bernoulli", "absorbing", "autoregressive", "gaussian")
BATCH_SIZES = (1, 16, 64, 256)


def batch_sizes(preset: Preset) -> list[int]:
    """:data:`BATCH_SIZES` no larger than the preset's sample count (at least batch size 1)."""
    return [b for b in BATCH_SIZES if b <= max(preset.num_samples, 1)]


def run(preset: Preset, out: Path, *, priors=None, data_dir=None, progress: bool | None = None,
        repeats: int = 3) -> None:
    """priors: which to time (default: each of :data:`PRIORS` that the preset has a recipe for;
    gaussian: the continuous baseline's)."""
    out = Path(out)
    priors = [p for p in PRIORS if p in preset.prior_recipes or p == "gaussian"] if priors is None else list(priors)
    priors = preset.priors_with(priors)
    for seed in preset.seeds[:1]:  # the speed of a network does not depend on its seed's weights
        todo = {name: [b for b in batch_sizes(preset)
                       if not done(out, preset=preset, experiment="efficiency", variant=f"{name}/bs={b}", seed=seed)]
                for name in priors}
        if not any(todo.values()):
            continue
        for name in priors:
            if not todo[name]:
                continue
            latents, prior_dir = comparison_prior(preset, out, prior=name, seed=seed, data_dir=data_dir)
            prior = pipeline.load_prior(prior_dir)
            params = evaluate.count_parameters(prior)
            for batch in todo[name]:
                # steps=None: each prior's own default (bernoulli default_steps, absorbing T, AR N)
                values = evaluate.sampling_speed(prior, batch_size=batch, steps=None, seed=seed, repeats=repeats)
                record(out, experiment="efficiency", variant=f"{name}/bs={batch}", seed=seed,
                       values=values | {"params": params}, extractor="", num_samples=batch * repeats, preset=preset)


# -- sampling-cost scaling study (paper Table 6 at its own scale) -------------------------------------
SCALING_EXPERIMENT = "efficiency-scaling"
MEMORY_METHOD = {"cpu": "peak RSS of the cell's own fresh process during its sample calls (VmHWM after resetting "
                        "it through /proc/self/clear_refs; getrusage ru_maxrss where that is refused) minus its RSS "
                        "before the first call; includes the code pages and allocator pools touched on first use "
                        "(about 20 MiB)",
                 "cuda": "torch.cuda.max_memory_allocated minus the memory allocated before the first sample call"}


class ScalingCell(NamedTuple):
    """One row of the scaling study: ``prior`` sampled with ``steps`` (None: its default) on
    codes of ``grid`` (h, w) x ``bits``, at network size ``net``."""

    prior: str
    steps: int | None
    grid: tuple[int, int]
    bits: int
    net: ScalingNet

    @property
    def variant(self) -> str:
        steps = "" if self.steps is None else f"/S={self.steps}"
        return f"{self.prior}{steps}/N={self.grid[0] * self.grid[1]}/c={self.bits}/net={self.net.size}"


def scaling_cells(preset: Preset) -> list[ScalingCell]:
    """Every cell of ``preset.scaling``: each prior of the preset's recipes (so a prior added to
    the recipes is timed too) and the continuous baseline's ``gaussian``, at its listed step
    counts, on every grid, bit width (gaussian: latent dimensions) and net size."""
    grid = preset.scaling
    priors = preset.priors_with((*preset.prior_recipes, "gaussian"))
    unknown = set(grid.steps) - set(priors)
    if unknown:
        raise ValueError(f"scaling steps name priors without a recipe in preset {preset.name!r}: {sorted(unknown)}; "
                         f"expected some of {sorted(priors)}")
    return [ScalingCell(prior, steps, tuple(hw), bits, net)
            for net in grid.nets for hw in grid.grids for bits in grid.bits
            for prior in priors for steps in grid.steps.get(prior, (None,))]


def scaling_hash(preset: Preset, prior: str) -> str:
    """The config hash a scaling cell of ``prior`` is recorded under."""
    return preset.continuous_scaling_hash() if prior == "gaussian" else preset.scaling_hash()


def _resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak_rss() -> bool:
    """Set this process's RSS high-water mark to its current RSS (Linux >= 4.0); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes(reset: bool) -> int:
    if reset:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def measure_cell(cell: ScalingCell, *, recipe_kwargs: dict, device: str, precision: str = "fp32", seed: int = 0,
                 threads: int | None = None, min_seconds: float = 1.0, max_repeats: int = 3) -> dict:
    """Time one cell with untrained weights; runs in a fresh process (see :func:`run_scaling`) so
    the process's peak RSS is this cell's. Returns the row's metrics.

    A sampler needing more than ``cell.net.timed_passes`` network passes whose ``steps`` can be
    lowered (diffusion; not the autoregressive prior, one pass per position) is timed at
    ``steps=k`` and its seconds per batch multiplied by full / timed passes (``extrapolated`` = 1)."""
    if threads is not None:
        torch.set_num_threads(threads)
    device = torch.device(device)
    torch.manual_seed(seed)
    spec = CodeSpec("continuous" if cell.prior == "gaussian" else "binary", cell.grid, cell.bits)
    prior = build_prior(cell.prior, spec, **({"preset": cell.net.size} | recipe_kwargs)).to(device).eval()
    full = prior.network_evals_per_sample(cell.steps)
    steps, timed = cell.steps, full
    k = cell.net.timed_passes
    if k is not None and full > k:
        try:
            if prior.network_evals_per_sample(k) == k:
                steps, timed = k, k
        except ValueError:  # this prior's step count is fixed (one pass per position)
            pass
    generator = torch.Generator(device).manual_seed(seed)

    def draw() -> float:
        start = time.perf_counter()
        with torch.no_grad(), autocast_context(device, precision):  # the network only; the samplers' maths stays fp32
            prior.sample(cell.net.batch, steps=steps, generator=generator)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base, reset = _resident_bytes(), _reset_peak_rss()
    draw()  # warm-up: allocator, lazy initialisation
    times = [draw()]
    while len(times) < max_repeats and sum(times) < min_seconds:
        times.append(draw())
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        peak = _peak_rss_bytes(reset) - base
    seconds = statistics.median(times) * full / timed
    return {"samples_per_s": cell.net.batch / seconds, "seconds_per_batch": seconds, "nfe_per_sample": full,
            "timed_passes": timed, "extrapolated": float(timed < full), "peak_mem_mb": max(peak, 0) / 2**20,
            "batch_size": cell.net.batch, "params": evaluate.count_parameters(prior), "repeats": len(times)}


def run_scaling(preset: Preset, out: Path, *, data_dir=None, device: str = "auto", isolate: bool = True) -> None:
    """Sampling cost vs latent positions N and bits c at each network size of ``preset.scaling``;
    rows ``efficiency-scaling / <prior>[/S=<steps>]/N=<N>/c=<c>/net=<size>`` under
    :meth:`Preset.scaling_hash` (gaussian: :meth:`Preset.continuous_scaling_hash`), appended one
    cell at a time (a rerun skips recorded cells).
    Needs no data and trains nothing. ``isolate``: each cell in its own fresh process (forked
    from a clean server process), which is what makes the CPU peak memory per cell."""
    out = Path(out)
    device = str(resolve_device(device))
    seed = preset.seeds[0]
    cells = [cell for cell in scaling_cells(preset)
             if not has_cell(out / "results.csv", experiment=SCALING_EXPERIMENT, variant=cell.variant, seed=seed,
                             config_hash=scaling_hash(preset, cell.prior))]
    if not cells:
        return
    context = multiprocessing.get_context("forkserver")
    # the server imports each prior's module once; every cell is a fork of it
    context.set_forkserver_preload(["torch", "experiments.efficiency",
                                    *sorted({REGISTRY[name].__module__ for name in (*preset.prior_recipes, "gaussian")})])
    for cell in cells:
        options = dict(recipe_kwargs=preset.recipe(cell.prior).kwargs, device=device,
                       precision=preset.scaling.precision, seed=seed, threads=torch.get_num_threads())
        if isolate:
            with context.Pool(1) as pool:
                values = pool.apply(measure_cell, (cell,), options)
        else:
            values = measure_cell(cell, **options)
        append_rows(out / "results.csv", make_rows(
            experiment=SCALING_EXPERIMENT, variant=cell.variant, seed=seed, metrics=values, extractor="",
            num_samples=int(values["batch_size"] * values["repeats"]), config_hash=scaling_hash(preset, cell.prior)))
        print(f"{SCALING_EXPERIMENT} {cell.variant}: {values['samples_per_s']:.3g} samples/s, "
              f"{values['peak_mem_mb']:.0f} MiB" + (f" (extrapolated from {values['timed_passes']} steps)"
                                                    if values["extrapolated"] else ""), flush=True)
