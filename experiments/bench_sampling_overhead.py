"""Sampling overhead of every prior over its bare network, and peak sampling memory.

overhead = time of ``prior.sample(B)`` / time of the same number of bare network passes − 1
(median over repeats of each sampling run's ratio to the bare run right after it),
where the bare passes are the prior's own network called on prepared inputs (denoiser forward
for the diffusion priors, key/value-cached ``step`` for the autoregressive prior), as many as
the sampler made (counted by a forward hook in an untimed run: the absorbing sampler stops once
every position is revealed). Sampling and bare passes alternate (A B A B ...), medians are
taken, one thread by default (robust on a shared machine). Untrained weights: the cost does not
depend on training. Also an in-run figure (CPU time inside the network's calls during one
sampling run vs the whole run) and its floor (the same accounting of the bare passes); see
:func:`measure_overhead`. Priors: Bernoulli, absorbing (S = 256 and 16), autoregressive (kv
cache), Gaussian (DDIM, S = 16) on continuous codes of the same shape.

Memory: peak resident-set growth (``ru_maxrss``) of Bernoulli sampling in a fresh process per
configuration (so earlier allocations do not hide the peak).

Uses only the public prior API, so it runs against an older checkout too (``PYTHONPATH=<checkout>
python path/to/bench_sampling_overhead.py``)::

    OMP_NUM_THREADS=1 python -m experiments.bench_sampling_overhead --configs bernoulli-16 autoregressive-kv
    OMP_NUM_THREADS=1 python -m experiments.bench_sampling_overhead --memory --grid 16 16
    OMP_NUM_THREADS=1 python -m experiments.bench_sampling_overhead --baseline /tmp/old --rounds 3 --out overhead.json
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

from discrete_priors.latents.base import CodeSpec
from discrete_priors.priors import build_prior

# name -> (prior, constructor kwargs, sample kwargs)
CONFIGS = {
    "bernoulli-16": ("bernoulli", dict(timesteps=256), dict(steps=16)),
    "absorbing-256": ("absorbing", dict(timesteps=256), dict(steps=256)),
    "absorbing-16": ("absorbing", dict(timesteps=256), dict(steps=16)),
    "autoregressive-kv": ("autoregressive", {}, {}),
    "gaussian-16": ("gaussian", dict(timesteps=256), dict(steps=16)),
}


def _count_calls(module: torch.nn.Module, fn) -> int:
    calls = []
    handle = module.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        fn()
    finally:
        handle.remove()
    return len(calls)


@contextlib.contextmanager
def _timed_module(module: torch.nn.Module, inside: list):
    """Append the CPU seconds of every forward call of ``module`` to ``inside`` while open."""
    marks = []
    pre = module.register_forward_pre_hook(lambda *_: marks.append(time.process_time()))
    post = module.register_forward_hook(lambda *_: inside.append(time.process_time() - marks.pop()))
    try:
        yield
    finally:
        pre.remove()
        post.remove()


@contextlib.contextmanager
def _timed_method(obj, method: str, inside: list):
    """Append the CPU seconds of every call of ``obj.<method>`` to ``inside`` while open."""
    bound = getattr(obj, method)

    def timed(*args, **kwargs):
        start = time.process_time()
        out = bound(*args, **kwargs)
        inside.append(time.process_time() - start)
        return out

    setattr(obj, method, timed)  # an instance attribute: shadows the class's method
    try:
        yield
    finally:
        delattr(obj, method)


def _bare_passes(prior, batch: int, gen: torch.Generator):
    """A function running ``k`` bare network passes on fixed inputs of the sampler's shapes."""
    spec, net = prior.spec, prior.net
    bits = (torch.rand(batch, *spec.shape, generator=gen) < 0.5).float()
    if prior.name == "gaussian":
        x, t = torch.randn(batch, *spec.shape, generator=gen), torch.full((batch,), 0.5)
        return lambda k: [net(x, t, None) for _ in range(k)]
    if prior.name == "bernoulli":
        x, t = bits * 2 - 1, torch.full((batch,), 0.5)
        return lambda k: [net(x, t, None) for _ in range(k)]
    if prior.name == "absorbing":
        masked = torch.rand(batch, spec.num_positions, generator=gen) < 0.5
        keep = (~masked)[..., None].float()
        x = torch.cat([(2 * bits - 1) * keep, 1 - keep], dim=-1)
        return lambda k: [net(x, None, None) for _ in range(k)]
    start = torch.zeros(batch, dtype=torch.long)
    tokens = bits * 2 - 1
    # the network pass alone: without the per-step input checks where the step can skip them
    # (the sampler does), so the checks count as sampling overhead
    unchecked = {"check": False} if "check" in inspect.signature(net.step).parameters else {}

    def steps(k):
        out = net.step(None, start, None)
        for i in range(k - 1):
            out = net.step(tokens[:, i], start, out.cache, **unchecked)

    return steps


