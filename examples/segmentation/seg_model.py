"""The segmentation example's model and task functions, named by import path in compare.yaml.

- ``TinyUNet``: a small U-Net (two downsamplings, skip connections); its head is a per-pixel
  ``nn.Linear`` over the channels, so rsft finds it (``head``) and sizes it to the classes;
- ``pixel_cross_entropy``: the per-image loss, the mean cross-entropy of its pixels;
- ``mean_iou``: the per-image score, the mean intersection-over-union of the classes present
  in the image's label or prediction;
- ``style_features``: what the density ratio's domain classifier sees: the per-channel mean
  and standard deviation of the U-Net's deepest feature map (the input of the head, 16
  channels x 32 x 32 pixels, would give it 16,384 features per image).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.GroupNorm(4, cout),
        nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.GroupNorm(4, cout),
        nn.ReLU(),
    )


class TinyUNet(nn.Module):
    """A U-Net for small images (sides divisible by 4): logits of shape (batch, classes, H, W)."""

    def __init__(self, width: int = 16, in_channels: int = 3, num_labels: int = 3) -> None:
        super().__init__()
        w = width
        self.blocks = nn.ModuleList(
            [
                _block(in_channels, w),  # H
                _block(w, 2 * w),  # H/2
                _block(2 * w, 4 * w),  # H/4: the bottleneck
                _block(4 * w + 2 * w, 2 * w),  # H/2, with the skip from block 1
                _block(2 * w + w, w),  # H, with the skip from block 0
            ]
        )
        self.head = nn.Linear(w, num_labels)  # per pixel, over the channels

    def encode(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's feature maps, finest first."""
        x0 = self.blocks[0](pixel_values)
        x1 = self.blocks[1](F.max_pool2d(x0, 2))
        x2 = self.blocks[2](F.max_pool2d(x1, 2))
        return [x0, x1, x2]

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x0, x1, x2 = self.encode(pixel_values)
        up = F.interpolate(x2, scale_factor=2, mode="nearest")
        d1 = self.blocks[3](torch.cat([up, x1], 1))
        up = F.interpolate(d1, scale_factor=2, mode="nearest")
        d0 = self.blocks[4](torch.cat([up, x0], 1))
        return self.head(d0.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def pixel_cross_entropy(outputs: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
    """One loss per image: the mean cross-entropy over its pixels."""
    return F.cross_entropy(outputs, batch["labels"], reduction="none").mean(dim=(1, 2))


def mean_iou(outputs: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
    """One score per image: IoU averaged over the classes in its label or its prediction."""
    labels = batch["labels"]
    pred = outputs.argmax(1)
    classes = outputs.shape[1]
    scores = []
    for p, t in zip(pred, labels):
        ious = []
        for c in range(classes):
            union = ((p == c) | (t == c)).sum()
            if union > 0:
                ious.append(((p == c) & (t == c)).sum() / union)
        scores.append(torch.stack(ious).mean())
    return torch.stack(scores)


@torch.no_grad()
def style_features(model: TinyUNet, batch: dict[str, Any]) -> torch.Tensor:
    """Per-channel mean and standard deviation of the bottleneck: an image's style."""
    deepest = model.encode(batch["pixel_values"])[-1]
    return torch.cat([deepest.mean(dim=(2, 3)), deepest.std(dim=(2, 3))], dim=1)
