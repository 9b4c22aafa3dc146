"""Autoregressive prior: a causal transformer over the N latent positions in raster order.

p(z) = Π_i p(z_i | z_<i), exactly computable, so :meth:`AutoregressivePrior.nll` is an exact
likelihood (the yardstick the diffusion priors' VLB upper bounds are compared with).

* categorical codes (VQ): a softmax over the K codebook entries per position (VQGAN's
  transformer, https://arxiv.org/abs/2012.09841).
* binary codes: the c bits of a position are predicted as c factorised Bernoullis given all
  previous positions, with the previous positions' bits fed back as ±1 vectors through a linear
  projection — the bitwise head of Infinity (https://arxiv.org/abs/2412.04431).

Class conditioning uses the start token (one embedding per class plus a null class for
classifier-free guidance, https://arxiv.org/abs/2207.12598).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import reduce

from discrete_priors.latents.base import CodeSpec
from discrete_priors.nets.causal import CausalTransformer, start_indices
from discrete_priors.nets.presets import network_sizes
from discrete_priors.priors import sampling
from discrete_priors.priors.base import LossOutput, NLLOutput, Prior


class AutoregressivePrior(Prior):
    """Raster-order autoregressive prior on ``binary`` or ``categorical`` codes.

    spec:        the code spec (a :class:`CodeSpec` or its ``to_dict()``).
    num_classes: None (unconditional) or the number of classes; labels in [0, num_classes).
    preset:      a network size (``"tiny"``, ``"cpu"``, ``"paper"``; :mod:`discrete_priors.nets.presets`)
                 so the network has the same dim/depth/heads as the diffusion priors';
                 dim/depth/heads override it when not None.
    pos_emb:     ``"learned"`` or ``"sincos"`` (2-D fixed).
    cond_drop_prob: probability of replacing a label by the null class per sample in training.
    """

    accepts = frozenset({"binary", "categorical"})
    name = "autoregressive"
    inpaints_prefix_only = True  # see _prefix_positions

    def __init__(
        self,
        spec: CodeSpec | dict,
        *,
        num_classes: int | None = None,
        preset: str = "cpu",
        dim: int | None = None,
        depth: int | None = None,
        heads: int | None = None,
        pos_emb: str = "learned",
        cond_drop_prob: float = 0.1,
    ):
        super().__init__(spec, num_classes=num_classes, cond_drop_prob=cond_drop_prob)
        spec = self.spec
        sizes = network_sizes(preset, dim=dim, depth=depth, heads=heads)
        self.config = self.shared_config(preset, sizes) | dict(pos_emb=pos_emb, cond_drop_prob=self.cond_drop_prob)
        self.binary = spec.kind == "binary"
        io = dict(in_dim=spec.channels, out_dim=spec.channels) if self.binary else dict(vocab_size=spec.vocab_size, out_dim=spec.vocab_size)
        self.net = CausalTransformer(
            grid=spec.grid, **io, **sizes, pos_emb=pos_emb, num_starts=1 if num_classes is None else num_classes + 1
        )

    # -- helpers -------------------------------------------------------------------------------
    def _inputs(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes -> network inputs: bits as ±1 (a 0 bit must move the embedding too), tokens as is."""
        return codes * 2 - 1 if self.binary else codes

    def _token_nats(self, logits: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """-log p of each token (categorical, (B, N)) or each bit (binary, (B, N, c)), in nats."""
        if self.binary:
            return F.binary_cross_entropy_with_logits(logits, codes, reduction="none")
        return F.cross_entropy(logits.transpose(1, 2), codes, reduction="none")

    def _logits(self, codes: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits for every position: (B, N, c) or (B, N, K)."""
        return self.net(self._inputs(codes[:, :-1]), start)

    # -- the interface -------------------------------------------------------------------------
    def loss(self, codes: torch.Tensor, labels: torch.Tensor | None = None, *, generator: torch.Generator | None = None,
             log_terms: bool = True) -> LossOutput:
        """Mean cross-entropy per token (categorical) or per bit (binary), in nats. In training
        mode each label is replaced by the null class with probability ``cond_drop_prob``.
        ``log_terms`` is accepted (the prior contract) and changes nothing: the terms are free."""
        codes = self.check_codes(codes)
        batch = codes.shape[0]
        labels = self.drop_labels(self.check_labels(labels, batch), generator)
        start = start_indices(labels, batch, self.num_classes, codes.device)
        nats = self._token_nats(self._logits(codes, start), codes)
        loss = nats.mean()
        # terms in bits per latent bit, the unit of nll and of the diffusion priors' VLB
        per_symbol_bits = 1.0 if self.binary else math.log2(self.spec.vocab_size)
        return LossOutput(loss, {"ce": loss.detach(), "bits_per_bit": loss.detach() / math.log(2) / per_symbol_bits})

    @torch.no_grad()
    def nll(self, codes: torch.Tensor, labels: torch.Tensor | None = None, *, generator: torch.Generator | None = None) -> NLLOutput:
        """Exact -log2 p(code) / (bits per code): / (N c) for binary, / (N log2 K) for categorical.
        ``generator`` is unused (the likelihood is deterministic). labels=None on a conditional
        prior scores the unconditional (null-class) model."""
        codes = self.check_codes(codes)
        batch = codes.shape[0]
        labels = self.check_labels(labels, batch)
        start = start_indices(labels, batch, self.num_classes, codes.device)
        nats = self._token_nats(self._logits(codes, start), codes)
        nats = reduce(nats, "b ... -> b", "sum")
        return NLLOutput(nats / math.log(2) / self.spec.bits, True)

    def network_evals_per_sample(self, steps: int | None = None, *, guidance: float = 0.0) -> int:
        """One causal step per position; classifier-free guidance doubles the batch."""
        self._check_steps(steps)
        return self.spec.num_positions * (2 if guidance != 0 else 1)

    def _check_steps(self, steps: int | None) -> None:
        n = self.spec.num_positions
        if steps is not None and steps != n:
            raise ValueError(f"an autoregressive prior decodes one position per step: steps must be None or {n}, got {steps}")

    def _prefix_positions(self, mask: torch.Tensor | None) -> torch.Tensor | None:
        """Inpainting mask -> (B, N) bool over positions; raise unless it is a prefix per row."""
        if mask is None:
            return None
        if mask.dim() == 3:  # a per-bit mask: allowed when it covers whole positions
            if not torch.equal(mask.any(-1), mask.all(-1)):
                raise ValueError("inpaint_mask: an autoregressive prior needs whole positions known (all c bits or none)")
            mask = mask.all(-1)
        if (mask[:, 1:] & ~mask[:, :-1]).any():
            raise ValueError(
                "inpaint_mask: an autoregressive prior can only condition on a prefix in raster order "
                "(positions 0..m-1 known, the rest unknown); got known positions after an unknown one"
            )
        return mask

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
        top_k: int | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Draw n codes position by position: (n, N, c) float {0,1} or (n, N) long.

        temperature τ: each position drawn from softmax(logits/τ) (bits: σ(logits/τ)); τ = 0 is
        greedy, the argmax (:mod:`sampling`). guidance w: ℓ = (1+w) ℓ_cond − w ℓ_uncond on
        logits (needs labels). top_k: keep the k most likely tokens (categorical only).
        inpaint_mask/known_codes: positions 0..m−1 (a prefix per row, (n, N) or whole-position
        (n, N, c) mask) are copied from known_codes, so the rest is an exact conditional sample.
        use_cache=False recomputes the whole prefix every step (for testing the kv cache).
        """
        self._check_steps(steps)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        labels = self.check_sampling(n, labels, guidance, temperature)
        if top_k is not None and (self.binary or not 1 <= top_k <= self.spec.vocab_size):
            raise ValueError(f"top_k applies to categorical codes only, with 1 <= top_k <= {self.spec.vocab_size}; got {top_k}")
        mask, known = self.check_inpaint(inpaint_mask, known_codes, n)
        known_pos = self._prefix_positions(mask)

        device, binary, dtype = self.device, self.binary, torch.float32 if self.binary else torch.long
        if known_pos is not None:
            known_pos, known = known_pos.to(device), known.to(device=device, dtype=dtype)
            if binary:
                known_pos = known_pos[..., None]
        start = start_indices(labels, n, self.num_classes, device)
        guided = guidance != 0
        if guided:
            start = sampling.with_null_labels(start, self.num_classes)
        temperature = float(temperature)
        # Per position only the network pass and the draw (the sampling overhead the speed issue
        # bounds): inputs were checked above, so the kv steps skip their checks, and each draw is
        # written straight into the output. The same uniforms in the same order as
        # sampling.draw, so the samples equal the plain loop's for a generator (tested).
        codes = torch.empty((n, *self.spec.shape), device=device, dtype=dtype)
        cache = None
        for i in self.progress_bar(range(self.spec.num_positions), "autoregressive sampling", progress):
            if use_cache:
                token = None if i == 0 else self._inputs(codes[:, i - 1])
                if token is not None and guided:
                    token = torch.cat([token, token])
                logits, cache = self.net.step(token, start, cache, check=False)
            else:
                inputs = self._inputs(codes[:, :i])
                logits = self.net(torch.cat([inputs, inputs]) if guided else inputs, start)[:, -1]
            logits = logits.float()  # the network may run in reduced precision; the draw is fp32
            if guided:
                logits = sampling.combine_guided(logits, guidance)
            out = codes[:, i] if known_pos is None else None
            if binary:
                drawn = sampling.draw_bits(logits, temperature=temperature, generator=generator, with_log_prob=False,
                                           out=out).values
            else:
                drawn = sampling.draw_categorical(logits, temperature=temperature, top_k=top_k, generator=generator,
                                                  with_log_prob=False).values
                if out is not None:
                    out.copy_(drawn)
            if known_pos is not None:
                torch.where(known_pos[:, i], known[:, i], drawn, out=codes[:, i])
        return codes
