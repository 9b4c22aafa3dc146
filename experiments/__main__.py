"""``python -m experiments <name> --preset P --out DIR [overrides]``: run one comparison.

Runners: reconstruction (Table 4), samplers (Table 5), efficiency (Table 6), efficiency-scaling (Table 6's
sampling cost vs latent positions, bits and network size, untrained weights; not in `all`), steps (Figure 7), ablation (Table 7), figures (Figures 4, 6, 8 and reconstructions), sanity (metric scale: real, reconstructions, random codes). Presets: smoke (tiny, about a minute; reconstruction's 19 autoencoders about 3 more), cpu (Fashion-MNIST at 16x16, digits if it is not installed), paper
(GPU scale; needs --data-dir with an image folder). Reruns skip finished cells and resume training.
`python -m experiments gpu_check --out DIR` (flags: `gpu_check --help`) checks a GPU machine in 8 minutes.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import time
from pathlib import Path

RUNNERS = {"samplers": "experiments.samplers", "steps": "experiments.steps", "efficiency": "experiments.efficiency",
           "ablation": "experiments.ablation", "sanity": "experiments.sanity",
           "reconstruction": "experiments.reconstruction", "figures": "experiments.figures",
           "efficiency-scaling": "experiments.efficiency:run_scaling"}  # "module[:function]", default run
# `all`: every comparison of the paper (make reproduce runs this), the seeded comparisons of issue 15
# first, so that a run stopped early (resumed later) has them; reconstruction's 19 autoencoders late
ALL = ("samplers", "steps", "ablation", "efficiency", "reconstruction", "figures")


def _preset_record(path: Path, preset) -> dict:
    """``preset.json``'s content: the preset and its hash. Seeds are not in the hash, so invocations
    with different ``--seeds`` share one directory; the record keeps the union of their seeds (with
    the same hash), in order of first use, so it never names fewer seeds than the results hold."""
    from dataclasses import asdict

    from discrete_priors.io import read_json

    record = asdict(preset) | {"hash": preset.hash()}
    if path.is_file():
        previous = read_json(path)
        if previous.get("hash") == record["hash"]:
            record["seeds"] = list(dict.fromkeys([*previous.get("seeds", []), *record["seeds"]]))
    return record


def main(argv=None) -> int:
    import sys
    from dataclasses import replace

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["gpu_check"]:  # its own flags (sizes, budget), no preset: see experiments/gpu_check.py
        from experiments import gpu_check

        return gpu_check.main(argv[1:])

    from discrete_priors.io import write_json
    from experiments.common import PRESETS, get_preset, log_timing, with_available_data

    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted(RUNNERS) + ["all", "gpu_check"],
                        help=f"which comparison to run; all = {', '.join(ALL)} in this order")
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS), help="scale of the run")
    parser.add_argument("--out", required=True, help="experiment directory (shared across runners)")
    parser.add_argument("--data-dir", default=None, help="dataset location (fashion-mnist, image-folder)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (preset default if unset)")
    parser.add_argument("--max-steps", type=int, default=None, help="cap every training run at this many steps")
    parser.add_argument("--num-samples", type=int, default=None, help="samples per evaluated variant")
    parser.add_argument("--prior-steps", type=int, default=None, help="training steps of every prior (preset default if unset)")
    parser.add_argument("--ae-steps", type=int, default=None, help="training steps of every autoencoder")
    args = parser.parse_args(argv)
    overrides = {"num_samples": args.num_samples, "prior_steps": args.prior_steps, "ae_steps": args.ae_steps}
    if args.seeds:
        overrides["seeds"] = tuple(int(s) for s in args.seeds.split(","))
    preset = get_preset(args.preset, **overrides)
    if args.max_steps is not None:
        preset = replace(preset, ae_steps=min(preset.ae_steps, args.max_steps),
                         prior_steps=min(preset.prior_steps, args.max_steps))
    preset = with_available_data(preset, data_dir=args.data_dir)
    out = Path(args.out)
    write_json(out / "preset.json", _preset_record(out / "preset.json", preset))  # the scale, for the report
    # a stopped run (SIGTERM from a scheduler, Ctrl-C) still logs the time it spent, as "<runner> (stopped)":
    # resumed runs leave their whole cost in timings.csv
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    for name in ALL if args.name == "all" else (args.name,):
        start = time.perf_counter()
        module, _, function = RUNNERS[name].partition(":")
        try:
            getattr(importlib.import_module(module), function or "run")(preset, out, data_dir=args.data_dir)
        except (KeyboardInterrupt, SystemExit):
            log_timing(out, runner=f"{name} (stopped)", seconds=time.perf_counter() - start, preset=preset)
            raise
        seconds = time.perf_counter() - start
        log_timing(out, runner=name, seconds=seconds, preset=preset)
        print(f"{name}: {seconds / 60:.1f} min", flush=True)
    print(f"results: {out / 'results.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
