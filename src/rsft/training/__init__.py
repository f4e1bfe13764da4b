"""The training loop (on accelerate), its config, and atomic checkpoints."""

from rsft.training.config import (
    DataSection,
    EnvelopeConfig,
    ModelConfig,
    OptimConfig,
    RejectionConfig,
    TrainConfig,
)
from rsft.training.divergence import DivergenceError, DivergenceWarning
from rsft.training.trainer import FineTuner, NonFiniteLossError, NothingTrainedError

__all__ = [
    "DataSection",
    "DivergenceError",
    "DivergenceWarning",
    "EnvelopeConfig",
    "FineTuner",
    "ModelConfig",
    "NonFiniteLossError",
    "NothingTrainedError",
    "OptimConfig",
    "RejectionConfig",
    "TrainConfig",
]
