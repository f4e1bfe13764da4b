"""rsft: rejection-sampling fine-tuning of pretrained models.

The names below are the Python API; they are imported on first use so that ``import rsft``
stays cheap (torch and transformers load only when needed). IDEs and type checkers see them
through the ``TYPE_CHECKING`` imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.5.0"

_API = {
    # the rule
    "Envelope": "rsft.rule",
    "RejectionStats": "rsft.rule",
    "accept": "rsft.rule",
    "rejection_sample": "rsft.rule.explicit",
    # the data level
    "RejectionSampler": "rsft.data_level",
    "balance_weights": "rsft.data_level.weights",
    "column_weights": "rsft.data_level.weights",
    "density_ratio_weights": "rsft.data_level.weights",
    "function_weights": "rsft.data_level.weights",
    # training
    "FineTuner": "rsft.training",
    "TrainConfig": "rsft.training",
    "Callback": "rsft.training.callbacks",
    "RunResult": "rsft.training.results",
    "RejectionTrainer": "rsft.integrations.hf_trainer",
    # the parameter level
    "Metropolis": "rsft.param_level",
    "ZerothOrderSGD": "rsft.param_level",
    # the generation level
    "RFTConfig": "rsft.generation.config",
    "RFTPipeline": "rsft.generation.pipeline",
    "RFTResult": "rsft.generation.results",
    # comparisons, configs, data, models
    "CompareConfig": "rsft.compare.runner",
    "run_compare": "rsft.compare.runner",
    "from_dict": "rsft.config",
    "load_split": "rsft.data",
    "load_classifier": "rsft.models",
}

# Written out (not built from _API) so that linters and IDEs read it; a test keeps both alike.
__all__ = [
    "__version__",
    "Envelope",
    "RejectionStats",
    "accept",
    "rejection_sample",
    "RejectionSampler",
    "balance_weights",
    "column_weights",
    "density_ratio_weights",
    "function_weights",
    "FineTuner",
    "TrainConfig",
    "Callback",
    "RunResult",
    "RejectionTrainer",
    "Metropolis",
    "ZerothOrderSGD",
    "RFTConfig",
    "RFTPipeline",
    "RFTResult",
    "CompareConfig",
    "run_compare",
    "from_dict",
    "load_split",
    "load_classifier",
]

if TYPE_CHECKING:
    from rsft.compare.runner import CompareConfig, run_compare
    from rsft.config import from_dict
    from rsft.data import load_split
    from rsft.data_level import RejectionSampler
    from rsft.data_level.weights import (
        balance_weights,
        column_weights,
        density_ratio_weights,
        function_weights,
    )
    from rsft.generation.config import RFTConfig
    from rsft.generation.pipeline import RFTPipeline
    from rsft.generation.results import RFTResult
    from rsft.integrations.hf_trainer import RejectionTrainer
    from rsft.models import load_classifier
    from rsft.param_level import Metropolis, ZerothOrderSGD
    from rsft.rule import Envelope, RejectionStats, accept
    from rsft.rule.explicit import rejection_sample
    from rsft.training import FineTuner, TrainConfig
    from rsft.training.callbacks import Callback
    from rsft.training.results import RunResult


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'rsft' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
