"""Training: one trainer (EMA, AMP, DDP, crash-safe checkpoints, exact resume) for autoencoders and
priors, and its contract: a model's ``forward(*batch, generator=...)`` returns a ``LossOutput``;
anything more (the autoencoder's discriminator step) is a ``TrainingHook``."""

from discrete_priors.training.checkpoint import latest_checkpoint, load_checkpoint, load_model_weights, save_checkpoint
from discrete_priors.training.distributed import cleanup_distributed, is_main_process, resolve_device
from discrete_priors.training.precision import PRECISIONS, autocast_context, resolve_precision, set_threads
from discrete_priors.training.trainer import FitResult, LossOutput, TrainConfig, Trainer, TrainingHook, learning_rate

__all__ = [
    "FitResult",
    "LossOutput",
    "PRECISIONS",
    "TrainConfig",
    "Trainer",
    "TrainingHook",
    "autocast_context",
    "cleanup_distributed",
    "is_main_process",
    "latest_checkpoint",
    "learning_rate",
    "load_checkpoint",
    "load_model_weights",
    "resolve_device",
    "resolve_precision",
    "save_checkpoint",
    "set_threads",
]
