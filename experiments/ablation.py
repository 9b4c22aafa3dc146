"""Table 7 of the paper, plus the choices it leaves implicit: ablations of the Bernoulli prior.

All variants are trained on the samplers runner's binary latent cache (same autoencoder), each
with the preset's Bernoulli recipe (codes resampled from the encoder's probabilities, same network
size, steps, batch, lr) changed in one place:

* ``target=<direct|x0|residual>/vlb=<λ>``: prediction target × VLB weight λ, λ from
  :func:`vlb_weights` (smoke: 0, 0.1; cpu and paper: 0, 0.01, 0.1, 1).
* from the baseline ``target=residual/vlb=0``, one implicit choice at a time:
  ``reverse=<mixture|joint>/balance=<none|class_balanced>`` — the reverse form is a sampling option
  (with λ = 0 it does not enter the training loss), so one model per balance serves both forms;
  class-balanced loss weighting needs its own training. ``final=<threshold|sample>/S=<16|T>`` —
  how the last step makes z⁰ (thresholded, the reference code's choice, or drawn: the default),
  a sampling option of the baseline model, at S = 16 and at S = T steps: the threshold's bias
  grows with the length of the last jump (tests/test_oracles.py). ``schedule=<linear|cosine>`` —
  the noise schedule, cosine trained anew (linear is the baseline).

Step count: every variant but ``final=.../S=16`` is sampled with S = T, the preset's training
timesteps (256 at cpu, 32 at smoke). The ``direct`` target predicts one step t → t−1 only and cannot sample with S < T,
so S = T is the only like-for-like comparison across targets; every ablation prior is therefore
also built with ``default_steps=T``. (The paper's Table 7 numbers are at its own step count; our
S = T numbers are the targets' best case, and the steps runner shows the residual target at fewer.)

The ``direct`` target is BCE against the exact posterior q(zᵗ⁻¹ | zᵗ, z⁰), and its VLB term is
KL(q ‖ p_θ) = that BCE − H(q) (at t = 1 both are −log p_θ(z⁰ | z¹)), so ``direct`` with λ > 0
trains on (1 + λ) × the λ = 0 loss + a constant: the gradient is (1 + λ) × the λ = 0 gradient
(tests/test_bernoulli_prior.py proves it on one batch) and Adam is invariant to a constant gradient
scale (measured: weights equal to 4e-7 after training at the smoke preset). One model is trained
for ``direct`` and its rows are recorded under every λ of the grid.

The baseline model (residual, λ = 0, linear schedule, no balancing) is the samplers runner's
Bernoulli prior: same recipe, same latents; its ``default_steps`` differs but every ablation
row passes S = T explicitly.

Rows: fd, precision, recall on classifier features of ``num_samples`` samples, temperature 1; at the
full budget of the seeded target × λ grid also the Inception FID (metric ``fid``, when installed).
Variants that name the same model and sampling options (``target=residual/vlb=0``,
``reverse=mixture/balance=none``, ``final=<the recipe's>/S=T``, ``schedule=linear``) are evaluated once
per run and recorded under each name: they are the same samples. Priors live under
``<out>/priors/ablation-<model>-binary-c<bits>-seed<k>/``.

Seeds and learning curves: the ``target=…/vlb=…`` cells at λ ∈ :data:`SEEDED_VLB_WEIGHTS` (0 and 0.1:
the target × λ grid a claim is judged on) are trained for every seed of ``preset.seeds`` (on the
one shared autoencoder) and evaluated at every learning-curve step (``train_step``;
``preset.samples_at(step)`` samples before the last, with ``train_flops`` and ``train_seconds``).
The other cells (the other λ, reverse, balance, final step, schedule) keep one seed, the first of
``preset.seeds``, evaluated at the full budget only (their tables' ``seeds`` column says 1), after
every seed's grid: a run stopped early has the seeded grid first.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from discrete_priors import pipeline
from experiments.common import (Preset, bootstrap_values, curve_point, curve_subset_values, done, ensure_prior,
                                ensure_samplers_prior, fid_rows, record, scoring_for, shared_binary_latents)

TARGETS = ("direct", "x0", "residual")
VLB_WEIGHTS = {"smoke": (0.0, 0.1)}
DEFAULT_VLB_WEIGHTS = (0.0, 0.01, 0.1, 1.0)
SEEDED_VLB_WEIGHTS = (0.0, 0.1)  # the λ of the target grid with seeds and curves (see seeded_vlb_weights)
METRICS = ("fd", "precision", "recall")
FINAL_STEP_STEPS = 16  # the last-step comparison at this S (capped at T) and at S = T


def vlb_weights(preset: Preset) -> tuple[float, ...]:
    return VLB_WEIGHTS.get(preset.name, DEFAULT_VLB_WEIGHTS)


class Cell(NamedTuple):
    """One ablation row: its variant string, the trained model it samples (a key of
    :func:`models`) and the sampling options that differ from the model's config."""

    variant: str
    model: str
    sample_kwargs: dict


def _model_key(target: str, vlb: float) -> str:
    return f"target={target}-vlb={vlb:g}"


BASELINE = _model_key("residual", 0.0)
DIRECT = _model_key("direct", 0.0)


def models(preset: Preset) -> dict[str, dict]:
    """Model key -> Bernoulli kwargs on top of the preset's recipe (one prior training each)."""
    timesteps = preset.prior_recipes["bernoulli"].kwargs["timesteps"]
    base = {"default_steps": timesteps}  # direct cannot use fewer steps; all sample with S = T
    out = {_model_key(t, lam): base | {"parameterization": t, "vlb_weight": lam}
           for t in TARGETS for lam in vlb_weights(preset) if t != "direct"}
    out[DIRECT] = base | {"parameterization": "direct", "vlb_weight": 0.0}  # the loss of every λ, up to scale
    out[BASELINE] = base | {"parameterization": "residual", "vlb_weight": 0.0}  # also when 0 is not in the list
    out["balance=class_balanced"] = out[BASELINE] | {"loss_balance": "class_balanced"}
    out["schedule=cosine"] = out[BASELINE] | {"schedule": "cosine"}
    return out


