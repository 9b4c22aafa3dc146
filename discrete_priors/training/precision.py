"""Numeric precision of the networks (``fp32 | bf16 | fp16``) and the CPU thread count, shared by
training, sampling and evaluation.

Only the networks run in reduced precision: :func:`autocast_context` autocasts matmuls and
convolutions, while the priors cast network logits back to fp32 before the diffusion maths,
losses and likelihoods (e.g. ``BernoulliDiffusion.net_logits``).

* ``bf16``: CUDA (where ``torch.cuda.is_bf16_supported()``) and CPUs with native bf16 (AVX512-BF16
  or AMX, :func:`cpu_bf16_supported`). On a CPU without it PyTorch emulates bf16 and a matmul is
  ~50x *slower* than fp32 (measured on the 2-core AVX2 machine of this project): allowed, with a
  warning, so that the numerics can still be tested there.
* ``fp16``: CUDA only, with a GradScaler (the trainer's).
* ``auto`` (what ``TrainConfig.amp`` defaults to, as it always has): bf16 on CUDA (fp16 where bf16 is
  unsupported) and on a CPU with native bf16, fp32 on any other CPU (:func:`resolve_precision`;
  the measurements behind it are in the README, Speed and precision). A resumed run keeps the
  precision it started with: the trainer records the resolved name in ``trainer_state.json``
  (``"precision"``) and, for ``auto``, resumes with it; a checkpoint written before that key existed
  resumes with :func:`legacy_auto_precision` (what ``auto`` meant then: fp32 on CPU). ``"off"``, the old
  spelling of fp32, is still accepted so that old ``trainer_state.json`` files resume.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings

import torch

PRECISIONS = ("fp32", "bf16", "fp16")
ALIASES = {"auto": None, "off": "fp32"}  # None: chosen by the device
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS and precision not in ALIASES:
        raise ValueError(f"unknown precision {precision!r}, expected one of {list(PRECISIONS)} or 'auto' ('off' = fp32)")
    return precision


# the CPU capability flags (torch.cpu.get_capabilities(), from pytorch/cpuinfo) that mean bf16 matmuls
# run natively: x86 AVX512-BF16 or AMX-BF16; Arm BF16 (BFMMLA) or SVE-BF16
BF16_CAPABILITIES = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")


CPU_BF16_ENV = "DISCRETE_PRIORS_CPU_BF16"  # "1" / "0": take this CPU as having native bf16 or not


def cpu_bf16_supported() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX-BF16 on x86, BF16 on Arm), where
    autocast pays. ``$DISCRETE_PRIORS_CPU_BF16`` (``1`` / ``0``) overrides the detection (the test
    suite sets ``0``, so that ``auto`` is fp32 on every machine it runs on)."""
    override = os.environ.get(CPU_BF16_ENV, "").strip()
    if override:
        if override not in {"0", "1"}:
            raise ValueError(f"${CPU_BF16_ENV} must be 0 or 1 (or unset to detect the CPU), got {override!r}")
        return override == "1"
    return _detected_cpu_bf16()


@functools.cache
def _detected_cpu_bf16() -> bool:
    """``torch.cpu.get_capabilities()`` (PyTorch's cpuinfo flags, PyTorch >= 2.10), else its
    private x86 probes (``torch.cpu._is_avx512_bf16_supported`` / ``_is_amx_tile_supported``), else False."""
    get_capabilities = getattr(torch.cpu, "get_capabilities", None)
    if get_capabilities is not None:
        capabilities = get_capabilities()
        return any(bool(capabilities.get(name, False)) for name in BF16_CAPABILITIES)
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(probe()) for probe in probes if probe is not None)


def auto_precision(device: torch.device | str) -> str:
    """What ``auto`` resolves to on ``device``: bf16 on CUDA (fp16 where the GPU lacks bf16) and on
    a CPU with native bf16 (:func:`cpu_bf16_supported`), fp32 elsewhere. The networks only: the
    diffusion maths, losses and likelihoods stay fp32 (module docstring)."""
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_bf16_supported():
        return "bf16"
    return "fp32"


def legacy_auto_precision(device: torch.device | str) -> str:
    """What ``auto`` meant before it chose bf16 on CPUs (bf16/fp16 on CUDA, fp32 elsewhere): the
    precision a checkpoint that recorded none was trained in, so its run resumes unchanged."""
    device = torch.device(device)
    return auto_precision(device) if device.type == "cuda" else "fp32"


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``fp32 | bf16 | fp16`` for ``precision`` (a name or ``auto``/``off``) on ``device``; raises
    where the device cannot run it, warns where it runs it slowly."""
    device = torch.device(device)
    precision = ALIASES.get(check_precision(precision), precision)
    if precision is None:  # auto
        return auto_precision(device)
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision 'fp16' needs a CUDA device (it trains with a GradScaler); on {device} use 'bf16' or 'fp32'")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("precision 'bf16' is not supported by this GPU; use 'fp16' (with its GradScaler) or 'fp32'")
    if precision == "bf16" and device.type == "cpu" and not cpu_bf16_supported():
        warnings.warn("bf16 on a CPU without AVX512-BF16/AMX is emulated and far slower than fp32; use precision 'fp32' "
                      "here unless you are testing numerics", RuntimeWarning, stacklevel=2)
    if precision != "fp32" and device.type not in {"cpu", "cuda"}:
        raise ValueError(f"precision {precision!r} is supported on cpu and cuda, not {device.type}; use 'fp32'")
    return precision


def autocast_context(device: torch.device | str, precision: str):
    """The autocast context for ``precision`` on ``device`` (a no-op for fp32). Wrap network
    calls in it; keep fp32 what must stay fp32 (the priors cast logits back themselves)::

        with autocast_context(prior.device, "bf16"):
            codes = prior.sample(64)
    """
    device = torch.device(device)
    dtype = DTYPES[resolve_precision(precision, device)]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def set_threads(threads: int | None) -> int:
    """Set PyTorch's intra-op CPU threads (None: leave PyTorch's default); returns the count in use.

    Measured on this project's 2-core machine (Bernoulli prior training step, cpu preset, batch
    128, separate processes alternating 1 / 2 threads, medians): idle, 2 threads took 0.72x the
    time of 1 (docs/results/speed/threads_idle.json), so the CLI default is PyTorch's own (one
    thread per core); with other jobs keeping both cores busy, 2 threads were 4.1-5.8x *slower*
    than 1 (median 4.7x over 3 rounds: intra-op threads wait on each other), so pass 1 on a
    shared machine."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1 (or None for PyTorch's default), got {threads}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


__all__ = ["PRECISIONS", "auto_precision", "autocast_context", "check_precision", "cpu_bf16_supported",
           "legacy_auto_precision", "resolve_precision", "set_threads"]
