"""Priors over latent codes, one shared interface (:class:`~discrete_priors.priors.base.Prior`).

``PRIORS`` maps a name to its class, importing the module only when the name is looked up, so
one prior's import error (or a missing optional module) never breaks the others::

    prior = build_prior("autoregressive", spec, preset="cpu")
    same = prior_from_config({"name": prior.name, **prior.config})

Adding a prior: write ``priors/<name>.py`` with a ``Prior`` subclass that follows the
constructor conventions in :mod:`discrete_priors.priors.base` (``name``, ``preset``/``dim``/
``depth``/``heads``, ``cond_drop_prob``) and samples with :mod:`discrete_priors.priors.sampling`,
add one line to ``_REGISTRY`` below, and one line to ``CASES`` in ``tests/test_prior_contract.py``.
Code outside the package (a test, a notebook) registers its own prior at run time with
:func:`register_prior`, without editing this file::

    register_prior("dummy", DummyPrior)                     # a class
    register_prior("mine", "my_package.priors:MyPrior")      # or "module:Class", imported lazily
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping

from discrete_priors.latents.base import CodeSpec
from discrete_priors.priors.base import LossOutput, NLLOutput, Prior

# name -> (module, class) for the built-ins, imported on first lookup; register_prior adds more
_REGISTRY: dict[str, tuple[str, str] | type[Prior]] = {
    "bernoulli": ("discrete_priors.priors.bernoulli", "BernoulliDiffusion"),
    "absorbing": ("discrete_priors.priors.absorbing", "AbsorbingDiffusion"),
    "autoregressive": ("discrete_priors.priors.autoregressive", "AutoregressivePrior"),
    "gaussian": ("discrete_priors.priors.gaussian", "GaussianDiffusion"),
}


class _LazyPriors(Mapping):
    """Read-only name -> Prior subclass mapping that imports a module on first lookup."""

    def __getitem__(self, name: str) -> type[Prior]:
        if name not in _REGISTRY:
            raise KeyError(f"unknown prior {name!r}, expected one of {sorted(_REGISTRY)}")
        entry = _REGISTRY[name]
        if isinstance(entry, type):
            return entry
        module, cls = entry
        return getattr(importlib.import_module(module), cls)

    def __iter__(self):
        return iter(_REGISTRY)

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __repr__(self) -> str:
        return f"PRIORS({sorted(_REGISTRY)})"


PRIORS = _LazyPriors()


def register_prior(name: str, cls_or_path: type[Prior] | str, *, replace: bool = False) -> None:
    """Make ``name`` a prior for :func:`build_prior`, :func:`prior_from_config` and ``PRIORS``.

    cls_or_path: a :class:`Prior` subclass whose ``name`` is ``name``, or ``"module:Class"``
    (``"module.Class"`` too), imported when first looked up. Re-registering a taken name
    raises unless ``replace=True`` (a built-in can be shadowed only on purpose)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_prior: expected a non-empty name, got {name!r}")
    if isinstance(cls_or_path, str):
        module, sep, cls = cls_or_path.rpartition(":") if ":" in cls_or_path else cls_or_path.rpartition(".")
        if not (sep and module and cls):
            raise ValueError(f"register_prior: expected a Prior subclass or 'module:Class', got {cls_or_path!r}")
        entry = (module, cls)
    elif isinstance(cls_or_path, type) and issubclass(cls_or_path, Prior):
        if cls_or_path.name != name:
            raise ValueError(f"register_prior: {cls_or_path.__name__}.name is {cls_or_path.name!r}, expected {name!r} "
                             "(prior_from_config rebuilds a prior from its name)")
        entry = cls_or_path
    else:
        raise ValueError(f"register_prior: expected a Prior subclass or 'module:Class', got {cls_or_path!r}")
    same = name in _REGISTRY and (_REGISTRY[name] == entry or (isinstance(entry, type) and PRIORS[name] is entry))
    if name in _REGISTRY and not (same or replace):
        raise ValueError(f"prior {name!r} is already registered ({_REGISTRY[name]}); pass replace=True to override it")
    _REGISTRY[name] = entry


def unregister_prior(name: str) -> None:
    """Remove a prior added by :func:`register_prior` (tests clean up with it)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown prior {name!r}, expected one of {sorted(_REGISTRY)}")
    del _REGISTRY[name]


def build_prior(name: str, spec: CodeSpec | dict, **kwargs) -> Prior:
    """Build the prior called ``name`` for ``spec`` (a CodeSpec or its ``to_dict()``);
    ``kwargs`` are the prior's constructor keywords (``num_classes``, network sizes, ...)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown prior {name!r}, expected one of {sorted(_REGISTRY)}")
    if isinstance(spec, dict):
        spec = CodeSpec.from_dict(spec)
    cls = PRIORS[name]
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            options = ", ".join("--" + key.replace("_", "-") for key in unknown)
            raise ValueError(f"the {name} prior takes no {', '.join(unknown)} ({options} on the command line): "
                             f"drop them, or choose a prior they apply to")
    return cls(spec, **kwargs)


def prior_from_config(config: dict) -> Prior:
    """Rebuild a prior from ``{"name": ..., "spec": {...}, **constructor kwargs}``, i.e.
    ``{"name": prior.name, **prior.config}`` (weights are loaded separately)."""
    config = dict(config)
    missing = {"name", "spec"} - set(config)
    if missing:
        raise ValueError(f"prior config needs keys 'name' and 'spec', missing {sorted(missing)}")
    name, spec = config.pop("name"), config.pop("spec")
    return build_prior(name, spec, **config)


__all__ = ["PRIORS", "Prior", "LossOutput", "NLLOutput", "build_prior", "prior_from_config", "register_prior",
           "unregister_prior"]
