"""The Bernoulli oracle chain (tests/oracles.py): exact identities, agreement with the real
sampler driven by the Bayes-optimal predictor, and the structural error of each sampler setting."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange

from discrete_priors.priors.bernoulli import BernoulliDiffusion, sampling_grid
from discrete_priors.priors.schedules import make_schedule
from tests.oracles import bernoulli_oracle_law, posterior_marginals, tv
from tests.synthetic import all_codes, code_index, independent_bits_table, make_synthetic, noise_floor, total_variation


@pytest.fixture(scope="module")
def dist():
    return make_synthetic()


def test_posterior_marginals_equal_bayes_by_enumeration_on_a_few_states(dist):
    flip = 0.3
    states = rearrange(all_codes(dist.spec), "s n c -> s (n c)").double()
    marginal = posterior_marginals(dist, flip)
    for row in [0, 5, 1234, 4095]:
        like = torch.tensor([flip ** int((states[row] != z0).sum()) * (1 - flip) ** int((states[row] == z0).sum())
                             for z0 in states], dtype=torch.float64)
        posterior = like * dist.table / (like * dist.table).sum()
        torch.testing.assert_close(marginal[row], posterior @ states, rtol=1e-10, atol=1e-12)


def test_one_jump_from_pure_noise_gives_the_independent_bits_model(dist):
    # k_T = 0: z^T carries nothing, so one jump T -> 0 draws every bit from its data marginal
    law = bernoulli_oracle_law(dist, make_schedule("linear", 8), steps=1, final_step="sample")
    torch.testing.assert_close(law, independent_bits_table(dist.table, dist.spec), rtol=1e-9, atol=1e-12)
    assert abs(law.sum().item() - 1) < 1e-12


def _oracle_net(dist, schedule):
    """net_logits replacement: the Bayes-optimal x0 logit of every bit of z_t at step t."""
    cache = {}

    def net_logits(z_t, t, labels):
        out = torch.empty(z_t.shape, dtype=torch.float64)
        for step in t.unique().tolist():
            if step not in cache:
                marginal = posterior_marginals(dist, float(schedule.flip_prob(step)))
                cache[step] = torch.logit(marginal.clamp(1e-300, 1 - 1e-16))
            rows = t == step
            out[rows] = rearrange(cache[step][code_index(z_t[rows])], "b (n c) -> b n c", n=dist.spec.num_positions)
        return out.to(z_t.dtype)

    return net_logits


@pytest.mark.parametrize("final_step", ["sample", "threshold"])
def test_oracle_law_is_the_law_of_the_sampler_driven_by_the_oracle(dist, final_step):
    """20,000 draws of BernoulliDiffusion.sample (T = 16, 4 jumps) with its network replaced by the
    Bayes-optimal predictor land within 1.3x the sampling-noise floor of the enumerated law, while
    that law is far (> 2 floors) from the truth: the enumeration is the sampler's, not the data's."""
    n, steps = 20_000, 4
    prior = BernoulliDiffusion(dist.spec, preset="tiny", timesteps=16, parameterization="x0", final_step=final_step).double()
    prior.net_logits = _oracle_net(dist, prior.schedule)
    law = bernoulli_oracle_law(dist, prior.schedule, steps=steps, final_step=final_step)
    samples = prior.sample(n, steps=steps, generator=torch.Generator().manual_seed(0))
    floor = noise_floor(law, n, generator=torch.Generator().manual_seed(1))
    sampled_tv = total_variation(samples, law)
    print(f"{final_step}: TV(samples, law) {sampled_tv:.4f}, floor {floor:.4f}, TV(law, truth) {tv(law, dist.table):.4f}")
    assert sampled_tv < 1.3 * floor, (sampled_tv, floor)
    assert tv(law, dist.table) > 2 * floor


def test_structural_error_of_each_sampler_setting(dist):
    """The exact TV to the truth of the oracle chain (T = 32, linear schedule, mixture form: the
    setting of tests/test_bernoulli_prior.py::test_learns_synthetic_distribution) at S = 4, 16, 32
    jumps with either last step. Measured: sample 0.218 / 0.049 / 0.024, threshold 0.594 / 0.150 /
    0.076 (T = 64 gives the same at S = 4 and 16 — the linear schedule's grid points sit at the
    same k — and 0.012 / 0.038 at S = 64). A thresholded last step sets z⁰ = 1[p̂(z⁰ | zᵗ) > ½], a deterministic
    function of the last zᵗ: the data's per-bit noise (flip 0.1) must then already be in zᵗ, which
    holds only when the last jump is short (t = 1 at S = T). At 16 steps the threshold triples the
    oracle's TV; the sampled last step is the exact reverse process."""
    schedule = make_schedule("linear", 32)
    marginals = {t: posterior_marginals(dist, float(schedule.flip_prob(t))) for t in range(1, 33)}
    result = {(final, steps): tv(bernoulli_oracle_law(dist, schedule, steps=steps, final_step=final, marginals=marginals),
                                 dist.table)
              for final in ["sample", "threshold"] for steps in [4, 16, 32]}
    print({f"{k[0]}@{k[1]}": round(v, 4) for k, v in result.items()})
    sample = [result["sample", s] for s in [4, 16, 32]]
    threshold = [result["threshold", s] for s in [4, 16, 32]]
    assert sample[0] > sample[1] > sample[2], sample
    assert all(t > 2 * s for s, t in zip(sample[1:], threshold[1:])), result


def test_network_marginals_give_the_exact_law_of_a_trained_prior_sampler(dist):
    """bernoulli_oracle_law fed a prior's own predictions (network_marginals) is the law of that
    prior's sampler: 20,000 draws of an (untrained, random-weight) residual prior at 4 of T = 16
    steps land within 1.3x the sampling-noise floor of it, for either last step."""
    from tests.oracles import network_marginals

    torch.manual_seed(0)
    n, steps = 20_000, 4
    prior = BernoulliDiffusion(dist.spec, preset="tiny", timesteps=16).eval()
    marginals = network_marginals(prior, dist, sampling_grid(16, steps)[:-1].tolist())
    for final_step in ["sample", "threshold"]:
        law = bernoulli_oracle_law(dist, prior.schedule, steps=steps, final_step=final_step, marginals=marginals)
        samples = prior.sample(n, steps=steps, final_step=final_step, generator=torch.Generator().manual_seed(0))
        floor = noise_floor(law, n, generator=torch.Generator().manual_seed(1))
        print(f"{final_step}: TV(samples, law) {total_variation(samples, law):.4f}, floor {floor:.4f}")
        assert total_variation(samples, law) < 1.3 * floor
        assert tv(law, dist.table) > 2 * floor  # a law far from the truth: the check is the sampler's
