"""Noise schedules of the Bernoulli diffusion (docs/method.md §2.1) and of the Gaussian diffusion
(§10.1): pure tables over t = 0..T.

Every schedule is given by its *keep rate* k_t = Π_{i≤t}(1 − β_i), the probability mass that
z⁰ still carries at step t: q(zᵗ | z⁰) = B(k_t z⁰ + b_t) with b_t = (1 − k_t)/2, so a bit of z⁰
is flipped by time t with probability (1 − k_t)/2. k_0 = 1, b_0 = 0, and all schedules here end
at k_T = 0 exactly, so z^T ~ B(½) exactly (the VLB prior term vanishes).

The Gaussian diffusion's signal rate ᾱ_t = Π_{i≤t}(1 − β_i) is the same kind of table
(:func:`signal_rates`): a :class:`Schedule` holds it as its k_t (``k``, ``beta`` and ``skip``
mean ᾱ_t, β_t and ᾱ_t/ᾱ_s; ``b`` has no Gaussian meaning), ending at ᾱ_T > 0.

Tables are float64 (the posterior needs 1 − K for K close to 1); callers cast what they gather.
"""

from __future__ import annotations

import math

import torch

SCHEDULES = ("linear", "cosine", "sigmoid")

# Sigmoid schedule constants (Jabri et al. 2022, "Scalable Adaptive Computation for Iterative
# Generation", arXiv 2212.11972, Alg. 1; also Chen 2023, arXiv 2301.10972): start/end of the
# sigmoid's input range and its temperature.
SIGMOID_START, SIGMOID_END, SIGMOID_TAU = -3.0, 3.0, 1.0


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def keep_rates(name: str, timesteps: int) -> torch.Tensor:
    """(T+1,) float64 k_t for t = 0..T under schedule ``name``.

    * ``linear``:  k_t = 1 − t/T (linear in k — the reference code's default).
    * ``cosine``:  k_t = ½(1 + cos(π t/T)).
    * ``sigmoid``: k_t = (σ(e/τ) − σ((s + (e − s) t/T)/τ)) / (σ(e/τ) − σ(s/τ)) with s = −3, e = 3,
      τ = 1: a sigmoid in t rescaled to run exactly from 1 (t = 0) to 0 (t = T); it keeps
      more signal early and destroys it faster in the middle than ``linear``.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}, expected one of {SCHEDULES}")
    if not isinstance(timesteps, int) or timesteps < 1:
        raise ValueError(f"timesteps must be a positive int, got {timesteps!r}")
    u = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    if name == "linear":
        keep = 1.0 - u
    elif name == "cosine":
        keep = 0.5 * (1.0 + torch.cos(math.pi * u))
    else:
        lo, hi = _sigmoid(SIGMOID_START / SIGMOID_TAU), _sigmoid(SIGMOID_END / SIGMOID_TAU)
        keep = (hi - torch.sigmoid((SIGMOID_START + (SIGMOID_END - SIGMOID_START) * u) / SIGMOID_TAU)) / (hi - lo)
    # Pin the ends exactly (rounding could leave k_T = 1e-17 and make β_T ≠ 1).
    keep[0], keep[-1] = 1.0, 0.0
    return keep


class Schedule:
    """A Bernoulli-diffusion schedule over t = 0..T (float64 tables, all (T+1,)).

    ``k(t)``: keep rate k_t; ``b(t)``: b_t = (1 − k_t)/2; ``beta(t)``: β_t = 1 − k_t/k_{t−1}
    (β_0 = 0; β_T = 1 when k_T = 0); ``skip(t, s)``: K = k_t/k_s, the keep rate of the jump
    s → t, q(zᵗ | zˢ) = B(K zˢ + (1 − K)/2). Each accepts an int or a long tensor of steps
    (any shape) and returns float64 values of the same shape, on t's device (CPU for MPS);
    ``t=None`` returns the table.

    Lookups are gathers from a copy of the table kept on each device it was asked for (made
    once), so a lookup with device steps never waits for the device. ``check=True`` (default)
    validates the steps, which reads them back (``min``/``max``: one host-device sync); a
    prior's hot path passes ``check=False`` for steps it drew itself or validated once at its
    public entry.
    """

    def __init__(self, keep: torch.Tensor, *, name: str = "custom"):
        keep = torch.as_tensor(keep, dtype=torch.float64)
        if keep.dim() != 1 or keep.numel() < 2:
            raise ValueError(f"keep rates: expected a 1-d table over t = 0..T (T >= 1), got shape {tuple(keep.shape)}")
        if keep[0] != 1.0:
            raise ValueError(f"keep rates must start at k_0 = 1, got {keep[0].item()}")
        if (keep[1:] >= keep[:-1]).any() or keep[-1] < 0:
            raise ValueError("keep rates must decrease strictly from 1 to a value >= 0")
        self.name = name
        self.timesteps = keep.numel() - 1
        self._keep = keep
        self._b = (1.0 - keep) / 2
        self._beta = torch.cat([keep.new_zeros(1), 1.0 - keep[1:] / keep[:-1]])
        self._copies: dict = {}  # (table id, device) -> the table on that device

    def __repr__(self) -> str:
        return f"Schedule(name={self.name!r}, timesteps={self.timesteps}, k_T={self._keep[-1].item():.3g})"

    def check_steps(self, t) -> None:
        """Raise a ValueError unless ``t`` (int or tensor) holds integer steps in 0..T."""
        t = torch.as_tensor(t)
        if t.dtype.is_floating_point:
            raise ValueError(f"steps must be integers in 0..{self.timesteps}, got dtype {t.dtype}")
        if t.numel():
            lo, hi = torch.stack(torch.aminmax(t.reshape(-1).long())).tolist()  # one read-back
            if lo < 0 or hi > self.timesteps:
                raise ValueError(f"steps must lie in 0..{self.timesteps}, got [{lo}, {hi}]")

    def on(self, table: torch.Tensor, device) -> torch.Tensor:
        """``table`` on ``device`` (copied the first time only)."""
        device = torch.device(device)
        if device.type == "cpu":
            return table
        key = (id(table), device)
        if key not in self._copies:
            self._copies[key] = table.to(device)
        return self._copies[key]

    def _at(self, table: torch.Tensor, t, check: bool) -> torch.Tensor:
        if t is None:
            return table
        t = torch.as_tensor(t)
        if check:
            self.check_steps(t)
        elif t.dtype.is_floating_point:  # free: no read-back
            raise ValueError(f"steps must be integers in 0..{self.timesteps}, got dtype {t.dtype}")
        if t.device.type == "mps":  # no float64 on Apple GPUs: index on the CPU, callers cast and move
            t = t.cpu()
        return self.on(table, t.device)[t]

    def k(self, t=None, *, check: bool = True) -> torch.Tensor:
        return self._at(self._keep, t, check)

    def b(self, t=None, *, check: bool = True) -> torch.Tensor:
        return self._at(self._b, t, check)

    def beta(self, t=None, *, check: bool = True) -> torch.Tensor:
        return self._at(self._beta, t, check)

    def skip(self, t, s, *, check: bool = True) -> torch.Tensor:
        """K = k_t / k_s for s < t (s = t − 1 gives 1 − β_t)."""
        t, s = torch.as_tensor(t), torch.as_tensor(s)
        if check and (s >= t).any():
            raise ValueError("skip(t, s) needs s < t")
        return self.k(t, check=check) / self.k(s, check=check)  # k_s > 0 since s < t <= T and k decreases strictly

    def flip_prob(self, t=None, *, check: bool = True) -> torch.Tensor:
        """Probability that a bit of z⁰ differs in zᵗ: (1 − k_t)/2 = b_t."""
        return self.b(t, check=check)


GAUSSIAN_SCHEDULES = ("linear", "cosine")
MAX_BETA = 0.999  # Nichol & Dhariwal's clip: keeps ᾱ_T > 0 and the last steps finite


def signal_rates(name: str, timesteps: int) -> torch.Tensor:
    """(T+1,) float64 ᾱ_t of a Gaussian diffusion, t = 0..T (ᾱ_0 = 1), from β_t clipped to 0.999.

    * ``linear``: β_t linear from 1e-4 to 0.02 at T = 1000 (Ho et al. 2020,
      https://arxiv.org/abs/2006.11239), both ends scaled by 1000/T so any T destroys as much signal.
    * ``cosine``: ᾱ_t = f(t)/f(0), f(t) = cos²(π/2 · (t/T + s)/(1 + s)), s = 0.008 (Nichol & Dhariwal
      2021, https://arxiv.org/abs/2102.09672), through β_t = 1 − ᾱ_t/ᾱ_{t−1} clipped like the linear.
    """
    if name not in GAUSSIAN_SCHEDULES:
        raise ValueError(f"unknown Gaussian schedule {name!r}, expected one of {GAUSSIAN_SCHEDULES}")
    if not isinstance(timesteps, int) or timesteps < 1:
        raise ValueError(f"timesteps must be a positive int, got {timesteps!r}")
    if name == "linear":
        scale = 1000.0 / timesteps
        beta = torch.linspace(1e-4 * scale, 0.02 * scale, timesteps, dtype=torch.float64)
    else:
        u = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
        f = torch.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
        beta = 1.0 - f[1:] / f[:-1]
    beta = beta.clamp(max=MAX_BETA)
    return torch.cat([beta.new_ones(1), torch.cumprod(1.0 - beta, 0)])


def make_gaussian_schedule(name: str, timesteps: int) -> Schedule:
    """A :class:`Schedule` over the Gaussian ᾱ_t of :func:`signal_rates` (``k(t)`` = ᾱ_t)."""
    return Schedule(signal_rates(name, timesteps), name=f"gaussian-{name}")


def make_schedule(name: str, timesteps: int) -> Schedule:
    """``name`` in {"linear", "cosine", "sigmoid"}; see :func:`keep_rates`."""
    return Schedule(keep_rates(name, timesteps), name=name)
