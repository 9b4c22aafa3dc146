"""Binary spherical quantisation (BSQ; Zhao, Xiong & Krähenbühl 2024, https://arxiv.org/abs/2406.07548),
docs/method.md §9.2.

Each encoder vector x ∈ R^d is projected to the unit sphere, u = x / ‖x‖, and binarised,
q = sign(u) / √d — a corner of the hypercube that itself lies on the unit sphere, so the
quantisation error is bounded (‖u − q‖² ≤ 2 − 2/√d) whatever the encoder does. The code is
z = 1[u > 0] (= 1[x > 0]); straight-through u + sg(q − u).

Entropy penalty: as LFQ's (lfq.py) with the soft assignment p(c | u) = softmax_c(−‖u − c‖² / τ)
over c ∈ {±1/√d}^d, which factorises over the bits with log-odds a_j = 4 u_j / (√d τ). BSQ's
"factorised" batch entropy is the group computation with g = 1: Σ_j H(E_u p(c_j | u)), the sum
of the per-bit marginal entropies (an upper bound on the code entropy), which is the default
here; larger groups are allowed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from discrete_priors.latents.lfq import SignQuantiser


class BSQLatent(SignQuantiser):
    """u = x/‖x‖, q = sign(u)/√d, code 1[u > 0] (https://arxiv.org/abs/2406.07548).

    bits:              d, bits per position.
    group_size:        g of the batch entropy (1: BSQ's factorised per-bit entropy).
    entropy_weight:    weight of E H(p(·|u)) − γ H(E p(·|u)) in nats of the code (0.1 as for LFQ).
    diversity_weight:  γ.
    commitment_weight: β of β ‖u − sg(q)‖² (0.25; BSQ's error is bounded, so it matters less).
    temperature:       τ of p(c | u) = softmax_c(−‖u − c‖² / τ).
    """

    def __init__(self, *, bits: int = 32, group_size: int = 1, entropy_weight: float = 0.1,
                 diversity_weight: float = 1.0, commitment_weight: float = 0.25, temperature: float = 0.01):
        super().__init__(bits=bits, group_size=group_size, entropy_weight=entropy_weight,
                         diversity_weight=diversity_weight, commitment_weight=commitment_weight,
                         temperature=temperature)

    @property
    def scale(self) -> float:
        return 1.0 / math.sqrt(self.bits)

    def project(self, h: torch.Tensor) -> torch.Tensor:
        return F.normalize(h, dim=-1)

    def bit_logits(self, projected: torch.Tensor) -> torch.Tensor:
        # −‖u − c‖²/τ = const + 2⟨u, c⟩/τ with c_j = ±1/√d: log-odds 4 u_j / (√d τ)
        return 4 * projected * self.scale / self.temperature


__all__ = ["BSQLatent"]
