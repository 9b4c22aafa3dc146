"""The prior interface: every prior (Bernoulli diffusion, absorbing, autoregressive, ...) has
``loss``, ``sample`` and ``nll`` with these signatures, and checks the codes it receives.

A prior is built for one :class:`~discrete_priors.latents.base.CodeSpec` and holds its own
network. Its constructor keyword arguments are its config (``self.config``), saved as JSON next
to safetensors weights so it can be rebuilt without unpickling code.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from discrete_priors.latents.base import CodeSpec


class LossOutput(NamedTuple):
    """loss: scalar to minimise; terms: named detached scalars (e.g. ``{"bce": .., "vlb": ..}``)."""

    loss: torch.Tensor
    terms: dict


class NLLOutput(NamedTuple):
    """bits_per_bit: (B,) negative log-likelihood of each code in bits per latent bit.
    exact: True for an exact likelihood (autoregressive), False for an upper bound (diffusion VLB)."""

    bits_per_bit: torch.Tensor
    exact: bool


class Prior(nn.Module):
    """Base class. Subclasses set ``accepts`` (latent kinds) and implement the three methods."""

    accepts: frozenset = frozenset()
    name: str = ""

    def __init__(self, spec: CodeSpec, *, num_classes: int | None = None):
        super().__init__()
        if spec.kind not in self.accepts:
            raise ValueError(f"{type(self).__name__} accepts {sorted(self.accepts)} codes, got a {spec.kind!r} code spec")
        self.spec = spec
        self.num_classes = num_classes

    # -- checks shared by every prior -------------------------------------------------------
    def check_codes(self, codes: torch.Tensor, *, name: str = "codes") -> torch.Tensor:
        return self.spec.check(codes, name=name)

    def check_labels(self, labels: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        if labels is None:
            return None
        if self.num_classes is None:
            raise ValueError("labels given to an unconditional prior (built with num_classes=None)")
        if labels.shape != (batch,) or labels.dtype.is_floating_point:
            raise ValueError(f"labels: expected integer tensor of shape ({batch},), got {tuple(labels.shape)} {labels.dtype}")
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got [{int(labels.min())}, {int(labels.max())}]")
        return labels

    def check_inpaint(self, mask: torch.Tensor | None, known: torch.Tensor | None, n: int):
        """mask: bool, broadcastable to one code batch (positions (B, N) or bits (B, N, c));
        True marks known entries, taken from ``known`` (a valid code batch)."""
        if (mask is None) != (known is None):
            raise ValueError("inpainting needs both inpaint_mask and known_codes")
        if mask is None:
            return None, None
        known = self.check_codes(known, name="known_codes")
        if known.shape[0] != n:
            raise ValueError(f"known_codes: expected batch {n}, got {known.shape[0]}")
        if mask.dtype != torch.bool:
            raise ValueError(f"inpaint_mask: expected a bool tensor, got {mask.dtype}")
        if mask.shape not in {known.shape, known.shape[:2]}:
            raise ValueError(
                f"inpaint_mask: expected shape {tuple(known.shape[:2])} (positions) or {tuple(known.shape)} (bits), "
                f"got {tuple(mask.shape)}"
            )
        return mask, known

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, codes: torch.Tensor, labels: torch.Tensor | None = None, *, generator: torch.Generator | None = None) -> LossOutput:
        """``forward`` is the training loss, so a DistributedDataParallel wrapper syncs it."""
        return self.loss(codes, labels, generator=generator)

    # -- the interface -------------------------------------------------------------------------
    def loss(self, codes: torch.Tensor, labels: torch.Tensor | None = None, *, generator: torch.Generator | None = None) -> LossOutput:
        """Training loss on a batch of codes (layout of ``self.spec``)."""
        raise NotImplementedError

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
    ) -> torch.Tensor:
        """n codes in the layout of ``self.spec``. ``steps=None`` is the prior's default."""
        raise NotImplementedError

    @torch.no_grad()
    def nll(self, codes: torch.Tensor, labels: torch.Tensor | None = None, *, generator: torch.Generator | None = None) -> NLLOutput:
        """Negative log-likelihood (or its upper bound) in bits per latent bit, one per code."""
        raise NotImplementedError

    def network_evals_per_sample(self, steps: int | None = None) -> int:
        """Forward passes of the network needed to draw one sample (for the efficiency table)."""
        raise NotImplementedError
