"""Seconds per training step of the cpu-preset priors and autoencoder, old code against new.

Each (code tree, configuration) runs in its own process -- so two versions of ``discrete_priors``
never share an interpreter and a slow process cannot warm a fast one -- and the processes
alternate baseline / new, A B A B, for ``--rounds`` rounds. Per process: ``--warmup`` untimed
steps, then the median of ``--steps`` timed ``Trainer.train_step`` calls. The JSON printed at the
end holds, per configuration, the median over rounds of each tree's per-step median and the
ratio new / baseline (< 1 is faster)::

    OMP_NUM_THREADS=1 python -m experiments.bench_train_step --baseline /work/wt/base --rounds 3

Configurations (the ``cpu`` preset of experiments/common.py, random data: speed does not depend
on what the codes are): ``bernoulli``, ``absorbing``, ``autoregressive`` -- each prior's recipe,
``cpu`` network (dim 128, depth 4, heads 4), 4x4x32 binary codes, batch 128 -- and
``autoencoder`` (``cpu-digits``, 32-bit binary latent, 16x16 images, batch 64). ``--precision``
adds rows of the new tree under that ``TrainConfig.amp`` (the baseline only has fp32 on CPU, so
its fp32 row is the reference of all of them); ``--compile`` adds ``compile=True`` rows.

The child code only uses what both trees have: ``build_prior``, ``Autoencoder(**autoencoder_preset(..))``,
``Trainer(model, (tensor,), TrainConfig(**known fields), out_dir, progress=False)`` and
``trainer.train_step(step)``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ("bernoulli", "absorbing", "autoregressive", "autoencoder")
PRIOR_KWARGS = {  # experiments/common.py's cpu-preset recipes
    "bernoulli": {"parameterization": "residual", "timesteps": 64, "default_steps": 16},
    "absorbing": {"loss_weighting": "reweighted", "timesteps": 256},
    "autoregressive": {},
}


# -- the timed child (runs against either tree) ---------------------------------------------------
def child(spec: dict) -> dict:
    import dataclasses
    import time

    import torch

    torch.set_num_threads(spec["threads"])
    from discrete_priors.training import TrainConfig, Trainer

    seed, curve = spec.get("seed", 0), spec.get("curve", 0)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(0)  # the data: the same for every seed
    if spec["config"] == "autoencoder":
        from discrete_priors.autoencoder import Autoencoder, autoencoder_preset

        model = Autoencoder(**autoencoder_preset("cpu-digits", latent={"kind": "binary", "bits": 32}, image_size=16, image_channels=1))
        data, batch, lr = torch.rand(2048, 1, 16, 16, generator=g), 64, 2e-3
        if curve:  # something to learn: 16 prototype images, mixed and noised
            protos, mix = torch.rand(16, 1, 16, 16, generator=g), torch.rand(2048, 16, generator=g).softmax(-1)
            data = (torch.einsum("nk,kchw->nchw", mix ** 4 / (mix ** 4).sum(-1, keepdim=True), protos)
                    + 0.05 * torch.randn(2048, 1, 16, 16, generator=g)).clamp(0, 1)
    else:
        from discrete_priors.latents.base import CodeSpec
        from discrete_priors.priors import build_prior

        model = build_prior(spec["config"], CodeSpec(kind="binary", grid=(4, 4), channels=32), preset="cpu",
                            **PRIOR_KWARGS[spec["config"]])
        data, batch, lr = (torch.rand(4096, 16, 32, generator=g) < 0.5).float(), 128, 1e-3
        if curve:  # something to learn: 16 prototype codes with 10% of their bits flipped
            protos = torch.rand(16, 16, 32, generator=g) < 0.5
            data = (protos[torch.randint(0, 16, (4096,), generator=g)] ^ (torch.rand(4096, 16, 32, generator=g) < 0.1)).float()
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    wanted = dict(steps=100_000, batch_size=batch, lr=lr, warmup_steps=0, checkpoint_every=0, log_every=50, device="cpu",
                  amp=spec["precision"], compile=spec["compile"], seed=seed)
    missing = {k for k, v in wanted.items() if k not in known and v not in (False, None, 0)}
    if missing:
        raise SystemExit(f"this tree's TrainConfig has no {sorted(missing)}: run that row against the new tree only")
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model, (data,), TrainConfig(**{k: v for k, v in wanted.items() if k in known}), out, progress=False)
        trainer.train_model.train()
        if curve:
            return {"losses": [float(trainer.train_step(step)["loss"]) for step in range(curve)]}
        start = time.perf_counter()
        for step in range(spec["warmup"]):
            trainer.train_step(step)
        warmup_s = time.perf_counter() - start
        times = []
        for step in range(spec["warmup"], spec["warmup"] + spec["steps"]):
            start = time.perf_counter()
            trainer.train_step(step)
            times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "warmup_s": warmup_s}


def run_child(tree: Path, spec: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(spec["threads"])}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)], cwd=tree, env=env,
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"child {spec} in {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the driver -------------------------------------------------------------------------------
def rows(args) -> list[dict]:
    """One row per (configuration, new-tree variant); each names its baseline."""
    out = []
    for config in args.configs:
        for precision in args.precision:
            out.append({"config": config, "precision": precision, "compile": False})
        if args.compile:
            out.append({"config": config, "precision": args.precision[0], "compile": True})
    return out


def benchmark(args) -> dict:
    tree, baseline = Path(args.tree).resolve(), Path(args.baseline).resolve() if args.baseline else None
    common = dict(threads=args.threads, warmup=args.warmup, steps=args.steps)
    times: dict[str, list] = {}
    for _ in range(args.rounds):
        for row in rows(args):
            name = f"{row['config']}/{row['precision']}" + ("/compile" if row["compile"] else "")
            if baseline is not None:  # A: the baseline's only CPU precision
                base = run_child(baseline, {**common, "config": row["config"], "precision": "auto", "compile": False})
                times.setdefault(f"{row['config']}/baseline", []).append(base["median_s"])
            new = run_child(tree, {**common, **row})  # B
            times.setdefault(name, []).append(new["median_s"])
            times.setdefault(name + ":warmup_s", []).append(new["warmup_s"])
            print(f"{name}: {new['median_s'] * 1e3:.1f} ms" + (f" (baseline {base['median_s'] * 1e3:.1f} ms)" if baseline else ""),
                  file=sys.stderr, flush=True)
    medians = {k: statistics.median(v) for k, v in times.items()}
    result = {"tree": str(tree), "baseline": str(baseline) if baseline else None, "rounds": args.rounds, **common,
              "median_s_per_step": {k: v for k, v in medians.items() if not k.endswith(":warmup_s")},
              "warmup_s": {k[:-len(":warmup_s")]: v for k, v in medians.items() if k.endswith(":warmup_s")}}
    if baseline is not None:
        result["ratio_new_over_baseline"] = {
            k: v / medians[f"{k.split('/')[0]}/baseline"] for k, v in result["median_s_per_step"].items() if not k.endswith("/baseline")}
    return result


def window_means(losses: list[float], window: int) -> list[float]:
    return [statistics.fmean(losses[i:i + window]) for i in range(0, len(losses) - window + 1, window)]


def loss_curves(args) -> dict:
    """Per configuration: the loss at every step of ``--curve`` steps for the baseline (fp32, seed 0),
    the new tree at fp32 seeds 0 and 1 and at each further ``--precision`` (seed 0), and the
    largest gap of their ``window``-step means from the new fp32 seed-0 curve. The seed-1 gap is
    the seed noise the others are judged against."""
    tree, baseline = Path(args.tree).resolve(), Path(args.baseline).resolve() if args.baseline else None
    window = max(1, args.curve // 20)
    out = {"curve_steps": args.curve, "window": window, "threads": args.threads, "configs": {}}
    for config in args.configs:
        runs = {}
        common = dict(threads=args.threads, warmup=0, steps=1, config=config, compile=False, curve=args.curve)
        if baseline is not None:
            runs["baseline/fp32/seed0"] = run_child(baseline, {**common, "precision": "auto"})["losses"]
        for precision in dict.fromkeys(["fp32", *args.precision]):
            for seed in (0, 1) if precision == "fp32" else (0,):
                runs[f"{precision}/seed{seed}"] = run_child(tree, {**common, "precision": precision, "seed": seed})["losses"]
        reference = window_means(runs["fp32/seed0"], window)
        gaps = {k: max(abs(a - b) for a, b in zip(window_means(v, window), reference)) for k, v in runs.items() if k != "fp32/seed0"}
        out["configs"][config] = {"max_window_gap_from_fp32_seed0": gaps, "window_means": {k: window_means(v, window) for k, v in runs.items()},
                                  "losses": runs}
        print(f"{config}: " + ", ".join(f"{k} {v:.4f}" for k, v in gaps.items()), file=sys.stderr, flush=True)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", default=str(REPO), help="the new code's repository root (default: this one)")
    parser.add_argument("--baseline", default=None, help="the old code's repository root (e.g. /work/wt/base); omitted: no ratios")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp16", "auto"],
                        help="TrainConfig.amp of the new tree's rows (default: fp32)")
    parser.add_argument("--compile", action="store_true", help="add compile=True rows (first precision)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per process")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per process (compile happens here)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="also write the JSON here")
    parser.add_argument("--curve", type=int, default=0,
                        help="instead of timing: loss curves of this many steps on learnable data (see loss_curves)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child))))
        return
    if args.rounds < 1 or args.steps < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("expected --rounds >= 1, --steps >= 1, --warmup >= 0, --threads >= 1")
    result = loss_curves(args) if args.curve else benchmark(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        tmp = Path(args.out + ".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(args.out)  # atomic


if __name__ == "__main__":
    main()
