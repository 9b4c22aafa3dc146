"""How much the diffusion arithmetic adds to each sampling step of the Bernoulli prior.

Compares, at the same batch, one bare denoiser forward pass with one full sampling step
(forward + reverse posterior + Bernoulli draw), and also times the arithmetic alone on fixed
logits. Medians over interleaved repeats (robust on a shared machine)::

    OMP_NUM_THREADS=1 python -m experiments.bench_bernoulli_overhead --batch 64 --preset cpu
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from discrete_priors.latents.base import CodeSpec
from discrete_priors.priors import bernoulli_math as bm
from discrete_priors.priors.bernoulli import BernoulliDiffusion


def _time(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


@torch.no_grad()
def measure_sampling_overhead(*, preset: str = "cpu", grid=(4, 4), channels: int = 32, batch: int = 64, timesteps: int = 256,
                              steps: int = 16, repeats: int = 7, reverse: str = "mixture", device: str = "cpu", seed: int = 0) -> dict:
    """Milliseconds per bare forward, per sampling step (sample(steps) / steps) and for the
    arithmetic alone; ``overhead`` = step / forward − 1 (the target is < 0.10)."""
    device = torch.device(device)
    torch.manual_seed(seed)
    spec = CodeSpec(kind="binary", grid=grid, channels=channels)
    prior = BernoulliDiffusion(spec, preset=preset, timesteps=timesteps, reverse=reverse, default_steps=steps).to(device).eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    z = (torch.rand(batch, *spec.shape, generator=gen, device=device) < 0.5).float()
    t = torch.full((batch,), timesteps // 2, device=device)
    logits = prior.net_logits(z, t, None)
    jump = bm.make_jump(prior.schedule, timesteps // 2, timesteps // 2 - timesteps // steps, device=device)

    def arithmetic():
        rev = bm.reverse_logits(z, logits, jump, parameterization=prior.parameterization, form=reverse)
        bm.bernoulli(torch.sigmoid(rev), generator=gen)

    runs = dict(
        forward=lambda: prior.net_logits(z, t, None),
        step=lambda: prior.sample(batch, steps=steps, generator=gen),
        arithmetic=arithmetic,
    )
    for fn in runs.values():  # warm-up
        fn()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            times[name].append(_time(fn, device))
    ms = {name: 1000 * statistics.median(v) for name, v in times.items()}
    ms["step"] /= steps
    return dict(
        forward_ms=ms["forward"], step_ms=ms["step"], arithmetic_ms=ms["arithmetic"],
        overhead=ms["step"] / ms["forward"] - 1, arithmetic_fraction=ms["arithmetic"] / ms["forward"],
        preset=preset, batch=batch, grid=list(grid), channels=channels, steps=steps, reverse=reverse, device=str(device),
        threads=torch.get_num_threads(),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--grid", type=int, nargs=2, default=(4, 4))
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--reverse", default="mixture", choices=["mixture", "joint"])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    result = measure_sampling_overhead(preset=args.preset, grid=tuple(args.grid), channels=args.channels, batch=args.batch,
                                       steps=args.steps, repeats=args.repeats, reverse=args.reverse, device=args.device)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
