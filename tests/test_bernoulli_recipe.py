"""Learning test of the Bernoulli recipe (issue 12, docs/method.md "Bernoulli recipe"): the trained
16-step sampler against its own oracle chain (tests/oracles.py), on the synthetic mixture.

The score is exact: the trained network is evaluated on all 4,096 states at each of the 16 grid
steps and the chain is pushed forward exactly (``network_marginals`` + ``bernoulli_oracle_law``;
tests/test_oracles.py checks that this is the law of ``prior.sample``), so the gap
TV(trained) − TV(oracle) carries no sampling noise, only the training seed's.
"""

import pytest
import torch

from experiments.bernoulli_recipe import BASE_PRIOR, BASE_TRAIN, NUM_SAMPLES, oracle_tvs, score, train_and_keep
from tests.synthetic import make_synthetic, noise_floor

# the recipe the study picked (docs/results/recipe/recipe.csv): the prior's defaults (residual
# target, T = 256, last step drawn) trained at lr 3e-3 (the CLI's 1e-3 halves the progress per step)
RECIPE_TRAIN = BASE_TRAIN | dict(lr=3e-3)
STEPS = 500  # batch 256: absorbing and AR reach their oracles in 300 such steps (their tests)


@pytest.mark.slow
def test_trained_16_step_sampler_approaches_its_oracle_chain(tmp_path):
    """500 steps of batch 256 with the project's Trainer. Measured (seeds 0, 1): exact TV 0.230 /
    0.229 with the drawn last step against the oracle's 0.049, a gap of 0.18, while TV(20,000
    exact draws of the truth) = 0.071: the acceptance gap <= floor is NOT met at this budget (it is
    at BUDGET_NOTE). What the test asserts, with margins of ~0.02 over the measured values
    (seeds agree to 0.002): the gap is under 0.20 — less than half the 0.36 of the CLI's lr 1e-3 at
    the same budget — and the drawn last step beats the thresholded one in absolute TV."""
    torch.set_num_threads(1)
    dist = make_synthetic()
    _, trainer = train_and_keep(dist, BASE_PRIOR, RECIPE_TRAIN, steps=STEPS, seed=0, out_dir=tmp_path)
    floor = noise_floor(dist.table, NUM_SAMPLES, generator=torch.Generator().manual_seed(0))
    row = score(trainer.eval_model().eval(), dist, seed=0, oracle=oracle_tvs(dist, BASE_PRIOR["timesteps"]), floor=floor,
                empirical=False)
    print({k: round(v, 4) for k, v in row.items()})
    assert 0.06 < floor < 0.08  # 4,096 states, 20,000 draws
    assert row["gap_sample"] < 0.20, row
    assert row["tv_sample"] < row["tv_threshold"], row
