"""rsft: rejection-sampling fine-tuning of pretrained models.

The names below are the Python API; they are imported on first use so that ``import rsft``
stays cheap (torch and transformers load only when needed).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.5.0"

_API = {
    "Envelope": "rsft.rule",
    "RejectionStats": "rsft.rule",
    "accept": "rsft.rule",
    "RejectionSampler": "rsft.data_level",
    "balance_weights": "rsft.data_level.weights",
    "column_weights": "rsft.data_level.weights",
    "density_ratio_weights": "rsft.data_level.weights",
    "function_weights": "rsft.data_level.weights",
    "FineTuner": "rsft.training",
    "TrainConfig": "rsft.training",
    "CompareConfig": "rsft.compare.runner",
    "run_compare": "rsft.compare.runner",
    "from_dict": "rsft.config",
    "load_split": "rsft.data",
    "load_classifier": "rsft.models",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'rsft' has no attribute {name!r}")
