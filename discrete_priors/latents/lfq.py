"""Lookup-free quantisation (LFQ) of MAGVIT-v2 (Yu et al., ICLR 2024, https://arxiv.org/abs/2310.05737,
§3.1), docs/method.md §9.1; the sign quantiser that BSQ (bsq.py) builds on.

Each of the d encoder channels is quantised to its sign, q = sign(x) ∈ {−1, +1}^d, and the code
is the bit vector z = 1[x > 0] (the binary kind: d bits per position, no codebook lookup). The
straight-through estimator x + sg(q − x) carries the decoder's gradient to x.

Entropy penalty (MAGVIT-v2 eq. 5): with the soft assignment of x to the 2^d codes,
p(c | x) = softmax_c(−‖x − c‖² / τ), the loss is  E_x[H(p(·|x))] − γ H(E_x[p(·|x)]):
confident assignments per sample, every code used over the batch. Because ‖c‖² = d for every c,
−‖x − c‖² / τ = const + 2⟨x, c⟩ / τ and the softmax factorises over the bits:
p(c | x) = ∏_j σ(c_j a_j) with bit log-odds a_j = 4 x_j / τ. So the per-sample entropy is a
sum of binary entropies, exactly, while the batch entropy is not: it is computed over groups of
g bits (2^g codes each) and summed over the d / g groups, Σ_groups H(E_x[p_group(·|x)]) — the
full code entropy when g = d, an upper bound on it otherwise (subadditivity), and the sum of the
per-bit marginal entropies when g = 1. No 2^d table is ever built for g < d.

Pitfalls avoided (vector-quantize-pytorch issues #78, #89, #120): the entropies are of the *soft*
distribution (the hard code has zero per-sample entropy and no gradient); the batch term enters
with a minus sign (maximised). The loss uses the paper's scale, entropies in nats of the whole
code (so MAGVIT-v2's weight 0.1 means the same here); the reported terms (``entropy_terms``,
stats) are in bits per latent bit (divided by d), in [0, 1] whatever d: loss term = w · d · ln 2 ·
(per_sample − γ · batch).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange

from discrete_priors.latents.base import CodeSpec, LatentOutput, LatentSpace
from discrete_priors.latents.binary import bit_statistics

LN2 = math.log(2.0)
MAX_GROUP_SIZE = 16  # a group of g bits costs a 2^g-entry table per position


class EntropyTerms(NamedTuple):
    """Soft-assignment entropies in bits per latent bit (divided by d), 0-d tensors.

    per_sample: E_x H(p(·|x)) / d, in [0, 1] (0 = hard, confident assignments).
    batch:      Σ_groups H(E_x p_group(·|x)) / d, in [0, 1] (1 = every code used equally).
    """

    per_sample: torch.Tensor
    batch: torch.Tensor


def group_bit_table(group_size: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """(2^g, g) in {0, 1}: row k is the binary expansion of k, most significant bit first (the
    order ``np.packbits`` and the latent cache use)."""
    powers = 2 ** torch.arange(group_size - 1, -1, -1, device=device)
    return ((torch.arange(2**group_size, device=device)[:, None] & powers) > 0).to(dtype)


def group_code_probs(bit_logits: torch.Tensor, group_size: int) -> torch.Tensor:
    """bit_logits: (M, d) log-odds a_j of bit j being 1 under independent bits -> (M, d/g, 2^g)
    probabilities of each group's 2^g sub-codes (rows of :func:`group_bit_table`)."""
    groups = rearrange(bit_logits, "m (k g) -> m k g", g=group_size)
    table = group_bit_table(group_size, device=bit_logits.device, dtype=bit_logits.dtype)
    # log p(c) = Σ_j c_j log σ(a_j) + (1 − c_j) log σ(−a_j), as two matmuls over the table
    log_probs = F.logsigmoid(groups) @ table.t() + F.logsigmoid(-groups) @ (1 - table).t()
    return log_probs.exp()


def entropy_terms(bit_logits: torch.Tensor, group_size: int) -> EntropyTerms:
    """The two entropy terms of the soft assignment whose bits are independent with log-odds
    ``bit_logits`` (M, d) given each of the M vectors; batch = the M vectors (see module doc).
    ``group_size`` g must divide d."""
    m, d = bit_logits.shape
    if d % group_size:
        raise ValueError(f"group_size {group_size} must divide the {d} bits")
    # per-sample: Σ_j H(σ(a_j)) exactly (the assignment factorises over bits), written with
    # log σ(a) = −softplus(−a) so that a saturated bit (σ = 0 or 1 in float) has a finite gradient
    one_prob = torch.sigmoid(bit_logits)
    bit_entropy = one_prob * F.softplus(-bit_logits) + (1 - one_prob) * F.softplus(bit_logits)
    per_sample = bit_entropy.sum(-1).mean() / LN2 / d
    mean_probs = group_code_probs(bit_logits, group_size).mean(0)  # (d/g, 2^g)
    # p log p with the log clamped: 0 at p = 0 with a finite gradient (xlogy's is −inf there)
    batch = -(mean_probs * mean_probs.clamp_min(torch.finfo(mean_probs.dtype).tiny).log()).sum() / LN2 / d
    return EntropyTerms(per_sample, batch)


