"""Sampling speed: samples per second and network evaluations per sample (paper Table 6)."""

from __future__ import annotations

import statistics
import time
from typing import Callable, NamedTuple

import torch


class Throughput(NamedTuple):
    """samples_per_second: batch_size / median seconds per batch. seconds_per_batch: median
    over repeats. network_evals_per_sample: as reported by the prior (None if not given)."""

    samples_per_second: float
    seconds_per_batch: float
    batch_size: int
    repeats: int
    network_evals_per_sample: int | None
    device: str


def measure_throughput(
    sample_fn: Callable[[int], object],
    *,
    batch_size: int,
    warmup: int = 1,
    repeats: int = 3,
    device: str | torch.device = "cpu",
    network_evals_per_sample: int | None = None,
) -> Throughput:
    """Time ``sample_fn(batch_size)`` (e.g. ``lambda n: prior.sample(n, steps=s, generator=g)``).

    ``warmup`` untimed calls first (allocator, cuDNN autotuning, lazy init), then ``repeats``
    timed calls; the median is robust to one slow outlier. On CUDA each timed call is bracketed by
    ``torch.cuda.synchronize`` because kernels run asynchronously and the call would otherwise
    return before the work is done. Pass ``prior.network_evals_per_sample(steps)`` through
    ``network_evals_per_sample`` to keep it in the same row."""
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"expected batch_size ≥ 1, repeats ≥ 1, warmup ≥ 0; got {batch_size}, {repeats}, {warmup}")
    device = torch.device(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with torch.no_grad():
        for _ in range(warmup):
            sample_fn(batch_size)
        sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            sample_fn(batch_size)
            sync()
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return Throughput(
        samples_per_second=batch_size / median if median > 0 else float("inf"),
        seconds_per_batch=median,
        batch_size=batch_size,
        repeats=repeats,
        network_evals_per_sample=network_evals_per_sample,
        device=str(device),
    )


def count_flops(fn: Callable[[], object], module: torch.nn.Module | None = None) -> float:
    """FLOPs of one call of ``fn`` (e.g. a training step's forward and backward) counted by
    ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions, attention). The counter
    sees CUDA's fused attention kernels but not PyTorch's CPU SDPA kernel, so on a CPU the call
    runs ``module``'s attention on the plain path (equal within 1e-6) and attention is counted."""
    import contextlib

    from torch.utils.flop_counter import FlopCounterMode

    counting = contextlib.nullcontext()
    if module is not None:
        params = list(module.parameters())
        if not params or params[0].device.type == "cpu":
            from discrete_priors.nets.denoiser import plain_attention

            counting = plain_attention(module)
    counter = FlopCounterMode(display=False)
    with counting, counter:
        fn()
    return float(counter.get_total_flops())
