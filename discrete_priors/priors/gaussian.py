"""Gaussian diffusion prior over continuous codes — the latent diffusion (LDM) baseline.

Latent diffusion, Rombach et al., CVPR 2022 — https://arxiv.org/abs/2112.10752; the diffusion
itself is DDPM (Ho et al. 2020, https://arxiv.org/abs/2006.11239) with DDIM sampling (Song et al.
2021, https://arxiv.org/abs/2010.02502).

One batch of codes, start to end: ``loss`` scales the codes by ``latent_scale`` (1/std of the
training codes, as LDM), draws t ~ U{1..T} and ε ~ N(0, I) per sample, shows the denoiser
x_t = α_t x_0 + σ_t ε (with t/T and the label) and regresses its output on the chosen target;
``sample`` runs DDIM or the ancestral chain on a grid of S <= T steps and divides by the scale.
The per-element maths lives in :mod:`discrete_priors.priors.gaussian_math`, the ᾱ_t tables in
:mod:`discrete_priors.priors.schedules`; docs/method.md §10 derives both.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from discrete_priors.latents.base import CodeSpec
from discrete_priors.latents.continuous import gaussian_kl
from discrete_priors.nets.denoiser import Denoiser
from discrete_priors.nets.presets import network_sizes
from discrete_priors.priors import gaussian_math as gm
from discrete_priors.priors import sampling
from discrete_priors.priors.base import LossOutput, NLLOutput, Prior
from discrete_priors.priors.schedules import GAUSSIAN_SCHEDULES, make_gaussian_schedule

LOSS_WEIGHTINGS = ("uniform", "min_snr", "vlb")


class GaussianVLB(NamedTuple):
    """bits_per_dim: (B,) the bound in bits per latent dimension (float16-discretised codes);
    terms: (B, M) nats per code of the diffusion steps ``t`` (M,) >= 2 (scaled by (T−1)/M when
    estimated); decoder: (B,) nats of −log p(z | x_1) on the float16 bins; prior: (B,) nats of
    KL(q(x_T | x_0) ‖ N(0, I)); estimated: True when only M < T − 1 steps were evaluated."""

    bits_per_dim: torch.Tensor
    terms: torch.Tensor
    t: torch.Tensor
    decoder: torch.Tensor
    prior: torch.Tensor
    estimated: bool


class GaussianDiffusion(Prior):
    """Gaussian diffusion on continuous codes (B, N, c) (docs/method.md §10).

    preset/dim/depth/heads, cond, pos_emb: the :class:`Denoiser`, built exactly as the Bernoulli
      prior's (in and out c channels), so equal presets give equal parameter counts. Its output
      head starts at zero: the untrained model predicts v̂ = 0, i.e. x̂_0 = α_t x_t, which is
      E[x_0 | x_t] for x_0 ~ N(0, I) — the exact model of unit-variance latents' moments.
    timesteps: T; schedule: "cosine" | "linear" (β_t, :func:`~discrete_priors.priors.schedules.signal_rates`).
    target: what the network outputs — "eps" (ε), "x0" or "v" = α_t ε − σ_t x_0 (default).
      v because it is well conditioned at both ends of the schedule (Salimans & Ho 2022,
      https://arxiv.org/abs/2202.00512): x̂_0 = α_t x_t − σ_t v̂ never divides by α_t (ε blows up
      x̂_0's error by 1/α_t near t = T, where the cosine ᾱ_T is ~1e-9) nor by σ_t (x0 blows up ε̂
      near t = 0); its MSE weighs x̂_0's error by SNR + 1, between the two.
    loss_weighting: "uniform" (plain MSE of the target) | "min_snr" (x̂_0's MSE weighted by
      min(SNR_t, γ), γ = ``min_snr_gamma``, Hang et al. 2023, https://arxiv.org/abs/2303.09556)
      | "vlb" (each t weighted as its VLB term: the loss is T·E_t[L_t] in nats per dimension,
      the bound's data-dependent part).
    latent_scale: codes are multiplied by it inside loss/nll and samples divided by it (LDM's
      scale factor). The pipeline sets it to 1/std of the training codes (:meth:`config_from_codes`).
    sampler: "ddim" | "ancestral" (DDPM); eta: DDIM's η ∈ [0, 1]; default_steps: S (None: T).
    temperature: τ scales the noise injected at each reverse step (ancestral, DDIM with η > 0),
      not x_T ~ N(0, I) — LDM's DDIM ``temperature``: τ = 1 is the model's chain, τ = 0 a
      deterministic map of x_T (so τ does nothing at η = 0).
    inpaint_renoise: known latents re-imposed after each step as q(x_s | x_0) draws (True) or
      clean (False); the returned codes carry the known values exactly either way.
    nll_timesteps: M, the steps :meth:`nll` evaluates by default (None: all T; see :meth:`vlb`).
    """

    accepts = frozenset({"continuous"})
    name = "gaussian"
    nll_unit = "bits_per_dim"

    def __init__(
        self,
        spec: CodeSpec | dict,
        *,
        num_classes: int | None = None,
        preset: str = "cpu",
        dim: int | None = None,
        depth: int | None = None,
        heads: int | None = None,
        cond: str = "token",
        pos_emb: str = "learned",
        cond_drop_prob: float = 0.1,
        timesteps: int = 1000,
        schedule: str = "cosine",
        target: str = "v",
        loss_weighting: str = "uniform",
        min_snr_gamma: float = 5.0,
        latent_scale: float = 1.0,
        sampler: str = "ddim",
        eta: float = 0.0,
        default_steps: int | None = None,
        temperature: float = 1.0,
        inpaint_renoise: bool = True,
        nll_timesteps: int | None = None,
    ):
        super().__init__(spec, num_classes=num_classes, cond_drop_prob=cond_drop_prob)
        if schedule not in GAUSSIAN_SCHEDULES:
            raise ValueError(f"unknown Gaussian schedule {schedule!r}, expected one of {GAUSSIAN_SCHEDULES}")
        assert target in gm.TARGETS, f"unknown target {target!r}, expected one of {gm.TARGETS}"
        assert loss_weighting in LOSS_WEIGHTINGS, f"unknown loss_weighting {loss_weighting!r}, expected one of {LOSS_WEIGHTINGS}"
        assert sampler in gm.SAMPLERS, f"unknown sampler {sampler!r}, expected one of {gm.SAMPLERS}"
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must lie in [0, 1] (0 = deterministic DDIM, 1 = ancestral variance), got {eta}")
        if not (math.isfinite(latent_scale) and latent_scale > 0):
            raise ValueError(f"latent_scale must be a finite number > 0 (1/std of the training codes), got {latent_scale}")
        if min_snr_gamma <= 0:
            raise ValueError(f"min_snr_gamma must be > 0, got {min_snr_gamma}")
        sampling.check_temperature(temperature)
        if nll_timesteps is not None and not 1 <= nll_timesteps <= timesteps:
            raise ValueError(f"nll_timesteps must be None (all T steps) or in [1, {timesteps}], got {nll_timesteps}")
        default_steps = timesteps if default_steps is None else default_steps
        sampling.sampling_grid(timesteps, default_steps)  # validates both
        sizes = network_sizes(preset, dim=dim, depth=depth, heads=heads)
        self.config = self.shared_config(preset, sizes) | dict(
            cond=cond, pos_emb=pos_emb, cond_drop_prob=self.cond_drop_prob, timesteps=timesteps, schedule=schedule,
            target=target, loss_weighting=loss_weighting, min_snr_gamma=float(min_snr_gamma),
            latent_scale=float(latent_scale), sampler=sampler, eta=float(eta), default_steps=default_steps,
            temperature=float(temperature), inpaint_renoise=bool(inpaint_renoise), nll_timesteps=nll_timesteps,
        )
        self.nll_timesteps = nll_timesteps
        self.timesteps, self.target, self.loss_weighting = timesteps, target, loss_weighting
        self.latent_scale, self.sampler, self.eta = float(latent_scale), sampler, float(eta)
        self.default_steps, self.temperature, self.inpaint_renoise = default_steps, temperature, inpaint_renoise
        self.schedule = make_gaussian_schedule(schedule, timesteps)
        abar = self.schedule.k()
        self._snr = abar / (1 - abar)  # (T+1,) float64, inf at t = 0
        self._weights = self._loss_weight_table(min_snr_gamma)
        c = self.spec.channels
        self.net = Denoiser(grid=self.spec.grid, in_dim=c, out_dim=c, num_classes=num_classes, cond=cond,
                            pos_emb=pos_emb, zero_init_head=True, **sizes)
        self.net.check_label_range = False  # checked once per call by loss/sample/nll (no sync per step)

    @classmethod
    def config_from_codes(cls, codes: torch.Tensor) -> dict:
        """``latent_scale`` = 1/std of every element of the training codes (LDM's scale factor,
        computed over the whole cache rather than LDM's first batch)."""
        std = codes.double().std(correction=0).item()
        if not (math.isfinite(std) and std > 0):
            raise ValueError(f"latent_scale needs training codes with a finite std > 0, got std {std}")
        return {"latent_scale": 1.0 / std}

    def _loss_weight_table(self, gamma: float) -> torch.Tensor:
        """(T+1,) float64 weight of the target MSE at each t (t = 0 unused), see the class doc."""
        snr, T = self._snr, self.timesteps
        per_x0 = torch.ones_like(snr)  # the weight on x̂_0's squared error that each option means
        if self.loss_weighting == "min_snr":
            per_x0 = snr.clamp(max=gamma)
        elif self.loss_weighting == "vlb":
            # L_{t-1} = ½ (SNR_{t-1} − SNR_t) ‖x̂_0 − x_0‖² for t >= 2; at t = 1 the decoder's
            # Gaussian quadratic ‖·‖²/(2β_1) (its discretisation is negligible at float16 widths)
            per_x0 = torch.cat([snr.new_zeros(1), snr.new_full((1,), 0.5 / self.schedule.beta(1).item()),
                                0.5 * (snr[1:-1] - snr[2:])]) * T
        if self.loss_weighting == "uniform":
            return torch.ones_like(snr)
        scale = gm.x0_error_scale(snr, self.target)
        return torch.where(torch.isinf(snr), torch.zeros_like(snr), per_x0 / scale)

    # -- pieces ----------------------------------------------------------------------------------
    def _rates(self, t: torch.Tensor, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(α_t, σ_t) as (B, 1, 1) of ``dtype`` for steps t (B,) already validated (no sync)."""
        abar = self.schedule.k(t, check=False).to(device=self.device, dtype=torch.float64).reshape(-1, 1, 1)
        return abar.sqrt().to(dtype), (1 - abar).sqrt().to(dtype)

    def net_output(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Denoiser output (B, N, c) for scaled noisy codes x_t (B, N, c) at integer steps t (B,),
        time t/T; cast back to x_t's dtype (under autocast the network may return bf16)."""
        return self.net(x_t, t.to(x_t.dtype) / self.timesteps, labels).to(x_t.dtype)

    def guided_output(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None, guidance: float) -> torch.Tensor:
        """(1 + w) out_cond − w out_uncond (:func:`sampling.guided_logits`). Every target is affine
        in the output at fixed x_t, so this is classifier-free guidance on ε̂ (Ho & Salimans 2022)
        for each target; w = 0 is one conditional pass."""
        return sampling.guided_logits(self.net_output, (x_t, t), labels, guidance, null_class=self.num_classes)

    def predict(self, x_t, t, labels, *, guidance: float = 0.0) -> gm.Prediction:
        """(x̂_0, ε̂) at x_t (B, N, c) scaled, steps t (B,) validated."""
        alpha, sigma = self._rates(t, x_t.dtype)
        return gm.predictions(self.guided_output(x_t, t, labels, guidance), x_t, alpha, sigma, self.target)

    # -- training ------------------------------------------------------------------------------
    def loss(self, codes: torch.Tensor, labels: torch.Tensor | None = None, *, generator: torch.Generator | None = None,
             log_terms: bool = True) -> LossOutput:
        """Weighted MSE of the target at t ~ U{1..T}, mean per latent dimension. terms: mse (the
        unweighted target MSE), loss, and with ``log_terms`` x0_mse (x̂_0's MSE in scaled units)."""
        x0 = self.check_codes(codes) * self.latent_scale
        batch = x0.shape[0]
        labels = self.check_labels(labels, batch)
        t = self._steps(batch, generator)  # drawn in 1..T: the lookups below need no validation (no sync)
        alpha, sigma = self._rates(t, x0.dtype)
        noise = sampling.normal(x0.shape, generator, self.device, x0.dtype)
        x_t = gm.q_sample(x0, alpha, sigma, noise)
        out = self.net_output(x_t, t, self.drop_labels(labels, generator))
        mse = (out - gm.target_of(x0, noise, alpha, sigma, self.target)).pow(2).flatten(1).mean(1)  # (B,)
        weight = self.schedule.on(self._weights, t.device)[t].to(x0.dtype)
        loss = (weight * mse).mean()
        terms = {"mse": mse.mean().detach(), "loss": loss.detach()}
        if log_terms:
            snr = self.schedule.on(self._snr, t.device)[t]
            terms["x0_mse"] = (mse.detach().double() / gm.x0_error_scale(snr, self.target)).mean().to(x0.dtype)
        return LossOutput(loss, terms)

    # -- likelihood ----------------------------------------------------------------------------
    @torch.no_grad()
    def vlb(self, codes: torch.Tensor, labels: torch.Tensor | None = None, *, generator: torch.Generator | None = None,
            num_timesteps: int | None = None) -> GaussianVLB:
        """−log₂ P(z) per latent dimension <= the VLB, for z the codes rounded to float16 (their
        storage grid) and P the model's probability of z's float16 rounding interval (docs/method.md
        §10.4): KL(q(x_T|x_0) ‖ N(0, I)) + Σ_{t=2}^T E_q ½(SNR_{t−1} − SNR_t)‖x̂_0 − x_0‖² + E_q −log p(z|x_1),
        the decoder p(z | x_1) = Π N(x̂_0, β_1) integrated over each scaled interval. One x_t per t
        and code (T network calls of batch B); ``num_timesteps=M < T − 1`` estimates the sum over
        t >= 2 from M steps drawn without replacement, scaled by (T − 1)/M (the decoder is always exact)."""
        z = self.check_codes(codes)
        labels = self.check_labels(labels, z.shape[0])
        lo, hi = gm.float16_bins(z)
        scale, T = self.latent_scale, self.timesteps
        x0 = z.to(torch.float16).to(z.dtype) * scale
        if num_timesteps is None or num_timesteps >= T - 1:
            steps, factor = torch.arange(2, T + 1), 1.0
        else:
            if num_timesteps < 1:
                raise ValueError(f"num_timesteps must be >= 1, got {num_timesteps}")
            device = generator.device if generator is not None else "cpu"
            steps = (torch.randperm(T - 1, generator=generator, device=device)[:num_timesteps] + 2).sort().values.cpu()
            factor = (T - 1) / num_timesteps

        def draw(step: int):
            t = torch.full((z.shape[0],), step, dtype=torch.long, device=self.device)
            alpha, sigma = self._rates(t, x0.dtype)
            x_t = gm.q_sample(x0, alpha, sigma, sampling.normal(x0.shape, generator, self.device, x0.dtype))
            return self.predict(x_t, t, labels).x0

        decoder_std = self.schedule.beta(1).sqrt().item()
        decoder = -gm.log_normal_mass(lo * scale, hi * scale, draw(1), decoder_std).flatten(1).sum(1)
        terms = []
        for step in steps.tolist():
            weight = 0.5 * (self._snr[step - 1] - self._snr[step]).item()
            terms.append(weight * (draw(step) - x0).double().pow(2).flatten(1).sum(1) * factor)
        terms = torch.stack(terms, 1) if terms else decoder.new_zeros(z.shape[0], 0)
        abar_T = self.schedule.k(T).item()
        prior = gaussian_kl(math.sqrt(abar_T) * x0.double(), torch.tensor(math.log1p(-abar_T), dtype=torch.float64))
        prior = prior.flatten(1).sum(1)
        bits = (terms.sum(1) + decoder + prior) / (math.log(2) * z[0].numel())
        return GaussianVLB(bits.float(), terms, steps, decoder, prior, factor != 1.0)

    @torch.no_grad()
    def nll(self, codes: torch.Tensor, labels: torch.Tensor | None = None, *, generator: torch.Generator | None = None,
            num_timesteps: int | None = None) -> NLLOutput:
        """The VLB (:meth:`vlb`) in bits per latent dimension of the float16-discretised codes
        (unit ``bits_per_dim``, not comparable with bits per latent bit); ``exact`` is False.
        ``num_timesteps=None``: the config's ``nll_timesteps``."""
        num_timesteps = self.nll_timesteps if num_timesteps is None else num_timesteps
        out = self.vlb(codes, labels, generator=generator, num_timesteps=num_timesteps)
        return NLLOutput(out.bits_per_dim, False, self.nll_unit)

    # -- sampling ------------------------------------------------------------------------------
    def network_evals_per_sample(self, steps: int | None = None, *, guidance: float = 0.0) -> int:
        """One network call per sampling step (``default_steps`` if None), two with guidance."""
        steps = self.default_steps if steps is None else steps
        return steps * (2 if guidance != 0.0 else 1)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        steps: int | None = None,
        temperature: float | None = None,
        labels: torch.Tensor | None = None,
        guidance: float = 0.0,
        inpaint_mask: torch.Tensor | None = None,
        known_codes: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        progress: bool = False,
        sampler: str | None = None,
        eta: float | None = None,
    ) -> torch.Tensor:
        """n codes (n, N, c), un-scaled (divided by ``latent_scale``). x_T ~ N(0, I), then on
        :func:`sampling.sampling_grid` (T → 0 in ``steps`` jumps, network time t/T) each jump is
        x_s = a x̂_0 + b ε̂ + c x_t + τ·std·ξ (:func:`gaussian_math.step_coefficients`); the last
        jump returns x̂_0 (no noise). ``sampler``/``eta`` override the config for this call.
        Inpainting: known entries (mask (n, N) positions or (n, N, c)) are replaced after every
        jump by a draw of q(x_s | known) (``inpaint_renoise``) and, in the result, by their exact values."""
        steps = self.default_steps if steps is None else steps
        temperature = self.temperature if temperature is None else temperature
        sampler = sampler or self.sampler
        eta = self.eta if eta is None else eta
        grid = sampling.sampling_grid(self.timesteps, steps)
        labels = self.check_sampling(n, labels, guidance, temperature)
        mask, known = self.check_inpaint(inpaint_mask, known_codes, n)
        dtype = torch.promote_types(torch.float32, next(self.parameters()).dtype)  # float64 for a .double() prior
        abar = self.schedule.k(grid, check=False)
        step = gm.step_coefficients(abar[:-1], abar[1:], sampler=sampler, eta=eta)
        # every step's coefficients computed once (float64, then cast) and moved once: the loop
        # indexes them without host work or transfers
        table = torch.stack([abar[:-1].sqrt(), (1 - abar[:-1]).sqrt(), *step, abar[1:].sqrt(), (1 - abar[1:]).sqrt()], 1)
        table = table.to(device=self.device, dtype=dtype)
        noisy = sampler == "ancestral" or eta > 0
        times = grid.to(self.device)
        x = sampling.normal((n, *self.spec.shape), generator, self.device, dtype)
        if mask is not None:
            mask = (mask[..., None].expand_as(known) if mask.dim() == 2 else mask).to(self.device)
            known = known.to(device=self.device, dtype=dtype)
            x0_known = known * self.latent_scale
            x = torch.where(mask, self._known_at(x0_known, table[0, 0], table[0, 1], True, generator), x)
        pairs = self.progress_bar(list(enumerate(grid[1:].tolist())), "gaussian sampling", progress)
        for i, s_val in pairs:
            alpha_t, sigma_t, a, b, c, std, alpha_s, sigma_s = table[i]
            out = self.guided_output(x, times[i].expand(n), labels, guidance)
            pred = gm.predictions(out, x, alpha_t, sigma_t, self.target)
            x = a * pred.x0 + b * pred.eps + c * x
            if noisy and s_val > 0:  # drawn at τ = 0 too, so one generator gives the τ → 0 limit
                x = x + (temperature * std) * sampling.normal(x.shape, generator, self.device, dtype)
            if mask is not None and s_val > 0:
                x = torch.where(mask, self._known_at(x0_known, alpha_s, sigma_s, self.inpaint_renoise, generator), x)
        z = x / self.latent_scale
        return z if mask is None else torch.where(mask, known, z)

    def _known_at(self, x0_known, alpha, sigma, renoise: bool, generator) -> torch.Tensor:
        """Scaled known codes at a step with rates (α, σ) (0-d, on the device): a q(x_s | x_0) draw if ``renoise``."""
        if not renoise:
            return x0_known
        return gm.q_sample(x0_known, alpha, sigma, sampling.normal(x0_known.shape, generator, self.device, x0_known.dtype))
