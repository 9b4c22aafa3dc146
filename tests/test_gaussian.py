"""Gaussian diffusion on continuous codes: the schedule, the target algebra, the two samplers, the
float16-discretised VLB, guidance, inpainting, latent scaling, and a learning test on a 2-D mixture.

Statistical checks state their tolerance in standard errors (SE) of the estimate they test.
"""

import math

import pytest
import torch

from discrete_priors.latents.base import CodeSpec
from discrete_priors.priors import build_prior
from discrete_priors.priors import gaussian_math as gm
from discrete_priors.priors.gaussian import GaussianDiffusion
from discrete_priors.priors.sampling import sampling_grid
from discrete_priors.priors.schedules import GAUSSIAN_SCHEDULES, signal_rates

SPEC = CodeSpec(kind="continuous", grid=(2, 3), channels=4)


def _prior(**kwargs) -> GaussianDiffusion:
    torch.manual_seed(0)
    return build_prior("gaussian", SPEC, preset="tiny", **({"timesteps": 16} | kwargs))


def _random_head(prior: GaussianDiffusion, seed: int = 0) -> GaussianDiffusion:
    """The output head starts at zero (every label, every x gives v̂ = 0): give it weights, so a
    test of what the network's output does can fail."""
    head = prior.net.net.project_out
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=g) * 0.3)
        head.bias.copy_(torch.randn(head.bias.shape, generator=g) * 0.3)
    return prior


