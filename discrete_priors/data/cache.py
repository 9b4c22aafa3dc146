"""Latent cache: the codes of a whole dataset, encoded once, stored in one safetensors file.

Storage per kind (everything else lives in the safetensors metadata as JSON strings):

* ``binary``:      bits packed 8 per byte along the bit axis -> ``(B, N, ceil(c/8))`` uint8;
                   optional Bernoulli probabilities ``(B, N, c)`` float16 (for re-sampling codes
                   every step, the augmentation the Binary Latent Diffusion code uses).
* ``categorical``: ``(B, N)`` in the smallest integer dtype holding ``vocab_size`` (uint8/int16/int32/int64).
* ``continuous``:  ``(B, N, c)`` float16.

Codes of a latent space without Bernoulli probabilities (LFQ, BSQ, the deterministic binary
latent; VQ, FSQ and continuous too) are *fixed*: the file records it (``fixed_codes``), stores no
probs, and resampling from it is refused with a message that says so — priors train on the
codes as they are. LFQ and BSQ codes are binary-kind and stored bit-packed like any binary code.

The file records the hash of the autoencoder config that produced it, so a prior is never trained
on codes from a different autoencoder by accident (``expect_autoencoder_hash``).

Where a prior's training batch comes from: ``cache.batches(resample=..., labels=...)`` is the
trainer's data source (training/trainer.py). Each step the trainer draws this rank's example
indices and calls ``source(index, generator)``; the source returns ``(codes,)`` or ``(codes,
labels)`` on the generator's device -- codes redrawn from the stored Bernoulli probabilities
when ``resample`` is on -- and the trainer passes them to ``prior.loss`` through ``forward``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from discrete_priors.io import save_tensors
from discrete_priors.latents.base import CodeSpec

FORMAT = "discrete_priors.latent_cache"
VERSION = 1
FLOAT16_MAX = 65504.0


def _index_dtype(vocab_size: int) -> torch.dtype:
    if vocab_size <= 256:
        return torch.uint8
    if vocab_size <= 2**15:
        return torch.int16
    if vocab_size <= 2**31:
        return torch.int32
    return torch.int64  # e.g. FSQ with 16 channels of 4 levels: 2^32 codes


def pack_bits(codes: torch.Tensor) -> torch.Tensor:
    """(..., c) in {0, 1} -> (..., ceil(c/8)) uint8, most significant bit first, zero padded."""
    return torch.from_numpy(np.packbits(codes.to(torch.uint8).cpu().numpy(), axis=-1))


def unpack_bits(packed: torch.Tensor, channels: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: (..., ceil(c/8)) uint8 -> (..., c) float32 in {0, 1}."""
    return torch.from_numpy(np.unpackbits(packed.numpy(), axis=-1, count=channels)).float()


