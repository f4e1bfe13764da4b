"""Functions and models named by import path ("guard_fns:name") in test_bad_input.py and
test_divergence.py; the ``isolated`` fixture of conftest.py puts this folder on sys.path."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

CALLS = {"grows": 0}


def grows_after_first_call(inputs: dict, labels: torch.Tensor, logits: torch.Tensor) -> list:
    """Model-aware weights of 0.5 when first called (the check before training), 5 after:
    a fixed envelope M = 1 holds on the first batch and is violated at the first round."""
    CALLS["grows"] += 1
    return [0.5 if CALLS["grows"] == 1 else 5.0] * len(labels)


class CentroidNet(nn.Module):
    """A linear head that starts as a good classifier of the reliability tables (a small
    multiple of their class centres): it predicts every class before training, so a collapse
    can only come from training."""

    def __init__(self, num_labels: int = 3, scale: float = 0.01) -> None:
        super().__init__()
        self.num_labels = num_labels
        self.classifier = nn.Linear(64, num_labels)
        centres = np.random.default_rng(1234).normal(0.0, 1.0, (num_labels, 64))
        with torch.no_grad():
            self.classifier.weight.copy_(torch.as_tensor(scale * centres))
            self.classifier.bias.zero_()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features.float())