# -- forward process ------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", GAUSSIAN_SCHEDULES)
def test_forward_marginal_of_the_one_step_chain_matches_the_schedule(schedule):
    """Running q(x_t | x_{t-1}) = N(√(1−β_t) x_{t−1}, β_t) step by step from fixed x_0 gives, at
    every t, mean α_t x_0 and variance σ_t² — the closed form the loss draws from. 40,000 chains;
    tolerance 5 SE (SE of a mean σ/√n, of a variance σ²√(2/n))."""
    prior, n = _prior(schedule=schedule), 40_000
    x0 = torch.tensor([-2.0, -0.5, 0.0, 1.5], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x = x0.expand(n, 4).clone()
    for t in range(1, prior.timesteps + 1):
        beta = prior.schedule.beta(t).item()
        x = math.sqrt(1 - beta) * x + math.sqrt(beta) * torch.randn(x.shape, generator=g, dtype=torch.float64)
        alpha, sigma = (r.reshape(()).item() for r in prior._rates(torch.tensor([t]), torch.float64))
        assert alpha**2 + sigma**2 == pytest.approx(1.0, abs=1e-12)
        torch.testing.assert_close(x.mean(0), alpha * x0, rtol=0, atol=5 * sigma / math.sqrt(n))
        torch.testing.assert_close(x.var(0), torch.full((4,), sigma**2, dtype=torch.float64), rtol=0,
                                   atol=5 * sigma**2 * math.sqrt(2 / n))


def test_loss_shows_the_network_draws_of_the_forward_marginal():
    """The x_t the loss feeds the network, standardised by the schedule at its t, is N(0, 1):
    (x_t − α_t s·z)/σ_t over 4,096 draws has mean 0 and variance 1 within 5 SE."""
    prior = _prior(latent_scale=2.5)
    seen = []
    prior.net.register_forward_hook(lambda m, args, out: seen.append((args[0].detach(), args[1].detach())))
    codes = torch.randn(4096, *SPEC.shape, generator=torch.Generator().manual_seed(1))
    prior.loss(codes, generator=torch.Generator().manual_seed(2))
    x_t, time = seen[0]
    t = (time * prior.timesteps).round().long()
    alpha, sigma = prior._rates(t, torch.float32)
    standard = ((x_t - alpha * codes * 2.5) / sigma).flatten()
    n = standard.numel()
    assert abs(standard.mean().item()) < 5 / math.sqrt(n)
    assert abs(standard.var().item() - 1) < 5 * math.sqrt(2 / n)
    assert set(t.unique().tolist()) == set(range(1, prior.timesteps + 1))  # every step is trained


def test_schedules_start_at_one_decrease_strictly_and_keep_signal_at_T():
    for name in GAUSSIAN_SCHEDULES:
        for T in (8, 64, 1000):
            abar = signal_rates(name, T)
            assert abar[0] == 1 and (abar[1:] < abar[:-1]).all() and abar[-1] > 0
    # the cosine table is Nichol & Dhariwal's f(t)/f(0) wherever β_t is below the 0.999 clip
    T = 64
    u = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
    torch.testing.assert_close(signal_rates("cosine", T)[:-1], (f / f[0])[:-1], rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="unknown Gaussian schedule 'sigmoid'"):
        _prior(schedule="sigmoid")


# -- targets --------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", gm.TARGETS)
def test_eps_x0_v_conversions_are_exact_inverses(target):
    """For every t of a cosine T = 64 table: out = target_of(x_0, ε) → predictions(out, x_t) gives
    back (x_0, ε), and predictions → target_of gives back out (float64, to 1e-9)."""
    abar = signal_rates("cosine", 64)[1:].reshape(-1, 1)
    alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
    g = torch.Generator().manual_seed(0)
    x0, eps = (torch.randn(64, 5, generator=g, dtype=torch.float64) for _ in range(2))
    x_t = gm.q_sample(x0, alpha, sigma, eps)
    out = gm.target_of(x0, eps, alpha, sigma, target)
    pred = gm.predictions(out, x_t, alpha, sigma, target)
    torch.testing.assert_close(pred.x0, x0, rtol=0, atol=1e-9)
    torch.testing.assert_close(pred.eps, eps, rtol=0, atol=1e-9)
    other = torch.randn(64, 5, generator=g, dtype=torch.float64)  # any output, not only a true target
    guess = gm.predictions(other, x_t, alpha, sigma, target)
    torch.testing.assert_close(gm.target_of(guess.x0, guess.eps, alpha, sigma, target), other, rtol=0, atol=1e-9)
    torch.testing.assert_close(gm.q_sample(guess.x0, alpha, sigma, guess.eps), x_t, rtol=0, atol=1e-9)
    # the loss weights rest on ‖Δout‖² = w ‖Δx̂_0‖² at fixed x_t
    snr = (abar / (1 - abar)).reshape(-1)
    ratio = (other - out).pow(2).sum(1) / (guess.x0 - x0).pow(2).sum(1)
    torch.testing.assert_close(ratio, gm.x0_error_scale(snr, target), rtol=1e-9, atol=0)


# -- samplers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", GAUSSIAN_SCHEDULES)
@pytest.mark.parametrize("steps", [16, 5])
def test_ddim_with_eta_one_has_the_ancestral_step_mean_and_variance(schedule, steps):
    """On the full grid (S = T) and a coarser one, every DDIM η = 1 jump t → s has the mean and
    standard deviation of the ancestral step q(x_s | x_t, x̂_0) (ε̂ tied to x̂_0 by x_t), to 1e-9;
    η = 0 has none; the last jump returns x̂_0 for both."""
    T = 16
    abar = signal_rates(schedule, T)[sampling_grid(T, steps)]
    ddim = gm.step_coefficients(abar[:-1], abar[1:], sampler="ddim", eta=1.0)
    ancestral = gm.step_coefficients(abar[:-1], abar[1:], sampler="ancestral")
    g = torch.Generator().manual_seed(0)
    x_t, x0 = (torch.randn(steps, 7, generator=g, dtype=torch.float64) for _ in range(2))
    alpha, sigma = abar[:-1].sqrt()[:, None], (1 - abar[:-1]).sqrt()[:, None]
    eps = (x_t - alpha * x0) / sigma
    mean = lambda k: k.a[:, None] * x0 + k.b[:, None] * eps + k.c[:, None] * x_t  # noqa: E731
    torch.testing.assert_close(mean(ddim), mean(ancestral), rtol=1e-9, atol=1e-10)  # float64 rounding
    torch.testing.assert_close(ddim.std, ancestral.std, rtol=1e-9, atol=1e-10)
    assert (gm.step_coefficients(abar[:-1], abar[1:], sampler="ddim", eta=0.0).std == 0).all()
    for k in (ddim, ancestral):
        assert (k.std[-1], k.a[-1], k.b[-1], k.c[-1]) == (0, 1, 0, 0)
    with pytest.raises(ValueError, match="eta must lie in"):
        gm.step_coefficients(abar[:-1], abar[1:], sampler="ddim", eta=1.5)


@pytest.mark.parametrize("sampler,eta,temperature", [("ancestral", 0.0, 1.0), ("ddim", 1.0, 1.0), ("ddim", 0.5, 1.0),
                                                     ("ancestral", 0.0, 0.5), ("ddim", 0.0, 1.0)])
def test_sampling_loop_draws_the_step_moments(sampler, eta, temperature):
    """With the untrained (zero-head) network v̂ = 0, so x̂_0 = α_t x_t and ε̂ = σ_t x_t: on the grid
    T → s → 0 the sample is α_s x_s with x_s = m x_T + τ·std·ξ, m = a α_T + b σ_T + c, so its
    variance is α_s²(m² + τ² std²) per dimension. 6,000 samples, tolerance 5 SE."""
    prior, n = _prior(sampler=sampler, eta=eta), 6_000
    out = prior.sample(n, steps=2, temperature=temperature, generator=torch.Generator().manual_seed(0))
    abar = prior.schedule.k(sampling_grid(16, 2))
    k = gm.step_coefficients(abar[:1], abar[1:2], sampler=sampler, eta=eta)
    m = k.a * abar[0].sqrt() + k.b * (1 - abar[0]).sqrt() + k.c
    var = (abar[1] * (m**2 + temperature**2 * k.std**2)).item()
    assert abs(out.var().item() - var) < 5 * var * math.sqrt(2 / out.numel())
    assert abs(out.mean().item()) < 5 * math.sqrt(var / out.numel())


def test_temperature_zero_is_the_limit_and_a_deterministic_map_of_x_T():
    prior = _random_head(_prior(sampler="ancestral"))
    draw = lambda tau, seed=0: prior.sample(64, temperature=tau, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    torch.testing.assert_close(draw(0.0), draw(1e-7), rtol=0, atol=1e-5)  # one generator: the τ → 0⁺ limit
    assert not torch.allclose(draw(0.0), draw(1.0), atol=1e-2)
    # τ = 0 ancestral is the posterior-mean chain: a function of x_T alone, here recomputed
    x = torch.randn((64, *SPEC.shape), generator=torch.Generator().manual_seed(0))
    grid = sampling_grid(16, 16)
    for t, s in zip(grid[:-1].tolist(), grid[1:].tolist()):
        pred = prior.predict(x, torch.full((64,), t), None)
        abar_t, abar_s = prior.schedule.k(t), prior.schedule.k(s)
        k = gm.posterior_coefficients(abar_t, abar_s)
        x = k.a.float() * pred.x0 + k.c.float() * x
    torch.testing.assert_close(draw(0.0), x, rtol=1e-4, atol=1e-5)


def test_guidance_zero_is_the_conditional_pass_and_w_combines_the_two():
    prior = _random_head(_prior(num_classes=3))
    x = torch.randn((6, *SPEC.shape), generator=torch.Generator().manual_seed(0))
    t, labels = torch.tensor([1, 4, 8, 12, 16, 16]), torch.tensor([0, 1, 2, 0, 1, 2])
    cond = prior.net_output(x, t, labels)
    uncond = prior.net_output(x, t, torch.full_like(labels, 3))
    assert torch.equal(prior.guided_output(x, t, labels, 0.0), cond)
    torch.testing.assert_close(prior.guided_output(x, t, labels, 2.0), 3 * cond - 2 * uncond)
    assert not torch.allclose(cond, uncond)  # the labels matter, so the identities above can fail
    sample = lambda w: prior.sample(6, labels=labels, guidance=w, generator=torch.Generator().manual_seed(1))  # noqa: E731
    assert not torch.allclose(sample(0.0), sample(2.0))


def test_inpainting_reimposes_known_latents_renoised_to_each_step():
    """Known positions enter the network at step t as draws of q(x_t | s·z_known): standardised
    by (α_t, σ_t) they are N(0, 1) within 5 SE; unknown ones are not pinned; the result carries
    the known codes exactly."""
    prior = _prior(latent_scale=0.5, sampler="ancestral")
    n = 2000
    known = torch.randn((n, *SPEC.shape), generator=torch.Generator().manual_seed(3)) * 3
    mask = torch.zeros(n, SPEC.num_positions, dtype=torch.bool)
    mask[:, :2] = True
    seen = []
    prior.net.register_forward_hook(lambda m, args, out: seen.append((args[0].detach(), args[1][0].item())))
    out = prior.sample(n, steps=4, inpaint_mask=mask, known_codes=known, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[:, :2], known[:, :2]) and not torch.allclose(out[:, 2:], known[:, 2:], atol=0.5)
    for x_t, time in seen:
        t = torch.full((n,), round(time * prior.timesteps))
        alpha, sigma = prior._rates(t, torch.float32)
        standard = ((x_t[:, :2] - alpha * known[:, :2] * 0.5) / sigma).flatten()
        assert abs(standard.mean().item()) < 5 / math.sqrt(standard.numel())
        assert abs(standard.var().item() - 1) < 5 * math.sqrt(2 / standard.numel())


# -- latent scaling ---------------------------------------------------------------------------------


def test_latent_scale_is_one_over_the_training_std_and_sampling_unscales_exactly():
    codes = torch.randn(500, *SPEC.shape, generator=torch.Generator().manual_seed(0)) * 7 + 1
    scale = GaussianDiffusion.config_from_codes(codes)["latent_scale"]
    assert scale == pytest.approx(1 / codes.double().std(correction=0).item(), rel=1e-12)
    plain = _random_head(_prior())
    scaled = _random_head(_prior(latent_scale=scale))
    for sampler in gm.SAMPLERS:
        a = plain.sample(8, sampler=sampler, generator=torch.Generator().manual_seed(0))
        b = scaled.sample(8, sampler=sampler, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(b * scale, a, rtol=1e-6, atol=1e-6)  # same chain, divided by the scale
    # training sees unit-variance inputs: the loss of codes c under scale s is the loss of s·c under 1
    gen = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    torch.testing.assert_close(scaled.loss(codes, generator=gen()).loss, plain.loss(codes * scale, generator=gen()).loss)
    with pytest.raises(ValueError, match="latent_scale must be"):
        _prior(latent_scale=0.0)


# -- likelihood -------------------------------------------------------------------------------------


def test_float16_bins_tile_the_line_and_round_back_to_their_value():
    v = torch.tensor([0.0, 6e-8, -1.0, 1.0, 2.0, 0.3, -1234.5, 65504.0], dtype=torch.float16)
    lo, hi = gm.float16_bins(v.float())
    assert (lo < v.double()).all() and (v.double() < hi).all()
    inside = torch.stack([lo + (hi - lo) * 1e-3, hi - (hi - lo) * 1e-3])
    assert torch.equal(inside.to(torch.float16), torch.stack([v, v]))  # every point of the bin rounds to v
    nxt = torch.nextafter(v[:-1], torch.full_like(v[:-1], math.inf))
    assert torch.equal(gm.float16_bins(nxt.float())[0], hi[:-1])  # neighbouring bins meet exactly
    with pytest.raises(ValueError, match="overflow float16"):
        gm.float16_bins(torch.tensor([1e6]))


def test_log_normal_mass_is_accurate_from_tiny_intervals_to_far_tails():
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    lo = torch.tensor([-0.3, -2.0, 1.0, 0.5], dtype=torch.float64)
    hi = lo + torch.tensor([0.1, 0.5, 1e-3, 2.0], dtype=torch.float64)
    exact = (normal.cdf(hi) - normal.cdf(lo)).log()
    torch.testing.assert_close(gm.log_normal_mass(lo, hi, torch.zeros(4), 1.0), exact, rtol=1e-9, atol=0)
    # an interval 1e-9 wide: width × density, which a difference of CDFs cannot resolve
    f64 = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    tiny = gm.log_normal_mass(f64(0.7), f64(0.7 + 1e-9), torch.zeros(1), 1.0)
    torch.testing.assert_close(tiny, normal.log_prob(f64(0.7 + 5e-10)) + math.log(1e-9), rtol=1e-6, atol=0)
    far = gm.log_normal_mass(torch.tensor([40.0]), torch.tensor([40.001]), torch.zeros(1), 1.0)
    assert torch.isfinite(far).all() and far.item() < -800


def test_vlb_terms_match_their_expectation_under_the_exact_model_of_standard_normal_data():
    """The untrained network (v̂ = 0, so x̂_0 = α_t x_t = E[x_0 | x_t] for x_0 ~ N(0, I)) makes every
    VLB term computable: E‖x_0 − x̂_0‖² = σ_t²(σ_t² ‖x_0‖² + ᾱ_t D), the prior term is the Gaussian
    KL, and the decoder is a 1-D integral done here by Monte Carlo with CDF differences. 8 codes
    × 500 repeats; each per-code step term within 5 SE; the mean bound is >= the data's own
    float16 entropy (a bound cannot beat it)."""
    prior, T = _prior(schedule="cosine"), 16
    reps, d = 500, SPEC.num_positions * SPEC.channels
    codes = torch.randn(8, *SPEC.shape, generator=torch.Generator().manual_seed(0)).to(torch.float16).float()
    out = prior.vlb(codes.repeat(reps, 1, 1), generator=torch.Generator().manual_seed(1))
    snr, abar = prior._snr, prior.schedule.k()
    norm2 = codes.double().pow(2).flatten(1).sum(1)
    for j, t in enumerate(out.t.tolist()):
        sample = out.terms[:, j].reshape(reps, 8)
        expected = 0.5 * (snr[t - 1] - snr[t]) * (1 - abar[t]) * ((1 - abar[t]) * norm2 + abar[t] * d)
        se = sample.std(0) / math.sqrt(reps)
        assert ((sample.mean(0) - expected).abs() < 5 * se + 1e-9).all(), (t, sample.mean(0), expected)
    prior_kl = 0.5 * (abar[T] * norm2 + d * (1 - abar[T] - 1 - math.log(1 - abar[T])))
    torch.testing.assert_close(out.prior.reshape(reps, 8)[0], prior_kl, rtol=1e-9, atol=1e-12)
    # decoder: x̂_0 = ᾱ_1 x_0 + α_1 σ_1 ε, mass of N(x̂_0, β_1) on the float16 bin, by its own Monte Carlo
    lo, hi = gm.float16_bins(codes)
    g = torch.Generator().manual_seed(9)
    a1 = abar[1].item()
    mean = a1 * codes.double() + math.sqrt(a1 * (1 - a1)) * torch.randn((4000, *codes.shape), generator=g, dtype=torch.float64)
    normal = torch.distributions.Normal(mean, math.sqrt(prior.schedule.beta(1).item()))
    decoder = -(normal.cdf(hi) - normal.cdf(lo)).log().flatten(2).sum(2)  # (4000, 8)
    sample = out.decoder.reshape(reps, 8)
    se = (sample.var(0) / reps + decoder.var(0) / 4000).sqrt()
    assert ((sample.mean(0) - decoder.mean(0)).abs() < 5 * se).all()
    entropy = -gm.log_normal_mass(lo, hi, torch.zeros(1), 1.0).flatten(1).sum(1) / (d * math.log(2))
    assert out.bits_per_dim.mean() > entropy.mean() - 0.1


def test_nll_is_in_bits_per_dim_and_refuses_the_bits_per_bit_column():
    prior = _prior()
    out = prior.nll(torch.randn(3, *SPEC.shape), generator=torch.Generator().manual_seed(0))
    assert out.unit == "bits_per_dim" == prior.nll_unit and not out.exact
    with pytest.raises(ValueError, match="not bits per latent bit"):
        out.bits_per_bit
    estimate = prior.vlb(torch.randn(3, *SPEC.shape), generator=torch.Generator().manual_seed(0), num_timesteps=4)
    assert estimate.estimated and estimate.terms.shape == (3, 4) and estimate.t.min() >= 2
    # nll_timesteps (config) is nll()'s default M: the same estimate as vlb(num_timesteps=M)
    codes = torch.randn(3, *SPEC.shape, generator=torch.Generator().manual_seed(1))
    cheap = _prior(nll_timesteps=4)
    torch.testing.assert_close(cheap.nll(codes, generator=torch.Generator().manual_seed(2)).bits,
                               cheap.vlb(codes, generator=torch.Generator().manual_seed(2), num_timesteps=4).bits_per_dim)
    assert not torch.equal(cheap.nll(codes, generator=torch.Generator().manual_seed(2)).bits,
                           cheap.nll(codes, generator=torch.Generator().manual_seed(2), num_timesteps=15).bits)


# -- options and the learning test ------------------------------------------------------------------


def test_options_are_validated_up_front_naming_the_choices():
    for bad, match in [(dict(target="score"), "unknown target"), (dict(loss_weighting="snr"), "unknown loss_weighting"),
                       (dict(sampler="euler"), "unknown sampler"), (dict(eta=-0.1), "eta must lie"),
                       (dict(default_steps=17), "steps must be an int"), (dict(min_snr_gamma=0), "min_snr_gamma")]:
        with pytest.raises((ValueError, AssertionError), match=match):
            _prior(**bad)


@pytest.mark.parametrize("weighting", ["min_snr", "vlb"])
def test_loss_weightings_are_the_stated_weights_on_x0_error(weighting):
    """min_snr weighs x̂_0's squared error by min(SNR, γ); vlb by T·½(SNR_{t−1} − SNR_t) (t >= 2)."""
    prior = _prior(loss_weighting=weighting, target="v")
    snr = prior._snr
    per_x0 = prior._weights * gm.x0_error_scale(snr, "v")
    t = torch.arange(2, 17)
    expected = snr[t].clamp(max=5.0) if weighting == "min_snr" else 16 * 0.5 * (snr[t - 1] - snr[t])
    torch.testing.assert_close(per_x0[t], expected, rtol=1e-12, atol=0)


def _mixture(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 1, 2): three equal 2-D Gaussians (std 0.3) at radius 3 around (1, −2), codes of grid (1, 1)."""
    angles = torch.tensor([0.0, 2.1, 4.2])
    centres = torch.stack([angles.cos(), angles.sin()], 1) * 3 + torch.tensor([1.0, -2.0])
    which = torch.randint(0, 3, (n,), generator=generator)
    return (centres[which] + 0.3 * torch.randn(n, 2, generator=generator))[:, None, :]


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, *, projections: int = 128, seed: int = 0) -> float:
    """Mean over random directions of the 1-D Wasserstein-1 distance between the projections of
    two equal-size point sets (sorted differences)."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    directions = torch.randn(a.shape[1], projections, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    directions = directions / directions.norm(dim=0)
    return ((a @ directions).sort(0).values - (b @ directions).sort(0).values).abs().mean().item()


@pytest.mark.slow
def test_learns_a_2d_gaussian_mixture_better_than_the_best_single_gaussian():
    """800 steps (batch 256) at the tiny preset, scale from the training codes, DDIM 25 steps
    (η = 0): the sliced Wasserstein-1 distance of 2,000 samples to 2,000 held-out truth points must
    sit below the midpoint between the truth's own sample-to-sample distance (the floor) and that
    of the moment-matched single Gaussian (the wrong model), and below 3x the floor.
    Measured: model 0.103, floor 0.047, single Gaussian 0.779 (threshold 0.141)."""
    torch.manual_seed(0)
    spec = CodeSpec(kind="continuous", grid=(1, 1), channels=2)
    gen = torch.Generator().manual_seed(0)
    train = _mixture(20_000, gen)
    prior = build_prior("gaussian", spec, preset="tiny", timesteps=200, cond_drop_prob=0.0,
                        **GaussianDiffusion.config_from_codes(train))
    steps = 800
    opt = torch.optim.Adam(prior.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / steps)
    for _ in range(steps):
        batch = train[torch.randint(0, len(train), (256,), generator=gen)]
        loss = prior.loss(batch, generator=gen).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    prior.eval()
    n = 2000
    samples = prior.sample(n, steps=25, generator=torch.Generator().manual_seed(1))
    truth, again = _mixture(n, torch.Generator().manual_seed(2)), _mixture(n, torch.Generator().manual_seed(3))
    flat = train.flatten(1).double()
    fit = torch.distributions.MultivariateNormal(flat.mean(0), torch.cov(flat.T))
    torch.manual_seed(4)
    single = fit.sample((n,)).float()[:, None, :]
    model, floor, wrong = (sliced_wasserstein(x, truth) for x in (samples, again, single))
    print(f"sliced W1: model {model:.3f}, truth floor {floor:.3f}, single Gaussian {wrong:.3f}")
    assert wrong > 4 * floor  # the gap the threshold sits in
    assert model < min((floor + wrong) / 2, 3 * floor)