@torch.no_grad()
def measure_overhead(config: str, *, preset: str = "cpu", grid=(4, 4), channels: int = 32, batch: int = 64,
                     repeats: int = 5, seed: int = 0) -> dict:
    """Median ms of one ``sample(batch)`` and of as many bare network passes; overhead = ratio − 1."""
    name, kwargs, sample_kwargs = CONFIGS[config]
    torch.manual_seed(seed)
    spec = CodeSpec(kind="continuous" if name == "gaussian" else "binary", grid=tuple(grid), channels=channels)
    prior = build_prior(name, spec, preset=preset, **kwargs).eval()
    gen = torch.Generator().manual_seed(seed)
    sample = lambda: prior.sample(batch, generator=gen, **sample_kwargs)  # noqa: E731
    counter = prior.net.net if name == "autoregressive" else prior.net  # the wrapper: step() and forward both call it
    evals = _count_calls(counter, sample)  # also the warm-up
    bare = _bare_passes(prior, batch, gen)
    bare(evals)
    wall, cpu = {"sample": [], "bare": []}, {"sample": [], "bare": []}
    for _ in range(repeats):
        for key, fn in (("sample", sample), ("bare", lambda: bare(evals))):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[key].append(time.perf_counter() - start)
            cpu[key].append(time.process_time() - start_cpu)

    def overhead(times):
        # median of the paired ratios: each sampling run against the bare run right after it
        # (robust to a machine whose load drifts between repeats)
        return statistics.median(a / b for a, b in zip(times["sample"], times["bare"])) - 1

    # in-run accounting, immune to load drift between runs: CPU time inside the network's calls
    # during one sampling run vs the whole run. The network is the prior's ``net`` (the denoiser;
    # for AR the causal transformer's kv-cached ``step``, embedding included, as in the bare
    # passes). AR also gets the narrower boundary of earlier records, the x-transformers wrapper
    # inside ``step`` (its embedding and step bookkeeping count as overhead there). The floor is
    # the same accounting of the bare passes: what it charges a loop that does nothing but call
    # the network (the AR loop frees each step's previous kv cache outside the call).
    def in_run(boundary, fn=sample) -> float:
        inside, figures = [], []
        with boundary(inside):
            for _ in range(repeats):
                inside.clear()
                start_cpu = time.process_time()
                fn()
                figures.append((time.process_time() - start_cpu) / sum(inside) - 1)
        return statistics.median(figures)

    if name == "autoregressive":
        step, wrapper = (lambda inside: _timed_method(prior.net, "step", inside)), (lambda inside: _timed_module(prior.net.net, inside))
        extra = dict(overhead_in_run_wrapper=in_run(wrapper), overhead_in_run_floor=in_run(step, lambda: bare(evals)))
        overhead_in_run = in_run(step)
    else:
        forward = lambda inside: _timed_module(prior.net, inside)  # noqa: E731
        extra = dict(overhead_in_run_floor=in_run(forward, lambda: bare(evals)))
        overhead_in_run = in_run(forward)
    ms = {key: 1000 * statistics.median(v) for key, v in wall.items()}
    # process CPU time is the primary measure on a shared machine (time spent descheduled by
    # other jobs does not count); with one thread it is the work done. wall-clock beside it.
    # both loops do the same network work I, so in-run − floor = (T_sample − T_bare) / I: the
    # paired overhead, from one process's accounting (what the old record's 6.0% did not subtract)
    extra["overhead_in_run_net"] = overhead_in_run - extra["overhead_in_run_floor"]
    return dict(config=config, evals=evals, sample_ms=ms["sample"], bare_ms=ms["bare"], overhead=overhead(cpu),
                overhead_wall=overhead(wall), overhead_in_run=overhead_in_run, **extra,
                preset=preset, batch=batch, grid=list(grid), channels=channels, repeats=repeats, threads=torch.get_num_threads())