@dataclass(frozen=True, eq=False)
class LatentCache:
    """Codes of a dataset as stored on disk (``stored_codes`` packed / narrowed, see module doc).

    ``codes`` / ``probs`` unpack everything (float32); for large caches prefer ``batch``, and for
    training ``batches`` (the trainer's data source).
    ``labels``: (B,) long or None. ``extra``: the JSON metadata given at save time.
    """

    spec: CodeSpec
    stored_codes: torch.Tensor
    labels: torch.Tensor | None = None
    stored_probs: torch.Tensor | None = None
    autoencoder_hash: str = ""
    extra: dict = field(default_factory=dict)
    fixed_codes: bool = False  # made by a latent space with no Bernoulli probabilities (see module doc)

    def __len__(self) -> int:
        return self.stored_codes.shape[0]

    @property
    def codes(self) -> torch.Tensor:
        """All codes in the library layout (binary (B, N, c) float {0,1}, categorical (B, N) long,
        continuous (B, N, c) float32)."""
        return self.batch(torch.arange(len(self)))

    @property
    def probs(self) -> torch.Tensor | None:
        """(B, N, c) float32 Bernoulli probabilities of binary codes, or None if not stored."""
        return None if self.stored_probs is None else self.stored_probs.float()

    @property
    def can_resample(self) -> bool:
        """Whether ``batch(resample=True)`` works: binary codes stored with their probabilities."""
        return self.spec.kind == "binary" and self.stored_probs is not None

    @property
    def nbytes(self) -> int:
        """Bytes taken by the stored codes (the packed form), without probs or labels."""
        return self.stored_codes.numel() * self.stored_codes.element_size()

    def batch(
        self,
        index: torch.Tensor | list[int] | slice,
        *,
        resample: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Codes of the items ``index`` in the library layout, on ``device`` (default: the
        generator's device, else the CPU).

        resample: binary caches with probs only -- draw fresh codes z ~ Bernoulli(probs) with
        ``generator``: z = [u < p] with u ~ U[0, 1) drawn on the generator's device (so p = 0 and
        p = 1 stay exact, and a CUDA generator draws on the GPU).
        """
        if device is None:
            device = generator.device if generator is not None else "cpu"
        if isinstance(index, list):
            index = torch.tensor(index, dtype=torch.long)
        if resample:
            self._check_resample()
            probs = self.stored_probs[index].to(device, torch.float32)
            uniform = torch.rand(probs.shape, generator=generator, device=device if generator is None else generator.device)
            return (uniform.to(device) < probs).float()
        stored = self.stored_codes[index]
        if self.spec.kind == "binary":
            return unpack_bits(stored, self.spec.channels).to(device)
        if self.spec.kind == "categorical":
            return stored.long().to(device)
        return stored.float().to(device)

    def batches(self, *, resample: bool = False, labels: bool = False,
                device: torch.device | str | None = None) -> "CacheBatches":
        """The trainer's data source over this cache: ``source(index, generator)`` -> ``(codes,)``
        or, with ``labels``, ``(codes, labels)``, on ``device`` (default: the generator's, i.e.
        the trainer's device); ``resample`` as in :meth:`batch`. Checked here, before training."""
        if resample:
            self._check_resample()
        if labels and self.labels is None:
            raise ValueError("labels=True (class-conditional training) needs labels, but this cache was saved "
                             "without them: encode a labelled dataset")
        return CacheBatches(self, resample, labels, device)

    def _check_resample(self) -> None:
        if self.spec.kind != "binary":
            raise ValueError(f"resample=True needs a binary cache, this one holds {self.spec.kind} codes")
        if self.fixed_codes:
            raise ValueError("resample=True needs Bernoulli probabilities, but this cache holds fixed codes of a latent "
                             "space that has none (LFQ, BSQ or the deterministic binary latent: its codes are not draws "
                             "from a Bernoulli posterior): train the prior on the codes as they are, without --resample")
        if self.stored_probs is None:
            raise ValueError("resample=True needs Bernoulli probabilities, but this cache was saved without probs: "
                             "encode again without --no-probs")


class CacheBatches(NamedTuple):
    """A batch source for the trainer, made by :meth:`LatentCache.batches`.

    ``source(index, generator)``: index (b,) long (CPU) -> ``(codes,)`` or ``(codes, labels)``;
    codes in the library layout, labels (b,) long, both on ``device`` (None: the generator's).
    The only randomness is the resampling, drawn from ``generator``: a batch is a pure function
    of (index, generator seed)."""

    cache: LatentCache
    resample: bool
    labels: bool
    device: torch.device | str | None

    def __len__(self) -> int:
        return len(self.cache)

    def __call__(self, index: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        index = index.cpu()
        device = self.device if self.device is not None else (generator.device if generator is not None else "cpu")
        codes = self.cache.batch(index, resample=self.resample, generator=generator, device=device)
        return (codes, self.cache.labels[index].to(device)) if self.labels else (codes,)


def save_latent_cache(
    path: str | os.PathLike,
    *,
    codes: torch.Tensor,
    spec: CodeSpec,
    labels: torch.Tensor | None = None,
    probs: torch.Tensor | None = None,
    autoencoder_hash: str,
    extra: dict | None = None,
    fixed_codes: bool = False,
) -> None:
    """Write a latent cache atomically to ``path`` (one ``.safetensors`` file).

    codes:  a batch valid for ``spec`` (checked with ``spec.check``).
    labels: (B,) integer class labels or None.
    probs:  binary only, (B, N, c) Bernoulli probabilities in [0, 1] (stored as float16).
    autoencoder_hash: ``config_hash`` of the autoencoder that made the codes.
    extra:  any JSON-serialisable metadata (dataset, split, encode mode, ...).
    fixed_codes: the latent space has no Bernoulli probabilities (``LatentSpace.has_probs`` is
            False): recorded, and ``probs`` must then be None.
    """
    spec.check(codes)
    num = codes.shape[0]
    codes = codes.detach().cpu()
    if spec.kind == "binary":
        tensors = {"codes": pack_bits(codes)}
    elif spec.kind == "categorical":
        tensors = {"codes": codes.to(_index_dtype(spec.vocab_size))}
    else:
        peak = codes.abs().max().item() if codes.numel() else 0.0
        if peak > FLOAT16_MAX:
            raise ValueError(f"continuous codes reach |{peak:.3g}|, beyond float16's range ({FLOAT16_MAX}); rescale them")
        tensors = {"codes": codes.to(torch.float16)}
    if probs is not None:
        if fixed_codes:
            raise ValueError("probs given with fixed_codes=True: a latent space without Bernoulli probabilities has "
                             "none to store")
        if spec.kind != "binary":
            raise ValueError(f"probs are only stored for binary codes, got a {spec.kind} spec")
        if tuple(probs.shape) != tuple(codes.shape):
            raise ValueError(f"probs: expected shape {tuple(codes.shape)} like the codes, got {tuple(probs.shape)}")
        probs = probs.detach().cpu().float()
        if probs.numel() and not (probs.min() >= 0 and probs.max() <= 1):  # also catches NaN
            raise ValueError("probs: expected Bernoulli probabilities in [0, 1]")
        tensors["probs"] = probs.to(torch.float16)
    if labels is not None:
        if labels.shape != (num,) or labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(f"labels: expected ({num},) integer class labels, got {tuple(labels.shape)} {labels.dtype}")
        tensors["labels"] = labels.detach().cpu().to(torch.int64)
    try:
        extra_json = json.dumps(extra or {}, sort_keys=True)
    except TypeError as err:
        raise ValueError(f"extra must be JSON-serialisable: {err}") from err
    metadata = {
        "format": FORMAT,
        "version": str(VERSION),
        "spec": json.dumps(spec.to_dict(), sort_keys=True),
        "autoencoder_hash": str(autoencoder_hash),
        "extra": extra_json,
        "fixed_codes": "1" if fixed_codes else "0",
    }
    save_tensors(path, tensors, metadata)


def load_latent_cache(path: str | os.PathLike, *, expect_autoencoder_hash: str | None = None) -> LatentCache:
    """Read a cache written by :func:`save_latent_cache`.

    expect_autoencoder_hash: if given, a ValueError is raised unless the cache was made by the
    autoencoder with this config hash.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no latent cache at {path}: run the encode step first")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except SafetensorError as err:
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from err
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is not a latent cache (metadata format {metadata.get('format')!r}, expected {FORMAT!r})")
    if int(metadata["version"]) != VERSION:
        raise ValueError(f"{path}: latent cache version {metadata['version']}, this code reads version {VERSION}")
    made_by = metadata["autoencoder_hash"]
    if expect_autoencoder_hash is not None and made_by != expect_autoencoder_hash:
        raise ValueError(
            f"cache at {path} was made by autoencoder {made_by}, expected {expect_autoencoder_hash} (the one given): "
            "pass the latent cache this autoencoder made, or re-run encode with it"
        )
    spec = CodeSpec.from_dict(json.loads(metadata["spec"]))
    stored = tensors["codes"]
    expected = (stored.shape[0],) + spec.shape
    if spec.kind == "binary":
        expected = expected[:-1] + (math.ceil(spec.channels / 8),)
    if tuple(stored.shape) != expected:
        raise ValueError(f"{path}: stored codes have shape {tuple(stored.shape)}, expected {expected} for {spec}")
    return LatentCache(
        spec=spec,
        stored_codes=stored,
        labels=tensors.get("labels"),
        stored_probs=tensors.get("probs"),
        autoencoder_hash=made_by,
        extra=json.loads(metadata["extra"]),
        fixed_codes=metadata.get("fixed_codes", "0") == "1",  # caches written before the field: not fixed
    )
