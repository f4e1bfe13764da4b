"""Model-aware weight functions ``fn(inputs, labels, logits)`` named by import path
("model_aware_fns:name") in test_model_aware.py and ddp_model_aware.py.

The tests put this folder on sys.path (monkeypatch.syspath_prepend, or PYTHONPATH for the
subprocesses). The weights below depend on the label only, so the probability that each
sample is accepted is known exactly in advance.
"""

from __future__ import annotations

import numpy as np
import torch

# Weight of each class (labels 0, 1, 2) for by_class and zero_class_0.
BY_CLASS = (0.2, 0.8, 0.5)
ZERO_CLASS_0 = (0.0, 1.0, 0.5)


def by_class(inputs: dict, labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    return torch.tensor(BY_CLASS, dtype=torch.float64)[labels.cpu()]


def zero_class_0(inputs: dict, labels: torch.Tensor, logits: torch.Tensor) -> list[float]:
    return [ZERO_CLASS_0[int(y)] for y in labels]  # a list is fine too


def from_features(inputs: dict, labels: torch.Tensor, logits: torch.Tensor) -> np.ndarray:
    """Uses the model inputs: a numpy array of |first feature| (> 0 almost surely)."""
    return inputs["features"][:, 0].abs().cpu().numpy() + 1e-3


def constant(inputs: dict, labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    return torch.ones(len(labels))


def returns_nan(inputs: dict, labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    w = torch.ones(len(labels))
    w[1] = float("nan")
    return w


def returns_inf(inputs: dict, labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    w = torch.ones(len(labels))
    w[0] = float("inf")
    return w


def returns_negative(inputs: dict, labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    w = torch.ones(len(labels))
    w[2] = -0.5
    return w


def wrong_shape(inputs: dict, labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    return torch.ones(len(labels), 1)


def one_too_few(inputs: dict, labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    return torch.ones(len(labels) - 1)


def scalar(inputs: dict, labels: torch.Tensor, logits: torch.Tensor) -> float:
    return 1.0


def raises(inputs: dict, labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    raise KeyError("no_such_input")


NOT_CALLABLE = 3.0
