"""priors/sampling.py: the draws have the laws they promise, temperature means one thing, guidance
is the formula, and the mask schedules are the absorbing process's."""

import math

import pytest
import torch

from discrete_priors.priors import sampling

LOGITS = torch.tensor([1.5, 0.2, -0.7, 0.9, -2.0])


def _frequencies(tokens: torch.Tensor, k: int) -> torch.Tensor:
    return torch.bincount(tokens.flatten(), minlength=k).double() / tokens.numel()


def _max_binomial_z(freq: torch.Tensor, prob: torch.Tensor, n: int) -> float:
    """Largest |frequency − p| in binomial standard deviations (p = 0 or 1 must be met exactly)."""
    sd = (prob * (1 - prob) / n).sqrt()
    exact = sd == 0
    assert torch.equal(freq[exact], prob[exact])
    return ((freq - prob).abs()[~exact] / sd[~exact]).max().item()


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_categorical_frequencies_match_softmax_of_logits_over_temperature(temperature):
    n = 200_000
    draw = sampling.draw_categorical(LOGITS.expand(n, -1), temperature=temperature,
                                     generator=torch.Generator().manual_seed(0))
    prob = (LOGITS.double() / temperature).softmax(-1)
    # 5 standard deviations of a binomial frequency: a false alarm has probability < 1e-5 per token
    assert _max_binomial_z(_frequencies(draw.values, 5), prob, n) < 5
    torch.testing.assert_close(draw.log_prob, prob.log()[draw.values].float())


def test_top_k_never_draws_outside_the_top_k_and_renormalises_inside():
    n, k = 100_000, 2
    draw = sampling.draw_categorical(LOGITS.expand(n, -1), temperature=3.0, top_k=k, generator=torch.Generator().manual_seed(1))
    allowed = LOGITS.topk(k).indices  # tokens 0 and 3
    assert set(draw.values.unique().tolist()) == set(allowed.tolist())
    prob = torch.zeros(5, dtype=torch.float64)
    prob[allowed] = (LOGITS[allowed].double() / 3.0).softmax(-1)
    assert _max_binomial_z(_frequencies(draw.values, 5), prob, n) < 5
    assert torch.equal(sampling.draw_categorical(LOGITS[None], top_k=1, generator=torch.Generator().manual_seed(2)).values,
                       torch.tensor([0]))
    with pytest.raises(ValueError, match="top_k"):
        sampling.draw_categorical(LOGITS[None], top_k=6)


def test_bit_frequencies_match_sigmoid_of_logits_over_temperature():
    n = 100_000
    for temperature in (0.5, 1.0, 3.0):
        bits = sampling.draw_bits(LOGITS.expand(n, -1), temperature=temperature, generator=torch.Generator().manual_seed(3))
        prob = torch.sigmoid(LOGITS.double() / temperature)
        assert _max_binomial_z(bits.values.double().mean(0), prob, n) < 5
        expected = torch.where(bits.values > 0, prob.log(), (1 - prob).log()).sum(-1)
        torch.testing.assert_close(bits.log_prob, expected.float())


def test_temperature_zero_is_the_argmax_and_the_limit_of_small_temperatures():
    logits = torch.randn(64, 7, generator=torch.Generator().manual_seed(4))
    greedy = sampling.draw_categorical(logits, temperature=0.0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(greedy.values, logits.argmax(-1))
    # the log-prob of the argmax under the untempered softmax (a confidence that still ranks)
    torch.testing.assert_close(greedy.log_prob, logits.log_softmax(-1).max(-1).values)
    tiny = sampling.draw_categorical(logits, temperature=1e-4, generator=torch.Generator().manual_seed(5))
    assert torch.equal(tiny.values, greedy.values)
    bits = sampling.draw_bits(logits, temperature=0.0, generator=torch.Generator().manual_seed(6))
    assert torch.equal(bits.values, (logits > 0).float())
    # τ = 0 draws the uniforms τ > 0 would, so what a sampler draws next is the same
    for draw in (sampling.draw_bits, sampling.draw_categorical):
        after = []
        for temperature in (0.0, 0.7):
            g = torch.Generator().manual_seed(7)
            draw(logits, temperature=temperature, generator=g)
            after.append(torch.rand(3, generator=g))
        assert torch.equal(*after)
    assert torch.equal(sampling.draw_bits(logits, temperature=1e-4, generator=torch.Generator().manual_seed(6)).values,
                       bits.values)
    assert torch.equal(sampling.temper(torch.tensor([2.0, -0.5, 0.0]), 0.0), torch.tensor([math.inf, -math.inf, 0.0]))
    assert sampling.temper(logits, 1.0) is logits
    torch.testing.assert_close(sampling.temper(logits, 0.5), logits * 2)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "1"])
