"""A small multilayer perceptron for feature tables, named by import path
(``rsft.tasks.mlp:MLP``) in a train config.

Its layout (``blocks`` + ``classifier``) is what rsft's freezing and head replacement
expect, like :class:`rsft.tasks.digits.DigitsNet`, but it takes any number of features.
"""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """``depth`` blocks of Linear + ReLU of width ``hidden``, then a linear head."""

    def __init__(
        self, in_features: int, num_labels: int = 2, hidden: int = 64, depth: int = 2
    ) -> None:
        super().__init__()
        if in_features < 1 or hidden < 1 or depth < 1:
            raise ValueError(
                f"MLP needs in_features, hidden and depth >= 1, got {in_features}, {hidden}, "
                f"{depth}: set model.kwargs.in_features to the number of feature values."
            )
        self.in_features = in_features
        widths = [in_features] + [hidden] * depth
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(a, b), nn.ReLU()) for a, b in zip(widths, widths[1:])
        )
        self.classifier = nn.Linear(hidden, num_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features.float().reshape(len(features), -1)
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"MLP was built for {self.in_features} features per sample, got {x.shape[1]}: "
                "set model.kwargs.in_features to match the data."
            )
        for block in self.blocks:
            x = block(x)
        return self.classifier(x)
