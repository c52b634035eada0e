"""Training: standard, adversarial and robust (method.md §5–§6)."""

from ._robust import PsiController, RobustLoss, TandemChoices, penalty_scalar, robust_loss
from ._run import load_training_data, run_training
from ._trainer import (
    EpochStats,
    ResumeMismatchError,
    TrainConfig,
    Trainer,
    TrainResult,
    channel_stats,
)

__all__ = [
    "EpochStats", "PsiController", "ResumeMismatchError", "TrainConfig", "TrainResult",
    "RobustLoss", "TandemChoices", "Trainer", "channel_stats", "load_training_data",
    "penalty_scalar", "robust_loss", "run_training",
]
