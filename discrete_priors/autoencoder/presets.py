"""Architecture presets: ``autoencoder_preset(name, latent=..., image_size=..., image_channels=...)``
returns the keyword arguments of :class:`~discrete_priors.autoencoder.Autoencoder` (its config).

* ``tiny``        CI-fast (seconds): k = 4, narrow, one block per resolution.
* ``cpu-digits``  16x16 digits -> 4x4 grid (k = 4). Measured test PSNR after 2,000 steps (batch 64,
                  ~200 s of one CPU core): binary 32 bits 31.9 dB (28.3 dB at 500 steps), VQ K=512
                  dim 8 34.7 dB with 100% of codes used, continuous dim 8 46.1 dB.
* ``cpu-fashion`` 28x28 Fashion-MNIST -> 7x7 grid (k = 4). Test PSNR after 2,000 steps: binary
                  32 bits 24.1 dB (1,568 bits/image), VQ K=512 25.1 dB (441 bits, 100% used);
                  after 600 steps continuous dim 8 23.7 dB. Train longer for good reconstructions.
* ``folder32``    32x32 image folders (RGB or grey) -> 4x4 grid (k = 8): the cpu backbone with one
                  more halving, so a prior sees 16 positions and trains in minutes on a CPU
                  (README, "Quick start on your own images").
* ``paper``       VQGAN-style backbone of the Binary Latent Diffusion paper for 256x256 images:
                  k = 16, widths 128 x (1, 1, 2, 2, 4), 2 blocks per resolution, attention at 16x16.
"""

from __future__ import annotations

PRESETS = {
    "tiny": {"downsample": 4, "width": 8, "channel_mult": [1, 2, 2], "num_res_blocks": 1, "attention": False,
             "norm_groups": 8, "recon_loss": "l1"},
    # Narrow at full resolution, wide at the latent grid: most of the CPU time goes to the 16x16 /
    # 28x28 level, most of the capacity is needed at 4x4 / 7x7. ~0.43M parameters.
    "cpu-digits": {"downsample": 4, "width": 16, "channel_mult": [1, 2, 4], "num_res_blocks": 1, "attention": False,
                   "norm_groups": 8, "recon_loss": "l1"},
    "cpu-fashion": {"downsample": 4, "width": 16, "channel_mult": [1, 2, 4], "num_res_blocks": 1, "attention": False,
                    "norm_groups": 8, "recon_loss": "l1"},
    # One more halving than cpu-fashion (32 -> 4x4): the extra 8x8 -> 4x4 level is cheap, and 16 latent
    # positions keep the prior's sequence as short as cpu-digits'.
    "folder32": {"downsample": 8, "width": 16, "channel_mult": [1, 2, 4, 4], "num_res_blocks": 1, "attention": False,
                 "norm_groups": 8, "recon_loss": "l1"},
    "paper": {"downsample": 16, "width": 128, "channel_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "attention": True,
              "norm_groups": 32, "recon_loss": "l1", "disc_width": 64, "disc_layers": 3},
}

def autoencoder_preset(name: str, *, latent: dict, image_size: int, image_channels: int) -> dict:
    """Config dict for ``Autoencoder(**config)``: the preset's backbone plus the given latent and image shape."""
    if name not in PRESETS:
        raise ValueError(f"unknown autoencoder preset {name!r}, expected one of {sorted(PRESETS)}")
    config = dict(PRESETS[name])
    if image_size % config["downsample"]:
        raise ValueError(f"preset {name!r} downsamples by {config['downsample']}, which does not divide image_size {image_size}")
    return config | {"latent": dict(latent), "image_size": image_size, "image_channels": image_channels}


__all__ = ["PRESETS", "autoencoder_preset"]
