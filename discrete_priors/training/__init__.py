"""Training: one trainer (EMA, AMP, DDP, crash-safe checkpoints, exact resume) for autoencoders and priors."""

from discrete_priors.training.checkpoint import latest_checkpoint, load_checkpoint, load_model_weights, save_checkpoint
from discrete_priors.training.distributed import cleanup_distributed, is_main_process
from discrete_priors.training.trainer import FitResult, TrainConfig, Trainer, learning_rate

__all__ = [
    "FitResult",
    "TrainConfig",
    "Trainer",
    "cleanup_distributed",
    "is_main_process",
    "latest_checkpoint",
    "learning_rate",
    "load_checkpoint",
    "load_model_weights",
    "save_checkpoint",
]