def group_code_statistics(codes: torch.Tensor, group_size: int) -> dict:
    """Usage of the hard codes ``(B, N, d)`` in {0, 1}, per group of g bits (2^g sub-codes):

    group_usage:      fraction of the sub-codes used at least once, mean over groups.
    group_perplexity: 2 ** (mean over groups of the entropy in bits of the sub-code histogram),
                      in [1, 2^g]; with g = d it is the perplexity of the whole code.
    Detached 0-d tensors, no host-device sync."""
    flat = rearrange(codes.detach(), "b n (k g) -> (b n) k g", g=group_size)
    num_groups, size = flat.shape[1], 2**group_size
    powers = 2 ** torch.arange(group_size - 1, -1, -1, device=codes.device)
    index = (flat.long() * powers).sum(-1) + size * torch.arange(num_groups, device=codes.device)
    counts = torch.bincount(index.reshape(-1), minlength=num_groups * size).reshape(num_groups, size).float()
    freq = counts / counts.sum(-1, keepdim=True).clamp_min(1)
    entropy_bits = -torch.special.xlogy(freq, freq).sum(-1) / LN2
    return {"group_usage": (counts > 0).float().mean(), "group_perplexity": 2 ** entropy_bits.mean()}


class SignQuantiser(LatentSpace):
    """Shared machinery of LFQ and BSQ: d channels quantised to their signs, codes 1[· > 0],
    the entropy penalty over bit groups and a commitment loss. Subclasses define ``project`` (what
    is quantised), ``scale`` (the magnitude of a quantised coordinate) and ``bit_logits``."""

    kind = "binary"
    has_probs = False  # deterministic codes: no Bernoulli probabilities for a cache to resample from

    def __init__(self, *, bits: int, group_size: int, entropy_weight: float, diversity_weight: float,
                 commitment_weight: float, temperature: float):
        super().__init__()
        if bits < 1:
            raise ValueError(f"bits must be a positive integer, got {bits}")
        if group_size < 1 or bits % min(group_size, bits):
            raise ValueError(f"group_size must be a positive divisor of bits={bits} (or >= bits for one group), "
                             f"got {group_size}")
        for name, value in (("entropy_weight", entropy_weight), ("diversity_weight", diversity_weight),
                            ("commitment_weight", commitment_weight)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if min(group_size, bits) > MAX_GROUP_SIZE:
            raise ValueError(f"group_size {min(group_size, bits)} needs a 2^{min(group_size, bits)}-entry table per "
                             f"position: use a divisor of bits={bits} that is <= {MAX_GROUP_SIZE}")
        self.bits, self.group_size = bits, min(group_size, bits)
        self.entropy_weight, self.diversity_weight = entropy_weight, diversity_weight
        self.commitment_weight, self.temperature = commitment_weight, temperature
        self.encoder_channels = self.decoder_channels = bits

    def code_spec(self, grid: tuple[int, int]) -> CodeSpec:
        return CodeSpec(kind="binary", grid=grid, channels=self.bits)

    @property
    def scale(self) -> float:
        raise NotImplementedError

    def project(self, h: torch.Tensor) -> torch.Tensor:
        """(..., d) encoder vectors -> the vectors that are quantised."""
        raise NotImplementedError

    def bit_logits(self, projected: torch.Tensor) -> torch.Tensor:
        """(..., d) projected vectors -> log-odds of each bit being 1 under the soft assignment."""
        raise NotImplementedError

    def entropy_terms(self, projected: torch.Tensor) -> EntropyTerms:
        """projected: (M, d) -> the soft assignment's entropy terms over groups of ``group_size`` bits."""
        return entropy_terms(self.bit_logits(projected), self.group_size)

    def forward(self, h: torch.Tensor, *, generator: torch.Generator | None = None) -> LatentOutput:
        """h: (B, d, h, w) -> decoder input (B, d, h, w) in {±scale}, codes (B, N, d) in {0, 1}.
        Deterministic: ``generator`` is not used."""
        self._check_input(h)
        b, _, height, width = h.shape
        projected = self.project(rearrange(h, "b d h w -> (b h w) d"))
        bits = (projected.detach() > 0).to(projected.dtype)
        quantised = (2 * bits - 1) * self.scale
        straight_through = projected + (quantised - projected).detach()
        commitment = F.mse_loss(projected, quantised)
        terms = self.entropy_terms(projected)
        loss = self.commitment_weight * commitment
        if self.entropy_weight > 0:
            # terms are in bits per bit; the paper's penalty is in nats of the whole d-bit code
            nats_per_code = self.bits * LN2
            loss = loss + self.entropy_weight * nats_per_code * (terms.per_sample - self.diversity_weight * terms.batch)
        codes = rearrange(bits, "(b n) d -> b n d", b=b)
        stats = bit_statistics(codes) | group_code_statistics(codes, self.group_size) | {
            "per_sample_entropy": terms.per_sample.detach(), "batch_entropy": terms.batch.detach(),
            "commitment": commitment.detach()}
        decoder_input = rearrange(straight_through, "(b h w) d -> b d h w", b=b, h=height, w=width)
        return LatentOutput(decoder_input, codes, loss, stats)

    @torch.no_grad()
    def encode(self, h: torch.Tensor, *, mode: str = "deterministic", generator: torch.Generator | None = None) -> torch.Tensor:
        """h: (B, d, h, w) -> (B, N, d) codes 1[x > 0] in {0, 1} (only ``deterministic``: there is
        no posterior to sample from or probabilities to return)."""
        if mode != "deterministic":
            raise ValueError(f"{type(self).__name__} codes are deterministic signs: expected mode 'deterministic', "
                             f"got {mode!r} (there are no Bernoulli probabilities to sample from)")
        self._check_input(h)
        projected = self.project(rearrange(h.float(), "b d h w -> b (h w) d"))
        return (projected > 0).float()

    def decode_codes(self, codes: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """codes: (B, N, d) in {0, 1} -> (B, d, h, w) the quantised vectors (2z − 1) · scale."""
        if codes.dim() != 3 or codes.shape[-1] != self.bits or codes.shape[1] != grid[0] * grid[1]:
            raise ValueError(f"expected binary codes of shape (B, {grid[0] * grid[1]}, {self.bits}), got {tuple(codes.shape)}")
        quantised = (2 * codes.float() - 1) * self.scale
        return rearrange(quantised, "b (h w) d -> b d h w", h=grid[0], w=grid[1])

    def _check_input(self, h: torch.Tensor) -> None:
        if h.dim() != 4 or h.shape[1] != self.bits:
            raise ValueError(f"expected encoder output of shape (B, {self.bits}, h, w), got {tuple(h.shape)}")


class LFQLatent(SignQuantiser):
    """Lookup-free quantisation: q = sign(x) ∈ {−1, +1}^d, code 1[x > 0] (MAGVIT-v2,
    https://arxiv.org/abs/2310.05737).

    bits:              d, bits per position (encoder and decoder channels).
    group_size:        g, bits per group of the batch (codebook-usage) entropy; must divide d
                       (>= d: one group, the exact code entropy with a 2^d table).
    entropy_weight:    weight of E H(p(·|x)) − γ H(E p(·|x)), entropies in nats of the code as in
                       the paper (MAGVIT-v2: 0.1).
    diversity_weight:  γ, weight of the batch entropy inside the penalty (MAGVIT-v2: 1).
    commitment_weight: β of β ‖x − sg(q)‖² (MAGVIT-v2 uses VQ-VAE's commitment loss; 0.25).
    temperature:       τ of p(c | x) = softmax_c(−‖x − c‖² / τ) (MAGVIT-v2's code: 0.01).
    """

    def __init__(self, *, bits: int = 32, group_size: int = 8, entropy_weight: float = 0.1,
                 diversity_weight: float = 1.0, commitment_weight: float = 0.25, temperature: float = 0.01):
        super().__init__(bits=bits, group_size=group_size, entropy_weight=entropy_weight,
                         diversity_weight=diversity_weight, commitment_weight=commitment_weight,
                         temperature=temperature)

    @property
    def scale(self) -> float:
        return 1.0

    def project(self, h: torch.Tensor) -> torch.Tensor:
        return h

    def bit_logits(self, projected: torch.Tensor) -> torch.Tensor:
        # softmax_c(−‖x − c‖²/τ) over c ∈ {±1}^d = ∏_j σ(c_j · 4x_j/τ): log-odds 4x_j/τ
        return 4 * projected / self.temperature


__all__ = ["EntropyTerms", "LFQLatent", "SignQuantiser", "entropy_terms", "group_bit_table", "group_code_probs",
           "group_code_statistics"]
