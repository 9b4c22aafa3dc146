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

# the recipe the study picked (docs/method.md §2.7): the prior's defaults (residual target, T = 256,
# last step drawn) trained at lr 3e-3 (at the CLI's 1e-3 the gap is twice as large at equal steps)
RECIPE_TRAIN = BASE_TRAIN | dict(lr=3e-3)
STEPS = 1500  # of batch 256; absorbing and AR reach their oracles in 300 such steps (their tests)


@pytest.mark.slow
def test_trained_16_step_sampler_comes_within_a_noise_floor_of_its_oracle(tmp_path):
    """Issue 12's acceptance: TV(trained) − TV(oracle) <= TV(20,000 exact draws of the truth) at 16
    steps, after 1,500 steps of batch 256 with the project's Trainer — 5x the budget absorbing and
    AR need for their own oracles; at their 300 steps the gap is far larger (0.18 at 500 steps).
    Measured (training seeds 0 / 1): exact TV 0.096 / 0.107 vs the oracle's 0.049, gaps 0.048 /
    0.058 under the floor 0.071; at 1,000 steps 0.075 (not met), at 2,000 0.038. Also: the drawn
    last step beats the thresholded one in absolute TV (0.096 vs 0.170 for seed 0)."""
    torch.set_num_threads(1)
    dist = make_synthetic()
    _, trainer = train_and_keep(dist, BASE_PRIOR, RECIPE_TRAIN, steps=STEPS, seed=0, out_dir=tmp_path)
    floor = noise_floor(dist.table, NUM_SAMPLES, generator=torch.Generator().manual_seed(0))
    row = score(trainer.eval_model().eval(), dist, seed=0, oracle=oracle_tvs(dist, BASE_PRIOR["timesteps"]), floor=floor,
                empirical=False)
    print({k: round(v, 4) for k, v in row.items()})
    assert 0.06 < floor < 0.08  # 4,096 states, 20,000 draws
    assert abs(row["oracle_sample"] - 0.0486) < 1e-3  # tests/test_oracles.py's structural error at S = 16
    assert row["gap_sample"] <= floor, row
    assert row["tv_sample"] < row["tv_threshold"], row
