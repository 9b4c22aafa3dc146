"""The README's "adding a prior" how-to, proven: a prior defined in this test module (a tiny
exact autoregressive model over the flattened bits) is registered with one call and passes the
whole prior contract of tests/test_prior_contract.py through one ``CASES`` line."""

import math

import torch
from torch import nn

from discrete_priors.nets.presets import network_sizes
from discrete_priors.priors import register_prior, sampling
from discrete_priors.priors.base import LossOutput, NLLOutput, Prior
from tests.test_prior_contract import *  # noqa: F403  the contract tests and their parametrisation


class DummyPrior(Prior):
    """p(z) = Π_j σ(±ℓ_j), ℓ = 30 (W_causal (2z − 1) + offset[label]) over the flattened bits: an
    exact likelihood with a strictly lower-triangular W (the factor 30 lets 30 Adam steps overfit
    the contract's 16 codes)."""

    accepts = frozenset({"binary"})
    name = "dummy-howto"

    def __init__(self, spec, *, num_classes=None, preset="cpu", dim=None, depth=None, heads=None, cond_drop_prob=0.1):
        super().__init__(spec, num_classes=num_classes, cond_drop_prob=cond_drop_prob)
        self.config = self.shared_config(preset, network_sizes(preset, dim=dim, depth=depth, heads=heads)) | dict(
            cond_drop_prob=self.cond_drop_prob)
        d = self.spec.num_positions * self.spec.channels
        self.weight = nn.Parameter(torch.zeros(d, d))
        self.offset = nn.Parameter(torch.zeros((num_classes or 0) + 1, d))
        self.register_buffer("causal", torch.ones(d, d).tril(-1), persistent=False)

    def _logits(self, flat, labels):
        row = labels if labels is not None else torch.full((flat.shape[0],), self.offset.shape[0] - 1)
        return 30 * ((2 * flat - 1) @ (self.weight * self.causal).T + self.offset[row])

    def _nats(self, codes, labels):
        flat = codes.flatten(1)
        return nn.functional.binary_cross_entropy_with_logits(self._logits(flat, labels), flat, reduction="none")

    def loss(self, codes, labels=None, *, generator=None, log_terms=True):
        codes = self.check_codes(codes)
        labels = self.drop_labels(self.check_labels(labels, codes.shape[0]), generator)
        loss = self._nats(codes, labels).mean()
        return LossOutput(loss, {"loss": loss.detach()})

    @torch.no_grad()
    def nll(self, codes, labels=None, *, generator=None):
        codes = self.check_codes(codes)
        labels = self.check_labels(labels, codes.shape[0])
        return NLLOutput(self._nats(codes, labels).sum(1) / math.log(2) / self.spec.bits, True)

    @torch.no_grad()
    def sample(self, n, *, steps=None, temperature=1.0, labels=None, guidance=0.0, inpaint_mask=None, known_codes=None,
               generator=None, progress=False):
        labels = self.check_sampling(n, labels, guidance, temperature)
        mask, known = self.check_inpaint(inpaint_mask, known_codes, n)
        flat = torch.zeros(n, self.weight.shape[0])
        known_bits = None if mask is None else (mask[..., None].expand_as(known) if mask.dim() == 2 else mask).flatten(1)
        for j in range(self.weight.shape[0]):
            logits = sampling.guided_logits(self._logits, (flat,), labels, guidance, null_class=self.num_classes)
            flat[:, j] = sampling.draw_bits(logits[:, j:j + 1], temperature=temperature, generator=generator).values[:, 0]
            if known_bits is not None:
                flat[:, j] = torch.where(known_bits[:, j], known.flatten(1)[:, j], flat[:, j])
        return flat.reshape(n, *self.spec.shape)

    def network_evals_per_sample(self, steps=None, *, guidance=0.0):
        return self.weight.shape[0] * (2 if guidance != 0 else 1)


register_prior(DummyPrior.name, DummyPrior, replace=True)
CASES = [(DummyPrior.name, dict(preset="tiny"), True)]
