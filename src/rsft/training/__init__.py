"""The training loop (on accelerate), its config, and atomic checkpoints."""

from rsft.training.callbacks import Callback
from rsft.training.config import (
    DataSection,
    EnvelopeConfig,
    ModelConfig,
    OptimConfig,
    RejectionConfig,
    TrainConfig,
)
from rsft.training.divergence import DivergenceError, DivergenceWarning
from rsft.training.results import RunResult
from rsft.training.state import TrainState
from rsft.training.stops import NonFiniteLossError, NothingTrainedError
from rsft.training.trainer import FineTuner

__all__ = [
    "Callback",
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
    "RunResult",
    "TrainConfig",
    "TrainState",
]