def _peak_memory_child(preset: str, grid, channels: int, batch: int, steps: int) -> dict:
    torch.manual_seed(0)
    spec = CodeSpec(kind="binary", grid=tuple(grid), channels=channels)
    prior = build_prior("bernoulli", spec, preset=preset, timesteps=256).eval()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.no_grad():
        prior.sample(batch, steps=steps, generator=torch.Generator().manual_seed(0))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return dict(peak_growth_mb=(after - before) / 1024, preset=preset, grid=list(grid), channels=channels, batch=batch, steps=steps)


def measure_peak_memory(*, preset: str = "cpu", grid=(16, 16), channels: int = 32, batch: int = 64, steps: int = 2) -> dict:
    """Peak RSS growth (MB) of one Bernoulli ``sample`` in a fresh process (Linux ``ru_maxrss``, KiB).
    Each step needs the same memory, so a few steps show the peak of any number."""
    # this file by path: discrete_priors comes from PYTHONPATH (the checkout under test)
    args = [sys.executable, os.path.abspath(__file__), "--memory-child", "--preset", preset, "--grid", *map(str, grid),
            "--channels", str(channels), "--batch", str(batch), "--steps", str(steps), "--threads", str(torch.get_num_threads())]
    out = subprocess.run(args, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare_trees(tree: str, baseline: str | None, configs, *, rounds: int, argv_common: list[str]) -> dict:
    """Each config in its own process per tree, alternating baseline / tree (A B A B) for
    ``rounds``; per key the median over rounds. ``PYTHONPATH`` selects the checkout."""
    runs: dict[str, dict[str, list]] = {}
    for _ in range(rounds):
        for config in configs:
            for label, root in (("baseline", baseline), ("new", tree)):
                if root is None:
                    continue
                env = {**os.environ, "PYTHONPATH": os.path.abspath(root), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
                out = subprocess.run([sys.executable, os.path.abspath(__file__), "--configs", config, *argv_common],
                                     check=True, capture_output=True, text=True, env=env, cwd=os.path.abspath(root))
                row = json.loads(out.stdout.strip().splitlines()[-1])
                runs.setdefault(f"{config}/{label}", {}).setdefault("rows", []).append(row)
    summary = {}
    for key, value in runs.items():
        rows = value["rows"]
        numeric = [k for k, v in rows[0].items() if isinstance(v, float)]
        summary[key] = {k: statistics.median(r[k] for r in rows) for k in numeric} | {"rounds": len(rows)}
    return {"tree": os.path.abspath(tree), "baseline": baseline and os.path.abspath(baseline), "rounds": rounds,
            "median_over_rounds": summary, "runs": {k: v["rows"] for k, v in runs.items()}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--grid", type=int, nargs=2, default=None, help="default 4 4 (overhead), 16 16 (--memory)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--memory", action="store_true", help="peak sampling memory of the Bernoulli prior instead")
    parser.add_argument("--steps", type=int, default=2, help="sampling steps of the memory measurement")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--baseline", default=None, help="an older checkout: alternate its processes with this tree's (A B A B)")
    parser.add_argument("--rounds", type=int, default=0, help="with --baseline (or alone): processes per tree and config")
    parser.add_argument("--out", default=None, help="write the --rounds comparison's JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_child:
        print(json.dumps(_peak_memory_child(args.preset, args.grid, args.channels, args.batch, args.steps)))
        return None
    if args.rounds:
        common = ["--preset", args.preset, "--batch", str(args.batch), "--channels", str(args.channels), "--repeats",
                  str(args.repeats), "--threads", str(args.threads), *(["--grid", *map(str, args.grid)] if args.grid else [])]
        tree = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        report = compare_trees(tree, args.baseline, args.configs, rounds=args.rounds, argv_common=common)
        text = json.dumps(report, indent=2)
        print(text)
        if args.out:
            tmp = args.out + ".tmp"
            with open(tmp, "w") as f:
                f.write(text + "\n")
            os.replace(tmp, args.out)  # atomic
        return report
    if args.memory:
        results = [measure_peak_memory(preset=args.preset, grid=args.grid or (16, 16), channels=args.channels, batch=args.batch,
                                       steps=args.steps)]
    else:
        results = [measure_overhead(c, preset=args.preset, grid=args.grid or (4, 4), channels=args.channels, batch=args.batch,
                                    repeats=args.repeats) for c in args.configs]
    for r in results:
        print(json.dumps(r))
    return results


if __name__ == "__main__":
    main()
