"""Network sizes by name: the one table every prior's network (denoiser or causal) is sized from.

A prior stores the preset name *and* the resolved ``dim``/``depth``/``heads`` in its config, so a
saved prior rebuilds the same network; the values below must therefore never change.
"""

from __future__ import annotations

NETWORK_PRESETS = {
    # a few seconds of training in CI
    "tiny": dict(dim=64, depth=2, heads=2),
    # about 1M parameters: trains on a laptop CPU in minutes
    "cpu": dict(dim=128, depth=4, heads=4),
    # the Binary Latent Diffusion paper's transformer (24 layers, 768 wide, 12 heads)
    "paper": dict(dim=768, depth=24, heads=12),
}


def denoiser_preset(name: str) -> dict:
    """Width/depth/heads of a named size: ``"tiny"`` (CI), ``"cpu"`` (~1M params), ``"paper"``."""
    if name not in NETWORK_PRESETS:
        raise ValueError(f"unknown denoiser preset {name!r}, expected one of {sorted(NETWORK_PRESETS)}")
    return dict(NETWORK_PRESETS[name])


def network_sizes(preset: str = "cpu", *, dim: int | None = None, depth: int | None = None,
                  heads: int | None = None) -> dict:
    """``dict(dim, depth, heads)`` of the named preset with every non-None override applied."""
    overrides = {key: value for key, value in dict(dim=dim, depth=depth, heads=heads).items() if value is not None}
    return denoiser_preset(preset) | overrides
