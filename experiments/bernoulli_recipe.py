"""The Bernoulli prior's recipe study (issue 12): one factor at a time against a baseline, on the
enumerable synthetic mixture of tests/synthetic.py, scored against the prior's own oracle chain.

Every variant trains a tiny-preset ``BernoulliDiffusion`` with the project's :class:`Trainer` on
fresh draws of the mixture (batch 256, a fixed step budget), then scores the EMA weights:

* ``tv_<final>``: the *exact* TV to the truth of the law of its 16-step sampler (last step
  ``sample`` or ``threshold``): the network is evaluated on all 4,096 states at every grid step
  and the chain pushed forward exactly (tests/oracles.py ``network_marginals`` +
  ``bernoulli_oracle_law``), so no sampling noise enters;
* ``emp_<final>`` (with ``--empirical`` only; empty otherwise): the TV of 20,000 actual samples
  of ``prior.sample`` — the exact law above is its expectation-free version (tests/test_oracles.py
  checks the two agree), at 84 s per row more on the shared 2-core machine;
* ``oracle_<final>``: the exact TV of the same sampler driven by the Bayes-optimal predictor, and
  ``gap_<final> = tv − oracle``; ``floor``: the TV of 20,000 exact draws of the truth (the
  acceptance of issue 12 is gap_sample <= floor);
* ``calib_*``: the per-t calibration E Σᵢ KL(p(z⁰ᵢ | zᵗ) ‖ p̂(z⁰ᵢ | zᵗ)) / bits (nats per bit)
  at the grid steps: its mean, and its value at t = T, T/2 and at the last grid step.

``python -m experiments.bernoulli_recipe --out docs/results/recipe/recipe.csv [--steps N]
[--variants a,b] [--seeds 0,1]``: rows are appended per (variant, seed, steps); rows already in
the CSV are skipped, so an interrupted study resumes. Runs with one thread (the shared machine).
``--attribution --out attribution.csv``: :func:`gap_by_step` rows of each variant instead.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import torch

from discrete_priors.priors.bernoulli import BernoulliDiffusion, sampling_grid
from discrete_priors.priors.schedules import make_schedule
from discrete_priors.results import append_csv
from discrete_priors.training import Trainer, TrainConfig
from tests.oracles import bernoulli_oracle_law, calibration_kl, network_marginals, posterior_marginals, tv
from tests.synthetic import make_synthetic, noise_floor, sample_synthetic, total_variation

STEPS = 16  # sampling steps scored
NUM_SAMPLES = 20_000
BATCH = 256

# The baseline is what `discrete-priors train-prior` gives a user (cli.py: lr 1e-3, 100 warm-up
# steps, cosine to 0.1 lr, EMA 0.999) with the prior's constructor defaults at the tiny preset.
BASE_PRIOR = dict(preset="tiny", timesteps=256)
BASE_TRAIN = dict(lr=1e-3, warmup_steps=100, schedule="cosine", min_lr_ratio=0.1, ema_decay=0.999)

# name -> (factor, prior overrides, trainer overrides); one factor changed at a time
VARIANTS = {
    "baseline": ("baseline", {}, {}),
    "lr=3e-3": ("lr", {}, dict(lr=3e-3)),
    "lr=1e-2": ("lr", {}, dict(lr=1e-2)),
    "warmup=0": ("warm-up", {}, dict(warmup_steps=0)),
    "lr-schedule=constant": ("lr schedule", {}, dict(schedule="constant")),
    "min-lr=0": ("lr schedule", {}, dict(min_lr_ratio=0.0)),
    "ema=0": ("EMA", {}, dict(ema_decay=0.0)),
    "ema=0.99": ("EMA", {}, dict(ema_decay=0.99)),
    "ema=0.9999": ("EMA", {}, dict(ema_decay=0.9999)),
    "target=x0": ("target", dict(parameterization="x0"), {}),
    "vlb=0.01": ("VLB weight", dict(vlb_weight=0.01), {}),
    "vlb=0.1": ("VLB weight", dict(vlb_weight=0.1), {}),
    "vlb=1": ("VLB weight", dict(vlb_weight=1.0), {}),
    "t=importance": ("t distribution", dict(time_sampling="importance"), {}),
    "vlb=0.1+linear": ("VLB weight", dict(vlb_weight=0.1, time_weighting="linear"), {}),
    "balance=class": ("loss weighting", dict(loss_balance="class_balanced"), {}),
    "cond=adaln": ("time conditioning", dict(cond="adaln"), {}),
    # adaLN adds ~34% parameters at equal width (145k vs 108k): dim 52 has 11% fewer than token
    # (96k), dim 56 3% more (111k); dims must be divisible by 4
    "cond=adaln+dim=52": ("time conditioning", dict(cond="adaln", dim=52), {}),
    "cond=adaln+dim=56": ("time conditioning", dict(cond="adaln", dim=56), {}),
    "T=32": ("timesteps", dict(timesteps=32), {}),
    # follow-ups: the learning rate closed most of the gap; combined with the next-best factors
    "lr=3e-3+constant": ("combination", {}, dict(lr=3e-3, schedule="constant")),
    "lr=3e-3+x0": ("combination", dict(parameterization="x0"), dict(lr=3e-3)),
    "lr=3e-3+x0+constant": ("combination", dict(parameterization="x0"), dict(lr=3e-3, schedule="constant")),
    # the attribution (docs/method.md §2.7) puts the gap at small t: weight training toward it
    "lr=3e-3+t=linear": ("combination", dict(time_sampling="linear"), dict(lr=3e-3)),
    "lr=3e-3+ema=0": ("combination", {}, dict(lr=3e-3, ema_decay=0.0)),
    "lr=3e-3+adaln+dim=52": ("combination", dict(cond="adaln", dim=52), dict(lr=3e-3)),
}

COLUMNS = ("variant", "factor", "seed", "train_steps", "params", "train_s", "loss",
           "tv_sample", "oracle_sample", "gap_sample", "tv_threshold", "oracle_threshold", "gap_threshold",
           "emp_sample", "emp_threshold", "floor", "calib_mean", "calib_T", "calib_half", "calib_last",
           "prior_kwargs", "train_kwargs")


class SyntheticSource:
    """A Trainer batch source of fresh mixture draws: ``source(index, generator) -> (codes,)``."""

    def __init__(self, dist, size: int = 1 << 16):
        self.dist, self.size = dist, size

    def __len__(self) -> int:
        return self.size

    def __call__(self, index: torch.Tensor, generator: torch.Generator):
        return (sample_synthetic(self.dist, len(index), generator=generator)[0],)


def score(model: BernoulliDiffusion, dist, *, seed: int, oracle: dict, floor: float, empirical: bool = True) -> dict:
    """The exact TVs at :data:`STEPS` sampling steps, gaps and the calibration; with ``empirical``
    also the TVs of :data:`NUM_SAMPLES` samples (42 s per last-step choice on the loaded 2-core machine)."""
    grid = sampling_grid(model.timesteps, STEPS)[:-1].tolist()
    marginals = network_marginals(model, dist, grid)
    row = {}
    for final in ("sample", "threshold"):
        law = bernoulli_oracle_law(dist, model.schedule, steps=STEPS, final_step=final, marginals=marginals)
        row[f"tv_{final}"] = tv(law, dist.table)
        row[f"oracle_{final}"] = oracle[model.timesteps, final]
        row[f"gap_{final}"] = row[f"tv_{final}"] - row[f"oracle_{final}"]
        if empirical:
            samples = model.sample(NUM_SAMPLES, steps=STEPS, final_step=final, generator=torch.Generator().manual_seed(1000 + seed))
            row[f"emp_{final}"] = total_variation(samples, dist.table)
    calib = calibration_kl(dist, model.schedule, marginals)
    row.update(floor=floor, calib_mean=sum(calib.values()) / len(calib), calib_T=calib[grid[0]],
               calib_half=calib[grid[len(grid) // 2]], calib_last=calib[grid[-1]])
    return row


def gap_by_step(model: BernoulliDiffusion, dist) -> list[dict]:
    """Where the gap comes from: for each grid step t of the 16-step sampler, the exact TV of the
    chain that uses the Bayes-optimal predictor everywhere except at t, where it uses ``model``'s
    (``alone``), and of the chain that uses ``model`` everywhere except at t (``repaired``: the
    oracle there). Rows: t, alone − oracle, trained − repaired, and the calibration KL at t."""
    grid = sampling_grid(model.timesteps, STEPS)[:-1].tolist()
    trained = network_marginals(model, dist, grid)
    exact = {t: posterior_marginals(dist, float(model.schedule.flip_prob(t))) for t in grid}
    calib = calibration_kl(dist, model.schedule, trained)

    def chain_tv(marginals):
        return tv(bernoulli_oracle_law(dist, model.schedule, steps=STEPS, final_step="sample", marginals=marginals), dist.table)

    oracle, full = chain_tv(exact), chain_tv(trained)
    return [dict(t=t, gap_alone=chain_tv(exact | {t: trained[t]}) - oracle, gap_repaired=full - chain_tv(trained | {t: exact[t]}),
                 calib=calib[t]) for t in grid]


def oracle_tvs(dist, timesteps: int) -> dict:
    """{(T, final_step): exact TV of the oracle chain at :data:`STEPS` steps}."""
    schedule = make_schedule("linear", timesteps)
    grid = sampling_grid(timesteps, STEPS)[:-1].tolist()
    marginals = {t: posterior_marginals(dist, float(schedule.flip_prob(t))) for t in grid}
    return {(timesteps, final): tv(bernoulli_oracle_law(dist, schedule, steps=STEPS, final_step=final, marginals=marginals), dist.table)
            for final in ("sample", "threshold")}


def done_cells(path: Path) -> set:
    if not path.exists():
        return set()
    with path.open() as f:
        return {(r["variant"], int(r["seed"]), int(r["train_steps"])) for r in csv.DictReader(f)}


def run(out: Path, *, variants, seeds, steps: int, empirical: bool = False, variant_table: dict = VARIANTS) -> None:
    torch.set_num_threads(1)
    dist = make_synthetic()
    floor = noise_floor(dist.table, NUM_SAMPLES, generator=torch.Generator().manual_seed(0))
    oracle: dict = {}
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in variants:
        factor, prior_over, train_over = variant_table[name]
        prior_kwargs, train_kwargs = BASE_PRIOR | prior_over, BASE_TRAIN | train_over
        if prior_kwargs.get("parameterization") == "direct":
            raise ValueError("the study scores 16-step samplers: parameterization 'direct' samples one step at a time")
        for seed in seeds:
            if (name, seed, steps) in done_cells(out):
                continue
            if (prior_kwargs["timesteps"], "sample") not in oracle:
                oracle |= oracle_tvs(dist, prior_kwargs["timesteps"])
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                result, trainer = train_and_keep(dist, prior_kwargs, train_kwargs, steps=steps, seed=seed, out_dir=tmp)
            train_s = time.perf_counter() - start
            model = trainer.eval_model().eval()
            row = dict(variant=name, factor=factor, seed=seed, train_steps=steps,
                       params=sum(p.numel() for p in model.parameters()), train_s=round(train_s, 1),
                       loss=result.terms.get("loss", float("nan")),
                       prior_kwargs=repr(prior_over), train_kwargs=repr(train_over))
            row |= score(model, dist, seed=seed, oracle=oracle, floor=floor, empirical=empirical)
            append_csv(out, [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()}], COLUMNS)
            print(f"{name} seed {seed}: gap_sample {row['gap_sample']:+.4f} (tv {row['tv_sample']:.4f}), "
                  f"gap_threshold {row['gap_threshold']:+.4f}, calib {row['calib_mean']:.4f}, {train_s:.0f} s", flush=True)


def train_and_keep(dist, prior_kwargs: dict, train_kwargs: dict, *, steps: int, seed: int, out_dir):
    """(FitResult, Trainer) of one training run (the trainer holds the EMA model)."""
    torch.manual_seed(seed)  # the Denoiser's initialisation
    prior = BernoulliDiffusion(dist.spec, **prior_kwargs)
    config = TrainConfig(steps=steps, batch_size=BATCH, seed=seed, amp="fp32", device="cpu",
                         checkpoint_every=0, log_every=max(1, steps // 10), **train_kwargs)
    trainer = Trainer(prior, SyntheticSource(dist), config, out_dir, progress=False)
    return trainer.fit(), trainer


def attribute(out: Path, variants, *, steps: int, seed: int) -> None:
    """:func:`gap_by_step` of each variant (one training each), appended to ``out``."""
    torch.set_num_threads(1)
    dist = make_synthetic()
    for name in variants:
        _, prior_over, train_over = VARIANTS[name]
        with tempfile.TemporaryDirectory() as tmp:
            _, trainer = train_and_keep(dist, BASE_PRIOR | prior_over, BASE_TRAIN | train_over, steps=steps, seed=seed, out_dir=tmp)
        rows = [dict(variant=name, seed=seed, train_steps=steps, **{k: round(v, 5) if isinstance(v, float) else v for k, v in r.items()})
                for r in gap_by_step(trainer.eval_model().eval(), dist)]
        append_csv(out, rows, ("variant", "seed", "train_steps", "t", "gap_alone", "gap_repaired", "calib"))
        print(name, [(r["t"], r["gap_alone"], r["gap_repaired"]) for r in rows], flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.bernoulli_recipe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="CSV of rows (appended; finished rows are skipped)")
    parser.add_argument("--steps", type=int, default=1000, help="training steps of every variant")
    parser.add_argument("--variants", default="all", help=f"comma-separated names or 'all': {', '.join(VARIANTS)}")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
    parser.add_argument("--attribution", action="store_true",
                        help="instead of rows: train each variant once and write gap_by_step rows (t, gap_alone, gap_repaired, calib) to --out")
    parser.add_argument("--empirical", action="store_true", help=f"also score {NUM_SAMPLES:,} actual samples per last step")
    args = parser.parse_args(argv)
    names = list(VARIANTS) if args.variants == "all" else args.variants.split(",")
    if unknown := set(names) - set(VARIANTS):
        raise SystemExit(f"unknown variants {sorted(unknown)}; expected some of {list(VARIANTS)}")
    if args.attribution:
        attribute(Path(args.out), names, steps=args.steps, seed=int(args.seeds.split(",")[0]))
        return 0
    run(Path(args.out), variants=names, seeds=[int(s) for s in args.seeds.split(",")], steps=args.steps,
        empirical=args.empirical)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
