"""A model named by import path in the usability tests (their folder is put on sys.path)."""

from __future__ import annotations

import torch
from torch import nn


class Recorder(nn.Module):
    """Records what its constructor and ``forward`` receive (the contract in docs/models.md).

    Features and images arrive as one positional tensor, flattened to ``in_features``; text
    arrives as keyword token tensors over a vocabulary of ``vocab`` ids.
    """

    calls: list[tuple[tuple, dict]] = []
    built_with: dict = {}

    def __init__(self, in_features: int = 4, vocab: int = 1, **kwargs: object) -> None:
        super().__init__()
        Recorder.built_with = {"in_features": in_features, "vocab": vocab, **kwargs}
        self.body = nn.Linear(in_features, 8)
        self.embed = nn.EmbeddingBag(vocab, 8)
        self.classifier = nn.Linear(8, 7)  # 7 outputs: rsft resizes it to the classes

    def forward(self, *args: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
        Recorder.calls.append((args, kwargs))
        if kwargs:  # text
            return self.classifier(self.embed(kwargs["input_ids"]))
        return self.classifier(self.body(args[0].flatten(1)))
