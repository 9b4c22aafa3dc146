"""The prior interface: every prior (Bernoulli diffusion, absorbing, autoregressive, ...) has
``loss``, ``sample`` and ``nll`` with these signatures, and checks the codes it receives.

A prior is built for one :class:`~discrete_priors.latents.base.CodeSpec` and holds its own
network. Its constructor keyword arguments are its config (``self.config``), saved as JSON next
to safetensors weights so it can be rebuilt without unpickling code.

Conventions every prior's constructor follows, so the comparison runners build them alike::

    Prior(spec, *, num_classes=None, preset="cpu", dim=None, depth=None, heads=None,
          ..., cond_drop_prob=0.1, ...)

``preset`` names a network size (:data:`~discrete_priors.nets.presets.NETWORK_PRESETS`:
"tiny", "cpu", "paper"); ``dim``/``depth``/``heads`` override it when not None (see
:func:`~discrete_priors.nets.presets.network_sizes`), and ``self.config`` starts with the spec,
``num_classes``, the preset name and the resolved sizes (:meth:`Prior.shared_config`).
``cond_drop_prob`` is the per-sample probability, in training mode only, of replacing a label by
the null class (classifier-free guidance, https://arxiv.org/abs/2207.12598). ``name`` (class
attribute) is the registry name, so ``prior_from_config({"name": p.name, **p.config})`` rebuilds p.

Sampling is built from :mod:`discrete_priors.priors.sampling` (guidance, draws, temperature —
τ = 0 is the argmax for every prior — and mask schedules).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from discrete_priors.latents.base import CodeSpec
from discrete_priors.priors import sampling
from discrete_priors.training import LossOutput  # the trainer's contract: what forward returns


NLL_UNITS = ("bits_per_bit", "bits_per_dim")


class NLLOutput(NamedTuple):
    """bits: (B,) negative log-likelihood of each code, in ``unit``:

    * ``"bits_per_bit"``: −log₂ P(code) / (bits of the code) — discrete codes (binary, VQ);
      a uniform model scores exactly 1.
    * ``"bits_per_dim"``: −log₂ P(code) / (N·c latent dimensions) of a continuous code
      discretised to its float16 storage grid (docs/method.md §10.4) — a different quantity,
      never put in the bits-per-bit column (a uniform model over the grid scores 16).

    exact: True for an exact likelihood (autoregressive), False for an upper bound (VLB/ELBO).
    ``bits_per_bit`` reads ``bits`` and refuses any other unit."""

    bits: torch.Tensor
    exact: bool
    unit: str = "bits_per_bit"

    @property
    def bits_per_bit(self) -> torch.Tensor:
        if self.unit != "bits_per_bit":
            raise ValueError(f"this NLL is in {self.unit}, not bits per latent bit: read .bits and .unit "
                             "(a continuous density is not comparable with the discrete priors' bits per bit)")
        return self.bits


class Prior(nn.Module):
    """Base class. Subclasses set ``accepts`` (latent kinds) and ``name`` (registry name) and
    implement the interface methods. ``cond_drop_prob``: see :meth:`drop_labels`."""

    accepts: frozenset = frozenset()
    accepts_log_terms = True  # the trainer passes log_terms= to forward (training/trainer.py)
    # True for a prior that can only inpaint given a known prefix of positions in raster order
    # (autoregressive); the inpaint command then regenerates everything from the first unknown on
    inpaints_prefix_only = False
    name: str = ""
    nll_unit: str = "bits_per_bit"  # the unit of nll()'s NLLOutput (one of NLL_UNITS)

    def __init__(self, spec: CodeSpec | dict, *, num_classes: int | None = None, cond_drop_prob: float = 0.0):
        super().__init__()
        spec = CodeSpec.from_dict(spec) if isinstance(spec, dict) else spec
        if spec.kind not in self.accepts:
            raise ValueError(f"{type(self).__name__} accepts {sorted(self.accepts)} codes, got a {spec.kind!r} code spec")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be None or >= 1, got {num_classes}")
        if not 0.0 <= cond_drop_prob < 1.0:
            raise ValueError(f"cond_drop_prob must lie in [0, 1), got {cond_drop_prob}")
        self.spec = spec
        self.num_classes = num_classes
        self.cond_drop_prob = float(cond_drop_prob)

    @classmethod
    def config_from_codes(cls, codes: torch.Tensor) -> dict:
        """Constructor keywords computed once from the training codes (B, N, c) before training
        (the pipeline passes them unless the caller gave them); none for most priors. The
        Gaussian prior's ``latent_scale`` is one."""
        return {}

    def shared_config(self, preset: str, sizes: dict) -> dict:
        """The first keys of every prior's config: spec, num_classes, preset and resolved sizes."""
        return dict(spec=self.spec.to_dict(), num_classes=self.num_classes, preset=preset, **sizes)

    # -- randomness and label dropout shared by every prior -----------------------------------
    def _uniform(self, shape, generator: torch.Generator | None) -> torch.Tensor:
        """U(0,1) drawn on the generator's device, then moved: a CPU generator drives a GPU model."""
        return sampling.uniform(shape, generator, self.device)

    def _steps(self, batch: int, generator: torch.Generator | None) -> torch.Tensor:
        """(B,) long diffusion steps uniform on {1..T} (``self.timesteps``), drawn like :meth:`_uniform`."""
        return sampling.randint(1, self.timesteps + 1, (batch,), generator, self.device)

    def drop_labels(self, labels: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor | None:
        """labels (B,) with each replaced by the null class ``num_classes`` with probability
        ``cond_drop_prob``, in training mode only (an evaluation loss scores the labels given).
        Draws B uniforms from ``generator`` exactly when it drops."""
        if labels is None or not self.training or self.cond_drop_prob == 0:
            return labels
        drop = self._uniform(labels.shape, generator) < self.cond_drop_prob
        return torch.where(drop, torch.full_like(labels, self.num_classes), labels)

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
        if labels.numel():
            low, high = torch.stack(torch.aminmax(labels.reshape(-1))).tolist()  # one host-device sync
            if low < 0 or high >= self.num_classes:
                raise ValueError(f"labels must lie in [0, {self.num_classes}), got [{low}, {high}]")
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

    def check_sampling(self, n: int, labels: torch.Tensor | None, guidance: float, temperature: float):
        """The checks every ``sample()`` starts with: labels (moved to the prior's device; needed
        by guidance) and temperature (:func:`sampling.check_temperature`). Returns the labels."""
        sampling.check_temperature(temperature)
        labels = self.check_labels(labels, n)
        sampling.check_guidance(guidance, labels)
        return labels.to(self.device) if labels is not None else None

    @staticmethod
    def progress_bar(iterable, desc: str, progress: bool):
        """``iterable`` wrapped in a tqdm bar when ``progress``."""
        if not progress:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, codes: torch.Tensor, labels: torch.Tensor | None = None, *, generator: torch.Generator | None = None,
                log_terms: bool = True) -> LossOutput:
        """``forward`` is the training loss, so a DistributedDataParallel wrapper syncs it."""
        return self.loss(codes, labels, generator=generator, log_terms=log_terms)

    # -- the interface -------------------------------------------------------------------------
    def loss(self, codes: torch.Tensor, labels: torch.Tensor | None = None, *, generator: torch.Generator | None = None,
             log_terms: bool = True) -> LossOutput:
        """Training loss on a batch of codes (layout of ``self.spec``). ``log_terms=False``: the
        terms will not be logged (a trainer's non-log step), so a prior may skip computing the
        ones that do not enter the loss (terms may then have fewer keys); the loss and its
        gradient are unchanged. Every prior accepts the keyword."""
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
        """n codes in the layout of ``self.spec``. ``steps=None`` is the prior's default.
        ``temperature`` τ divides the logits of the network's predicted distribution; τ = 0 takes
        its argmax (the limit τ → 0⁺; see :mod:`discrete_priors.priors.sampling`)."""
        raise NotImplementedError

    @torch.no_grad()
    def nll(self, codes: torch.Tensor, labels: torch.Tensor | None = None, *, generator: torch.Generator | None = None) -> NLLOutput:
        """Negative log-likelihood (or its upper bound), one per code, in ``self.nll_unit``."""
        raise NotImplementedError

    def network_evals_per_sample(self, steps: int | None = None, *, guidance: float = 0.0) -> int:
        """Forward passes of the network needed to draw one sample with ``steps`` (None: the
        prior's default), for the efficiency table. Classifier-free guidance (``guidance != 0``)
        doubles it: a conditional and an unconditional pass per step."""
        raise NotImplementedError
