"""Absorbing (masked) diffusion prior on VQ indices or on binary codes.

Forward process: at step t ∈ {1..T} every token is independently replaced by a mask with
probability t/T (Austin et al. 2021, https://arxiv.org/abs/2107.03006). A masked token at t is
unmasked at t-1 with probability 1/t, so the per-step KL of the ELBO reduces to
(1/t) · Σ_{masked i} −log p_θ(x0_i | x_t) and

    −log p(x0) ≤ Σ_{t=1..T} (1/t) · E_{x_t|x0} [ Σ_{i masked} −log p_θ(x0_i | x_t) ].

On VQ codes a token is a codebook index (K-way softmax); on binary codes a token is one latent
position whose c bits are predicted as independent Bernoullis (MaskBit-style), so p_θ(x0_i|x_t)
is a product over bits and the bound above still holds exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from discrete_priors.latents.base import CodeSpec
from discrete_priors.nets.denoiser import Denoiser
from discrete_priors.nets.presets import network_sizes
from discrete_priors.priors import sampling
from discrete_priors.priors.base import LossOutput, NLLOutput, Prior

LOSS_WEIGHTINGS = ("elbo", "reweighted", "mlm")
ORDERS = ("random", "confidence")
MASK_INPUTS = ("indicator", "zeros")


class AbsorbingDiffusion(Prior):
    """Masked-token diffusion prior (Bond-Taylor et al. 2022, "Unleashing Transformers",
    https://arxiv.org/abs/2111.12701), trained with the loss written here (not x-transformers'
    NonAutoregressiveWrapper).

    loss_weighting (per code, CE in nats summed over masked tokens and their bits):
      * ``"elbo"``: weight T/t — the ELBO's 1/t times T, the inverse probability of drawing t
        uniformly — so the loss is an unbiased estimate of −ELBO;
      * ``"reweighted"``: weight 1 − t/T (Bond-Taylor et al.'s faster-converging variant);
      * ``"mlm"``: plain mean CE over the masked tokens of the batch (masked-LM / MaskGIT).
      ``elbo`` and ``reweighted`` are divided by the number of latent dimensions (N·c bits
      for binary, N tokens for categorical), ``mlm`` by the masked count (×c for binary), so
      every loss is in nats per bit (binary) or per token (categorical).
    mask_input (binary only): a masked position enters as 0 (neither −1 nor +1) plus an
      indicator channel whose input weight is a learned mask embedding (``"indicator"``), or
      as zeros only (``"zeros"``). Categorical tokens use an nn.Embedding(K+1), K = mask.
    time_input: feed t/T to the network (off by default: the masked fraction already tells).
    preset: network size ("tiny" | "cpu" | "paper"); dim/depth/heads override it when not None;
      cond ("adaln" | "token") and pos_emb ("learned" | "sincos") go to the :class:`Denoiser`.
    cond_drop_prob: per-sample probability of training with the null label (classifier-free
      guidance; ℓ = (1+w) ℓ_cond − w ℓ_uncond at sampling).
    order: default unmasking order of ``sample`` (``"random"``: each masked token revealed
      with prob (t−s)/t from t to s; ``"confidence"``: MaskGIT-style, reveal the same expected
      number of tokens, most confident first, https://arxiv.org/abs/2202.04200).
    """

    accepts = frozenset({"categorical", "binary"})
    name = "absorbing"

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
        loss_weighting: str = "elbo",
        time_input: bool = False,
        mask_input: str = "indicator",
        order: str = "random",
    ):
        super().__init__(spec, num_classes=num_classes, cond_drop_prob=cond_drop_prob)
        spec = self.spec
        assert loss_weighting in LOSS_WEIGHTINGS, f"unknown loss_weighting {loss_weighting!r}, expected one of {LOSS_WEIGHTINGS}"
        assert order in ORDERS, f"unknown order {order!r}, expected one of {ORDERS}"
        assert mask_input in MASK_INPUTS, f"unknown mask_input {mask_input!r}, expected one of {MASK_INPUTS}"
        if timesteps < 1:
            raise ValueError(f"timesteps must be >= 1, got {timesteps}")
        sizes = network_sizes(preset, dim=dim, depth=depth, heads=heads)
        self.config = self.shared_config(preset, sizes) | dict(
            cond=cond, pos_emb=pos_emb, cond_drop_prob=self.cond_drop_prob, timesteps=timesteps,
            loss_weighting=loss_weighting, time_input=time_input, mask_input=mask_input, order=order,
        )
        self.timesteps, self.loss_weighting, self.time_input = timesteps, loss_weighting, time_input
        self.mask_input, self.order = mask_input, order
        self.binary = spec.kind == "binary"
        if self.binary:
            in_dim, out_dim = spec.channels + (mask_input == "indicator"), spec.channels
            self.token_emb = None
        else:
            in_dim, out_dim = sizes["dim"], spec.vocab_size
            self.token_emb = nn.Embedding(spec.vocab_size + 1, sizes["dim"])  # index K = mask
        self.net = Denoiser(grid=spec.grid, in_dim=in_dim, out_dim=out_dim, num_classes=num_classes, cond=cond,
                            pos_emb=pos_emb, time_cond=time_input, **sizes)
        self.net.check_label_range = False  # checked once per call by loss/sample/nll (no sync per step)

    # -- randomness (drawn on the generator's device, then moved: works for CPU generators and GPU models)
    def draw_masks(self, batch: int, *, generator: torch.Generator | None = None):
        """t: (B,) long uniform on {1..T}; masked: (B, N) bool, each True with prob t/T
        (:func:`sampling.mask_rate`)."""
        t = self._steps(batch, generator)
        masked = self._uniform((batch, self.spec.num_positions), generator) < sampling.mask_rate(t[:, None], self.timesteps)
        return t, masked

    # -- the network -------------------------------------------------------------------------
    def logits(self, codes: torch.Tensor, masked: torch.Tensor, t: torch.Tensor | None, labels: torch.Tensor | None) -> torch.Tensor:
        """codes: valid codes (values under ``masked`` are ignored); masked: (B, N) bool;
        t: (B,) steps in [0, T] (used iff time_input). Returns (B, N, c) bit logits (binary)
        or (B, N, K) token logits (categorical)."""
        if self.binary:
            keep = (~masked)[..., None].float()
            x = (2 * codes - 1) * keep  # masked positions -> 0, outside the ±1 alphabet
            if self.mask_input == "indicator":
                x = torch.cat([x, 1 - keep], dim=-1)
        else:
            x = self.token_emb(torch.where(masked, self.spec.vocab_size, codes))
        time = t.float() / self.timesteps if self.time_input else None
        return self.net(x, time, labels if self.num_classes is not None else None)

    def token_nll(self, logits: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """−log p_θ(x0_i | x_t) in nats per position (B, N), summed over bits for binary."""
        if self.binary:
            return F.binary_cross_entropy_with_logits(logits, codes.to(logits.dtype), reduction="none").sum(-1)
        return F.cross_entropy(logits.transpose(1, 2), codes, reduction="none")

    # -- training ----------------------------------------------------------------------------
    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """Per-code weight of Σ_masked CE for a step t (B,): see the class docstring."""
        t = t.double()
        if self.loss_weighting == "elbo":
            return self.timesteps / t
        if self.loss_weighting == "reweighted":
            return 1 - t / self.timesteps
        return torch.ones_like(t)

    def loss(self, codes: torch.Tensor, labels: torch.Tensor | None = None, *, generator: torch.Generator | None = None,
             log_terms: bool = True) -> LossOutput:
        codes = self.check_codes(codes)
        labels = self.check_labels(labels, codes.shape[0])
        t, masked = self.draw_masks(codes.shape[0], generator=generator)
        return self.masked_loss(codes, t, masked, self.drop_labels(labels, generator), log_terms=log_terms)

    def masked_loss(self, codes: torch.Tensor, t: torch.Tensor, masked: torch.Tensor, labels: torch.Tensor | None,
                    *, log_terms: bool = True) -> LossOutput:
        """The loss for given steps t (B,) and masks (B, N): ``loss`` after drawing them.
        ``log_terms=False``: no terms (the trainer logs the loss itself)."""
        nll = self.token_nll(self.logits(codes, masked, t, labels), codes)  # (B, N) nats
        masked_sum = (nll * masked).sum(-1)  # (B,)
        bits_per_position = self.spec.channels if self.binary else 1
        if self.loss_weighting == "mlm":
            loss = (nll * masked).sum() / (masked.sum() * bits_per_position).clamp(min=1)
        else:
            weight = self.loss_weight(t).to(masked_sum.dtype)
            loss = (weight * masked_sum).mean() / (self.spec.num_positions * bits_per_position)
        if not log_terms:
            return LossOutput(loss, {})
        with torch.no_grad():
            elbo = (self.timesteps / t.double() * masked_sum.double()).mean() / (math.log(2) * self.spec.bits)
            terms = {"elbo_bits_per_bit": elbo.float(), "masked_fraction": masked.float().mean(),
                     "masked_nll": ((nll * masked).sum() / masked.sum().clamp(min=1)).detach()}
        return LossOutput(loss, terms)

    # -- sampling ----------------------------------------------------------------------------
    def _guided_logits(self, codes, masked, t, labels, guidance):
        """:meth:`logits` guided (:func:`sampling.guided_logits`); categorical tokens guide their
        log-probabilities, bits their logits (already log-odds)."""
        return sampling.guided_logits(self.logits, (codes, masked, t), labels, guidance, null_class=self.num_classes,
                                      log_softmax=not self.binary)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        steps: int | None = None,
        temperature: float = 1.0,
        labels: torch.Tensor | None = None,
        guidance: float = 0.0,
        inpaint_mask: torch.Tensor | None = None,
        known_codes: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        progress: bool = False,
        order: str | None = None,
    ) -> torch.Tensor:
        """n codes. Time runs t = T → 0 on an even grid of ``steps`` (default T) intervals;
        from t to s every still-masked token is revealed with prob (t−s)/t (the model's reverse
        process when steps = T; on a coarser grid each token's reveal step is uniform over the
        steps), its value drawn from softmax(logits/τ) (bits: sigmoid(logits/τ), independent).
        ``order="confidence"`` (MaskGIT) instead reveals the most confident proposals (highest
        log-prob of the drawn value) until round(U·s/T) stay masked, U = unknown positions.
        inpaint_mask: (n, N) bool over positions, True = known (from known_codes, never
        changed); per-bit masks are refused. temperature τ: proposals from softmax(logits/τ);
        τ = 0 proposes the argmax (the reveal order stays random for ``order="random"``; the
        confidence order then ranks by the untempered log-probability; see :mod:`sampling`)."""
        order = self.order if order is None else order
        assert order in ORDERS, f"unknown order {order!r}, expected one of {ORDERS}"
        steps = self.timesteps if steps is None else int(steps)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        labels = self.check_sampling(n, labels, guidance, temperature)
        inpaint_mask, known_codes = self.check_inpaint(inpaint_mask, known_codes, n)
        shape = (n, *self.spec.shape)
        codes = torch.zeros(shape, device=self.device, dtype=torch.float32 if self.binary else torch.long)
        masked = torch.ones(n, self.spec.num_positions, dtype=torch.bool, device=self.device)
        if inpaint_mask is not None:
            if inpaint_mask.shape != (n, self.spec.num_positions):
                raise ValueError(
                    f"the absorbing prior inpaints whole positions: expected inpaint_mask of shape ({n}, "
                    f"{self.spec.num_positions}), got {tuple(inpaint_mask.shape)} (a per-bit mask is not supported)"
                )
            known = inpaint_mask.to(self.device)
            masked = ~known
            expand = known[..., None] if self.binary else known
            codes = torch.where(expand, known_codes.to(self.device, codes.dtype), codes)
        unknown = masked.sum(-1)
        times = sampling.time_grid(self.timesteps, steps)
        # stop once every position is revealed; on CUDA the check lags a step or two instead of
        # waiting for the device (the extra steps reveal nothing, so the codes are the same)
        all_revealed = sampling.LaggedFlag(self.device)
        t_all = torch.tensor(times, device=self.device)
        for i, (t, s) in enumerate(self.progress_bar(list(zip(times[:-1], times[1:])), "absorbing sampling", progress)):
            if all_revealed(~masked.any()):
                break
            t_batch = t_all[i].expand(n)
            logits = self._guided_logits(codes, masked, t_batch, labels, guidance)
            proposal, logp = sampling.draw(logits, bits=self.binary, temperature=temperature, generator=generator,
                                           with_log_prob=order == "confidence")
            if order == "random":
                reveal = masked & (self._uniform(masked.shape, generator) < sampling.reveal_prob(t, s))
            else:
                count = (masked.sum(-1) - sampling.masked_count(unknown, s, self.timesteps)).clamp(min=0)
                confidence = torch.where(masked, logp, float("-inf"))
                rank = confidence.argsort(-1, descending=True).argsort(-1)
                reveal = masked & (rank < count[:, None])
            codes = torch.where(reveal[..., None] if self.binary else reveal, proposal.to(codes.dtype), codes)
            masked = masked & ~reveal
        return codes

    # -- likelihood --------------------------------------------------------------------------
    def count_weights(self) -> torch.Tensor:
        """w_m = Σ_t (1/t) · Binomial(m; N, t/T) for m = 0..N (float64): the ELBO's weight on
        a mask of exactly m tokens once the sum over t is done in closed form."""
        N, T = self.spec.num_positions, self.timesteps
        m = torch.arange(N + 1, dtype=torch.float64)
        p = torch.arange(1, T + 1, dtype=torch.float64)[:, None] / T
        log_choose = torch.lgamma(torch.tensor(N + 1.0, dtype=torch.float64)) - torch.lgamma(m + 1) - torch.lgamma(N - m + 1)
        # xlogy: 0 · log(0) = 0 at t = T, where every token is masked
        log_pmf = log_choose + torch.special.xlogy(m, p) + torch.special.xlogy(N - m, 1 - p)  # (T, N+1)
        return (torch.exp(log_pmf) / (p * T)).sum(0)

    @torch.no_grad()
    def nll(self, codes: torch.Tensor, labels: torch.Tensor | None = None, *, generator: torch.Generator | None = None) -> NLLOutput:
        """Upper bound (ELBO) on −log2 p(code) / bits per code (N·c binary, N·log2 K categorical).

        Without time input the network sees only the mask, and the ELBO regroups by the
        number m of masked tokens: Σ_m w_m · E_{|S|=m}[Σ_{i∈S} −log p_θ(x0_i | x0 with S
        masked)], with w_m from :meth:`count_weights` exact. Estimator: one uniformly random
        m-subset per m = 1..N (N network calls). For a predictor that outputs the uniform
        distribution this gives exactly 1 bit per bit. With time_input: the sum over all T
        steps, one Bernoulli(t/T) mask draw per t (T network calls)."""
        codes = self.check_codes(codes)
        labels = self.check_labels(labels, codes.shape[0])
        B, N = codes.shape[0], self.spec.num_positions
        total = torch.zeros(B, dtype=torch.float64, device=self.device)
        if self.time_input:
            for step in range(1, self.timesteps + 1):
                t = torch.full((B,), step, device=self.device)
                masked = self._uniform((B, N), generator) < step / self.timesteps
                nll = self.token_nll(self.logits(codes, masked, t, labels), codes)
                total += (nll * masked).sum(-1).double() / step
        else:
            weights = self.count_weights().to(self.device)
            for m in range(1, N + 1):
                rank = self._uniform((B, N), generator).argsort(-1).argsort(-1)
                masked = rank < m  # a uniformly random subset of exactly m positions
                nll = self.token_nll(self.logits(codes, masked, None, labels), codes)
                total += weights[m] * (nll * masked).sum(-1).double()
        return NLLOutput((total / (math.log(2) * self.spec.bits)).float(), exact=False)

    def network_evals_per_sample(self, steps: int | None = None, *, guidance: float = 0.0) -> int:
        """One call per step (``timesteps`` if None), two with classifier-free guidance. An upper
        bound: :meth:`sample` stops early once every position is revealed."""
        steps = self.timesteps if steps is None else int(steps)
        return steps * (2 if guidance != 0 else 1)
