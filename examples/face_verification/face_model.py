"""The face-verification example's model and task functions, named by import path.

- ``FaceEncoder``: a small CNN that maps an image to a 32-d embedding, and an ArcFace head:
  ``head`` (an ``nn.Linear`` without bias, one row per identity, which rsft sizes to the
  training identities) scores the cosine between the embedding and each identity's centre;
- ``arcface_loss``: the per-sample ArcFace loss (additive angular margin ``MARGIN`` on the
  true identity, scale ``SCALE``; Deng et al. 2019);
- ``verification_accuracy``: a split-level metric (``task.metric_on: split``): items 2k and
  2k+1 of an evaluation split form pair k; a pair is judged "same identity" when the cosine of
  its embeddings is above a threshold chosen by 10-fold cross-validation over the split's
  pairs (LFW's protocol: the pairs are cut into 10 contiguous folds, and the pairs of each fold
  are judged with the threshold that is most accurate on the other 9). One score per pair: 1
  right, 0 wrong;
- ``sqrt_balance``: a user acceptance function (``rejection.weights: function``, batched):
  w = 1 / sqrt(number of images of the identity), halfway between the pool as it is (w = 1)
  and full identity balance (w = 1 / count).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

SCALE = 16.0
MARGIN = 0.3
FOLDS = 10


class FaceEncoder(nn.Module):
    """Image (batch, 1, S, S) -> {"embeddings": (batch, dim), "cosines": (batch, identities)}."""

    def __init__(self, embed_dim: int = 32, width: int = 16, num_labels: int = 2) -> None:
        super().__init__()
        w = width
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(1, w, 3, padding=1), nn.GroupNorm(4, w), nn.ReLU()),
                nn.Sequential(nn.Conv2d(w, 2 * w, 3, padding=1), nn.GroupNorm(4, 2 * w), nn.ReLU()),
                nn.Sequential(
                    nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.GroupNorm(4, 4 * w), nn.ReLU()
                ),
            ]
        )
        self.embed = nn.Linear(4 * w * 9, embed_dim)  # a 3 x 3 grid: where features are
        self.head = nn.Linear(embed_dim, num_labels, bias=False)  # the identities' centres

    def forward(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        x = pixel_values
        for i, block in enumerate(self.blocks):
            x = block(x)
            x = F.max_pool2d(x, 2) if i < len(self.blocks) - 1 else F.adaptive_avg_pool2d(x, 3)
        embeddings = self.embed(x.flatten(1))
        # cos(embedding, centre) for every identity: the head's output over the centres' norms.
        cosines = self.head(F.normalize(embeddings, dim=1)) / self.head.weight.norm(dim=1)
        return {"embeddings": embeddings, "cosines": cosines}


def arcface_loss(outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
    """One loss per sample: cross-entropy of SCALE * cos, with the true identity's angle
    widened by MARGIN (the embedding must be MARGIN radians closer to its own centre)."""
    cos = outputs["cosines"].clamp(-1 + 1e-6, 1 - 1e-6)
    labels = batch["labels"]
    true = cos.gather(1, labels[:, None])
    with_margin = torch.cos(torch.acos(true) + MARGIN)
    logits = cos.scatter(1, labels[:, None], with_margin)
    return F.cross_entropy(SCALE * logits, labels, reduction="none")


def _best_threshold(sim: torch.Tensor, same: torch.Tensor) -> float:
    """The cosine threshold most accurate on these pairs (ties: the lowest)."""
    s = torch.sort(sim.unique()).values
    candidates = torch.cat([s[:1] - 1, (s[1:] + s[:-1]) / 2, s[-1:] + 1])
    correct = ((sim[None, :] > candidates[:, None]) == same[None, :]).float().mean(1)
    return float(candidates[int(correct.argmax())])


def verification_accuracy(outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
    """One score per pair (items 2k, 2k+1): 1 when same/different is judged right."""
    index = batch["index"]
    if len(index) % 2 or not torch.equal(index[0::2] + 1, index[1::2]):
        raise ValueError(
            "verification_accuracy needs the whole split (task.metric_on: split), in order, "
            "with an even number of items: items 2k and 2k+1 form pair k."
        )
    emb = F.normalize(outputs["embeddings"].float(), dim=1)
    sim = (emb[0::2] * emb[1::2]).sum(1)
    same = batch["labels"][0::2] == batch["labels"][1::2]
    fold = torch.arange(len(sim)) * FOLDS // len(sim)  # 10 contiguous blocks of pairs
    right = torch.zeros(len(sim))
    for f in range(FOLDS):
        held = fold == f
        if not held.any():
            continue
        t = _best_threshold(sim[~held], same[~held]) if (~held).any() else 0.0
        right[held] = ((sim[held] > t) == same[held]).float()
    return right


def sqrt_balance(examples: list[dict[str, Any]]) -> list[float]:
    """Batched acceptance weights: 1 / sqrt(images of the example's identity)."""
    counts = Counter(e["identity"] for e in examples)
    return [counts[e["identity"]] ** -0.5 for e in examples]
