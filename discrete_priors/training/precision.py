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
  unsupported), fp32 on CPU -- a resumed run keeps the precision it started with. ``"off"``, the
  old spelling of fp32, is still accepted so that old ``trainer_state.json`` files resume.
"""

from __future__ import annotations

import contextlib
import warnings

import torch

PRECISIONS = ("fp32", "bf16", "fp16")
ALIASES = {"auto": None, "off": "fp32"}  # None: chosen by the device
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS and precision not in ALIASES:
        raise ValueError(f"unknown precision {precision!r}, expected one of {list(PRECISIONS)} or 'auto' ('off' = fp32)")
    return precision


def cpu_bf16_supported() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX tiles), where autocast pays."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``fp32 | bf16 | fp16`` for ``precision`` (a name or ``auto``/``off``) on ``device``; raises
    where the device cannot run it, warns where it runs it slowly."""
    device = torch.device(device)
    precision = ALIASES.get(check_precision(precision), precision)
    if precision is None:  # auto
        if device.type != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
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


__all__ = ["PRECISIONS", "autocast_context", "check_precision", "cpu_bf16_supported", "resolve_precision", "set_threads"]
