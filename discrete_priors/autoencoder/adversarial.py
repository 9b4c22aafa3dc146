"""The autoencoder's adversarial training, as a hook of the trainer (training/trainer.py,
``TrainingHook``): a PatchGAN discriminator with its own AdamW (lr ``TrainConfig.disc_lr``) and
GradScaler, stepped after each autoencoder update, as in VQGAN (Esser et al. 2021,
https://arxiv.org/abs/2012.09841, section 3.1).

One step:

1. ``before_step``: the discriminator is frozen and handed bare to the autoencoder's ``forward``
   with the step (its adversarial term starts at ``disc_start``), so the autoencoder's update flows
   through it without moving it.
2. the trainer updates the autoencoder (and its EMA).
3. ``after_step``: the discriminator is unfrozen and minimises
   ``model.discriminator_loss(discriminator, images, recon.detach(), step)``. A loss that needs no
   gradient (before ``disc_start``) skips the update: no zero-gradient AdamW step that would still
   apply weight decay and advance Adam's step count.

Checkpoint files (the names checkpoints have always used): ``discriminator.safetensors``,
``disc_optimizer.{safetensors,json}``, and ``disc_scaler`` in ``trainer_state.json``.
"""

from __future__ import annotations

import torch
from torch import nn

from discrete_priors.training.trainer import Trainer, TrainingHook, adamw, learning_rate


class AdversarialTraining(TrainingHook):
    """The discriminator's half of GAN training. The model it serves has
    ``forward(images, *, step, generator, discriminator)`` returning ``(loss, terms, recon)`` and
    ``discriminator_loss(discriminator, images, recon, step) -> LossOutput``, as
    :class:`~discrete_priors.autoencoder.Autoencoder` does."""

    def __init__(self, discriminator: nn.Module):
        self.discriminator = discriminator

    def setup(self, trainer: Trainer) -> None:
        if not hasattr(trainer.model, "discriminator_loss"):
            raise ValueError(f"adversarial training needs a discriminator_loss method, which {type(trainer.model).__name__} "
                             "lacks; give it one (see AdversarialTraining) or train it without a discriminator")
        self.trainer, self.model = trainer, trainer.model
        self.discriminator = self.discriminator.to(trainer.device)
        self.params = [p for p in self.discriminator.parameters() if p.requires_grad]
        self.disc_train = trainer.wrap(self.discriminator)
        self.lr = trainer.config.lr if trainer.config.disc_lr is None else trainer.config.disc_lr
        self.optimizer = adamw(self.discriminator, self.lr, trainer.config, trainer.device)
        self.scaler = trainer.grad_scaler()

    def before_step(self, step: int) -> dict:
        # Only the autoencoder's update flows through the discriminator here; its own gradients
        # come from discriminator_loss in after_step.
        for p in self.params:
            p.requires_grad_(False)
        return {"step": step, "discriminator": self.discriminator}

    def after_step(self, step: int, batch: tuple, out) -> dict:
        return self.discriminator_step(step, batch[0], out.recon.detach())

    def discriminator_step(self, step: int, images: torch.Tensor, recon: torch.Tensor) -> dict:
        """One update of the discriminator on real ``images`` vs ``recon``; returns ``disc/...`` records."""
        for p in self.params:
            p.requires_grad_(True)
        self.optimizer.zero_grad(set_to_none=True)
        with self.trainer.autocast():
            d_out = self.model.discriminator_loss(self.disc_train, images, recon, step)
        device = self.trainer.device
        record = {f"disc/{k}": torch.as_tensor(v, device=device).detach().float() for k, v in d_out.terms.items()}
        record["disc/loss"] = d_out.loss.detach().float()
        if d_out.loss.requires_grad:
            lr = learning_rate(step, self.trainer.config, self.lr)
            record["disc/grad_norm"] = self.trainer.update(d_out.loss, self.optimizer, self.scaler, self.params, lr).detach().float()
        return record

    def modules(self) -> dict[str, nn.Module]:
        return {"discriminator": self.discriminator}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"disc_optimizer": self.optimizer}

    def state_dict(self) -> dict:
        return {"disc_scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if state.get("disc_scaler"):
            self.scaler.load_state_dict(state["disc_scaler"])