def cells(preset: Preset) -> list[Cell]:
    rows = [Cell(f"target={t}/vlb={lam:g}", DIRECT if t == "direct" else _model_key(t, lam), {})
            for t in TARGETS for lam in vlb_weights(preset)]
    for balance in ("none", "class_balanced"):
        for reverse in ("mixture", "joint"):
            model = BASELINE if balance == "none" else f"balance={balance}"
            rows.append(Cell(f"reverse={reverse}/balance={balance}", model, {"reverse": reverse}))
    timesteps = preset.prior_recipes["bernoulli"].kwargs["timesteps"]
    rows += [Cell(f"final={final}/S={'T' if steps == timesteps else steps}", BASELINE, {"final_step": final, "steps": steps})
             for steps in (min(FINAL_STEP_STEPS, timesteps), timesteps) for final in ("threshold", "sample")]
    rows += [Cell("schedule=linear", BASELINE, {}), Cell("schedule=cosine", "schedule=cosine", {})]
    return rows


def curve_cell(cell: Cell, preset: Preset) -> bool:
    """Whether ``cell`` is of the seeded target × λ grid (every seed, every learning-curve step):
    every target at the λ of :func:`seeded_vlb_weights`."""
    if not cell.variant.startswith("target="):
        return False
    return float(cell.variant.rpartition("vlb=")[2]) in seeded_vlb_weights(preset)


def seeded_vlb_weights(preset: Preset) -> tuple[float, ...]:
    """The λ of the target grid trained for every seed along the curve; the other λ keep one seed at
    the full budget, like the other ablations (the budget: 4 new models per seed instead of 8)."""
    return tuple(lam for lam in vlb_weights(preset) if lam in SEEDED_VLB_WEIGHTS)


def passes(preset: Preset) -> list[tuple[int, list[tuple[Cell, int]]]]:
    """(seed, its (cell, train_step) list) in training order: every seed's seeded grid along the curve,
    then the first seed's one-seed cells at the full budget."""
    grid = [(seed, [(c, k) for c in cells(preset) if curve_cell(c, preset) for k in preset.curve_steps()])
            for seed in preset.seeds]
    return grid + [(preset.seeds[0], [(c, preset.prior_steps) for c in cells(preset) if not curve_cell(c, preset)])]


def run(preset: Preset, out: Path, *, data_dir=None, progress: bool | None = None) -> None:
    out = Path(out)
    scoring = scoring_for(preset, out, data_dir=data_dir)
    timesteps = preset.prior_recipes["bernoulli"].kwargs["timesteps"]
    kwargs_of = models(preset)
    # the recipe's last step spelled out, so that final=<it>/S=T and the cells sampled with the
    # model's own options share one evaluation (the same samples)
    recipe_final = {k: v for k, v in preset.prior_recipes["bernoulli"].kwargs.items() if k == "final_step"}

    for seed, wanted in passes(preset):
        todo = [(c, k) for c, k in wanted
                if not done(out, preset=preset, experiment="ablation", variant=c.variant, seed=seed, train_step=k)]
        if not todo:
            continue
        binary = shared_binary_latents(preset, out, data_dir=data_dir)
        ae = pipeline.load_autoencoder(binary.ae_dir)
        evaluated: dict[tuple, dict] = {}  # (model, step, sampling options) -> metrics: identical samples, computed once
        images, fids = {}, {}  # the same key -> its samples, and the Inception FID of them (computed once)
        for cell, step in sorted(todo, key=lambda ck: ck[1]):
            options = {"steps": timesteps} | recipe_final | cell.sample_kwargs
            key = (cell.model, step, tuple(sorted(options.items())))
            if key not in evaluated:
                if cell.model == BASELINE:  # the samplers runner's Bernoulli prior (same training recipe)
                    prior_dir = ensure_samplers_prior(preset, out, latents=binary, prior="bernoulli", seed=seed)
                else:
                    prior_dir = ensure_prior(preset, out, latents=binary.latents, prior="bernoulli",
                                             variant=f"ablation-{cell.model}-{binary.name}", seed=seed,
                                             extra_kwargs=kwargs_of[cell.model])
                point = curve_point(preset, prior_dir, step, latents=binary.latents)
                samples = pipeline.sample_images(ae, point.load(), preset.samples_at(step), seed=seed,
                                                 progress=progress, temperature=1.0, **options)
                quality = scoring.scorer(samples.images, memorisation=False)
                evaluated[key] = ({k: quality[k] for k in METRICS} | point.values()
                                  | bootstrap_values(preset, scoring.scorer, samples.images, seed=seed))
                if curve_cell(cell, preset):
                    evaluated[key] |= curve_subset_values(preset, scoring.scorer, samples.images, step=step, seed=seed)
                images[key], fids[key] = samples.images, {}
            final = curve_cell(cell, preset) and step == preset.prior_steps  # the seeded grid's last point
            fid = fid_rows(scoring, images[key], preset=preset, experiment="ablation", variant=cell.variant, seed=seed,
                           train_step=step, cache=fids[key]) if final else []
            record(out, experiment="ablation", variant=cell.variant, seed=seed, values=evaluated[key],
                   extractor=scoring.extractor.name, num_samples=preset.samples_at(step), preset=preset,
                   train_step=step, extra_rows=fid)
