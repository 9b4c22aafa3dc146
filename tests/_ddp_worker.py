"""Toy models for tests/test_trainer.py, and a training script that runs with or without torchrun:

    torchrun --standalone --nproc_per_node=2 tests/_ddp_worker.py OUT_DIR
"""

from __future__ import annotations

import sys
from typing import NamedTuple

import torch
from torch import nn

from discrete_priors.autoencoder import AdversarialTraining
from discrete_priors.training import LossOutput, TrainConfig, Trainer, cleanup_distributed


class AELoss(NamedTuple):
    loss: torch.Tensor
    terms: dict
    recon: torch.Tensor


class ToyAutoencoder(nn.Module):
    """Deterministic autoencoder following contract docs/method.md §8.3: an adversarial term from ``adv_start`` on."""

    def __init__(self, *, dim: int = 6, hidden: int = 3, adv_weight: float = 0.1, adv_start: int = 2):
        super().__init__()
        self.config = dict(dim=dim, hidden=hidden, adv_weight=adv_weight, adv_start=adv_start)
        self.encoder, self.decoder = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, images, *, step: int, generator=None, discriminator=None) -> AELoss:
        recon = self.decoder(torch.tanh(self.encoder(images)))
        mse = (recon - images).pow(2).mean()
        loss, terms = mse, {"mse": mse.detach()}
        if discriminator is not None and step >= self.config["adv_start"]:
            adv = -discriminator(recon).mean()
            loss = loss + self.config["adv_weight"] * adv
            terms["adv"] = adv.detach()
        return AELoss(loss, terms, recon)

    def build_discriminator(self) -> nn.Module:
        return nn.Sequential(nn.Linear(self.config["dim"], 4), nn.Tanh(), nn.Linear(4, 1))

    def discriminator_loss(self, discriminator, images, recon, step) -> LossOutput:
        if step < self.config["adv_start"]:
            return LossOutput(torch.zeros((), device=images.device), {})
        # hinge loss; two separate calls, as VQGAN-style discriminators do
        real = torch.relu(1 - discriminator(images)).mean()
        fake = torch.relu(1 + discriminator(recon)).mean()
        return LossOutput(real + fake, {"real": real.detach(), "fake": fake.detach()})


def init_(module: nn.Module, seed: int) -> nn.Module:
    """Deterministic initialisation from an explicit generator."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=generator))
    return module


def toy_images(n: int = 48, dim: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, dim, generator=torch.Generator().manual_seed(seed))


def run_toy(out_dir, *, steps: int = 8, batch_size: int = 8) -> None:
    model = init_(ToyAutoencoder(), seed=0)
    discriminator = init_(model.build_discriminator(), seed=1)
    config = TrainConfig(steps=steps, batch_size=batch_size, lr=1e-2, warmup_steps=2, grad_clip=1.0, ema_decay=0.9,
                         checkpoint_every=0, log_every=2, seed=3, device="cpu", weight_decay=0.01)
    Trainer(model, (toy_images(),), config, out_dir, hook=AdversarialTraining(discriminator), progress=False).fit()


if __name__ == "__main__":
    torch.set_num_threads(1)
    run_toy(sys.argv[1])
    cleanup_distributed()
