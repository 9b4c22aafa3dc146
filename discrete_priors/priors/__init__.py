"""Priors over latent codes, one shared interface (:class:`~discrete_priors.priors.base.Prior`).

``PRIORS`` maps a name to its class, importing the module only when the name is looked up, so
one prior's import error (or a missing optional module) never breaks the others::

    prior = build_prior("autoregressive", spec, preset="cpu")
    same = prior_from_config({"name": prior.name, **prior.config})

Adding a prior: write ``priors/<name>.py`` with a ``Prior`` subclass that follows the
constructor conventions in :mod:`discrete_priors.priors.base` (``name``, ``preset``/``dim``/
``depth``/``heads``, ``cond_drop_prob``), add one line to ``_REGISTRY`` below, and one line to
the parameter list of ``tests/test_prior_contract.py``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from discrete_priors.latents.base import CodeSpec
from discrete_priors.priors.base import LossOutput, NLLOutput, Prior

# name -> (module, class)
_REGISTRY = {
    "bernoulli": ("discrete_priors.priors.bernoulli", "BernoulliDiffusion"),
    "absorbing": ("discrete_priors.priors.absorbing", "AbsorbingDiffusion"),
    "autoregressive": ("discrete_priors.priors.autoregressive", "AutoregressivePrior"),
}


class _LazyPriors(Mapping):
    """Read-only name -> Prior subclass mapping that imports a module on first lookup."""

    def __getitem__(self, name: str) -> type[Prior]:
        if name not in _REGISTRY:
            raise KeyError(f"unknown prior {name!r}, expected one of {sorted(_REGISTRY)}")
        module, cls = _REGISTRY[name]
        return getattr(importlib.import_module(module), cls)

    def __iter__(self):
        return iter(_REGISTRY)

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __repr__(self) -> str:
        return f"PRIORS({sorted(_REGISTRY)})"


PRIORS = _LazyPriors()


def build_prior(name: str, spec: CodeSpec | dict, **kwargs) -> Prior:
    """Build the prior called ``name`` for ``spec`` (a CodeSpec or its ``to_dict()``);
    ``kwargs`` are the prior's constructor keywords (``num_classes``, network sizes, ...)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown prior {name!r}, expected one of {sorted(_REGISTRY)}")
    if isinstance(spec, dict):
        spec = CodeSpec.from_dict(spec)
    return PRIORS[name](spec, **kwargs)


def prior_from_config(config: dict) -> Prior:
    """Rebuild a prior from ``{"name": ..., "spec": {...}, **constructor kwargs}``, i.e.
    ``{"name": prior.name, **prior.config}`` (weights are loaded separately)."""
    config = dict(config)
    missing = {"name", "spec"} - set(config)
    if missing:
        raise ValueError(f"prior config needs keys 'name' and 'spec', missing {sorted(missing)}")
    name, spec = config.pop("name"), config.pop("spec")
    return build_prior(name, spec, **config)


__all__ = ["PRIORS", "Prior", "LossOutput", "NLLOutput", "build_prior", "prior_from_config"]
