"""Bernoulli diffusion prior over binary codes — the method of Binary Latent Diffusion.

Binary Latent Diffusion, Wang, Wang, Liu & Qiu, CVPR 2023 — https://arxiv.org/abs/2304.04820

One batch of codes, start to end: ``loss`` draws t ~ U{1..T} per sample, flips each bit of z⁰
with probability (1 − k_t)/2 (:func:`bernoulli_math.q_sample`), shows the denoiser (±1 bits,
t/T, label) and scores its logits against the target of the chosen parameterization; ``sample``
runs the reverse chain on a grid of S <= T steps with exact multi-step posteriors. All per-bit
maths lives in :mod:`discrete_priors.priors.bernoulli_math`, schedules in
:mod:`discrete_priors.priors.schedules`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from discrete_priors.latents.base import CodeSpec
from discrete_priors.nets.denoiser import Denoiser
from discrete_priors.nets.presets import network_sizes
from discrete_priors.priors import bernoulli_math as bm
from discrete_priors.priors import sampling
from discrete_priors.priors.base import LossOutput, NLLOutput, Prior
from discrete_priors.priors.sampling import sampling_grid  # noqa: F401  re-exported: the grid lived here
from discrete_priors.priors.schedules import SCHEDULES, make_schedule

LOSS_BALANCES = ("none", "class_balanced")
TIME_WEIGHTINGS = ("uniform", "linear")
FINAL_STEPS = ("threshold", "sample")
TIME_SAMPLINGS = ("uniform", "importance", "linear")


class VLBOutput(NamedTuple):
    """bits_per_bit: (B,) the bound in bits per latent bit; terms: (B, M) nats per code of the
    evaluated steps ``t`` (M,) (already weighted by their strata's sizes when estimated); prior: (B,) nats of
    KL(q(z^T|z⁰) ‖ B(½)); estimated: True when only a random subset of steps was evaluated."""

    bits_per_bit: torch.Tensor
    terms: torch.Tensor
    t: torch.Tensor
    prior: torch.Tensor
    estimated: bool


class BernoulliDiffusion(Prior):
    """Bernoulli diffusion on binary codes (B, N, c) (docs/method.md §2).

    preset: network size ("tiny" | "cpu" | "paper", :data:`~discrete_priors.nets.presets.NETWORK_PRESETS`); dim/depth/heads
      override it when not None. cond ("adaln" | "token": how t and the label enter) and pos_emb
      ("learned" | "sincos") are passed to the :class:`Denoiser`. The default "token" keeps the
      parameter count within 4% of the other priors at the same preset (adaLN adds ~40%), and
      adaLN trained no better in our small-scale comparison (see the README).
    timesteps: T; schedule: "linear" | "cosine" | "sigmoid" (see :mod:`schedules`).
    parameterization: what the logits mean — "direct" (the Bernoulli parameter of zᵗ⁻¹),
      "x0" (p̂(z⁰=1)), "residual" (the flip probability p(z⁰ ≠ zᵗ), the paper's choice).
    reverse: "mixture" | "joint" — how p̂ becomes a reverse step (ignored by "direct").
    loss_balance: "none" | "class_balanced" (per-sample ρ weighting of flipped/unflipped bits, as
      the reference code; see :func:`bernoulli_math.class_balanced_weights`).
    vlb_weight: λ in L = L_target + λ L_vlb; time_weighting of L_vlb: "uniform" | "linear"
      (weight 1 − (t−1)/T).
    time_sampling: how training draws t — "uniform" on {1..T}, or "importance": p_t ∝ the root
      mean square of the recent per-sample loss at t (Nichol & Dhariwal 2021, §3.3), mixed with
      10% uniform, each sample's loss weighted 1/(T p_t) so the objective is unchanged (only its
      gradient variance is); uniform until every t has been seen once, uniform in eval mode;
      or "linear": p_t ∝ T + 1 − t, unweighted (the objective weighted toward small t, where the
      16-step sampler's TV is decided: docs/method.md §2.7; the per-t optimum is unchanged).
    final_step: "sample" (draw the last reverse step, the exact reverse process; under the mixture
      form that is z⁰ ~ B(p̂)) | "threshold" (z⁰ = 1[p̂(z⁰=1 | zᵗ) > ½], for direct 1[f > ½]; the
      reference code's choice, biased whenever the data has per-bit noise: with the Bayes-optimal
      predictor it triples the 16-step TV on the synthetic mixture, tests/test_oracles.py).
    cond_drop_prob: per-sample probability of training with the null label (classifier-free guidance).
    inpaint_renoise: re-impose known bits re-noised to the current step (True) or clean (False).
    default_steps, temperature: sampling defaults (τ >= 0; 0 = argmax, see :meth:`sample`).

    The ``direct`` target is BCE against the exact posterior probability q(zᵗ⁻¹=1 | zᵗ, z⁰)
    (a soft target: same expected gradient as a sampled zᵗ⁻¹, lower variance). Its network is
    a one-step kernel, so sampling ``direct`` with S < T steps raises an error.
    """

    accepts = frozenset({"binary"})
    name = "bernoulli"

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
        timesteps: int = 256,
        schedule: str = "linear",
        parameterization: str = "residual",
        reverse: str = "mixture",
        loss_balance: str = "none",
        vlb_weight: float = 0.0,
        time_weighting: str = "uniform",
        time_sampling: str = "uniform",
        final_step: str = "sample",
        inpaint_renoise: bool = False,
        default_steps: int | None = None,
        temperature: float = 1.0,
    ):
        super().__init__(spec, num_classes=num_classes, cond_drop_prob=cond_drop_prob)
        spec = self.spec
        assert schedule in SCHEDULES, f"unknown schedule {schedule!r}, expected one of {SCHEDULES}"
        assert parameterization in bm.PARAMETERIZATIONS, f"unknown parameterization {parameterization!r}"
        assert reverse in bm.REVERSE_FORMS, f"unknown reverse form {reverse!r}, expected one of {bm.REVERSE_FORMS}"
        assert loss_balance in LOSS_BALANCES, f"unknown loss_balance {loss_balance!r}, expected one of {LOSS_BALANCES}"
        assert time_weighting in TIME_WEIGHTINGS, f"unknown time_weighting {time_weighting!r}, expected one of {TIME_WEIGHTINGS}"
        assert final_step in FINAL_STEPS, f"unknown final_step {final_step!r}, expected one of {FINAL_STEPS}"
        assert time_sampling in TIME_SAMPLINGS, f"unknown time_sampling {time_sampling!r}, expected one of {TIME_SAMPLINGS}"
        if vlb_weight < 0:
            raise ValueError(f"vlb_weight must be >= 0, got {vlb_weight}")
        sampling.check_temperature(temperature)
        default_steps = timesteps if default_steps is None else default_steps
        sampling_grid(timesteps, default_steps)  # validates both
        if parameterization == "direct" and default_steps != timesteps:
            raise ValueError(f"parameterization 'direct' samples one step at a time: default_steps must be T={timesteps}")
        sizes = network_sizes(preset, dim=dim, depth=depth, heads=heads)
        self.config = self.shared_config(preset, sizes) | dict(
            cond=cond, pos_emb=pos_emb, cond_drop_prob=self.cond_drop_prob, timesteps=timesteps, schedule=schedule, parameterization=parameterization,
            reverse=reverse, loss_balance=loss_balance, vlb_weight=float(vlb_weight), time_weighting=time_weighting,
            time_sampling=time_sampling, final_step=final_step, inpaint_renoise=bool(inpaint_renoise),
            default_steps=default_steps, temperature=float(temperature),
        )
        self.timesteps, self.parameterization, self.reverse = timesteps, parameterization, reverse
        self.loss_balance, self.vlb_weight, self.time_weighting = loss_balance, vlb_weight, time_weighting
        self.final_step, self.inpaint_renoise = final_step, inpaint_renoise
        self.time_sampling = time_sampling
        if time_sampling == "importance":
            # E[L_t²] per step (an EMA of batch means) and whether t was seen: saved with the weights
            self.register_buffer("loss_square", torch.zeros(timesteps, dtype=torch.float64))
            self.register_buffer("loss_seen", torch.zeros(timesteps, dtype=torch.bool))
        self.default_steps, self.temperature = default_steps, temperature
        self.schedule = make_schedule(schedule, timesteps)
        c = spec.channels
        self.net = Denoiser(grid=spec.grid, in_dim=c, out_dim=c, num_classes=num_classes, cond=cond, pos_emb=pos_emb, **sizes)
        self.net.check_label_range = False  # checked once per call by loss/sample/vlb/step_vlb (no sync per step)

    # -- pieces ----------------------------------------------------------------------------------
    def _jump(self, t, s, dtype, *, check: bool = True) -> bm.Jump:
        return bm.make_jump(self.schedule, t, s, dtype=dtype, device=self.device, check=check)

    def net_logits(self, z_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Denoiser logits (B, N, c) for codes z_t (B, N, c) in {0,1} at integer steps t (B,):
        bits enter as ±1, time as t/T (never scaled by a sampling step count)."""
        # cast back: under autocast the network may return bf16/fp16, the diffusion maths wants fp32+
        return self.net(z_t * 2 - 1, t.to(z_t.dtype) / self.timesteps, labels).to(z_t.dtype)

    def guided_logits(self, z_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None, guidance: float) -> torch.Tensor:
        """ℓ = (1 + w) ℓ_cond − w ℓ_uncond, both passes in one batch; w = 0 is one conditional pass
        (:func:`sampling.guided_logits`)."""
        return sampling.guided_logits(self.net_logits, (z_t, t), labels, guidance, null_class=self.num_classes)

    def reverse_logits(self, z_t, net_logits, t, s, *, form: str | None = None) -> torch.Tensor:
        """Logit of p_θ(zˢ=1 | zᵗ) for steps t > s (ints or (B,) long)."""
        return bm.reverse_logits(
            z_t, net_logits, self._jump(t, s, z_t.dtype), parameterization=self.parameterization, form=form or self.reverse
        )

    # -- training ------------------------------------------------------------------------------
    def loss(self, codes: torch.Tensor, labels: torch.Tensor | None = None, *, generator: torch.Generator | None = None,
             log_terms: bool = True) -> LossOutput:
        """L = L_target + λ L_vlb at t ~ U{1..T} per sample (docs/method.md §2.5); both mean per latent bit in
        nats. terms: target, vlb (time-weighted, nats per bit), loss. ``log_terms=False`` (a
        training step whose terms are not logged) skips the VLB when λ = 0, where it is only
        logged: the loss is the same, terms has no ``vlb``."""
        z0 = self.check_codes(codes)
        batch = z0.shape[0]
        labels = self.check_labels(labels, batch)
        t, sample_weight = self._training_steps(batch, generator)  # drawn in 1..T: the lookups below need no validation
        keep_t = self.schedule.k(t, check=False).to(device=z0.device, dtype=z0.dtype).reshape(-1, 1, 1)
        z_t = bm.q_sample(z0, keep_t, generator=generator)
        logits = self.net_logits(z_t, t, self.drop_labels(labels, generator))
        jump = self._jump(t, t - 1, z0.dtype, check=False)
        flips = (z_t != z0).to(z0.dtype)
        if self.parameterization == "x0":
            target = z0
        elif self.parameterization == "residual":
            target = flips
        else:
            target = bm.posterior_one_prob(z_t, z0, jump)
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        if self.loss_balance == "class_balanced":
            bce = bce * bm.class_balanced_weights(flips)
        per_sample = bce.flatten(1).mean(1)
        if self.time_sampling == "importance" and self.training:
            self._record_losses(t, per_sample.detach())
        target_loss = per_sample.mean() if sample_weight is None else (per_sample * sample_weight).mean()
        if self.vlb_weight == 0 and not log_terms:
            return LossOutput(target_loss, {"target": target_loss.detach(), "loss": target_loss.detach()})
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.vlb_weight > 0):  # only logged when λ = 0
            rev = bm.reverse_logits(z_t, logits, jump, parameterization=self.parameterization, form=self.reverse)
            vlb_per_sample = bm.vlb_terms(z0, z_t, rev, jump, t).flatten(1).mean(1)
        time_weight = 1.0 - (t - 1).to(z0.dtype) / self.timesteps if self.time_weighting == "linear" else 1.0
        vlb = (vlb_per_sample * time_weight * (1.0 if sample_weight is None else sample_weight)).mean()
        loss = target_loss + self.vlb_weight * vlb if self.vlb_weight > 0 else target_loss
        return LossOutput(loss, {"target": target_loss.detach(), "vlb": vlb.detach(), "loss": loss.detach()})

    def _training_steps(self, batch: int, generator: torch.Generator | None):
        """(t (B,) long in 1..T, per-sample loss weight (B,) or None): see ``time_sampling``; "importance"
        reads ``loss_seen`` back once per step (a host-device sync)."""
        if self.time_sampling == "uniform" or not self.training:
            return self._steps(batch, generator), None
        if self.time_sampling == "linear":  # inverse CDF of p_t ∝ T + 1 − t: no table, no weights
            T = self.timesteps
            u = self._uniform((batch,), generator).to(torch.float64)
            # P(t' <= t) = 1 − (T − t)(T − t + 1) / (T(T + 1)); solve for the smallest t with CDF >= u
            root = (-1 + torch.sqrt(1 + 4 * (1 - u) * T * (T + 1))) / 2  # (T − t)(T − t + 1) = (1 − u) T (T + 1)
            return (T - torch.floor(root)).long().clamp(1, T), None
        if not bool(self.loss_seen.all()):
            return self._steps(batch, generator), None
        rms = self.loss_square.sqrt()
        prob = 0.9 * rms / rms.sum() + 0.1 / self.timesteps  # the uniform part bounds every weight by 10
        u = self._uniform((batch,), generator).to(torch.float64)
        t = torch.searchsorted(prob.cumsum(0), u).clamp_max(self.timesteps - 1)  # inverse CDF, 0-based
        weight = (1.0 / (self.timesteps * prob[t])).to(self.loss_square.dtype)
        return t + 1, weight.float()

    @torch.no_grad()
    def _record_losses(self, t: torch.Tensor, per_sample: torch.Tensor) -> None:
        """EMA (rate 0.1) of the batch mean of L² at every step t of the batch: the history of
        ``time_sampling="importance"``. A step seen for the first time takes its batch mean."""
        index = t - 1
        count = torch.zeros_like(self.loss_square).index_add_(0, index, torch.ones_like(per_sample, dtype=torch.float64))
        total = torch.zeros_like(self.loss_square).index_add_(0, index, per_sample.double() ** 2)
        present = count > 0
        mean = total / count.clamp_min(1)
        rate = torch.where(self.loss_seen, 0.1, 1.0).to(self.loss_square.dtype)
        self.loss_square.copy_(torch.where(present, torch.lerp(self.loss_square, mean, rate), self.loss_square))
        self.loss_seen |= present

    # -- likelihood ----------------------------------------------------------------------------
    def step_vlb(self, z0: torch.Tensor, z_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """L_t(z⁰, zᵗ) in nats per code (B,) for given zᵗ (B, N, c) and steps t (B,): the VLB term
        before the expectation over zᵗ (exposed so tests can take that expectation exactly)."""
        labels = self.check_labels(labels, z0.shape[0])
        jump = self._jump(t, t - 1, z0.dtype)  # validates t (once)
        rev = bm.reverse_logits(z_t, self.net_logits(z_t, t, labels), jump, parameterization=self.parameterization, form=self.reverse)
        return bm.vlb_terms(z0, z_t, rev, jump, t).flatten(1).sum(1)

    @torch.no_grad()
    def vlb(self, codes: torch.Tensor, labels: torch.Tensor | None = None, *, generator: torch.Generator | None = None,
            num_timesteps: int | None = None) -> VLBOutput:
        """Full variational bound −log p(z⁰) <= Σ_{t=1}^T E_q L_t + KL(q(z^T|z⁰) ‖ B(½)), one zᵗ per
        t and code (T network calls of batch B). ``num_timesteps=M < T`` estimates it from M steps,
        stratified: 1..T is cut into M consecutive strata of (nearly) equal size and one step is
        drawn uniformly in each, its term weighted by its stratum's size (unbiased, labelled
        ``estimated``). The terms fall steeply with t, so strata keep the early steps, which weigh
        most, in every draw: on the `make demo` prior (T = 256, its 359 test codes) four M = 32
        estimates gave 0.40-0.46 bits per bit against the full bound's 0.42, and M steps drawn
        anywhere 0.33-0.44 (tests/test_bernoulli_math.py checks unbiasedness by enumeration)."""
        z0 = self.check_codes(codes)
        labels = self.check_labels(labels, z0.shape[0])
        T = self.timesteps
        if num_timesteps is None or num_timesteps >= T:
            steps, weights = torch.arange(1, T + 1), torch.ones(T)
        else:
            if num_timesteps < 1:
                raise ValueError(f"num_timesteps must be >= 1, got {num_timesteps}")
            device = generator.device if generator is not None else "cpu"
            edges = torch.linspace(0, T, num_timesteps + 1, dtype=torch.float64).round().long()  # strata [e_i, e_i+1)
            weights = (edges[1:] - edges[:-1]).double()
            offsets = (torch.rand(num_timesteps, generator=generator, device=device, dtype=torch.float64).cpu() * weights)
            steps = edges[:-1] + offsets.long().minimum(weights.long() - 1) + 1
        terms = []
        for step, weight in zip(steps.tolist(), weights.tolist()):
            t = torch.full((z0.shape[0],), step, dtype=torch.long, device=self.device)
            z_t = bm.q_sample(z0, torch.as_tensor(self.schedule.k(step).item(), dtype=z0.dtype, device=z0.device), generator=generator)
            terms.append(self.step_vlb(z0, z_t, t, labels) * weight)
        terms = torch.stack(terms, 1)
        prior = bm.prior_term(z0, self.schedule.k(T).item()).flatten(1).sum(1)
        bits = (terms.sum(1) + prior) / (math.log(2) * z0[0].numel())
        return VLBOutput(bits, terms, steps, prior, len(steps) < T)

    @torch.no_grad()
    def nll(self, codes: torch.Tensor, labels: torch.Tensor | None = None, *, generator: torch.Generator | None = None,
            num_timesteps: int | None = None) -> NLLOutput:
        """The VLB upper bound (:meth:`vlb`) in bits per latent bit; ``exact`` is False."""
        return NLLOutput(self.vlb(codes, labels, generator=generator, num_timesteps=num_timesteps).bits_per_bit, False)

    # -- sampling ------------------------------------------------------------------------------
    def network_evals_per_sample(self, steps: int | None = None, *, guidance: float = 0.0) -> int:
        """One network call per sampling step (``default_steps`` if None), two with guidance."""
        steps = self.default_steps if steps is None else steps
        return steps * (2 if guidance != 0.0 else 1)

    def _known_at(self, known, s: int, keep_s: torch.Tensor, renoise: bool, generator):
        """known codes at step s: re-noised with keep rate ``keep_s`` (0-d, on the device) if ``renoise``."""
        if not renoise or s == 0:
            return known
        return bm.q_sample(known, keep_s, generator=generator)

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
        reverse: str | None = None,
        final_step: str | None = None,
        inpaint_renoise: bool | None = None,
    ) -> torch.Tensor:
        """n codes (n, N, c) in {0,1}. Grid: :func:`sampling_grid` (T → 0 in ``steps`` jumps, each an
        exact multi-step posterior); network time input t/T; the network's logits guided, then
        divided by ``temperature`` τ (:func:`sampling.temper`; τ = 0 is the limit τ → 0⁺: the
        prediction made hard — ẑ⁰ = its argmax for x0/residual, each step's argmax for direct —
        while the posterior step given ẑ⁰ is still drawn); inpainting re-imposes known bits after
        every step. ``reverse``,
        ``final_step``, ``inpaint_renoise`` override the config for this call (ablations on
        one trained model)."""
        steps = self.default_steps if steps is None else steps
        temperature = self.temperature if temperature is None else temperature
        reverse = reverse or self.reverse
        final_step = final_step or self.final_step
        renoise = self.inpaint_renoise if inpaint_renoise is None else inpaint_renoise
        assert reverse in bm.REVERSE_FORMS, f"unknown reverse form {reverse!r}"
        assert final_step in FINAL_STEPS, f"unknown final_step {final_step!r}"
        grid = sampling_grid(self.timesteps, steps)
        if self.parameterization == "direct" and steps != self.timesteps:
            raise ValueError(f"parameterization 'direct' predicts one step t -> t-1 only: sample with steps={self.timesteps}, got {steps}")
        labels = self.check_sampling(n, labels, guidance, temperature)
        mask, known = self.check_inpaint(inpaint_mask, known_codes, n)
        if mask is not None:
            mask = (mask[..., None].expand_as(known) if mask.dim() == 2 else mask).to(self.device)
        dtype = torch.promote_types(torch.float32, next(self.parameters()).dtype)  # float64 for a .double() prior
        # every step's coefficients, computed once (float64, then cast) and moved to the device
        # once: the loop indexes them without host work or transfers
        jumps = bm.make_jump(self.schedule, grid[:-1], grid[1:], dtype=dtype, device=self.device, ndim=1, check=False)
        mixtures = bm.mixture_constants(jumps) if reverse == "mixture" else None
        keep_at = self.schedule.k(grid, check=False).to(device=self.device, dtype=dtype)  # re-noising known bits
        times = grid.to(self.device)
        z = (self._uniform((n, *self.spec.shape), generator) < 0.5).to(dtype)
        if mask is not None:
            known = known.to(device=self.device, dtype=dtype)
            z = torch.where(mask, self._known_at(known, self.timesteps, keep_at[0], renoise, generator), z)
        pairs = self.progress_bar(list(enumerate(zip(grid[:-1].tolist(), grid[1:].tolist()))), "bernoulli sampling", progress)
        for i, (t_val, s_val) in pairs:
            t = times[i].expand(n)
            logits = sampling.temper(self.guided_logits(z, t, labels, guidance), temperature)
            if s_val == 0 and final_step == "threshold":
                # p̂(z⁰=1) > ½ ⇔ its logit > 0 (for direct the logits are already p(z⁰ | z¹))
                x0 = logits if self.parameterization == "direct" else bm.x0_logits(logits, z, self.parameterization)
                z = (x0 > 0).to(dtype)
            else:
                rev = bm.reverse_logits(z, logits, jumps.at(i), parameterization=self.parameterization, form=reverse,
                                        mixture=mixtures.at(i) if mixtures is not None else None)
                z = bm.bernoulli(torch.sigmoid(rev), generator=generator)
            if mask is not None:
                z = torch.where(mask, self._known_at(known, s_val, keep_at[i + 1], renoise, generator), z)
        return z
