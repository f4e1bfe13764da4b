"""Task functions named by import path ("task_fns:name") in test_task.py.

test_task.py puts this folder on sys.path with monkeypatch.syspath_prepend.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CALLS = {"collate": 0, "features": 0}
NOT_CALLABLE = 3


def ce(outputs, batch):
    """Cross-entropy by import path: the built-in loss, so runs must match bit for bit."""
    return F.cross_entropy(outputs, batch["labels"], reduction="none")


def twice_ce(outputs, batch):
    return 2 * F.cross_entropy(outputs, batch["labels"], reduction="none")


def mean_ce(outputs, batch):
    """Wrong: reduces the batch to one number."""
    return F.cross_entropy(outputs, batch["labels"])


def accuracy(outputs, batch):
    return (outputs.argmax(-1) == batch["labels"]).float()


def percent(outputs, batch):
    """Wrong scale: 0 or 100 per item."""
    return 100.0 * (outputs.argmax(-1) == batch["labels"]).float()


def both_right(outputs, batch):
    """Split-level: items 2k, 2k+1 form pair k, scored 1 when both are predicted right."""
    right = (outputs.argmax(-1) == batch["labels"]).float()
    return right[0::2] * right[1::2]


def stack_without_index(items):
    """A collate function that leaves out the index (rsft adds it back)."""
    CALLS["collate"] += 1
    return {
        "pixels": torch.stack([item["pixels"] for item in items]),
        "labels": torch.stack([item["labels"] for item in items]),
    }


def not_a_dict(items):
    return [item["pixels"] for item in items]


def first_pixels(model, batch):
    """Raw inputs as the density ratio's features."""
    CALLS["features"] += 1
    return batch["pixels"][:, :8]


def dict_outputs_weight(inputs, labels, logits):
    """A model-aware weight function that reads a dict of outputs."""
    return logits["logits"].softmax(-1).max(-1).values.double()


class DictNet(torch.nn.Module):
    """A model whose forward returns a dict (no ``.logits`` attribute): outputs as they come."""

    def __init__(self, num_labels: int = 3) -> None:
        super().__init__()
        self.body = torch.nn.Linear(64, 16)
        self.classifier = torch.nn.Linear(16, num_labels)

    def forward(self, pixels):
        h = torch.relu(self.body(pixels))
        return {"logits": self.classifier(h), "embedding": h}


def dict_ce(outputs, batch):
    return F.cross_entropy(outputs["logits"], batch["labels"], reduction="none")


def dict_accuracy(outputs, batch):
    return (outputs["logits"].argmax(-1) == batch["labels"]).float()