def test_invalid_temperature_is_refused_naming_the_range(bad):
    with pytest.raises(ValueError, match=r"temperature must be a finite number >= 0 \(0 = argmax\)"):
        sampling.check_temperature(bad)
    assert sampling.check_temperature(0) == 0.0


def test_guidance_at_zero_is_the_conditional_pass_and_otherwise_the_formula():
    calls = []

    def logits_fn(x, labels):
        calls.append(labels.clone())
        return x * 2 + labels[:, None].float()

    x, labels = torch.randn(3, 4, generator=torch.Generator().manual_seed(7)), torch.tensor([0, 2, 1])
    assert torch.equal(sampling.guided_logits(logits_fn, (x,), labels, 0.0, null_class=3), logits_fn(x, labels))
    calls.clear()
    guided = sampling.guided_logits(logits_fn, (x,), labels, 1.5, null_class=3)
    assert len(calls) == 1 and torch.equal(calls[0], torch.tensor([0, 2, 1, 3, 3, 3]))  # one doubled pass
    torch.testing.assert_close(guided, 2.5 * logits_fn(x, labels) - 1.5 * logits_fn(x, torch.full((3,), 3)))
    # a categorical guides log-probabilities, so a per-row constant in the logits cancels
    both = torch.cat([x, x + 10.0])
    torch.testing.assert_close(sampling.combine_guided(both, 2.0, log_softmax=True), x.log_softmax(-1))
    with pytest.raises(ValueError, match="guidance needs labels"):
        sampling.check_guidance(1.0, None)
    sampling.check_guidance(0.0, None)


def test_draws_come_from_the_generator_only_and_a_cpu_generator_drives_any_device():
    logits = torch.randn(8, 5, generator=torch.Generator().manual_seed(8))
    draw = lambda seed: sampling.draw_categorical(logits, generator=torch.Generator().manual_seed(seed)).values  # noqa: E731
    torch.manual_seed(0)
    a = draw(1)
    torch.manual_seed(123)  # the global generator plays no part
    assert torch.equal(a, draw(1))
    u = sampling.uniform((4,), torch.Generator().manual_seed(9), "meta")
    assert u.device.type == "meta" and u.shape == (4,)
    assert torch.equal(sampling.bernoulli(torch.tensor([0.0, 1.0, 0.0, 1.0]), generator=torch.Generator()),
                       torch.tensor([0.0, 1.0, 0.0, 1.0]))


def test_mask_schedule_is_linear_and_reveals_telescope_to_the_grid():
    T = 12
    assert sampling.mask_rate(0, T) == 0 and sampling.mask_rate(T, T) == 1 and sampling.mask_rate(3, T) == 0.25
    grid = sampling.time_grid(T, 4)
    assert grid == [12.0, 9.0, 6.0, 3.0, 0.0]
    # P(still masked at s) = Π (1 − reveal_prob) over the steps down to s = γ(s)/γ(T)
    still = 1.0
    for t, s in zip(grid[:-1], grid[1:]):
        still *= 1 - sampling.reveal_prob(t, s)
        assert math.isclose(still, sampling.mask_rate(s, T) / sampling.mask_rate(T, T), abs_tol=1e-12)
    assert torch.equal(sampling.masked_count(torch.tensor([10, 7]), 6.0, T), torch.tensor([5, 4]))  # round(3.5) = 4
